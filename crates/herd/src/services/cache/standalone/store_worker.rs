//! The store worker's side: [`StoreWorker::run`] holds the store and
//! answers the calls the primary forwards to it, with the same code that
//! answers workers in an in-primary service (`answer.rs`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::wire::{FromStore, ToStore, ENV_DIR, ENV_STORE, STORE_SERVICE};
use crate::services::cache::answer::{answer, waited, Answer, Pusher};
use crate::services::cache::store::clock::SystemClock;
use crate::services::cache::store::{Owner, Store};
use crate::services::cache::wire::Push;
use crate::services::{Pushed, WorkerService};
use crate::Worker;

/// How often the store worker sends its counters when they changed.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// This worker was forked to hold a standalone cache's store: run it
/// instead of the application (see [`CacheService::store_worker`]).
///
/// [`CacheService::store_worker`]: crate::CacheService::store_worker
#[derive(Debug)]
pub struct StoreWorker {
    worker: Worker,
    dir: Option<PathBuf>,
}

impl StoreWorker {
    /// `Some` in the worker a standalone [`CacheService`](crate::CacheService)
    /// forked to hold its store.
    pub(crate) fn of(worker: &Worker) -> Option<StoreWorker> {
        std::env::var_os(ENV_STORE)?;
        Some(StoreWorker {
            worker: worker.clone(),
            dir: std::env::var_os(ENV_DIR).map(PathBuf::from),
        })
    }

    /// Holds the store and serves the primary's calls until the primary
    /// disconnects this worker, then writes the persistent caches and
    /// returns (return from `main` then). Persistent caches are read back
    /// as they are opened: the primary opens again, in a new store worker,
    /// every cache opened before.
    ///
    /// # Errors
    /// [`crate::Error::Service`] when this worker runs a store already.
    pub async fn run(self) -> Result<(), crate::Error> {
        if let Some(d) = &self.dir {
            if let Err(e) = std::fs::create_dir_all(d) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot make the cache directory");
            }
        }
        let store = Arc::new(Store::new(self.dir.clone(), SystemClock::shared()));
        crate::services::cache::service::run_timers(&store);
        let cell: Arc<OnceLock<WorkerService>> = Arc::default();
        let sender = cell.clone();
        let push: Pusher = Arc::new(move |to, push: Push| {
            let to = match to {
                Owner::Worker(w) => Some(w),
                Owner::Primary => None,
            };
            send(&sender, &FromStore::Push { to, push });
        });
        let invalidate = push.clone();
        store.on_invalidate(Box::new(move |worker, cache, key| {
            invalidate(
                Owner::Worker(worker),
                Push::Invalidate {
                    cache: cache.to_string(),
                    key: key.to_string(),
                },
            )
        }));
        let (served, replies) = (store.clone(), cell.clone());
        let service = self
            .worker
            .service_with(STORE_SERVICE, move |pushed, _credit| {
                let Pushed::Message(m) = pushed else { return };
                match m.decode::<ToStore>() {
                    Ok(msg) => on_message(&served, &push, &replies, msg),
                    // The primary wrote it: a bug, not a reason to stop.
                    Err(e) => tracing::warn!(error = %e, "a store call that does not decode"),
                }
            })?;
        let _ = cell.set(service);
        send(&cell, &FromStore::Hello);
        tracing::debug!(worker = self.worker.id(), "the cache's store worker is up");
        let stats = tokio::spawn(send_stats(Arc::downgrade(&store), cell.clone()));
        self.worker.disconnecting().await;
        stats.abort();
        let _hold = self.worker.hold();
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        Ok(())
    }
}

fn send(cell: &OnceLock<WorkerService>, msg: &FromStore) {
    if let Some(service) = cell.get() {
        // Past 32 MiB unread by the primary, or once the channel closed:
        // the primary's callers then time out, or hear of this worker's
        // death.
        if let Err(e) = service.send_now(msg) {
            tracing::debug!(error = %e, "a store message was not sent");
        }
    }
}

fn on_message(store: &Arc<Store>, push: &Pusher, out: &Arc<OnceLock<WorkerService>>, msg: ToStore) {
    match msg {
        ToStore::Call { seq, from, req } => {
            let owner = from.map_or(Owner::Primary, Owner::Worker);
            match answer(store, push, owner, req) {
                Answer::Later(rx) => {
                    let out = out.clone();
                    tokio::spawn(async move {
                        let rep = waited(rx.await).into_rep();
                        send(&out, &FromStore::Reply { seq, rep });
                    });
                }
                now => send(
                    out,
                    &FromStore::Reply {
                        seq,
                        rep: now.into_rep(),
                    },
                ),
            }
        }
        ToStore::Gone { worker } => store.owner_gone(Owner::Worker(worker)),
        ToStore::Flush => {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.flush());
        }
        ToStore::Stats { seq } => send(
            out,
            &FromStore::Stats {
                seq,
                stats: store.stats(),
            },
        ),
    }
}

/// Sends the counters each second they changed, for the primary's
/// `stats()` and `/metrics`.
async fn send_stats(store: std::sync::Weak<Store>, out: Arc<OnceLock<WorkerService>>) {
    let mut last = Vec::new();
    loop {
        tokio::time::sleep(STATS_EVERY).await;
        let Some(store) = store.upgrade() else { return };
        let stats = store.stats();
        if stats != last {
            send(
                &out,
                &FromStore::Stats {
                    seq: 0,
                    stats: stats.clone(),
                },
            );
            last = stats;
        }
    }
}
