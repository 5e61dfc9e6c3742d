//! The cache on Redis (issue 16): several herd instances, one per host,
//! share their caches through one Redis server, with the guarantees of
//! the in-primary store.
//!
//! **One client of Redis per host.** The primary is the host's only
//! client: its workers keep asking it over their channel, as with the
//! in-primary store, and the primary's store becomes a front for Redis
//! ([`Engine`]). So a host holds two connections to Redis (commands, and
//! pub/sub) whatever its number of workers, and single flight works at two
//! levels:
//!
//! - **within the host**, the primary keeps one *flight* per key being
//!   loaded: the host's callers wait in it, and only the flight asks Redis;
//! - **across hosts**, the flight takes the key's Redis lease,
//!   `SET herd:{cluster}:{cache}:l:{key} TOKEN NX PX lease`, and only
//!   the owner of the token fills or releases it (Lua scripts comparing the
//!   token, [`scripts`]). A flight that finds the lease held waits for the
//!   key's notice on the cluster's pub/sub channel, checking again at
//!   least every 200 ms: a host that died with the lease leaves it to
//!   expire (after the cache's `lease`), and the next flight takes it.
//!
//! Entries live at `herd:{cluster}:{cache}:v:{key}` with the cache's
//! `expire` as their TTL; every change (set, fill, del, a failed load, a
//! released lease) is published in the same script on
//! `herd:{cluster}:cache`, so every host sees changes in one order: its
//! watchers are fed from there and its workers' local copies invalidated.
//!
//! **What differs from the in-primary store.** Redis bounds memory
//! (`maxmemory`, with an `allkeys-lru` policy): `max_entries` is not
//! counted here, and an entry larger than `max_bytes` is still refused.
//! Expiry is Redis's: watchers hear of it when the server sends keyspace
//! notices of expired keys (`notify-keyspace-events Ex`; without them
//! they hear of sets and dels only), and local copies expire by their TTL. `persist` is Redis's own
//! persistence (RDB or AOF). Counters are this host's.
//!
//! **Redis away.** The link reconnects with a backoff
//! ([`link`]); meanwhile `/status` and `/metrics` say so, a get with a
//! loader still works, loading in this host (single flight within it)
//! without storing the value, and says so (a warning when Redis goes away,
//! [`RedisHealth::away_loads`]); other calls fail with
//! [`CacheError::Transport`]. When the link is back, every local copy is
//! dropped (changes published meanwhile were not heard) and waiting
//! flights check Redis again.

mod emit;
mod flight;
pub(crate) mod link;
mod notice;
mod ops;
mod scripts;
pub(crate) mod serve;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::{mpsc, oneshot, Notify};

use super::store::{Invalidate, Owner, Waited};
use super::{CacheError, CacheOptions, CacheStats, Change};
use link::Link;
pub use link::RedisHealth;

/// The engine this process's `CacheService` serves, for the monitor.
pub(super) static SERVED: Mutex<std::sync::Weak<Engine>> = Mutex::new(std::sync::Weak::new());

/// The most keys whose readers one cache tracks; past it every copy is
/// dropped and tracking starts again (a copy is only a copy).
const MAX_TRACKED: usize = 100_000;

/// The longest cluster name.
pub const MAX_CLUSTER: usize = 64;

struct Watcher {
    id: u64,
    owner: Owner,
    key: Option<String>,
    tx: mpsc::Sender<Change>,
}

/// The host's load of one key.
#[derive(Default)]
struct Flight {
    waiters: VecDeque<(Owner, oneshot::Sender<Waited>)>,
    loading: Option<Loading>,
    /// A notice for the key came (or Redis is back): check again.
    poke: Arc<Notify>,
    /// The load this flight waited for (another host's) failed.
    failed: Option<String>,
}

#[derive(Clone, Copy)]
struct Loading {
    owner: Owner,
    token: u64,
    /// Holds the Redis lease (false: loading while Redis is away).
    redis: bool,
    /// Its fill is on its way: its owner's death no longer matters.
    filling: bool,
}

struct Named {
    options: CacheOptions,
    stats: CacheStats,
    flights: HashMap<String, Flight>,
    watchers: Vec<Watcher>,
    /// The workers that hold a local copy of each key.
    readers: HashMap<String, Vec<u32>>,
}

#[derive(Default)]
struct State {
    caches: HashMap<String, Named>,
    next_token: u64,
}

/// The primary's front for Redis: the host's flights, watchers and
/// readers; the entries and leases are in Redis.
pub(crate) struct Engine {
    link: Arc<Link>,
    /// `herd:{cluster}:`
    prefix: String,
    /// This host's lease tokens start with it.
    host: String,
    state: Mutex<State>,
    invalidate: OnceLock<Invalidate>,
    /// Emits from the other hosts, to deliver here in order.
    emits_in: OnceLock<mpsc::Sender<(String, Vec<u8>)>>,
}

/// Checks a cluster name: 1 to [`MAX_CLUSTER`] bytes of `[A-Za-z0-9._-]`.
fn check_cluster(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CLUSTER
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster name {:?} must be 1 to {MAX_CLUSTER} ASCII letters, digits, '.', '_' or '-'",
            name.chars().take(80).collect::<String>()
        ))
    }
}

/// A token prefix unique to this process with high probability.
fn host_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

impl Engine {
    /// An engine on the Redis at `url`, for the cluster `cluster`; its
    /// connections are made on the current tokio runtime, and kept up
    /// while it lives.
    pub fn start(url: &str, cluster: &str) -> Result<Arc<Engine>, String> {
        check_cluster(cluster)?;
        let link = Arc::new(Link::new(url, cluster)?);
        let engine = Arc::new(Engine {
            link: link.clone(),
            prefix: format!("herd:{cluster}:"),
            host: host_id(),
            state: Mutex::default(),
            invalidate: OnceLock::new(),
            emits_in: OnceLock::new(),
        });
        link::run(link, Arc::downgrade(&engine));
        Ok(engine)
    }

    pub fn health(&self) -> RedisHealth {
        self.link.health()
    }

    /// Where change notices for local copies go (set once).
    pub fn on_invalidate(&self, f: Invalidate) {
        let _ = self.invalidate.set(f);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn value_key(&self, cache: &str, key: &str) -> String {
        format!("{}{cache}:v:{key}", self.prefix)
    }

    fn lease_key(&self, cache: &str, key: &str) -> String {
        format!("{}{cache}:l:{key}", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}cache", self.prefix)
    }

    /// Redis's notices of expired keys in the link's database (sent only
    /// when the server runs with `notify-keyspace-events` holding `Ex`).
    fn expired_channel(&self) -> String {
        let db = self.link.client.get_connection_info().redis_settings().db();
        format!("__keyevent@{db}__:expired")
    }

    fn token_text(&self, token: u64) -> String {
        format!("{}:{token}", self.host)
    }

    fn away(&self, e: &redis::RedisError) -> CacheError {
        self.link.failed(e);
        CacheError::Transport(format!("Redis at {}: {e}", self.link.shown))
    }

    fn with_named<R>(
        &self,
        cache: &str,
        f: impl FnOnce(&mut Named, &mut u64) -> R,
    ) -> Result<R, CacheError> {
        let mut state = self.lock();
        let state = &mut *state;
        let named = state.caches.get_mut(cache).ok_or_else(|| {
            CacheError::Invalid(format!(
                "no cache named {:?} is open; open it first (Worker::cache, CacheService::cache)",
                cache.chars().take(80).collect::<String>()
            ))
        })?;
        Ok(f(named, &mut state.next_token))
    }

    fn options(&self, cache: &str) -> Result<CacheOptions, CacheError> {
        self.with_named(cache, |n, _| n.options.clone())
    }

    /// Change notices of `key` (or every key), as this host hears them.
    pub fn watch(
        &self,
        cache: &str,
        id: u64,
        owner: Owner,
        key: Option<String>,
    ) -> Result<mpsc::Receiver<Change>, CacheError> {
        if let Some(k) = &key {
            super::options::check_key(k)?;
        }
        let (tx, rx) = mpsc::channel(super::store::WATCH_QUEUE);
        self.with_named(cache, |n, _| {
            n.watchers.push(Watcher { id, owner, key, tx })
        })?;
        Ok(rx)
    }

    pub fn unwatch(&self, cache: &str, id: u64, owner: Owner) -> Result<bool, CacheError> {
        self.with_named(cache, |n, _| {
            let before = n.watchers.len();
            n.watchers.retain(|w| !(w.id == id && w.owner == owner));
            n.watchers.len() != before
        })
    }

    /// This host's counters of every cache, by name.
    pub fn stats(&self) -> Vec<(String, CacheStats)> {
        let state = self.lock();
        let mut all: Vec<_> = state
            .caches
            .iter()
            .map(|(name, n)| (name.clone(), n.stats.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// `owner` is gone: its loads pass on (its Redis leases released now,
    /// not at their expiry), its waits, watchers and copies end.
    pub fn owner_gone(self: &Arc<Self>, owner: Owner) {
        let mut again = Vec::new();
        {
            let mut state = self.lock();
            for (name, named) in state.caches.iter_mut() {
                named.watchers.retain(|w| w.owner != owner);
                if let Owner::Worker(w) = owner {
                    for readers in named.readers.values_mut() {
                        readers.retain(|r| *r != w);
                    }
                }
                for (key, flight) in named.flights.iter_mut() {
                    flight.waiters.retain(|(o, _)| *o != owner);
                    if let Some(l) = flight.loading.filter(|l| l.owner == owner && !l.filling) {
                        named.stats.load_failures += 1;
                        flight.loading = None;
                        again.push((name.clone(), key.clone(), l));
                    }
                }
            }
        }
        for (cache, key, loading) in again {
            let engine = self.clone();
            tokio::spawn(async move {
                if loading.redis {
                    engine
                        .release(&cache, &key, loading.token, "free", None)
                        .await;
                }
                engine.acquire(cache, key).await;
            });
        }
    }
}
