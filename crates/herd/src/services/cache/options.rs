//! A named cache's options, its counters and its errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest cache name, in bytes. A name is made of ASCII letters,
/// digits, `.`, `_` and `-` (it names the cache's file when it persists).
pub const MAX_NAME: usize = 64;
/// The longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// The most named caches one store holds.
pub const MAX_CACHES: usize = 256;

/// How a named cache behaves. The first [`open`](crate::Worker::cache) of
/// a name fixes its options for the cluster's life; a later open with
/// other options (the local copy apart, which is each worker's own) is
/// refused with [`CacheError::Options`].
///
/// ```
/// use std::time::Duration;
/// let options = herd::CacheOptions::default()
///     .expire(Duration::from_secs(60))
///     .persist(true)
///     .max_entries(10_000);
/// assert_eq!(options.expire, Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Entries go this long after they were written (`None`: never).
    pub expire: Option<Duration>,
    /// Written to the primary's cache directory and read back at start.
    pub persist: bool,
    /// The most entries; one more evicts the least recently used.
    pub max_entries: usize,
    /// The most bytes of keys and JSON values (plus 64 per entry); past it
    /// the least recently used entries go.
    pub max_bytes: usize,
    /// How long a loader may hold a key's lease before the next waiter is
    /// given it (counted as a lease timeout).
    pub lease: Duration,
    /// Whether this worker keeps the entries it read, invalidated by the
    /// primary's change notices (module docs: when that is stale). Not part
    /// of the cache's shared options.
    #[serde(skip, default = "yes")]
    pub local_copy: bool,
}

fn yes() -> bool {
    true
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            expire: None,
            persist: false,
            max_entries: 100_000,
            max_bytes: 64 << 20,
            lease: Duration::from_secs(30),
            local_copy: true,
        }
    }
}

impl CacheOptions {
    /// Entries expire this long after they were written.
    pub fn expire(mut self, after: Duration) -> Self {
        self.expire = Some(after);
        self
    }
    /// Persist the cache in the primary's cache directory.
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }
    /// The most entries.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }
    /// The most bytes.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }
    /// How long a loader may hold a lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
    /// Keep a local copy of what this worker reads (on by default).
    pub fn local_copy(mut self, on: bool) -> Self {
        self.local_copy = on;
        self
    }

    /// The options compared between two opens of one name.
    pub(crate) fn shared(&self) -> CacheOptions {
        CacheOptions {
            local_copy: true,
            ..self.clone()
        }
    }

    pub(crate) fn check(&self) -> Result<(), CacheError> {
        let bad = |why: String| Err(CacheError::Invalid(why));
        if self.max_entries == 0 || self.max_bytes < 1024 {
            return bad(format!(
                "max_entries must be at least 1 and max_bytes at least 1024 (got {} and {})",
                self.max_entries, self.max_bytes
            ));
        }
        if self.lease.is_zero() || self.expire.is_some_and(|e| e.is_zero()) {
            return bad("lease and expire must be longer than zero".into());
        }
        Ok(())
    }
}

/// Checks a cache name: 1 to [`MAX_NAME`] bytes of `[A-Za-z0-9._-]`, not
/// starting with a dot.
pub(crate) fn check_name(name: &str) -> Result<(), CacheError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(CacheError::Invalid(format!(
            "cache name {:?} must be 1 to {MAX_NAME} ASCII letters, digits, '.', '_' or '-', \
             not starting with '.'",
            name.chars().take(80).collect::<String>()
        )))
    }
}

pub(crate) fn check_key(key: &str) -> Result<(), CacheError> {
    if key.len() > MAX_KEY {
        return Err(CacheError::Invalid(format!(
            "a key of {} bytes is longer than the {MAX_KEY} a key may be",
            key.len()
        )));
    }
    Ok(())
}

/// A named cache's counters (since the primary started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Gets answered with a value (by the primary; local-copy hits are
    /// counted in the worker, [`Cache::local_hits`](crate::Cache::local_hits)).
    pub hits: u64,
    /// Gets that found no value.
    pub misses: u64,
    /// Loads started (leases given to a loader).
    pub loads: u64,
    /// Loads that failed, or whose loader's worker died.
    pub load_failures: u64,
    /// Leases that ran out before their loader filled them.
    pub lease_timeouts: u64,
    /// Entries evicted by the memory bound.
    pub evictions: u64,
    /// Entries removed by `expire`.
    pub expirations: u64,
    /// Entries now.
    pub entries: u64,
    /// Bytes now (keys, values and 64 per entry).
    pub bytes: u64,
    /// Persistence files found corrupt at start and set aside.
    pub corrupt_files: u64,
    /// Persistence writes that failed.
    pub persist_errors: u64,
}

/// What can go wrong with a cache call.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheError {
    /// A name, a key, a value or an option is out of bounds.
    #[error("{0}")]
    Invalid(String),
    /// The name was opened before with other options.
    #[error("cache {name:?} is open with other options ({had}); open it with the same options everywhere")]
    Options {
        /// The cache.
        name: String,
        /// The options in force.
        had: String,
    },
    /// The loader failed (here, or in the worker that held the lease: its
    /// error is passed to every waiter).
    #[error("the loader failed: {0}")]
    Load(String),
    /// No value came within the call's `wait`; the waiter's registration
    /// is cancelled.
    #[error("no value within {0:?}; the wait was cancelled (give a longer wait)")]
    Timeout(Duration),
    /// A value could not be encoded or decoded.
    #[error("cache value could not be encoded or decoded as JSON: {0}")]
    Codec(String),
    /// The primary could not be reached, or answered out of protocol.
    #[error("cache service: {0}")]
    Transport(String),
}

impl From<serde_json::Error> for CacheError {
    fn from(e: serde_json::Error) -> Self {
        CacheError::Codec(e.to_string())
    }
}

impl From<crate::Error> for CacheError {
    fn from(e: crate::Error) -> Self {
        CacheError::Transport(e.to_string())
    }
}
