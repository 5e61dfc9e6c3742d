//! Single flight on Redis: the host's flight per key, its Redis lease, and
//! the end of a load (fill, failure, its owner's death, its lease's end).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::notice::Notice;
use super::scripts::{FILL, GET_OR_LEASE, RELEASE};
use super::{ms, Engine, Flight, Loading};
use crate::services::cache::backend::Got;
use crate::services::cache::store::{Json, Owner, Value, Waited};
use crate::services::cache::CacheError;

/// The longest a flight waits for another host's notice before it asks
/// Redis again (a host that died holding the lease sends none).
const RECHECK: Duration = Duration::from_millis(200);

enum Leased {
    Hit(Value),
    Ours,
    Busy,
}

fn parse_leased(v: redis::Value) -> Result<Leased, String> {
    use redis::Value as V;
    let V::Array(items) = v else {
        return Err(format!("{v:?}"));
    };
    match items.as_slice() {
        [V::Int(1), V::BulkString(json), V::Int(pttl)] => Ok(Leased::Hit(Value {
            json: String::from_utf8_lossy(json).as_ref().into(),
            ttl_ms: u64::try_from(*pttl).ok(),
        })),
        [V::Int(2)] => Ok(Leased::Ours),
        [V::Int(0)] => Ok(Leased::Busy),
        other => Err(format!("{other:?}")),
    }
}

impl Engine {
    /// A get with a loader that missed: joins the host's flight for the
    /// key (making it, and asking Redis, when there is none) and waits up
    /// to `wait`.
    pub(super) async fn join(
        self: &Arc<Self>,
        owner: Owner,
        cache: &str,
        key: &str,
        wait: Duration,
    ) -> Result<Got, CacheError> {
        let (tx, rx) = oneshot::channel();
        let new = self.with_named(cache, |n, _| {
            let new = !n.flights.contains_key(key);
            let flight = n.flights.entry(key.to_string()).or_default();
            flight.waiters.retain(|(_, tx)| !tx.is_closed());
            flight.waiters.push_back((owner, tx));
            new
        })?;
        if new {
            let (engine, cache, key) = (self.clone(), cache.to_string(), key.to_string());
            tokio::spawn(async move { engine.acquire(cache, key).await });
        }
        // On time out, the receiver goes: the waiter's registration with it.
        match tokio::time::timeout(wait, rx).await {
            Err(_) => Err(CacheError::Timeout(wait)),
            Ok(Err(_)) => Err(CacheError::Transport("the cache's flight ended".into())),
            Ok(Ok(Waited::Hit(v))) => Ok(Got::Hit(v)),
            Ok(Ok(Waited::Load(token))) => Ok(Got::Load(token)),
            Ok(Ok(Waited::Failed(why))) => Err(CacheError::Load(why)),
            Ok(Ok(Waited::TimedOut(d))) => Err(CacheError::Timeout(d)),
        }
    }

    /// Runs the flight of `key` until it has a value or a loader.
    pub(super) async fn acquire(self: Arc<Self>, cache: String, key: String) {
        let Ok(options) = self.options(&cache) else {
            return;
        };
        let lease_ms = ms(options.lease);
        let (value_key, lease_key) = (self.value_key(&cache, &key), self.lease_key(&cache, &key));
        loop {
            let step = self.with_named(&cache, |n, next| {
                let flight = n.flights.get_mut(&key)?;
                if flight.loading.is_some() {
                    return None;
                }
                flight.waiters.retain(|(_, tx)| !tx.is_closed());
                if let Some(why) = flight.failed.take() {
                    let flight = n.flights.remove(&key)?;
                    for (_, tx) in flight.waiters {
                        let _ = tx.send(Waited::Failed(why.clone()));
                    }
                    return None;
                }
                if flight.waiters.is_empty() {
                    n.flights.remove(&key);
                    return None;
                }
                *next += 1;
                Some((*next, flight.poke.clone()))
            });
            let Ok(Some((token, poke))) = step else {
                return;
            };
            let mut conn = self.link.conn();
            let asked = GET_OR_LEASE
                .key(&value_key)
                .key(&lease_key)
                .arg(self.token_text(token))
                .arg(lease_ms)
                .invoke_async::<redis::Value>(&mut conn)
                .await;
            match asked.map(parse_leased) {
                Ok(Ok(Leased::Hit(v))) => {
                    self.resolve(&cache, &key, |_| Waited::Hit(v.clone()));
                    return;
                }
                Ok(Ok(Leased::Ours)) => {
                    if !self.give_lease(&cache, &key, token, true) {
                        self.release(&cache, &key, token, "free", None).await;
                    }
                    return;
                }
                Ok(Ok(Leased::Busy)) => {
                    let _ = tokio::time::timeout(RECHECK, poke.notified()).await;
                }
                Ok(Err(odd)) => {
                    tracing::warn!(answer = %odd, "Redis answered the lease script out of protocol; loading in this host");
                    self.give_lease(&cache, &key, token, false);
                    return;
                }
                Err(e) => {
                    self.link.failed(&e);
                    tracing::warn!(cache = %cache, key = %key, error = %e, "Redis is away: loading in this host only, the value not stored");
                    if self.give_lease(&cache, &key, token, false) {
                        self.link.away_loads.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
            }
        }
    }

    /// Gives the flight's load to its first waiter still waiting; `false`
    /// when none waits (the flight ends).
    fn give_lease(self: &Arc<Self>, cache: &str, key: &str, token: u64, redis: bool) -> bool {
        let given = self.with_named(cache, |n, _| {
            let flight = n.flights.get_mut(key)?;
            while let Some((owner, tx)) = flight.waiters.pop_front() {
                if tx.send(Waited::Load(token)).is_ok() {
                    flight.loading = Some(Loading {
                        owner,
                        token,
                        redis,
                        filling: false,
                    });
                    n.stats.loads += 1;
                    return Some(n.options.lease);
                }
            }
            n.flights.remove(key);
            None
        });
        let Ok(Some(lease)) = given else { return false };
        // The lease's end: the load passes to the next waiter.
        let (engine, cache, key) = (self.clone(), cache.to_string(), key.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(lease).await;
            let timed_out = engine.with_named(&cache, |n, _| {
                let flight = n.flights.get_mut(&key)?;
                let l = flight.loading.filter(|l| l.token == token && !l.filling)?;
                flight.loading = None;
                n.stats.lease_timeouts += 1;
                Some(l)
            });
            if let Ok(Some(l)) = timed_out {
                if l.redis {
                    engine.release(&cache, &key, token, "free", None).await;
                }
                engine.acquire(cache, key).await;
            }
        });
        true
    }

    /// Ends the flight of `key`, telling each waiter `what`.
    fn resolve(
        &self,
        cache: &str,
        key: &str,
        what: impl Fn(&mut crate::services::cache::CacheStats) -> Waited,
    ) {
        let _ = self.with_named(cache, |n, _| {
            if let Some(flight) = n.flights.remove(key) {
                let told = what(&mut n.stats);
                for (_, tx) in flight.waiters {
                    let _ = tx.send(clone_waited(&told));
                }
            }
        });
    }

    /// Releases lease `token` of `key` in Redis (when still its), telling
    /// the other hosts `kind` ("free": load in turn; "fail": the error).
    pub(super) async fn release(
        &self,
        cache: &str,
        key: &str,
        token: u64,
        kind: &str,
        why: Option<&str>,
    ) {
        let notice = Notice::out(cache, key, kind, None, why, None);
        let mut conn = self.link.conn();
        let done = RELEASE
            .key(self.lease_key(cache, key))
            .arg(self.token_text(token))
            .arg(self.channel())
            .arg(notice)
            .invoke_async::<i64>(&mut conn)
            .await;
        if let Err(e) = done {
            self.link.failed(&e);
            tracing::debug!(error = %e, "a lease was not released in Redis; it expires");
        }
    }

    /// The loader of lease `token` is done. `false` when the lease had
    /// ended (passed on, or a `set` filled the key): the value is not
    /// stored. A value loaded while Redis is away is given to this host's
    /// waiters only.
    pub(super) async fn fill(
        self: &Arc<Self>,
        cache: &str,
        key: &str,
        token: u64,
        result: Result<Json, String>,
    ) -> Result<bool, CacheError> {
        let Some(loading) = self.begin_fill(cache, key, token)? else {
            return Ok(false);
        };
        let options = self.options(cache)?;
        match result {
            Ok(json) => {
                let ttl = options.expire.map(ms);
                if loading.redis {
                    let notice = Notice::out(cache, key, "set", Some(&json), None, ttl);
                    let mut conn = self.link.conn();
                    let stored = FILL
                        .key(self.value_key(cache, key))
                        .key(self.lease_key(cache, key))
                        .arg(self.token_text(token))
                        .arg(&*json)
                        .arg(ttl.unwrap_or(0))
                        .arg(self.channel())
                        .arg(notice)
                        .invoke_async::<i64>(&mut conn)
                        .await;
                    if let Err(e) = stored {
                        self.link.failed(&e);
                        tracing::warn!(cache, key, error = %e, "a loaded value was not stored in Redis (away); given to this host's waiters");
                    }
                }
                let value = Value { json, ttl_ms: ttl };
                self.resolve(cache, key, |_| Waited::Hit(value.clone()));
            }
            Err(why) => {
                if loading.redis {
                    self.release(cache, key, token, "fail", Some(&why)).await;
                }
                self.resolve(cache, key, |stats| {
                    stats.load_failures += 1;
                    Waited::Failed(why.clone())
                });
            }
        }
        Ok(true)
    }

    /// Marks lease `token` of `key` as being filled (so that its owner's
    /// death no longer passes it on); `None` when it is not the load's.
    pub(super) fn begin_fill(
        &self,
        cache: &str,
        key: &str,
        token: u64,
    ) -> Result<Option<Loading>, CacheError> {
        self.with_named(cache, |n, _| {
            let flight: &mut Flight = n.flights.get_mut(key)?;
            let loading = flight.loading.as_mut().filter(|l| l.token == token)?;
            loading.filling = true;
            Some(*loading)
        })
    }
}

fn clone_waited(w: &Waited) -> Waited {
    match w {
        Waited::Hit(v) => Waited::Hit(v.clone()),
        Waited::Failed(why) => Waited::Failed(why.clone()),
        Waited::Load(t) => Waited::Load(*t),
        Waited::TimedOut(d) => Waited::TimedOut(*d),
    }
}
