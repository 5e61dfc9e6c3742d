//! The workers' cache requests answered from Redis (the same wire as the
//! in-primary store's, so a worker cannot tell), and the [`Backend`] of
//! the primary's own handles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::Engine;
use crate::services::cache::backend::{Backend, BoxFut, Got};
use crate::services::cache::service_wire::SERVICE;
use crate::services::cache::store::{Json, Owner, Value};
use crate::services::cache::wire::{raw, read_req, Push, Rep, Req};
use crate::services::cache::{CacheError, CacheOptions, CacheStats, Change};
use crate::services::{PrimaryService, ServiceEvent, ServiceRequest};

/// The longest wait a worker may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// Serves the workers' cache requests from `engine`: each request is
/// answered by a task (Redis is a round trip away), but a watch, an
/// unwatch and a fill's start are taken in the order the worker sent them.
pub(crate) fn serve(primary: &crate::Primary, engine: &Arc<Engine>) -> Result<(), crate::Error> {
    let cell: Arc<OnceLock<PrimaryService>> = Arc::default();
    let sender = cell.clone();
    let push: Arc<dyn Fn(u32, Push) + Send + Sync> = Arc::new(move |worker, push: Push| {
        if let Some(service) = sender.get() {
            if let Err(e) = service.send_now(worker, &push) {
                tracing::debug!(worker, error = %e, "a cache notice was not sent");
            }
        }
    });
    let invalidate = push.clone();
    engine.on_invalidate(Box::new(move |worker, cache, key| {
        invalidate(
            worker,
            Push::Invalidate {
                cache: cache.to_string(),
                key: key.to_string(),
            },
        )
    }));
    let engine = engine.clone();
    let service = primary.service_with(SERVICE, move |event, _credit| match event {
        ServiceEvent::Request { worker, request } => {
            // A compact get is read as its JSON form, and answered so.
            let req = match read_req(request.message().as_json()) {
                Ok(r) => r,
                Err(error) => {
                    reply(&request, &Rep::Error { error });
                    return;
                }
            };
            match req {
                Req::Watch { cache, id, key } => {
                    let rep = match engine.watch(&cache, id, Owner::Worker(worker), key) {
                        Ok(mut rx) => {
                            let push = push.clone();
                            tokio::spawn(async move {
                                while let Some(change) = rx.recv().await {
                                    push(worker, Push::Change { id, change });
                                }
                                push(worker, Push::Ended { id });
                            });
                            Rep::Done { yes: true }
                        }
                        Err(error) => Rep::Error { error },
                    };
                    reply(&request, &rep);
                }
                Req::Unwatch { cache, id } => {
                    let rep = match engine.unwatch(&cache, id, Owner::Worker(worker)) {
                        Ok(yes) => Rep::Done { yes },
                        Err(error) => Rep::Error { error },
                    };
                    reply(&request, &rep);
                }
                req => {
                    if let Req::Fill {
                        cache, key, token, ..
                    } = &req
                    {
                        // Before the worker's death, if it comes next, is seen.
                        let _ = engine.begin_fill(cache, key, *token);
                    }
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        let rep = answer(&engine, worker, req)
                            .await
                            .unwrap_or_else(|error| Rep::Error { error });
                        reply(&request, &rep);
                    });
                }
            }
        }
        ServiceEvent::WorkerGone { worker } => engine.owner_gone(Owner::Worker(worker)),
        _ => {}
    })?;
    let _ = cell.set(service);
    Ok(())
}

fn reply(request: &ServiceRequest, rep: &Rep) {
    if let Err(e) = request.reply(rep) {
        tracing::debug!(error = %e, "a cache reply was not sent");
    }
}

async fn answer(engine: &Arc<Engine>, from: u32, req: Req) -> Result<Rep, CacheError> {
    let done = |yes| Ok(Rep::Done { yes });
    match req {
        Req::Open { cache, options } => {
            engine.open(&cache, &options).await?;
            done(true)
        }
        Req::Get {
            cache,
            key,
            load,
            wait_ms,
            track,
        } => {
            let wait = Duration::from_millis(wait_ms).min(MAX_WAIT);
            match engine
                .get(Owner::Worker(from), &cache, &key, load, wait, track)
                .await?
            {
                Got::Hit(Value { json, ttl_ms }) => Ok(Rep::Hit {
                    value: raw(&json)?,
                    ttl_ms,
                }),
                Got::Miss => Ok(Rep::Miss),
                Got::Load(token) => Ok(Rep::Load { token }),
            }
        }
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
            done(engine.fill(&cache, &key, token, result).await?)
        }
        Req::Set {
            cache,
            key,
            value,
            leave_if_not_null,
        } => done(
            engine
                .set(&cache, &key, value.get().into(), leave_if_not_null)
                .await?,
        ),
        Req::Del { cache, key } => done(engine.del(&cache, &key).await?),
        Req::Keys { cache } => Ok(Rep::Keys {
            keys: engine.keys(&cache).await?,
        }),
        Req::Stats { cache } => Ok(Rep::Stats {
            stats: stats_of(engine, &cache)?,
        }),
        Req::Watch { .. } | Req::Unwatch { .. } => {
            Err(CacheError::Invalid("answered inline".into()))
        }
    }
}

fn stats_of(engine: &Engine, cache: &str) -> Result<CacheStats, CacheError> {
    engine
        .stats()
        .into_iter()
        .find(|(n, _)| n == cache)
        .map(|(_, s)| s)
        .ok_or_else(|| CacheError::Invalid(format!("no cache named {cache:?} is open")))
}

/// The primary's own handles on Redis.
pub(crate) struct OnRedis {
    pub engine: Arc<Engine>,
    pub next_watch: AtomicU64,
}

impl Backend for OnRedis {
    fn open<'a>(&'a self, cache: &'a str, options: &'a CacheOptions) -> BoxFut<'a, ()> {
        Box::pin(self.engine.open(cache, options))
    }
    fn get<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        load: bool,
        wait: Duration,
        _track: bool,
    ) -> BoxFut<'a, Got> {
        Box::pin(
            self.engine
                .get(Owner::Primary, cache, key, load, wait, false),
        )
    }
    fn fill<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        token: u64,
        result: Result<Json, String>,
    ) -> BoxFut<'a, bool> {
        Box::pin(self.engine.fill(cache, key, token, result))
    }
    fn set<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        json: Json,
        leave: bool,
    ) -> BoxFut<'a, bool> {
        Box::pin(self.engine.set(cache, key, json, leave))
    }
    fn del<'a>(&'a self, cache: &'a str, key: &'a str) -> BoxFut<'a, bool> {
        Box::pin(self.engine.del(cache, key))
    }
    fn keys<'a>(&'a self, cache: &'a str) -> BoxFut<'a, Vec<String>> {
        Box::pin(self.engine.keys(cache))
    }
    fn watch<'a>(
        &'a self,
        cache: &'a str,
        key: Option<String>,
    ) -> BoxFut<'a, (u64, mpsc::Receiver<Change>)> {
        Box::pin(async move {
            let id = self.next_watch.fetch_add(1, Ordering::Relaxed);
            Ok((id, self.engine.watch(cache, id, Owner::Primary, key)?))
        })
    }
    fn unwatch<'a>(&'a self, cache: &'a str, id: u64) -> BoxFut<'a, bool> {
        Box::pin(async move { self.engine.unwatch(cache, id, Owner::Primary) })
    }
    fn stats<'a>(&'a self, cache: &'a str) -> BoxFut<'a, CacheStats> {
        Box::pin(async move { stats_of(&self.engine, cache) })
    }
}
