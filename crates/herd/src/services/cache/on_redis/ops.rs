//! The cache's calls on Redis: open, get, set, del, keys.

use std::sync::Arc;
use std::time::Duration;

use super::notice::Notice;
use super::scripts::{DEL, SET};
use super::{ms, Engine, Named, MAX_TRACKED};
use crate::services::cache::backend::Got;
use crate::services::cache::options::{check_key, check_name};
use crate::services::cache::store::{Json, Owner, Value};
use crate::services::cache::{CacheError, CacheOptions, CacheStats, MAX_CACHES};

/// The most keys `keys` returns: past it the call fails (use fewer keys
/// per cache, or Redis's own tools).
pub(crate) const MAX_KEYS: usize = 1_000_000;

/// A glob pattern matching `text` exactly.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Engine {
    /// Opens `name`: its options are written to Redis at the cluster's
    /// first open anywhere, and compared with it at every later one.
    pub async fn open(&self, name: &str, options: &CacheOptions) -> Result<(), CacheError> {
        check_name(name)?;
        options.check()?;
        let shared = options.shared();
        if let Ok(had) = self.options(name) {
            return same(name, &had, &shared);
        }
        let text = serde_json::to_string(&shared)?;
        let mut conn = self.link.conn();
        let key = format!("{}{name}:o", self.prefix);
        let (_, had): (bool, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&text)
            .arg("NX")
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.away(&e))?;
        if let Some(had) = had.and_then(|h| serde_json::from_str::<CacheOptions>(&h).ok()) {
            same(name, &had.shared(), &shared)?;
        }
        let mut state = self.lock();
        if !state.caches.contains_key(name) && state.caches.len() >= MAX_CACHES {
            return Err(CacheError::Invalid(format!(
                "this host holds {MAX_CACHES} named caches already; use fewer names"
            )));
        }
        state
            .caches
            .entry(name.to_string())
            .or_insert_with(|| Named {
                options: shared,
                stats: CacheStats::default(),
                flights: Default::default(),
                watchers: Vec::new(),
                readers: Default::default(),
            });
        Ok(())
    }

    /// Looks `key` up; on a miss with `load`, joins the host's flight.
    pub async fn get(
        self: &Arc<Self>,
        owner: Owner,
        cache: &str,
        key: &str,
        load: bool,
        wait: Duration,
        track: bool,
    ) -> Result<Got, CacheError> {
        check_key(key)?;
        // A load of this host in flight: wait for it, as the store does.
        let joined = self.with_named(cache, |n, _| {
            if let (true, Owner::Worker(w)) = (track, owner) {
                // Before reading: a change heard meanwhile invalidates.
                if n.readers.len() >= MAX_TRACKED && !n.readers.contains_key(key) {
                    self.drop_copies(cache, n);
                }
                let readers = n.readers.entry(key.to_string()).or_default();
                if !readers.contains(&w) {
                    readers.push(w);
                }
            }
            let flying = load && n.flights.contains_key(key);
            if flying {
                n.stats.misses += 1;
            }
            flying
        })?;
        if joined {
            return self.join(owner, cache, key, wait).await;
        }
        let mut conn = self.link.conn();
        let vkey = self.value_key(cache, key);
        let read: Result<(Option<String>, i64), _> = redis::pipe()
            .cmd("GET")
            .arg(&vkey)
            .cmd("PTTL")
            .arg(&vkey)
            .query_async(&mut conn)
            .await;
        let found = match read {
            Ok((v, pttl)) => v.map(|json| Value {
                json: json.as_str().into(),
                ttl_ms: u64::try_from(pttl).ok(),
            }),
            // Away: a get with a loader still loads (in this host).
            Err(e) if load => {
                self.link.failed(&e);
                None
            }
            Err(e) => return Err(self.away(&e)),
        };
        let _ = self.with_named(cache, |n, _| match &found {
            Some(_) => n.stats.hits += 1,
            None => n.stats.misses += 1,
        });
        match (found, load) {
            (Some(v), _) => Ok(Got::Hit(v)),
            (None, false) => Ok(Got::Miss),
            (None, true) => self.join(owner, cache, key, wait).await,
        }
    }

    /// Drops every worker's copy of this cache (tracking too many keys).
    fn drop_copies(&self, cache: &str, n: &mut Named) {
        let invalidate = self.invalidate.get();
        for (key, readers) in n.readers.drain() {
            if let Some(f) = invalidate {
                for w in readers {
                    f(w, cache, &key);
                }
            }
        }
    }

    /// Writes `key` (ending any load of it, here or on another host).
    pub async fn set(
        &self,
        cache: &str,
        key: &str,
        json: Json,
        leave: bool,
    ) -> Result<bool, CacheError> {
        check_key(key)?;
        let options = self.options(cache)?;
        let size = key.len() + json.len() + 64;
        if size > options.max_bytes {
            return Err(CacheError::Invalid(format!(
                "an entry of {size} bytes is larger than cache {cache:?}'s max_bytes ({})",
                options.max_bytes
            )));
        }
        let ttl = options.expire.map(ms);
        let notice = Notice::out(cache, key, "set", Some(&json), None, ttl);
        let mut conn = self.link.conn();
        let wrote: i64 = SET
            .key(self.value_key(cache, key))
            .key(self.lease_key(cache, key))
            .arg(&*json)
            .arg(ttl.unwrap_or(0))
            .arg(if leave { "1" } else { "0" })
            .arg(self.channel())
            .arg(notice)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.away(&e))?;
        Ok(wrote == 1)
    }

    /// Removes `key`; whether it held a value.
    pub async fn del(&self, cache: &str, key: &str) -> Result<bool, CacheError> {
        check_key(key)?;
        self.options(cache)?;
        let notice = Notice::out(cache, key, "del", None, None, None);
        let mut conn = self.link.conn();
        let had: i64 = DEL
            .key(self.value_key(cache, key))
            .arg(self.channel())
            .arg(notice)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.away(&e))?;
        Ok(had == 1)
    }

    /// The keys that hold a value, sorted (a SCAN of the cache's prefix).
    pub async fn keys(&self, cache: &str) -> Result<Vec<String>, CacheError> {
        self.options(cache)?;
        let prefix = self.value_key(cache, "");
        let pattern = format!("{}*", glob_escape(&prefix));
        let mut conn = self.link.conn();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.away(&e))?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)),
            );
            if keys.len() > MAX_KEYS {
                return Err(CacheError::Invalid(format!(
                    "cache {cache:?} holds more than {MAX_KEYS} keys; list them with Redis's SCAN"
                )));
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

fn same(name: &str, had: &CacheOptions, want: &CacheOptions) -> Result<(), CacheError> {
    if had == want {
        Ok(())
    } else {
        Err(CacheError::Options {
            name: name.into(),
            had: format!("{had:?}"),
        })
    }
}
