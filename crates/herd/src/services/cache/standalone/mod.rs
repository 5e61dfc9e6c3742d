//! The shared cache in a dedicated worker (cluster2's `standalone` mode):
//! the store lives in a *store worker* that the primary forks and the
//! cache service restarts, and the primary routes every call to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! match herd::role() {
//!     herd::Role::Primary => {
//!         let primary = herd::Primary::new()?;
//!         // Forks the store worker (the same program, marked by its
//!         // environment) and restarts it when it dies.
//!         let service = herd::CacheService::standalone_with_dir(&primary, "/var/lib/app/cache")?;
//!         for _ in 0..4 {
//!             primary.fork()?;
//!         }
//!         let hits = service.cache("hits", herd::CacheOptions::default()).await?;
//!         hits.set("started", &true).await?;
//!     }
//!     herd::Role::Worker => {
//!         let worker = herd::Worker::connect().await?;
//!         if let Some(store) = herd::CacheService::store_worker(&worker) {
//!             return Ok(store.run().await?); // this worker holds the store
//!         }
//!         let pages = worker.cache("pages", herd::CacheOptions::default()).await?;
//!         // ... the application, as with an in-primary cache.
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! **How it runs.** [`CacheService::standalone`](crate::CacheService::standalone)
//! registers the cache's services and forks the store worker with
//! `HERD_CACHE_STORE=1` (and `HERD_CACHE_STORE_DIR`) in its environment;
//! the application's worker `main` calls
//! [`CacheService::store_worker`](crate::CacheService::store_worker) after
//! `Worker::connect` and, in that one worker, runs [`StoreWorker::run`]
//! instead of the application. The store worker never listens, so no
//! listener routes a connection to it, and it is never `ready`; it is a
//! worker of the core like any other (in `Primary::workers`, the status
//! registry's list of workers that did not answer, `/status`), forked and
//! restarted by the cache service, not by the supervisor.
//!
//! Workers' calls reach the primary as with an in-primary store (the same
//! wire, `herd.cache`); the primary forwards each to the store worker on
//! `herd.cache.store` with a sequence number, without waiting and in the
//! order each caller sent them, and passes its reply back; the store
//! worker's notices (local copies' invalidations, watches' changes) come
//! back the same way and go to their worker. A worker's death is told to
//! the store worker after everything that worker sent, so its leases end
//! at once, as in-primary. The local copy works unchanged; a call costs
//! two hops more than in-primary (docs/benchmarks.md).
//!
//! **The store worker dying.** The cache survives the death of any worker
//! that uses it; the store worker's death loses what it held:
//!
//! - every call waiting for it (a get waiting for a load included) fails
//!   at once with [`CacheError::Transport`](crate::CacheError::Transport)
//!   saying so, and so does every call made while it is down; one made
//!   while a new one starts waits for it;
//! - every worker's local copy is dropped and every watch ends (its stream
//!   returns `None`); leases are gone (a loader's fill then returns
//!   `false`);
//! - entries not persisted are lost; the new store worker opens again
//!   every cache opened before, and a persistent cache reads its file
//!   back (written within a second of each change, and when the store
//!   worker is disconnected).
//!
//! It is restarted after a delay that doubles from 100 ms at each death
//! within 30 s of its start, up to 10 s, so a store worker that crashes
//! at once costs a fork every 10 s, not a spinning loop. A store worker
//! that the primary disconnected or killed (`Primary::disconnect`,
//! `WorkerHandle::kill`, [`CacheService::stop`](crate::CacheService::stop))
//! is not restarted: the service is stopped then.
//!
//! **Counters.** [`CacheService::stats`](crate::CacheService::stats) (and
//! `/metrics`) show what the store worker sends each second its counters
//! changed; [`CacheService::fetch_stats`](crate::CacheService::fetch_stats)
//! asks it now; [`Cache::stats`](crate::Cache::stats) always asks.

mod api;
mod restart;
mod route;
mod store_worker;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::remote::{Link, Remote};
use super::wire::Push;
use super::{CacheError, CacheOptions, CacheStats};
use crate::services::{PrimaryService, ServiceRequest};
pub use store_worker::StoreWorker;
use wire::ToStore;

/// Most calls that wait for a store worker being started.
const MAX_QUEUED: usize = 16 * 1024;

/// Where the store worker is.
#[derive(Debug)]
enum Phase {
    /// Forked (`id`, once known), not up yet: calls queue.
    Starting {
        id: Option<u32>,
        /// A hello that came before the fork's id was known.
        early_hello: Option<u32>,
        queue: VecDeque<ToStore>,
    },
    /// Up: calls go to it at once.
    Up { id: u32 },
    /// Dead; restarted at `until` (unknown until its exit is seen).
    Down { why: String, until: Option<Instant> },
    /// Disconnected or killed by the primary: not restarted.
    Stopped,
}

/// Who waits for the reply of a forwarded call.
enum Waiting {
    /// A worker's request, answered with the store's reply as it came.
    Worker(ServiceRequest),
    /// The primary's own handles.
    Own(oneshot::Sender<Result<Box<serde_json::value::RawValue>, CacheError>>),
    /// A cache opened again in a new store worker.
    Reopen,
    Stats(oneshot::Sender<Vec<(String, CacheStats)>>),
}

struct Forwarded {
    waiting: Waiting,
    /// A cache this call opens: noted when the store says done.
    opens: Option<(String, CacheOptions)>,
}

struct State {
    phase: Phase,
    pending: HashMap<u64, Forwarded>,
    next_seq: u64,
    /// Every cache opened, to open again in a new store worker.
    opened: Vec<(String, CacheOptions)>,
}

/// The primary's side of a standalone cache: the state of its store
/// worker and of the calls forwarded to it, in one place.
pub(crate) struct Standalone {
    primary: crate::Primary,
    dir: Option<PathBuf>,
    state: Mutex<State>,
    /// `herd.cache`, to the workers.
    to_workers: OnceLock<PrimaryService>,
    /// `herd.cache.store`, to the store worker.
    to_store: OnceLock<PrimaryService>,
    /// The primary's own handles' side, for their pushes.
    own: OnceLock<Weak<Remote>>,
    /// The counters the store worker sent last.
    stats: Mutex<Vec<(String, CacheStats)>>,
    /// Store workers started after the first.
    restarts: std::sync::atomic::AtomicU64,
}

/// This process's standalone service, for the monitor.
pub(crate) static SERVED: Mutex<Weak<Standalone>> = Mutex::new(Weak::new());

fn transport(why: impl Into<String>) -> CacheError {
    CacheError::Transport(why.into())
}

impl Standalone {
    /// Registers the cache's services in `primary` and forks the first
    /// store worker (on the current tokio runtime).
    pub fn start(
        primary: &crate::Primary,
        dir: Option<PathBuf>,
    ) -> Result<(Arc<Standalone>, Arc<Remote>), crate::Error> {
        let this = Arc::new(Standalone {
            primary: primary.clone(),
            dir,
            state: Mutex::new(State {
                phase: Phase::Down {
                    why: "not started yet".into(),
                    until: None,
                },
                pending: HashMap::new(),
                next_seq: 1,
                opened: Vec::new(),
            }),
            to_workers: OnceLock::new(),
            to_store: OnceLock::new(),
            own: OnceLock::new(),
            stats: Mutex::default(),
            restarts: 0.into(),
        });
        route::register(&this)?;
        let own = Remote::over(Link::Other(Box::new(route::OwnLink(this.clone()))));
        let _ = this.own.set(Arc::downgrade(&own));
        restart::supervise(this.clone());
        *SERVED.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&this);
        Ok((this, own))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store worker now, if one runs (up or starting).
    pub fn store_worker(&self) -> Option<crate::WorkerHandle> {
        let id = match self.lock().phase {
            Phase::Up { id } => id,
            Phase::Starting { id: Some(id), .. } => id,
            _ => return None,
        };
        self.primary.worker(id)
    }

    /// Whether `worker` is the store worker (up or starting).
    fn is_store(state: &State, worker: u32) -> bool {
        match state.phase {
            Phase::Up { id } => id == worker,
            Phase::Starting { id, .. } => id == Some(worker),
            _ => false,
        }
    }

    /// Sends `msg` to the store worker, or queues it while one starts.
    fn send(&self, state: &mut State, msg: ToStore) -> Result<(), CacheError> {
        match &mut state.phase {
            Phase::Up { id } => {
                let to_store = self.to_store.get().expect("registered at start");
                to_store
                    .send_now(*id, &msg)
                    .map_err(|e| transport(format!("the cache's store worker: {e}")))
            }
            Phase::Starting { queue, .. } if queue.len() < MAX_QUEUED => {
                queue.push_back(msg);
                Ok(())
            }
            Phase::Starting { .. } => Err(transport(format!(
                "{MAX_QUEUED} calls wait already for the cache's store worker to start"
            ))),
            Phase::Down { why, until } => {
                let when = until.map_or_else(
                    || "shortly".to_string(),
                    |t| {
                        let ms = t.saturating_duration_since(Instant::now()).as_millis();
                        format!("in {ms} ms")
                    },
                );
                Err(transport(format!(
                    "the cache's store worker is down ({why}); it restarts {when}"
                )))
            }
            Phase::Stopped => Err(transport("the cache service was stopped")),
        }
    }

    /// Forwards a call from `from` (a worker, or the primary's own handles
    /// for `None`), answered to `waiting`; a call that cannot be sent is
    /// answered at once with why.
    fn forward(&self, from: Option<u32>, req: super::wire::Req, waiting: Waiting) {
        let opens = match &req {
            super::wire::Req::Open { cache, options } => Some((cache.clone(), options.clone())),
            _ => None,
        };
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.pending.insert(seq, Forwarded { waiting, opens });
        let sent = self.send(&mut state, ToStore::Call { seq, from, req });
        if let Err(error) = sent {
            if let Some(f) = state.pending.remove(&seq) {
                drop(state);
                f.waiting.fail(error);
            }
        }
    }

    /// The store worker `id` is gone (its channel closed, or it exited):
    /// every call it held fails now, local copies and watches are reset.
    fn lost(&self, id: u32, why: String) {
        let failed = {
            let mut state = self.lock();
            if !Self::is_store(&state, id) {
                return;
            }
            if let Phase::Starting { queue, .. } = &mut state.phase {
                queue.clear();
            }
            state.phase = Phase::Down {
                why: why.clone(),
                until: None,
            };
            std::mem::take(&mut state.pending)
        };
        tracing::warn!(
            worker = id,
            calls = failed.len(),
            "the cache's store worker is gone ({why}): its entries not persisted are lost"
        );
        let error = format!(
            "the cache's store worker (worker {id}) is gone ({why}) before it answered; \
             this call's result is unknown"
        );
        for (_, f) in failed {
            f.waiting.fail(transport(error.clone()));
        }
        self.reset_copies();
    }

    /// Every local copy and watch goes: the store they came from is lost.
    fn reset_copies(&self) {
        if let Some(to_workers) = self.to_workers.get() {
            let _ = to_workers.broadcast_now(None, &Push::Reset);
        }
        if let Some(own) = self.own.get().and_then(Weak::upgrade) {
            own.on_push(Push::Reset);
        }
    }

    /// Every cache's counters, as the store worker sent them last.
    pub fn stats(&self) -> Vec<(String, CacheStats)> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every cache's counters, asked of the store worker now.
    pub async fn fetch_stats(&self) -> Result<Vec<(String, CacheStats)>, CacheError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.lock();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.pending.insert(
                seq,
                Forwarded {
                    waiting: Waiting::Stats(tx),
                    opens: None,
                },
            );
            if let Err(e) = self.send(&mut state, ToStore::Stats { seq }) {
                state.pending.remove(&seq);
                return Err(e);
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(stats)) => Ok(stats),
            Ok(Err(_)) => Err(transport(
                "the cache's store worker went before it sent its counters",
            )),
            Err(_) => Err(transport(
                "the cache's store worker sent no counters within 10 s",
            )),
        }
    }

    /// Asks the store worker to write its persistent caches (returns at once).
    pub fn flush(&self) {
        let mut state = self.lock();
        let _ = self.send(&mut state, ToStore::Flush);
    }

    /// How many store workers were started after the first.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Waiting {
    fn fail(self, error: CacheError) {
        match self {
            Waiting::Worker(request) => {
                let _ = request.reply(&super::wire::Rep::Error { error });
            }
            Waiting::Own(tx) => {
                let _ = tx.send(Err(error));
            }
            Waiting::Reopen => {
                tracing::warn!(error = %error, "a cache was not opened again in the new store worker")
            }
            // Dropped: the asker hears that the store worker went.
            Waiting::Stats(_) => {}
        }
    }
}
