//! [`CacheService`]'s standalone constructors and the calls that only
//! mean something in standalone mode.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Phase, Standalone, StoreWorker};
use crate::services::cache::store::clock::SystemClock;
use crate::services::cache::store::Store;
use crate::services::cache::{CacheError, CacheService, CacheStats};

/// How long [`CacheService::stop`] waits for the store worker to write
/// its caches and exit before it kills it.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl CacheService {
    /// Starts the service with its store in a dedicated worker, forked now
    /// and restarted by the service when it dies (module docs:
    /// [`crate::services::cache::standalone`]), with no directory: caches
    /// cannot persist. Start it before forking the workers that use it, on
    /// the application's tokio runtime; the worker's `main` must run
    /// [`store_worker`](Self::store_worker)'s store.
    ///
    /// ```no_run
    /// # async fn demo(primary: herd::Primary) -> Result<(), Box<dyn std::error::Error>> {
    /// let service = herd::CacheService::standalone(&primary)?;
    /// primary.fork()?;
    /// let store = service.store_process().expect("forked at start");
    /// println!("the cache lives in worker {} (pid {})", store.id(), store.pid());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Service`] when a cache service runs already.
    pub fn standalone(primary: &crate::Primary) -> Result<CacheService, crate::Error> {
        Self::start_standalone(primary, None)
    }

    /// [`standalone`](Self::standalone), with persistent caches in `dir`
    /// (made if missing), written and read back by the store worker.
    ///
    /// # Errors
    /// As [`standalone`](Self::standalone).
    pub fn standalone_with_dir(
        primary: &crate::Primary,
        dir: impl Into<PathBuf>,
    ) -> Result<CacheService, crate::Error> {
        Self::start_standalone(primary, Some(dir.into()))
    }

    fn start_standalone(
        primary: &crate::Primary,
        dir: Option<PathBuf>,
    ) -> Result<CacheService, crate::Error> {
        let (standalone, own) = Standalone::start(primary, dir)?;
        Ok(CacheService {
            // Unused: the store is in the store worker.
            store: Arc::new(Store::new(None, SystemClock::shared())),
            backend: own,
            #[cfg(feature = "redis")]
            redis: None,
            standalone: Some(standalone),
        })
    }

    /// In a worker: `Some` when this worker is the one a standalone
    /// service forked to hold its store (`HERD_CACHE_STORE` in its
    /// environment). Run [`StoreWorker::run`] then, instead of the
    /// application.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), herd::Error> {
    /// let worker = herd::Worker::connect().await?;
    /// if let Some(store) = herd::CacheService::store_worker(&worker) {
    ///     return store.run().await;
    /// }
    /// // ... the application.
    /// # Ok(()) }
    /// ```
    pub fn store_worker(worker: &crate::Worker) -> Option<StoreWorker> {
        StoreWorker::of(worker)
    }

    /// The worker that holds the store now (standalone mode; `None`
    /// otherwise, or while it is down).
    pub fn store_process(&self) -> Option<crate::WorkerHandle> {
        self.standalone.as_ref()?.store_worker()
    }

    /// Whether its store is in a store worker.
    pub(crate) fn is_standalone(&self) -> bool {
        self.standalone.is_some()
    }

    /// How many times the store worker was restarted (standalone mode).
    pub fn store_restarts(&self) -> u64 {
        self.standalone.as_ref().map_or(0, |s| s.restarts())
    }

    /// Every cache's counters, by name, asked of the store now (the same
    /// as [`stats`](Self::stats) but in standalone mode).
    ///
    /// # Errors
    /// [`CacheError::Transport`] when the store worker is down or does
    /// not answer within 10 s.
    pub async fn fetch_stats(&self) -> Result<Vec<(String, CacheStats)>, CacheError> {
        match &self.standalone {
            Some(standalone) => standalone.fetch_stats().await,
            None => Ok(self.stats()),
        }
    }

    /// Stops the service: in standalone mode, disconnects the store worker
    /// (it writes its persistent caches, then exits; past 10 s it is
    /// killed) and returns once it is gone; it is not restarted, and calls
    /// fail from now on. Otherwise it writes the persistent caches, as
    /// [`flush`](Self::flush).
    pub async fn stop(&self) {
        let Some(standalone) = &self.standalone else {
            self.flush();
            return;
        };
        let store = standalone.store_worker();
        standalone.stopped();
        let Some(worker) = store else { return };
        worker.disconnect();
        if tokio::time::timeout(STOP_GRACE, worker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                worker = worker.id(),
                "the cache's store worker did not exit within 10 s of its disconnect: killing it"
            );
            worker.kill_with(crate::Signal::SIGKILL);
            let _ = worker.wait().await;
        }
    }
}

impl Standalone {
    /// Calls fail from now on, and the store worker is not restarted.
    fn stopped(&self) {
        let failed = {
            let mut state = self.lock();
            state.phase = Phase::Stopped;
            std::mem::take(&mut state.pending)
        };
        for (_, f) in failed {
            f.waiting.fail(CacheError::Transport(
                "the cache service was stopped".into(),
            ));
        }
    }
}
