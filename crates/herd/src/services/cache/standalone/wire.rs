//! The messages between the primary and its cache store worker, on the
//! services transport (a service named [`STORE_SERVICE`]), one-way both
//! ways so that the primary never waits: it forwards each call with a
//! sequence number of its own, in the order the callers sent them, and
//! matches the store's replies to them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::services::cache::wire::{Push, Rep, Req};
use crate::services::cache::CacheStats;

/// The store worker's service name on the transport.
pub(crate) const STORE_SERVICE: &str = "herd.cache.store";

/// Marks the worker the primary forks to hold the store.
pub(crate) const ENV_STORE: &str = "HERD_CACHE_STORE";
/// The store worker's directory of persistent caches (absent: none).
pub(crate) const ENV_DIR: &str = "HERD_CACHE_STORE_DIR";

/// The primary to the store worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToStore {
    /// A call to answer with [`FromStore::Reply`] `seq`: from worker
    /// `from`, or from the primary's own handles (`None`).
    Call {
        seq: u64,
        #[serde(default)]
        from: Option<u32>,
        req: Req,
    },
    /// The worker's channel closed: its leases, waits and watches go.
    Gone { worker: u32 },
    /// Write every persistent cache changed since its last write.
    Flush,
    /// Send every cache's counters now, as [`FromStore::Stats`] `seq`.
    Stats { seq: u64 },
}

/// The store worker to the primary.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FromStore {
    /// The store is up and reads what it is sent.
    Hello,
    Reply {
        seq: u64,
        rep: Rep,
    },
    /// For worker `to` (`None`: the primary's own handles).
    Push {
        to: Option<u32>,
        push: Push,
    },
    /// Every cache's counters: asked (`seq` > 0) or sent each second they
    /// changed (`seq` 0).
    Stats {
        seq: u64,
        stats: Vec<(String, CacheStats)>,
    },
}

/// [`FromStore`] as the primary reads it: replies and pushes stay JSON,
/// passed on to the worker as they came.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FromStoreRaw {
    Hello,
    Reply {
        seq: u64,
        rep: Box<RawValue>,
    },
    Push {
        to: Option<u32>,
        push: Box<RawValue>,
    },
    Stats {
        seq: u64,
        stats: Vec<(String, CacheStats)>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::cache::wire::raw;

    #[test]
    fn a_call_and_its_reply_cross_as_they_were_written() {
        let call = ToStore::Call {
            seq: 7,
            from: Some(3),
            req: Req::Set {
                cache: "c".into(),
                key: "k".into(),
                value: raw(r#"{"a":[1,"x"]}"#).unwrap(),
                leave_if_not_null: false,
            },
        };
        let text = serde_json::to_string(&call).unwrap();
        match serde_json::from_str::<ToStore>(&text).unwrap() {
            ToStore::Call {
                seq: 7,
                from: Some(3),
                req: Req::Set { value, .. },
            } => assert_eq!(value.get(), r#"{"a":[1,"x"]}"#),
            other => panic!("{other:?}"),
        }
        let reply = FromStore::Reply {
            seq: 7,
            rep: Rep::Hit {
                value: raw("[1,2]").unwrap(),
                ttl_ms: None,
            },
        };
        let text = serde_json::to_string(&reply).unwrap();
        match serde_json::from_str::<FromStoreRaw>(&text).unwrap() {
            FromStoreRaw::Reply { seq: 7, rep } => {
                let rep: Rep = serde_json::from_str(rep.get()).unwrap();
                assert!(matches!(rep, Rep::Hit { value, .. } if value.get() == "[1,2]"));
            }
            other => panic!("{other:?}"),
        }
        let push = FromStore::Push {
            to: None,
            push: Push::Reset,
        };
        let text = serde_json::to_string(&push).unwrap();
        assert!(matches!(
            serde_json::from_str::<FromStoreRaw>(&text).unwrap(),
            FromStoreRaw::Push { to: None, push } if push.get() == r#""reset""#
        ));
        // Hostile input is an error, not a panic.
        assert!(serde_json::from_str::<ToStore>(r#"{"call":{"seq":-1}}"#).is_err());
        assert!(serde_json::from_str::<FromStoreRaw>("[]").is_err());
    }
}
