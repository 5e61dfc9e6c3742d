//! The cache's messages between a worker and the primary's store: a
//! request per call, its reply, and the primary's pushes (a local copy's
//! invalidation, a watcher's change notice). docs/protocol.md describes
//! them for a worker in another language.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CacheError, CacheOptions, CacheStats, Change};

/// A worker's request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Req {
    Open {
        cache: String,
        options: CacheOptions,
    },
    Get {
        cache: String,
        key: String,
        /// Take the lease (or wait) on a miss.
        #[serde(default)]
        load: bool,
        #[serde(default)]
        wait_ms: u64,
        /// The worker keeps a local copy: tell it when the entry changes.
        #[serde(default)]
        track: bool,
    },
    Fill {
        cache: String,
        key: String,
        token: u64,
        #[serde(default)]
        value: Option<Box<RawValue>>,
        #[serde(default)]
        error: Option<String>,
    },
    Set {
        cache: String,
        key: String,
        value: Box<RawValue>,
        #[serde(default)]
        leave_if_not_null: bool,
    },
    Del {
        cache: String,
        key: String,
    },
    Keys {
        cache: String,
    },
    Watch {
        cache: String,
        id: u64,
        #[serde(default)]
        key: Option<String>,
    },
    Unwatch {
        cache: String,
        id: u64,
    },
    Stats {
        cache: String,
    },
}

/// The primary's reply.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub(crate) enum Rep {
    Hit {
        value: Box<RawValue>,
        #[serde(default)]
        ttl_ms: Option<u64>,
    },
    Miss,
    Load {
        token: u64,
    },
    Done {
        yes: bool,
    },
    Keys {
        keys: Vec<String>,
    },
    Stats {
        stats: CacheStats,
    },
    Error {
        error: CacheError,
    },
}

/// What the primary pushes to a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "p", rename_all = "snake_case")]
pub(crate) enum Push {
    /// The entry the worker copied changed: drop the copy.
    Invalidate { cache: String, key: String },
    /// A change notice for the worker's watch `id`.
    Change { id: u64, change: Change },
    /// The worker's watch `id` ended (it fell behind).
    Ended { id: u64 },
}

pub(crate) fn raw(json: &str) -> Result<Box<RawValue>, CacheError> {
    RawValue::from_string(json.to_string()).map_err(|e| CacheError::Codec(e.to_string()))
}
