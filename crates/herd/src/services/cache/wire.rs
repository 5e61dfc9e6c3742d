//! The cache's messages between a worker and the primary's store: a
//! request per call, its reply, and the primary's pushes (a local copy's
//! invalidation, a watcher's change notice). docs/protocol.md describes
//! them for a worker in another language.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CacheError, CacheOptions, CacheStats, Change};

/// A worker's request.
#[derive(Debug, Serialize, Deserialize)]
// Externally tagged (`{"get": {...}}`): a RawValue cannot be read through
// serde's buffering of an internally tagged enum.
#[serde(rename_all = "snake_case")]
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
#[serde(rename_all = "snake_case")]
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
#[serde(rename_all = "snake_case")]
pub(crate) enum Push {
    /// The entry the worker copied changed: drop the copy.
    Invalidate { cache: String, key: String },
    /// A change notice for the worker's watch `id`.
    Change { id: u64, change: Change },
    /// The worker's watch `id` ended (it fell behind).
    Ended { id: u64 },
    /// The store was lost (a standalone store worker died): drop every
    /// local copy, and end every watch.
    Reset,
}

pub(crate) fn raw(json: &str) -> Result<Box<RawValue>, CacheError> {
    RawValue::from_string(json.to_string()).map_err(|e| CacheError::Codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_with_raw_values_round_trip() {
        let req = Req::Set {
            cache: "c".into(),
            key: "k".into(),
            value: raw(r#"{"a":[1,2.5,"x"]}"#).unwrap(),
            leave_if_not_null: true,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"set":{"cache":"c","key":"k","value":{"a":[1,2.5,"x"]},"leave_if_not_null":true}}"#
        );
        match serde_json::from_str::<Req>(&text).unwrap() {
            Req::Set { value, .. } => assert_eq!(value.get(), r#"{"a":[1,2.5,"x"]}"#),
            other => panic!("{other:?}"),
        }
        let rep = Rep::Hit {
            value: raw("7").unwrap(),
            ttl_ms: Some(5),
        };
        let text = serde_json::to_string(&rep).unwrap();
        assert!(
            matches!(serde_json::from_str::<Rep>(&text).unwrap(), Rep::Hit { value, ttl_ms: Some(5) } if value.get() == "7")
        );
        let text = serde_json::to_string(&Rep::Error {
            error: CacheError::Timeout(std::time::Duration::from_millis(300)),
        })
        .unwrap();
        assert!(
            matches!(serde_json::from_str::<Rep>(&text).unwrap(), Rep::Error { error: CacheError::Timeout(d) } if d.as_millis() == 300)
        );
        // A hostile request is an error, not a panic.
        assert!(serde_json::from_str::<Req>(r#"{"get":{"cache":1}}"#).is_err());
        assert!(serde_json::from_str::<Req>(r#"{"nope":{}}"#).is_err());
    }
}
