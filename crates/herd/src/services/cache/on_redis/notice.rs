//! The cluster's change notices on `herd:{cluster}:cache`: what each host
//! publishes with every change, and what a host does with those it hears
//! (its own included): feed its watchers, invalidate its workers' local
//! copies, end or wake its flights.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::link::Subscriber;
use super::Engine;
use crate::services::cache::store::{Value, Waited};
use crate::services::cache::{Change, ChangeKind};

/// The largest notice heard; a larger one is dropped (a debug log).
const MAX_NOTICE: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
pub(super) struct Notice {
    /// The cache.
    c: String,
    /// The key.
    k: String,
    /// `set`, `del`, `fail` (a load failed), `free` (a lease released).
    e: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    why: Option<String>,
    /// The new value's TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<u64>,
}

impl Notice {
    /// A notice's text. `json` is a value already checked as JSON.
    pub fn out(
        cache: &str,
        key: &str,
        kind: &str,
        json: Option<&str>,
        why: Option<&str>,
        ttl: Option<u64>,
    ) -> String {
        let v = json.and_then(|j| RawValue::from_string(j.to_string()).ok());
        let n = Notice {
            c: cache.into(),
            k: key.into(),
            e: kind.into(),
            v,
            why: why.map(|w| w.chars().take(4096).collect()),
            t: ttl,
        };
        serde_json::to_string(&n).unwrap_or_default()
    }
}

impl Engine {
    fn on_notice(&self, n: Notice) {
        let invalidate = self.invalidate.get();
        let _ = self.with_named(&n.c, |named, _| {
            if let (Some(readers), Some(f)) = (named.readers.remove(&n.k), invalidate) {
                for w in readers {
                    f(w, &n.c, &n.k);
                }
            }
            let kind = match n.e.as_str() {
                "set" => Some(ChangeKind::Set),
                "del" => Some(ChangeKind::Del),
                "expired" => {
                    named.stats.expirations += 1;
                    Some(ChangeKind::Expired)
                }
                _ => None,
            };
            if let Some(kind) = kind {
                let change = Change {
                    key: n.k.clone(),
                    kind,
                    value: n.v.as_ref().map(|v| v.get().to_string()),
                };
                named.watchers.retain(|w| {
                    if w.key.as_deref().is_some_and(|k| k != n.k) {
                        return !w.tx.is_closed();
                    }
                    w.tx.try_send(change.clone()).is_ok()
                });
            }
            let Some(flight) = named.flights.get_mut(&n.k) else {
                return;
            };
            match (n.e.as_str(), &n.v) {
                // A value: every waiter of this host has it (a load of
                // this host in flight is ended by it, as by a set).
                ("set", Some(v)) => {
                    let value = Value {
                        json: v.get().into(),
                        ttl_ms: n.t,
                    };
                    if let Some(flight) = named.flights.remove(&n.k) {
                        for (_, tx) in flight.waiters {
                            let _ = tx.send(Waited::Hit(value.clone()));
                        }
                    }
                }
                // The other host's load that this flight waits for failed.
                ("fail", _) if flight.loading.is_none() => {
                    flight.failed =
                        Some(n.why.clone().unwrap_or_else(|| "the loader failed".into()));
                    flight.poke.notify_one();
                }
                _ => flight.poke.notify_one(),
            }
        });
    }
}

impl Subscriber for Engine {
    fn channels(&self) -> Vec<String> {
        vec![self.channel(), self.expired_channel(), self.emit_channel()]
    }

    fn message(&self, channel: &str, payload: &[u8]) {
        if channel == self.emit_channel() {
            return self.on_emit(payload);
        }
        if channel == self.expired_channel() {
            // Redis's keyspace notice (notify-keyspace-events Ex): the key.
            let key = String::from_utf8_lossy(payload);
            let Some(rest) = key.strip_prefix(&self.prefix) else {
                return;
            };
            let Some((cache, k)) = rest.split_once(':') else {
                return;
            };
            let Some(k) = k.strip_prefix("v:") else {
                return;
            };
            self.on_notice(Notice {
                c: cache.into(),
                k: k.into(),
                e: "expired".into(),
                v: None,
                why: None,
                t: None,
            });
            return;
        }
        if channel != self.channel() || payload.len() > MAX_NOTICE {
            return;
        }
        match serde_json::from_slice::<Notice>(payload) {
            Ok(n) => self.on_notice(n),
            Err(e) => {
                tracing::debug!(channel, error = %e, "a cache notice that does not decode; dropped")
            }
        }
    }

    fn resubscribed(&self) {
        let invalidate = self.invalidate.get();
        let mut state = self.lock();
        for (name, named) in state.caches.iter_mut() {
            for (key, readers) in named.readers.drain() {
                if let Some(f) = invalidate {
                    for w in readers {
                        f(w, name, &key);
                    }
                }
            }
            for flight in named.flights.values() {
                flight.poke.notify_one();
            }
        }
    }
}
