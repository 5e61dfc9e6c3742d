//! A worker's side: [`Worker::cache`], the requests to the primary's
//! store, and the pushes it answers with (a local copy's invalidation, a
//! watcher's change notice). A standalone primary's own handles use it
//! too, over their link to the store worker ([`Ask`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::backend::{Backend, BoxFut, Got};
use super::coalesce::{Coalesce, Turn};
use super::local::LocalCopy;
use super::service_wire::SERVICE;
use super::store::{Json, Value, WATCH_QUEUE};
use super::wire::{parse_get_reply, raw, Get, GetReply, Push, Rep, Req};
use super::{Cache, CacheError, CacheOptions, CacheStats, Change};
use crate::services::{Pushed, WorkerService};
use crate::Worker;

/// Time a request may take beyond the wait it asks for.
const MARGIN: Duration = Duration::from_secs(5);

/// How a [`Remote`]'s requests reach the store and come back answered,
/// other than over a worker's channel ([`Link::Channel`]).
pub(crate) trait Ask: Send + Sync {
    /// Sends `req` and waits at most `timeout` for its reply.
    fn ask<'a>(&'a self, req: &'a Req, timeout: Duration) -> BoxFut<'a, Rep>;

    /// Sends a get and waits at most `timeout` for its answer: by
    /// default as a JSON request.
    fn get<'a>(&'a self, get: Get<'a>, timeout: Duration) -> BoxFut<'a, Got> {
        Box::pin(async move { got(self.ask(&get.to_req(), timeout).await?) })
    }

    /// The link's [`Outbox::takes`](crate::channel::Outbox::takes), when
    /// its requests may be shared ([`coalesce`](super::coalesce)).
    fn takes(&self) -> Option<u64> {
        None
    }
}

/// A [`Remote`]'s link: a worker's channel to the primary (the hot path:
/// its gets are compact, and not boxed), or another [`Ask`].
pub(crate) enum Link {
    Channel(WorkerService),
    Other(Box<dyn Ask>),
}

impl Link {
    fn ask<'a>(&'a self, req: &'a Req, timeout: Duration) -> BoxFut<'a, Rep> {
        match self {
            Link::Channel(service) => {
                Box::pin(async move { Ok(service.request_with_timeout(req, timeout).await?) })
            }
            Link::Other(ask) => ask.ask(req, timeout),
        }
    }

    /// A get: over the channel as a compact get (`wire::Get`), answered in
    /// kind, with no JSON but the value's on either side.
    async fn get(&self, get: Get<'_>, timeout: Duration) -> Result<Got, CacheError> {
        let service = match self {
            Link::Channel(service) => service,
            Link::Other(ask) => return ask.get(get, timeout).await,
        };
        let reply = service.request_raw(|buf| get.write(buf), timeout).await?;
        match parse_get_reply(reply.as_json())? {
            GetReply::Hit(json, ttl_ms) => Ok(Got::Hit(Value {
                json: json.into(),
                ttl_ms,
            })),
            GetReply::Miss => Ok(Got::Miss),
            GetReply::Rep(rep) => got(rep),
        }
    }

    fn takes(&self) -> Option<u64> {
        match self {
            Link::Channel(service) => Some(service.worker().outbox().takes()),
            Link::Other(ask) => ask.takes(),
        }
    }
}

/// What a get's JSON reply says.
fn got(rep: Rep) -> Result<Got, CacheError> {
    match rep {
        Rep::Hit { value, ttl_ms } => Ok(Got::Hit(Value {
            json: value.get().into(),
            ttl_ms,
        })),
        Rep::Miss => Ok(Got::Miss),
        Rep::Load { token } => Ok(Got::Load(token)),
        Rep::Error { error } => Err(error),
        other => Err(unexpected(&other)),
    }
}

pub(crate) struct Remote {
    link: Link,
    /// The local copies, one per cache name in this worker.
    locals: Mutex<HashMap<String, Arc<LocalCopy>>>,
    watches: Mutex<HashMap<u64, mpsc::Sender<Change>>>,
    next_watch: AtomicU64,
    /// Plain gets that may share a request.
    flights: Coalesce,
}

/// This process's side of the cache service (a worker has one channel).
static REMOTE: OnceLock<Result<Arc<Remote>, String>> = OnceLock::new();

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Opens the cluster's cache `name` (made with `options` at its first
    /// open anywhere in the cluster). The primary must run a
    /// [`CacheService`](super::CacheService).
    ///
    /// ```no_run
    /// # async fn demo(worker: herd::Worker) -> Result<(), herd::CacheError> {
    /// let pages = worker.cache("pages", herd::CacheOptions::default()).await?;
    /// let page: String = pages
    ///     .get_or_load("/", || async { Ok::<_, std::io::Error>("<h1>home</h1>".to_string()) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Invalid`] for a bad name or options,
    /// [`CacheError::Options`] when the name is open with other options,
    /// [`CacheError::Transport`] when the primary does not answer.
    pub async fn cache(&self, name: &str, options: CacheOptions) -> Result<Cache, CacheError> {
        let remote = REMOTE
            .get_or_init(|| Remote::start(self).map_err(|e| e.to_string()))
            .clone()
            .map_err(CacheError::Transport)?;
        let local = options
            .local_copy
            .then(|| remote.local(name, options.max_entries));
        Cache::open(name, &options, remote, local).await
    }
}

impl Remote {
    fn start(worker: &Worker) -> Result<Arc<Remote>, crate::Error> {
        let cell: Arc<OnceLock<std::sync::Weak<Remote>>> = Arc::default();
        let target = cell.clone();
        let service = worker.service_with(SERVICE, move |pushed, _credit| {
            let Pushed::Message(m) = pushed else { return };
            let Some(remote) = target.get().and_then(|w| w.upgrade()) else {
                return;
            };
            match m.decode::<Push>() {
                Ok(push) => remote.on_push(push),
                Err(e) => {
                    tracing::warn!(error = %e, "a cache notice that does not decode; dropped")
                }
            }
        })?;
        let remote = Remote::over(Link::Channel(service));
        let _ = cell.set(Arc::downgrade(&remote));
        Ok(remote)
    }

    /// A remote whose requests go over `link`.
    pub(crate) fn over(link: Link) -> Arc<Remote> {
        Arc::new(Remote {
            link,
            locals: Mutex::default(),
            watches: Mutex::default(),
            next_watch: AtomicU64::new(1),
            flights: Coalesce::default(),
        })
    }

    fn local(&self, name: &str, max_entries: usize) -> Arc<LocalCopy> {
        lock(&self.locals)
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(LocalCopy::new(max_entries)))
            .clone()
    }

    pub(crate) fn on_push(&self, push: Push) {
        match push {
            Push::Invalidate { cache, key } => {
                if let Some(local) = lock(&self.locals).get(&cache) {
                    local.invalidate(&key);
                }
            }
            Push::Change { id, change } => {
                let mut watches = lock(&self.watches);
                if let Some(tx) = watches.get(&id) {
                    if tx.try_send(change).is_err() {
                        // Fallen behind, or dropped: the watch ends here.
                        watches.remove(&id);
                    }
                }
            }
            Push::Ended { id } => {
                lock(&self.watches).remove(&id);
            }
            Push::Reset => {
                for local in lock(&self.locals).values() {
                    local.clear();
                }
                // Every watch's stream ends.
                lock(&self.watches).clear();
            }
        }
    }

    async fn ask(&self, req: &Req, wait: Duration) -> Result<Rep, CacheError> {
        let rep = self.link.ask(req, wait + MARGIN).await?;
        match rep {
            Rep::Error { error } => Err(error),
            rep => Ok(rep),
        }
    }

    /// One get's request and its answer.
    async fn get_once(
        &self,
        cache: &str,
        key: &str,
        load: bool,
        wait: Duration,
        track: bool,
    ) -> Result<Got, CacheError> {
        let get = Get {
            cache,
            key,
            load,
            wait_ms: ms(wait),
            track,
        };
        self.link.get(get, wait + MARGIN).await
    }

    async fn yes(&self, req: Req) -> Result<bool, CacheError> {
        match self.ask(&req, Duration::ZERO).await? {
            Rep::Done { yes } => Ok(yes),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(rep: &Rep) -> CacheError {
    CacheError::Transport(format!("the primary answered out of protocol: {rep:?}"))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Backend for Remote {
    fn open<'a>(&'a self, cache: &'a str, options: &'a CacheOptions) -> BoxFut<'a, ()> {
        Box::pin(async move {
            self.yes(Req::Open {
                cache: cache.into(),
                options: options.clone(),
            })
            .await
            .map(drop)
        })
    }

    fn get<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        load: bool,
        wait: Duration,
        track: bool,
    ) -> BoxFut<'a, Got> {
        Box::pin(async move {
            if load {
                return self.get_once(cache, key, load, wait, track).await;
            }
            loop {
                let Some(takes) = self.link.takes() else {
                    return self.get_once(cache, key, load, wait, track).await;
                };
                match self.flights.turn(cache, key, track, takes) {
                    Turn::Lead(leader) => {
                        let got = self.get_once(cache, key, load, wait, track).await;
                        leader.finish(&got);
                        return got;
                    }
                    Turn::Join(answer) => {
                        // As long as a request of its own would wait.
                        match tokio::time::timeout(wait + MARGIN, answer).await {
                            Ok(Ok(got)) => return got,
                            // Its leader was cancelled: ask again.
                            Ok(Err(_)) => continue,
                            // Its leader is not polled any more (its
                            // caller moved on): ask alone.
                            Err(_) => return self.get_once(cache, key, load, wait, track).await,
                        }
                    }
                }
            }
        })
    }

    fn fill<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        token: u64,
        result: Result<Json, String>,
    ) -> BoxFut<'a, bool> {
        Box::pin(async move {
            let (value, error) = match result {
                Ok(json) => (Some(raw(&json)?), None),
                Err(e) => (None, Some(e)),
            };
            self.yes(Req::Fill {
                cache: cache.into(),
                key: key.into(),
                token,
                value,
                error,
            })
            .await
        })
    }

    fn set<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        json: Json,
        leave: bool,
    ) -> BoxFut<'a, bool> {
        Box::pin(async move {
            self.yes(Req::Set {
                cache: cache.into(),
                key: key.into(),
                value: raw(&json)?,
                leave_if_not_null: leave,
            })
            .await
        })
    }

    fn del<'a>(&'a self, cache: &'a str, key: &'a str) -> BoxFut<'a, bool> {
        Box::pin(async move {
            self.yes(Req::Del {
                cache: cache.into(),
                key: key.into(),
            })
            .await
        })
    }

    fn keys<'a>(&'a self, cache: &'a str) -> BoxFut<'a, Vec<String>> {
        Box::pin(async move {
            match self
                .ask(
                    &Req::Keys {
                        cache: cache.into(),
                    },
                    Duration::ZERO,
                )
                .await?
            {
                Rep::Keys { keys } => Ok(keys),
                other => Err(unexpected(&other)),
            }
        })
    }

    fn watch<'a>(
        &'a self,
        cache: &'a str,
        key: Option<String>,
    ) -> BoxFut<'a, (u64, mpsc::Receiver<Change>)> {
        Box::pin(async move {
            let id = self.next_watch.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(WATCH_QUEUE);
            // Registered before asking: a change right after the primary
            // registered it may arrive before the reply.
            lock(&self.watches).insert(id, tx);
            let asked = self
                .yes(Req::Watch {
                    cache: cache.into(),
                    id,
                    key,
                })
                .await;
            if let Err(e) = asked {
                lock(&self.watches).remove(&id);
                return Err(e);
            }
            Ok((id, rx))
        })
    }

    fn unwatch<'a>(&'a self, cache: &'a str, id: u64) -> BoxFut<'a, bool> {
        Box::pin(async move {
            lock(&self.watches).remove(&id);
            self.yes(Req::Unwatch {
                cache: cache.into(),
                id,
            })
            .await
        })
    }

    fn stats<'a>(&'a self, cache: &'a str) -> BoxFut<'a, CacheStats> {
        Box::pin(async move {
            match self
                .ask(
                    &Req::Stats {
                        cache: cache.into(),
                    },
                    Duration::ZERO,
                )
                .await?
            {
                Rep::Stats { stats } => Ok(stats),
                other => Err(unexpected(&other)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A link whose first request is never answered, the rest at once;
    /// its takes never move, so every get may join the one before.
    struct Stuck(AtomicUsize);

    impl Ask for Stuck {
        fn ask<'a>(&'a self, _req: &'a Req, _timeout: Duration) -> BoxFut<'a, Rep> {
            let first = self.0.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(Rep::Hit {
                    value: raw("1")?,
                    ttl_ms: None,
                })
            })
        }

        fn takes(&self) -> Option<u64> {
            Some(0)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_get_joined_to_a_leader_nobody_polls_asks_alone_at_its_own_deadline() {
        let remote = Remote::over(Link::Other(Box::new(Stuck(AtomicUsize::new(0)))));
        // A leader that would wait an hour: the joined get waits only as
        // long as a request of its own would.
        let mut leader = remote.get("c", "k", false, Duration::from_secs(3600), false);
        // Polled once (it leads, its request queued), then never again.
        std::future::poll_fn(|cx| {
            assert!(leader.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        let start = tokio::time::Instant::now();
        let got = remote.get("c", "k", false, Duration::ZERO, false).await;
        assert!(matches!(got, Ok(Got::Hit(v)) if &*v.json == "1"));
        assert!(start.elapsed() >= MARGIN, "it waited for the leader first");
        assert!(start.elapsed() < MARGIN * 2, "{:?}", start.elapsed());
    }
}
