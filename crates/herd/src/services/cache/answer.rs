//! The primary's answers to a worker's cache requests, from the store:
//! at once for all but a get that waits for another's load, whose answer
//! comes when the load is done.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::backend::Got;
use super::store::{GetArgs, Lookup, Owner, Store, Value, Waited};
use super::wire::{raw, Get, Push, Rep, Req};
use super::CacheError;

/// How the store's side pushes to one worker (or to the primary's own
/// handles, when the store lives in a store worker) without waiting.
pub(crate) type Pusher = Arc<dyn Fn(Owner, Push) + Send + Sync>;

/// The longest wait a worker may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);

pub(crate) enum Answer {
    Now(Rep),
    /// A hit, answered as it is stored: the store holds only JSON it
    /// checked when it took it, so the reply is written around it
    /// ([`write_hit`]) with no copy and no second check.
    Hit(Value),
    /// The get waits: its answer comes on this receiver.
    Later(oneshot::Receiver<Waited>),
}

/// Answers `req` from `from` (a worker; the primary, when the store lives
/// in a store worker).
pub(crate) fn answer(store: &Arc<Store>, push: &Pusher, from: Owner, req: Req) -> Answer {
    match serve(store, push, from, req) {
        Ok(a) => a,
        Err(error) => Answer::Now(Rep::Error { error }),
    }
}

/// The answer for what a waiting get was told: a hit, or a reply now.
pub(crate) fn waited(w: Result<Waited, oneshot::error::RecvError>) -> Answer {
    Answer::Now(match w {
        Ok(Waited::Hit(v)) => return Answer::Hit(v),
        Ok(Waited::Load(token)) => Rep::Load { token },
        Ok(Waited::Failed(why)) => error(CacheError::Load(why)),
        Ok(Waited::TimedOut(after)) => error(CacheError::Timeout(after)),
        Err(_) => error(CacheError::Transport("the cache store stopped".into())),
    })
}

impl Answer {
    /// The reply, for an answer that is not [`Later`](Answer::Later): a
    /// hit's JSON checked again, and copied.
    pub(crate) fn into_rep(self) -> Rep {
        match self {
            Answer::Now(rep) => rep,
            Answer::Hit(v) => hit_rep(v),
            Answer::Later(_) => error(CacheError::Transport("an answer still to come".into())),
        }
    }
}

fn error(error: CacheError) -> Rep {
    Rep::Error { error }
}

/// `v` as a [`Rep`] (its JSON checked again, and copied).
pub(crate) fn hit_rep(v: Value) -> Rep {
    rep(Got::Hit(v))
}

/// Writes the reply [`Rep::Hit`] of `v` onto `buf`, as serde writes it
/// (`{"hit":{"value":...,"ttl_ms":...}}`), `v`'s JSON as it is.
pub(crate) fn write_hit(buf: &mut Vec<u8>, v: &Value) {
    buf.extend_from_slice(br#"{"hit":{"value":"#);
    buf.extend_from_slice(v.json.as_bytes());
    buf.extend_from_slice(br#","ttl_ms":"#);
    match v.ttl_ms {
        Some(ms) => buf.extend_from_slice(ms.to_string().as_bytes()),
        None => buf.extend_from_slice(b"null"),
    }
    buf.extend_from_slice(b"}}");
}

fn rep(got: Got) -> Rep {
    match got {
        Got::Hit(Value { json, ttl_ms }) => match raw(&json) {
            Ok(value) => Rep::Hit { value, ttl_ms },
            Err(e) => error(e),
        },
        Got::Miss => Rep::Miss,
        Got::Load(token) => Rep::Load { token },
    }
}

/// Answers the get `g` from `from`.
pub(crate) fn answer_get(store: &Store, from: Owner, g: Get<'_>) -> Answer {
    get(store, from, g).unwrap_or_else(|error| Answer::Now(Rep::Error { error }))
}

fn get(store: &Store, owner: Owner, g: Get<'_>) -> Result<Answer, CacheError> {
    let args = GetArgs {
        owner,
        load: g.load,
        wait: Duration::from_millis(g.wait_ms).min(MAX_WAIT),
        track: g.track,
    };
    Ok(match store.get(g.cache, g.key, args)? {
        Lookup::Hit(v) => Answer::Hit(v),
        Lookup::Miss => Answer::Now(Rep::Miss),
        Lookup::Load(token) => Answer::Now(Rep::Load { token }),
        Lookup::Wait(rx) => Answer::Later(rx),
    })
}

fn serve(store: &Arc<Store>, push: &Pusher, from: Owner, req: Req) -> Result<Answer, CacheError> {
    let owner = from;
    let done = |yes| Ok(Answer::Now(Rep::Done { yes }));
    match req {
        Req::Open { cache, options } => {
            store.open(&cache, &options)?;
            done(true)
        }
        Req::Get {
            cache,
            key,
            load,
            wait_ms,
            track,
        } => get(
            store,
            from,
            Get {
                cache: &cache,
                key: &key,
                load,
                wait_ms,
                track,
            },
        ),
        Req::Fill {
            cache,
            key,
            token,
            value,
            error,
        } => {
            let result = match (value, error) {
                (Some(v), None) => Ok(v.get().into()),
                (None, Some(e)) => Err(e.chars().take(4096).collect()),
                _ => {
                    return Err(CacheError::Invalid(
                        "a fill carries a value or an error, one of them".into(),
                    ))
                }
            };
            done(store.fill(&cache, &key, token, result)?)
        }
        Req::Set {
            cache,
            key,
            value,
            leave_if_not_null,
        } => done(store.set(&cache, &key, value.get().into(), leave_if_not_null)?),
        Req::Del { cache, key } => done(store.del(&cache, &key)?),
        Req::Keys { cache } => Ok(Answer::Now(Rep::Keys {
            keys: store.keys(&cache)?,
        })),
        Req::Watch { cache, id, key } => {
            let mut rx = store.watch(&cache, id, owner, key)?;
            let push = push.clone();
            tokio::spawn(async move {
                while let Some(change) = rx.recv().await {
                    push(from, Push::Change { id, change });
                }
                push(from, Push::Ended { id });
            });
            done(true)
        }
        Req::Unwatch { cache, id } => done(store.unwatch(&cache, id, owner)?),
        Req::Stats { cache } => store
            .stats()
            .into_iter()
            .find(|(n, _)| *n == cache)
            .map(|(_, stats)| Answer::Now(Rep::Stats { stats }))
            .ok_or_else(|| CacheError::Invalid(format!("no cache named {cache:?} is open"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_written_around_its_json_is_what_serde_writes() {
        for ttl_ms in [None, Some(0), Some(1234)] {
            let v = Value {
                json: r#"{"a":[1,"x\"y"],"b":null}"#.into(),
                ttl_ms,
            };
            let mut buf = Vec::new();
            write_hit(&mut buf, &v);
            let serde = serde_json::to_vec(&hit_rep(v)).unwrap();
            assert_eq!(
                String::from_utf8(buf).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}
