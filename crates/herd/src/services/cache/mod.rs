//! A shared cache: named caches that every process of the cluster reads
//! and writes, held by the primary, with single-flight loading across the
//! whole cluster and a local copy in each worker (issue 15, points 3 and
//! 4; cluster2's `cache`, without its leaks).
//!
//! The primary serves the caches ([`CacheService`], started before the
//! first fork); a worker opens one by name with [`Worker::cache`]
//! (the primary with [`CacheService::cache`]) and gets a [`Cache`]:
//!
//! ```no_run
//! # async fn demo(worker: herd::Worker) -> Result<(), herd::CacheError> {
//! use std::time::Duration;
//! let users = worker
//!     .cache("users", herd::CacheOptions::default().expire(Duration::from_secs(60)))
//!     .await?;
//! // One load for the whole cluster: every other caller waits for it.
//! let name: String = users
//!     .get_or_load("42", || async { Ok::<_, std::io::Error>("Ada".to_string()) })
//!     .await?;
//! users.set("43", &"Grace").await?;
//! assert!(!users.set_if_null("43", &"someone else").await?);
//! let mut changes = users.watch_all().await?;
//! users.del("43").await?;
//! let change = changes.next().await;
//! # Ok(()) }
//! ```
//!
//! **Single flight.** A get that misses with a loader takes the key's
//! *lease* (one per key, held by a worker or the primary) and runs its
//! loader; every other get of that key waits in the primary, and gets the
//! value the moment the loader fills it. A lease ends at once, never at a
//! waiter's timeout:
//!
//! - the loader **fails**: every waiter gets its error
//!   ([`CacheError::Load`]) at once. The waiters do not load in turn: a
//!   load that failed (the database is down, the key does not exist) would
//!   most likely fail again, and a hundred waiters loading one after the
//!   other would hold the last one a hundred loads long; they may retry.
//! - the loader's **worker dies** (or disconnects), or the loader runs past
//!   the cache's `lease` ([`CacheOptions::lease`]): the lease passes to the
//!   first waiter still waiting, which loads. Nothing said that load would
//!   fail, so one waiter loads and the rest keep waiting, for its value.
//! - a `set` of the key fills it: waiters get that value.
//!
//! A call waits at most its `wait` ([`Cache::get_or_load_within`],
//! [`DEFAULT_WAIT`] otherwise); past it it fails with
//! [`CacheError::Timeout`] and its registration as a waiter is removed.
//!
//! **Local copy.** A worker keeps the entries it read (on by default;
//! [`CacheOptions::local_copy`]), so a hit costs no message. The primary
//! notes which workers hold a copy of each entry and, when it changes
//! (set, del, expiry, eviction), sends each of them one invalidation, as
//! Redis's client-side caching does. The copy is exact for the worker's
//! own writes and for every change it was told of; it is **stale** from
//! the moment another worker's `set` returns until the invalidation
//! arrives: one notice's latency, measured at 11 us at the median (p99 2 ms
//! on a loaded 2-core machine; docs/benchmarks.md, `bench/run.sh cache`).
//! Turn it off for a cache whose readers must see another worker's write
//! the moment that write returns. A reply that crosses an invalidation
//! of the same cache is not kept (the next get asks again), so the copy
//! never keeps a value older than a change it was told of.
//! [`Cache::get_shared`] keeps the decoded value beside the JSON, so a
//! local hit then costs an `Arc` clone.
//!
//! **Shared requests.** Plain gets ([`Cache::get`], and a local copy's
//! misses) of one key that one worker makes at once share a request to the
//! primary, but only while that request has not left the worker: each
//! then still sees the value the store held at a moment during its own
//! call, as with a request of its own (a get that starts after a `set`
//! returned sees that set or a later one). A get that comes when the
//! request is on its way sends another. A hot key read by many callers
//! costs fewer messages than callers. Gets with a loader never share: each
//! may take the lease.
//!
//! **Bounds.** Each cache holds at most `max_entries` entries and
//! `max_bytes` bytes of keys and values; past either, the least recently
//! used entries go (counted as evictions). Names and keys are bounded
//! ([`MAX_NAME`], [`MAX_KEY`]), and a value larger than its cache's
//! `max_bytes` is refused. Counters ([`CacheStats`]) are in
//! [`Cache::stats`] and the monitor's `/metrics`.
//!
//! **Persistence.** A cache opened with `persist` is written to the
//! service's directory (a temporary file, synced, then renamed over the
//! old one: a crash leaves the old file or the new one) within a second of
//! a change and when the service stops, and read back when it is next
//! opened. A file that does not read back whole is reported (a warning,
//! and [`CacheStats::corrupt_files`]), renamed aside
//! (`NAME.cache.json.corrupt-TIME`), and the cache starts empty.
//!
//! **Standalone.** [`CacheService::standalone`] puts the store in a
//! dedicated worker instead (cluster2's `standalone` mode), forked and
//! restarted (with a growing delay) by the service; the workers and the
//! primary's handles use it unchanged, through the primary. The death of a
//! worker that uses the cache changes nothing; the store worker's death
//! fails every call waiting for it at once, drops the local copies, ends
//! the watches and loses what was not persisted (a persistent cache is
//! read back by its successor). The worker's `main` must hand the store
//! worker to [`CacheService::store_worker`]; the details: [`standalone`].

mod answer;
mod backend;
mod coalesce;
mod handle;
mod local;
#[cfg(feature = "redis")]
mod on_redis;
mod options;
mod remote;
mod service;
mod service_wire;
pub mod standalone;
pub(crate) mod store;
mod wire;

use serde::{Deserialize, Serialize};

pub use handle::{Cache, Watch, DEFAULT_WAIT};
#[cfg(feature = "redis")]
pub use on_redis::RedisHealth;
pub use options::{CacheError, CacheOptions, CacheStats, MAX_CACHES, MAX_KEY, MAX_NAME};
pub use service::CacheService;
pub use standalone::StoreWorker;

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ChangeKind {
    /// It was written (`set`, or a load filled it).
    Set,
    /// It was removed by `del`.
    Del,
    /// It expired.
    Expired,
    /// The memory bound evicted it.
    Evicted,
}

/// One change notice of a [`Watch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The key.
    pub key: String,
    /// What happened.
    pub kind: ChangeKind,
    /// The new value's JSON, for [`ChangeKind::Set`].
    pub value: Option<String>,
}

impl Change {
    /// The new value, decoded (`None` unless it was set).
    pub fn value<T: serde::de::DeserializeOwned>(&self) -> Option<Result<T, CacheError>> {
        self.value
            .as_deref()
            .map(|json| Ok(serde_json::from_str(json)?))
    }
}

/// The store this process's [`CacheService`] serves, for the monitor.
static SERVED: std::sync::Mutex<std::sync::Weak<store::Store>> =
    std::sync::Mutex::new(std::sync::Weak::new());

/// Every cache's counters of this process's [`CacheService`] (none when
/// it runs none), for `/metrics`.
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub(crate) fn metrics_snapshot() -> Vec<(String, CacheStats)> {
    #[cfg(feature = "redis")]
    if let Some(engine) = on_redis::SERVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .upgrade()
    {
        return engine.stats();
    }
    let standalone = standalone::SERVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .upgrade();
    if let Some(standalone) = standalone {
        return standalone.stats();
    }
    let served = SERVED.lock().unwrap_or_else(|p| p.into_inner()).upgrade();
    served.map(|s| s.stats()).unwrap_or_default()
}

/// The Redis link of this process's [`CacheService`], when it runs on
/// Redis, for `/status` and `/metrics`.
#[cfg(feature = "redis")]
#[cfg_attr(not(feature = "monitor"), allow(dead_code))]
pub(crate) fn redis_health() -> Option<RedisHealth> {
    on_redis::SERVED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .upgrade()
        .map(|e| e.health())
}
