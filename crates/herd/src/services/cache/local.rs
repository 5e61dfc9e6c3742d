//! A worker's local copy of the entries it read (point 4 of issue 15):
//! a hit costs no message. The primary notes the worker as a reader of
//! each entry it hands out and sends one invalidation when that entry
//! changes, as Redis's client-side caching does; the copy drops it then.

use foldhash::HashMap;
use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::store::Json;

pub(crate) struct LocalCopy {
    inner: Mutex<Inner>,
    pub hits: AtomicU64,
    max_entries: usize,
}

/// A decoded value kept beside its JSON (for [`Cache::get_shared`](super::Cache::get_shared)).
type Decoded = Arc<dyn Any + Send + Sync>;

struct Entry {
    json: Json,
    expires: Option<Instant>,
    decoded: Option<Decoded>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry>,
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
        let json = self.live(key, |e| e.json.clone())?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(json)
    }

    /// The entry's decoded value if it was kept as a `T`, else its JSON.
    pub fn get_decoded<T: Any + Send + Sync>(&self, key: &str) -> Option<Result<Arc<T>, Json>> {
        let got = self.live(key, |e| {
            match e.decoded.clone().map(|d| d.downcast::<T>()) {
                Some(Ok(t)) => Ok(t),
                _ => Err(e.json.clone()),
            }
        })?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(got)
    }

    /// Keeps `decoded` beside the entry, if it still holds `json`.
    pub fn remember(&self, key: &str, json: &Json, decoded: Decoded) {
        let mut inner = self.lock();
        if let Some(e) = inner.map.get_mut(key) {
            if Arc::ptr_eq(&e.json, json) {
                e.decoded = Some(decoded);
            }
        }
    }

    fn live<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        let mut inner = self.lock();
        let entry = inner.map.get(key)?;
        if entry.expires.is_some_and(|t| t <= Instant::now()) {
            inner.map.remove(key);
            return None;
        }
        Some(f(entry))
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
        inner.map.insert(
            key.to_string(),
            Entry {
                json,
                expires,
                decoded: None,
            },
        );
    }

    pub fn invalidate(&self, key: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.remove(key);
    }

    /// Drops every entry (the store they came from was lost).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.map.clear();
    }
}
