//! The store's upkeep: reading a persistent cache back, writing it, time
//! moving (expiries, lease and wait deadlines), an owner going, counters.

use std::path::PathBuf;

use super::table::cost;
use super::{ms, persist, ChangeKind, Lease, Named, Owner, Store};
use crate::services::cache::options::{check_key, CacheStats};

impl Store {
    pub(super) fn reload(&self, named: &mut Named, path: PathBuf) {
        let now = self.now();
        match persist::read(&path) {
            persist::Read::None => {}
            persist::Read::Entries(entries) => {
                let n = entries.len();
                for e in entries {
                    if check_key(&e.key).is_err() || cost(&e.key, &e.json) > named.options.max_bytes
                    {
                        continue;
                    }
                    let expires = e.ttl_ms.map(|t| now + t);
                    named.table.insert(&e.key, e.json.into(), expires);
                    self.evict(named, &e.key);
                }
                tracing::info!(cache = %named.name, entries = n, path = %path.display(), "cache read back");
            }
            persist::Read::Corrupt { why, moved_to } => {
                named.stats.corrupt_files += 1;
                crate::logging::warn_always(format_args!(
                    "cache {:?}: its file {} is corrupt ({why}); set aside as {moved_to}, \
                     the cache starts empty",
                    &*named.name,
                    path.display()
                ));
            }
        }
    }

    /// `owner` is gone (a worker died or disconnected): its leases pass to
    /// their next waiter, its waits and watchers end, it holds no copies.
    pub fn owner_gone(&self, owner: Owner) {
        let now = self.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        for named in inner.caches.values_mut() {
            named.watchers.retain(|w| w.owner != owner);
            if let Owner::Worker(w) = owner {
                named.table.forget_reader(w);
            }
            let lease_ms = ms(named.options.lease);
            let mut ended = Vec::new();
            for (key, lease) in named.leases.iter_mut() {
                lease.drop_waiters_of(owner);
                if lease.owner == owner {
                    named.stats.load_failures += 1;
                    inner.next_token += 1;
                    if lease.pass(inner.next_token, now + lease_ms) {
                        named.stats.loads += 1;
                    } else {
                        ended.push(key.clone());
                    }
                }
            }
            for key in ended {
                named.leases.remove(&key);
            }
        }
    }

    /// Moves time to now: expires entries, leases and waits that are due.
    pub fn tick(&self) {
        let now = self.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        for named in inner.caches.values_mut() {
            while let Some(key) = named.table.expired(now) {
                if let Some(e) = named.table.remove(&key) {
                    named.stats.expirations += 1;
                    named.dirty |= named.options.persist;
                    self.changed(named, &key, ChangeKind::Expired, None, e.readers);
                }
            }
            let lease_ms = ms(named.options.lease);
            let mut ended = Vec::new();
            for (key, lease) in named.leases.iter_mut() {
                lease.time_out_waiters(now);
                if lease.deadline <= now {
                    named.stats.lease_timeouts += 1;
                    inner.next_token += 1;
                    if lease.pass(inner.next_token, now + lease_ms) {
                        named.stats.loads += 1;
                    } else {
                        ended.push(key.clone());
                    }
                }
            }
            for key in ended {
                named.leases.remove(&key);
            }
        }
    }

    /// The earliest time [`tick`](Self::tick) has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let inner = self.lock();
        inner
            .caches
            .values()
            .flat_map(|n| {
                n.table
                    .next_expiry()
                    .into_iter()
                    .chain(n.leases.values().map(Lease::next_deadline))
            })
            .min()
    }

    /// The counters of every cache, by name.
    pub fn stats(&self) -> Vec<(String, CacheStats)> {
        let inner = self.lock();
        let mut all: Vec<_> = inner
            .caches
            .values()
            .map(|n| {
                let mut s = n.stats.clone();
                s.entries = n.table.len() as u64;
                s.bytes = n.table.bytes as u64;
                (n.name.to_string(), s)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Whether a persistent cache changed since its last flush.
    pub fn needs_flush(&self) -> bool {
        self.dir.is_some() && self.lock().caches.values().any(|n| n.dirty)
    }

    /// Writes every persistent cache changed since its last write.
    pub fn flush(&self) {
        let Some(dir) = &self.dir else { return };
        let now = self.now();
        let snapshots: Vec<(String, Vec<u8>)> = {
            let mut inner = self.lock();
            inner
                .caches
                .values_mut()
                .filter(|n| n.dirty)
                .map(|n| {
                    n.dirty = false;
                    let entries = n.table.iter().filter_map(|(k, e)| {
                        let ttl = match e.expires {
                            Some(t) if t <= now => return None,
                            t => t.map(|t| t - now),
                        };
                        Some((k.as_str(), &*e.value, ttl))
                    });
                    (n.name.to_string(), persist::encode(&n.name, entries))
                })
                .collect()
        };
        for (name, bytes) in snapshots {
            let path = persist::path(dir, &name);
            if let Err(e) = persist::write(&path, &bytes) {
                tracing::warn!(cache = %name, path = %path.display(), error = %e, "cannot write the cache's file; will try again");
                let mut inner = self.lock();
                if let Some(n) = inner.caches.get_mut(&name) {
                    n.dirty = true;
                    n.stats.persist_errors += 1;
                }
            }
        }
    }
}
