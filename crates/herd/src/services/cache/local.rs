//! A worker's local copy of the entries it read (point 4 of issue 15):
//! a hit costs no message. The primary notes the worker as a reader of
//! each entry it hands out and sends one invalidation when that entry
//! changes, as Redis's client-side caching does; the copy drops it then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::store::Json;

pub(crate) struct LocalCopy {
    inner: Mutex<Inner>,
    pub hits: AtomicU64,
    max_entries: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, (Json, Option<Instant>)>,
    /// Invalidations received: a reply read before one of them is not
    /// kept (it may be older than the change the invalidation announced).
    epoch: u64,
}

impl LocalCopy {
    pub fn new(max_entries: usize) -> LocalCopy {
        LocalCopy {
            inner: Mutex::default(),
            hits: AtomicU64::new(0),
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Json> {
        let mut inner = self.lock();
        let (json, expires) = inner.map.get(key)?;
        if expires.is_some_and(|t| t <= Instant::now()) {
            inner.map.remove(key);
            return None;
        }
        let json = json.clone();
        drop(inner);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(json)
    }

    /// The epoch to pass to [`keep`](Self::keep) with the reply of a
    /// request sent now.
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `json`, read by a request sent at `epoch`, unless an
    /// invalidation came since.
    pub fn keep(&self, key: &str, json: Json, ttl_ms: Option<u64>, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.map.len() >= self.max_entries && !inner.map.contains_key(key) {
            // The copy is only a copy: past its bound it starts again (the
            // primary's later notices for dropped keys are harmless).
            inner.map.clear();
        }
        let expires = ttl_ms.map(|t| Instant::now() + Duration::from_millis(t));
        inner.map.insert(key.to_string(), (json, expires));
    }

    pub fn invalidate(&self, key: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.remove(key);
    }
}
