//! The RESP socket's store and hub: the cluster's cache named
//! [`RESP_CACHE`] (so a Rust worker's `worker.cache("default", ..)` and a
//! Node worker's `redis.get(..)` see the same entries), and the channels
//! RESP clients subscribe to.
//!
//! **Values.** The cache holds JSON; Redis holds bytes. A value written
//! over RESP is stored as a JSON string when it is UTF-8, else as a
//! `herd::Binary` (`{"$bytes": BASE64}`); a read gives back a JSON
//! string's text, a `Binary`'s bytes, and any other JSON value (one a Rust
//! worker stored) as its JSON text. Keys must be UTF-8 (the cache's keys
//! are text): any other key is an error naming that rule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use super::commands::{glob, Backend, Condition, Ttl};
use super::server::{Hub, PushSender};
use crate::services::cache::store::{GetArgs, Json, Lookup, Owner, Store, When};
use crate::services::cache::CacheOptions;

/// The cache the RESP socket's keys live in.
pub const RESP_CACHE: &str = "default";

/// One channel's RESP subscribers (connection id, where its pushes go),
/// and the task forwarding the emitter's events of that name to them.
#[derive(Default)]
struct Channel {
    subs: Vec<(u64, PushSender)>,
    forward: Option<tokio::task::JoinHandle<()>>,
}

type Channels = Arc<Mutex<HashMap<Bytes, Channel>>>;

/// The cluster's cache and the RESP clients' channels.
pub(crate) struct CacheHub {
    store: Arc<Store>,
    emitter: Option<crate::Emitter>,
    channels: Channels,
}

impl CacheHub {
    /// Opens [`RESP_CACHE`] in `store` with its default options; bridges
    /// the channels to `emitter` when given.
    pub fn new(
        store: Arc<Store>,
        emitter: Option<crate::Emitter>,
    ) -> Result<CacheHub, crate::CacheError> {
        store.open(RESP_CACHE, &CacheOptions::default())?;
        Ok(CacheHub {
            store,
            emitter,
            channels: Channels::default(),
        })
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<Bytes, Channel>> {
        lock(&self.channels)
    }
}

fn lock(c: &Channels) -> std::sync::MutexGuard<'_, HashMap<Bytes, Channel>> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pushes `message` to `channel`'s RESP subscribers; how many it reached.
/// A subscriber whose queue is full or gone is dropped here; its
/// connection notices the full queue and closes itself.
fn deliver(channels: &Channels, channel: &Bytes, message: &Bytes) -> i64 {
    let mut map = lock(channels);
    let Some(ch) = map.get_mut(channel) else {
        return 0;
    };
    let mut reached = 0;
    ch.subs.retain(|(_, tx)| match tx.push(channel, message) {
        true => {
            reached += 1;
            true
        }
        false => false,
    });
    reached
}

/// The text of a RESP key, or `None` when it is not UTF-8.
fn key(k: &[u8]) -> Option<&str> {
    std::str::from_utf8(k).ok()
}

/// RESP bytes as the JSON the cache stores.
pub(crate) fn to_json(v: &[u8]) -> Json {
    let text = match std::str::from_utf8(v) {
        Ok(s) => serde_json::to_string(s),
        Err(_) => serde_json::to_string(&serde_json::json!({
            "$bytes": base64::engine::general_purpose::STANDARD.encode(v)
        })),
    };
    text.unwrap_or_else(|_| "null".into()).into()
}

/// The cache's JSON as the bytes a RESP client reads.
pub(crate) fn from_json(json: &str) -> Bytes {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::String(s)) => Bytes::from(s),
        Ok(serde_json::Value::Object(m)) if m.len() == 1 => match m.get("$bytes") {
            Some(serde_json::Value::String(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_or_else(|_| Bytes::copy_from_slice(json.as_bytes()), Bytes::from),
            _ => Bytes::copy_from_slice(json.as_bytes()),
        },
        _ => Bytes::copy_from_slice(json.as_bytes()),
    }
}

impl Backend for CacheHub {
    async fn get(&self, k: &[u8]) -> Option<Bytes> {
        let args = GetArgs {
            owner: Owner::Primary,
            load: false,
            wait: Duration::ZERO,
            track: false,
        };
        match self.store.get(RESP_CACHE, key(k)?, args) {
            Ok(Lookup::Hit(v)) => Some(from_json(&v.json)),
            _ => None,
        }
    }

    async fn set(
        &self,
        k: Bytes,
        v: Bytes,
        ttl: Option<Duration>,
        cond: Condition,
    ) -> Result<bool, String> {
        let Some(k) = key(&k) else {
            return Err("herd's cache keys are UTF-8 text; this key is not".into());
        };
        let when = match cond {
            Condition::Always => When::Always,
            Condition::IfAbsent => When::Absent,
            Condition::IfPresent => When::Present,
        };
        self.store
            .set_expiring(RESP_CACHE, k, to_json(&v), ttl, when)
            .map_err(|e| e.to_string())
    }

    async fn del(&self, k: &[u8]) -> bool {
        key(k).is_some_and(|k| self.store.del(RESP_CACHE, k).unwrap_or(false))
    }

    async fn keys(&self, pattern: &[u8]) -> Vec<Bytes> {
        self.store
            .keys(RESP_CACHE)
            .unwrap_or_default()
            .into_iter()
            .filter(|k| glob(pattern, k.as_bytes()))
            .map(Bytes::from)
            .collect()
    }

    async fn expire(&self, k: &[u8], ttl: Duration) -> bool {
        key(k).is_some_and(|k| self.store.expire(RESP_CACHE, k, ttl).unwrap_or(false))
    }

    async fn ttl(&self, k: &[u8]) -> Ttl {
        match key(k).map(|k| self.store.ttl(RESP_CACHE, k)) {
            Some(Ok(Some(Some(left)))) => Ttl::Left(left),
            Some(Ok(Some(None))) => Ttl::Forever,
            _ => Ttl::Missing,
        }
    }

    async fn publish(&self, channel: Bytes, message: Bytes) -> i64 {
        let reached = deliver(&self.channels, &channel, &message);
        if let (Some(emitter), Ok(event)) = (&self.emitter, std::str::from_utf8(&channel)) {
            let payload: serde_json::Value =
                serde_json::from_str(&to_json(&message)).unwrap_or_default();
            // On a task of its own: a worker slow to read its channel
            // must not hold up PUBLISH for everyone.
            let (emitter, event) = (emitter.clone(), event.to_string());
            tokio::spawn(async move {
                if let Err(e) = emitter
                    .emit_to(crate::Target::AllWorkers, &event, &payload)
                    .await
                {
                    tracing::debug!("services socket: PUBLISH {event}: not emitted: {e}");
                }
            });
        }
        reached
    }
}

impl Hub for CacheHub {
    fn subscribe(&self, conn: u64, channel: Bytes, to: PushSender) {
        let mut channels = self.channels();
        let ch = channels.entry(channel.clone()).or_default();
        ch.subs.push((conn, to));
        if ch.forward.is_some() {
            return;
        }
        let (Some(emitter), Ok(event)) = (&self.emitter, std::str::from_utf8(&channel)) else {
            return;
        };
        let mut sub = emitter.on::<serde_json::Value>(event);
        let weak = Arc::downgrade(&self.channels);
        ch.forward = Some(tokio::spawn(async move {
            while let Some(e) = sub.next().await {
                let Some(channels) = weak.upgrade() else {
                    return;
                };
                let text = serde_json::to_string(&e.payload).unwrap_or_default();
                deliver(&channels, &channel, &from_json(&text));
            }
        }));
    }

    fn unsubscribe(&self, conn: u64, channel: &[u8]) {
        let mut channels = self.channels();
        if let Some(ch) = channels.get_mut(channel) {
            ch.subs.retain(|(c, _)| *c != conn);
            if ch.subs.is_empty() {
                if let Some(task) = ch.forward.take() {
                    task.abort();
                }
                channels.remove(channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_between_resp_and_json() {
        for v in [&b"plain"[..], b"", b"\"quoted\" \n", b"\xff\x00binary"] {
            assert_eq!(&from_json(&to_json(v))[..], v);
        }
        // What a Rust worker stored reads as its JSON text.
        assert_eq!(&from_json("{\"a\":1}")[..], b"{\"a\":1}");
        assert_eq!(&from_json("42")[..], b"42");
    }
}
