//! The host's link to Redis: one multiplexed command connection (the
//! `redis` crate's [`ConnectionManager`], which reconnects by itself), one
//! pub/sub connection this module keeps up with a backoff, and whether
//! Redis is there (`/status`, `/metrics`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_core::Stream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// How often the command connection is checked with a PING.
const PING_EVERY: Duration = Duration::from_millis(500);
/// A command, a connection attempt or a PING that takes longer fails.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The pub/sub connection's reconnect backoff, first and longest.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the link reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RedisHealth {
    /// The server, as configured (a password is not shown).
    pub url: String,
    /// The cluster's name: its keys start with `herd:{cluster}:`.
    pub cluster: String,
    /// Whether both connections (commands and pub/sub) work.
    pub up: bool,
    /// Milliseconds since Redis went away (0 while it is up).
    pub away_ms: u64,
    /// Times the link came back after Redis was away.
    pub reconnects: u64,
    /// Loads run while Redis was away: single-flight within this host
    /// only, the value not stored in Redis.
    pub away_loads: u64,
}

pub(super) struct Link {
    pub client: redis::Client,
    conn: ConnectionManager,
    pub shown: String,
    pub cluster: String,
    commands_ok: AtomicBool,
    subscribed: AtomicBool,
    away_since: Mutex<Option<Instant>>,
    reconnects: AtomicU64,
    ever_up: AtomicBool,
    pub away_loads: AtomicU64,
}

/// The URL without its password.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Link {
    pub fn new(url: &str, cluster: &str) -> Result<Link, String> {
        let client = redis::Client::open(url).map_err(|e| {
            format!(
                "{:?} is not a Redis URL ({e}); give redis://HOST:PORT[/DB] or unix:///PATH",
                shown(url)
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("cannot make the Redis connection manager: {e}"))?;
        Ok(Link {
            client,
            conn,
            shown: shown(url),
            cluster: cluster.to_string(),
            commands_ok: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            away_since: Mutex::new(Some(Instant::now())),
            reconnects: AtomicU64::new(0),
            ever_up: AtomicBool::new(false),
            away_loads: AtomicU64::new(0),
        })
    }

    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn up(&self) -> bool {
        self.commands_ok.load(Ordering::Relaxed) && self.subscribed.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> RedisHealth {
        let since = *self.away_since.lock().unwrap_or_else(|p| p.into_inner());
        RedisHealth {
            url: self.shown.clone(),
            cluster: self.cluster.clone(),
            up: self.up(),
            away_ms: since.map_or(0, |t| {
                u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
            }),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            away_loads: self.away_loads.load(Ordering::Relaxed),
        }
    }

    /// A command failed: when the connection is the cause, Redis is away.
    pub fn failed(&self, e: &redis::RedisError) {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
        {
            self.set(&self.commands_ok, false, &e.to_string());
        }
    }

    fn set(&self, flag: &AtomicBool, ok: bool, why: &str) {
        let was_up = self.up();
        flag.store(ok, Ordering::Relaxed);
        let up = self.up();
        let mut since = self.away_since.lock().unwrap_or_else(|p| p.into_inner());
        if was_up && !up {
            *since = Some(Instant::now());
            crate::logging::warn_always(format_args!(
                "Redis at {} is away ({why}); reconnecting. Meanwhile a get with a loader loads \
                 in this host only and the value is not shared",
                self.shown
            ));
        } else if !was_up && up {
            let away = since.take().map_or(0, |t| t.elapsed().as_millis() as u64);
            if self.ever_up.swap(true, Ordering::Relaxed) {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(redis = %self.shown, away_ms = away, "Redis is back");
            }
        }
    }
}

/// What the pub/sub connection delivers, and when it (re)subscribed.
pub(super) trait Subscriber: Send + Sync + 'static {
    fn channels(&self) -> Vec<String>;
    fn message(&self, channel: &str, payload: &[u8]);
    /// Subscribed again after the connection was lost: what was published
    /// meanwhile is lost.
    fn resubscribed(&self);
}

/// Keeps the pub/sub connection up and the command connection checked,
/// while `owner` lives.
pub(super) fn run<S: Subscriber>(link: Arc<Link>, owner: Weak<S>) {
    let pinger = Arc::downgrade(&link);
    let alive = owner.clone();
    tokio::spawn(async move {
        loop {
            let (Some(link), Some(_owner)) = (pinger.upgrade(), alive.upgrade()) else {
                return;
            };
            let mut conn = link.conn();
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            match tokio::time::timeout(COMMAND_TIMEOUT, ping).await {
                Ok(Ok(_)) => link.set(&link.commands_ok, true, ""),
                Ok(Err(e)) => link.set(&link.commands_ok, false, &e.to_string()),
                Err(_) => link.set(&link.commands_ok, false, "no answer to PING"),
            }
            drop((link, _owner));
            tokio::time::sleep(PING_EVERY).await;
        }
    });
    let weak_link = Arc::downgrade(&link);
    drop(link);
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            let (Some(link), Some(sub)) = (weak_link.upgrade(), owner.upgrade()) else {
                return;
            };
            let channels = sub.channels();
            drop(sub);
            let connected = tokio::time::timeout(COMMAND_TIMEOUT, async {
                let mut ps = link.client.get_async_pubsub().await?;
                ps.subscribe(&channels).await?;
                Ok::<_, redis::RedisError>(ps)
            })
            .await;
            match connected {
                Ok(Ok(ps)) => {
                    backoff = BACKOFF_MIN;
                    link.set(&link.subscribed, true, "");
                    if !first {
                        if let Some(sub) = owner.upgrade() {
                            sub.resubscribed();
                        }
                    }
                    let stream = ps.into_on_message();
                    drop(link);
                    let mut stream = std::pin::pin!(stream);
                    while let Some(msg) =
                        std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await
                    {
                        let Some(sub) = owner.upgrade() else { return };
                        sub.message(msg.get_channel_name(), msg.get_payload_bytes());
                    }
                    let Some(link) = weak_link.upgrade() else {
                        return;
                    };
                    link.set(&link.subscribed, false, "the pub/sub connection closed");
                    // Published meanwhile is lost: resubscribing resyncs.
                }
                Ok(Err(e)) => link.set(&link.subscribed, false, &e.to_string()),
                Err(_) => link.set(&link.subscribed, false, "no answer to SUBSCRIBE"),
            }
            first = false;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
}
