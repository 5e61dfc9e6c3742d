//! Plain gets of one key that share one request to the store: a hot key
//! read by many callers of one worker at once costs one message, not one
//! per caller.
//!
//! A get may join another's request only while not one byte of that
//! request has left the worker: [`Outbox::takes`](crate::channel::Outbox)
//! has not moved since the first get read it, before queueing its request. The store then answers it after
//! every caller that joined it had started, and before each one returns:
//! each sees the value the store held at a moment during its own call, as
//! if it had sent a request of its own. A get that comes later, when the
//! request is on its way, sends its own. Gets with a loader never join:
//! their lease is their own.
//!
//! The first caller leads: it sends the request and hands its answer to
//! those who joined. A leader that is cancelled before its answer comes
//! leaves the others to send their own (none fails for it); so does one
//! that its caller stops polling (a `select!` that moved on): past its
//! own deadline (what a request of its own would have waited) a joined
//! get stops waiting for the leader and sends its own request.

use foldhash::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::backend::Got;
use super::CacheError;

/// What a get hands to the gets that joined it.
pub(crate) type Shared = Result<Got, CacheError>;

type Joined = Vec<oneshot::Sender<Shared>>;

/// The gets on their way, by flight key ([`with_flight_key`]).
#[derive(Default)]
struct Flights {
    live: HashMap<Arc<str>, Flight>,
    /// The gets that joined a flight a newer one replaced (its request had
    /// left), kept for its leader, by the flight's serial number.
    replaced: HashMap<u64, Joined>,
    next: u64,
}

/// The request a get may still join.
struct Flight {
    serial: u64,
    /// The link's takes when the request was about to be queued.
    takes: u64,
    joined: Joined,
}

/// Calls `f` with one string for a flight's cache, key and `track` (only
/// gets that ask for change notices alike share; a cache name holds no
/// NUL), written in this thread's scratch buffer: a lookup allocates
/// nothing, a new flight copies it once.
fn with_flight_key<R>(cache: &str, key: &str, track: bool, f: impl FnOnce(&str) -> R) -> R {
    thread_local!(static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
    SCRATCH.with_borrow_mut(|k| {
        k.clear();
        k.push(if track { 't' } else { 'f' });
        k.push_str(cache);
        k.push('\0');
        k.push_str(key);
        let r = f(k);
        if k.capacity() > 4096 {
            // A huge key once: the buffer goes back to nothing.
            *k = String::new();
        }
        r
    })
}

/// The gets on their way from one worker that may still be joined, by key.
#[derive(Default)]
pub(crate) struct Coalesce {
    flights: Arc<Mutex<Flights>>,
}

/// A get's part: to send the request, or to wait for another's answer.
pub(crate) enum Turn {
    Lead(Leader),
    /// Wait for the leader's answer.
    Join(oneshot::Receiver<Shared>),
}

/// The get that sends the request: [`finish`](Leader::finish) hands its
/// answer on; dropped unfinished, it lets the joined gets go their own way.
pub(crate) struct Leader {
    flights: Arc<Mutex<Flights>>,
    key: Arc<str>,
    serial: u64,
    /// Not yet closed (by `finish`, or on drop).
    open: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Coalesce {
    /// The part of a get of `key` in `cache`, `takes` being the link's
    /// [`takes`](crate::channel::Outbox::takes) now (before any request of
    /// this get is queued).
    pub fn turn(&self, cache: &str, key: &str, track: bool, takes: u64) -> Turn {
        with_flight_key(cache, key, track, |fk| self.turn_at(fk, takes))
    }

    fn turn_at(&self, fk: &str, takes: u64) -> Turn {
        let mut flights = lock(&self.flights);
        if let Some(f) = flights.live.get_mut(fk) {
            if f.takes == takes {
                let (tx, rx) = oneshot::channel();
                f.joined.push(tx);
                return Turn::Join(rx);
            }
        }
        // No request to join (or the one there is on its way: its leader
        // keeps what joined it, and this one may be joined from now on).
        flights.next += 1;
        let serial = flights.next;
        let flight = Flight {
            serial,
            takes,
            joined: Joined::new(),
        };
        let fk: Arc<str> = fk.into();
        if let Some(old) = flights.live.insert(fk.clone(), flight) {
            if !old.joined.is_empty() {
                flights.replaced.insert(old.serial, old.joined);
            }
        }
        Turn::Lead(Leader {
            flights: self.flights.clone(),
            key: fk,
            serial,
            open: true,
        })
    }
}

impl Leader {
    /// Hands `answer` to every get that joined this one.
    pub fn finish(mut self, answer: &Shared) {
        for tx in self.close() {
            let _ = tx.send(answer.clone());
        }
    }

    /// No more gets may join: the ones that did (none after the first call).
    fn close(&mut self) -> Joined {
        if !std::mem::replace(&mut self.open, false) {
            return Joined::new();
        }
        let mut flights = lock(&self.flights);
        let mine = flights
            .live
            .get(&*self.key)
            .is_some_and(|f| f.serial == self.serial);
        if mine {
            return flights
                .live
                .remove(&*self.key)
                .map(|f| f.joined)
                .unwrap_or_default();
        }
        flights.replaced.remove(&self.serial).unwrap_or_default()
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        // Unfinished (a cancelled get): the joined gets' receivers fail,
        // and they send their own. After `finish` it is closed already.
        drop(self.close());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::cache::store::Value;

    fn hit(json: &str) -> Shared {
        Ok(Got::Hit(Value {
            json: json.into(),
            ttl_ms: None,
        }))
    }

    #[tokio::test]
    async fn gets_join_only_while_the_request_is_unsent() {
        let c = Coalesce::default();
        let Turn::Lead(leader) = c.turn("c", "k", false, 7) else {
            panic!("the first get leads")
        };
        // Same key, nothing taken since: joins.
        let Turn::Join(joined) = c.turn("c", "k", false, 7) else {
            panic!("joins")
        };
        // Another key, or another `track`: a flight of its own.
        assert!(matches!(c.turn("c", "other", false, 7), Turn::Lead(_)));
        assert!(matches!(c.turn("c", "k", true, 7), Turn::Lead(_)));
        leader.finish(&hit("1"));
        assert!(matches!(joined.await, Ok(Ok(Got::Hit(v))) if &*v.json == "1"));
        // Done: the next get leads again.
        let Turn::Lead(leader) = c.turn("c", "k", false, 7) else {
            panic!("leads")
        };
        // The request left (takes moved): a later get sends its own, and
        // the flight is its from now on; the first leader's answer goes to
        // nobody else.
        let Turn::Lead(second) = c.turn("c", "k", false, 8) else {
            panic!("a request on its way is not joined")
        };
        let Turn::Join(late) = c.turn("c", "k", false, 8) else {
            panic!("joins the second")
        };
        leader.finish(&hit("old"));
        second.finish(&hit("new"));
        assert!(matches!(late.await, Ok(Ok(Got::Hit(v))) if &*v.json == "new"));
    }

    #[tokio::test]
    async fn a_cancelled_leader_lets_the_joined_go_their_own_way() {
        let c = Coalesce::default();
        let Turn::Lead(leader) = c.turn("c", "k", false, 0) else {
            panic!("leads")
        };
        let Turn::Join(joined) = c.turn("c", "k", false, 0) else {
            panic!("joins")
        };
        drop(leader);
        assert!(joined.await.is_err(), "the joined get hears at once");
        assert!(matches!(c.turn("c", "k", false, 0), Turn::Lead(_)));
    }
}
