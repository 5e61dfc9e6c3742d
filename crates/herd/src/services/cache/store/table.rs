//! One named cache's entries: values as JSON text, expiry, least recently
//! used order, byte accounting, and which workers hold a local copy.

use std::collections::BTreeSet;

use super::lru::{Lru, Slot};

use foldhash::HashMap;
use std::sync::Arc;

/// A value as the store keeps it: its JSON text.
pub(crate) type Json = Arc<str>;

/// Bytes counted for an entry beyond its key and value.
pub(crate) const OVERHEAD: usize = 64;

pub(crate) struct Entry {
    pub value: Json,
    /// When it expires, on the store's clock.
    pub expires: Option<u64>,
    /// Its place in the LRU order.
    used: Slot,
    /// Workers that keep a local copy and are owed a notice when it changes.
    pub readers: Vec<u32>,
}

pub(crate) fn cost(key: &str, value: &str) -> usize {
    key.len() + value.len() + OVERHEAD
}

#[derive(Default)]
pub(crate) struct Table {
    entries: HashMap<String, Entry>,
    lru: Lru,
    expiry: BTreeSet<(u64, String)>,
    pub bytes: usize,
}

impl Table {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry for `key`, marked used, if it is live at `now`.
    pub fn touch(&mut self, key: &str, now: u64) -> Option<&mut Entry> {
        let entry = self.entries.get_mut(key)?;
        if entry.expires.is_some_and(|t| t <= now) {
            return None;
        }
        self.lru.bump(entry.used);
        Some(entry)
    }

    /// The entry, live at `now`, without touching its LRU place.
    pub fn peek(&self, key: &str, now: u64) -> Option<&Entry> {
        self.entries
            .get(key)
            .filter(|e| e.expires.map_or(true, |t| t > now))
    }

    /// Writes `key`; returns the readers of the value it replaced.
    pub fn insert(&mut self, key: &str, value: Json, expires: Option<u64>) -> Vec<u32> {
        let readers = self.remove(key).map(|e| e.readers).unwrap_or_default();
        self.bytes += cost(key, &value);
        let used = self.lru.push(key.to_string());
        if let Some(t) = expires {
            self.expiry.insert((t, key.to_string()));
        }
        self.entries.insert(
            key.to_string(),
            Entry {
                value,
                expires,
                used,
                readers: Vec::new(),
            },
        );
        readers
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.lru.remove(entry.used);
        if let Some(t) = entry.expires {
            self.expiry.remove(&(t, key.to_string()));
        }
        self.bytes -= cost(key, &entry.value);
        Some(entry)
    }

    /// The least recently used key, other than `keep`.
    pub fn oldest(&self, keep: &str) -> Option<String> {
        self.lru.oldest_except(keep).map(str::to_string)
    }

    /// The earliest expiry.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// A key expired at `now`, if any.
    pub fn expired(&self, now: u64) -> Option<String> {
        self.expiry
            .first()
            .filter(|(t, _)| *t <= now)
            .map(|(_, k)| k.clone())
    }

    /// The keys live at `now`, sorted.
    pub fn keys(&self, now: u64) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires.map_or(true, |t| t > now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Every live entry, for persistence.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    /// Changes when `key` expires (services/resp's per-key TTL), keeping
    /// the expiry order in step.
    pub fn set_expiry(&mut self, key: &str, expires: Option<u64>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(t) = entry.expires {
            self.expiry.remove(&(t, key.to_string()));
        }
        entry.expires = expires;
        if let Some(t) = expires {
            self.expiry.insert((t, key.to_string()));
        }
    }

    /// Forgets `worker` as a reader everywhere.
    pub fn forget_reader(&mut self, worker: u32) {
        for e in self.entries.values_mut() {
            e.readers.retain(|&w| w != worker);
        }
    }
}
