//! [`CacheService`]: the primary's side, which holds the store, serves
//! the workers' requests, and runs the store's clock and persistence.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backend::InProcess;
use super::store::clock::SystemClock;
use super::store::Store;
use super::{Cache, CacheError, CacheOptions, CacheStats};

/// How often a changed persistent cache is written.
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// The primary's cache service: holds every named cache of the cluster.
///
/// ```no_run
/// # async fn demo(primary: herd::Primary) -> Result<(), Box<dyn std::error::Error>> {
/// let service = herd::CacheService::with_dir(&primary, "/var/lib/app/cache")?;
/// // ... primary.fork() the workers; they open caches with Worker::cache.
/// let sessions = service.cache("sessions", herd::CacheOptions::default().persist(true)).await?;
/// sessions.set("a", &1).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CacheService {
    store: Arc<Store>,
    backend: Arc<InProcess>,
}

impl std::fmt::Debug for CacheService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService").finish_non_exhaustive()
    }
}

impl CacheService {
    /// Starts the service, with no directory: caches cannot persist.
    /// Start it before forking the workers that use it, on the
    /// application's tokio runtime.
    ///
    /// # Errors
    /// [`crate::Error::Service`] when a cache service runs already.
    pub fn new(primary: &crate::Primary) -> Result<CacheService, crate::Error> {
        Self::start(primary, None)
    }

    /// Starts the service; persistent caches live in `dir` (made if
    /// missing).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_dir(
        primary: &crate::Primary,
        dir: impl Into<PathBuf>,
    ) -> Result<CacheService, crate::Error> {
        Self::start(primary, Some(dir.into()))
    }

    fn start(primary: &crate::Primary, dir: Option<PathBuf>) -> Result<CacheService, crate::Error> {
        if let Some(d) = &dir {
            if let Err(e) = std::fs::create_dir_all(d) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot make the cache directory");
            }
        }
        let store = Arc::new(Store::new(dir, SystemClock::shared()));
        let service = CacheService {
            backend: Arc::new(InProcess {
                store: store.clone(),
                next_watch: 1.into(),
            }),
            store,
        };
        super::service_wire::serve(primary, &service.store)?;
        *super::SERVED.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&service.store);
        service.run_timers();
        Ok(service)
    }

    /// The store's timer: expiries, lease and wait deadlines, persistence.
    fn run_timers(&self) {
        let weak = Arc::downgrade(&self.store);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut next_flush = start + PERSIST_EVERY;
            loop {
                let Some(store) = weak.upgrade() else { return };
                store.tick();
                let now_ms = store.now_ms();
                let at = store.next_deadline().map(|d| {
                    tokio::time::Instant::now() + Duration::from_millis(d.saturating_sub(now_ms))
                });
                let until = at.map_or(next_flush, |a| a.min(next_flush));
                let woken = store.clone();
                drop(store);
                tokio::select! {
                    () = woken.wake.notified() => {}
                    () = tokio::time::sleep_until(until) => {}
                }
                if tokio::time::Instant::now() >= next_flush {
                    let s = woken.clone();
                    let _ = tokio::task::spawn_blocking(move || s.flush()).await;
                    next_flush = tokio::time::Instant::now() + PERSIST_EVERY;
                }
            }
        });
    }

    /// Opens the cache `name` for the primary's own use.
    pub async fn cache(&self, name: &str, options: CacheOptions) -> Result<Cache, CacheError> {
        Cache::open(name, &options, self.backend.clone(), None).await
    }

    /// The store it serves (the RESP socket serves it too).
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Every cache's counters, by name.
    pub fn stats(&self) -> Vec<(String, CacheStats)> {
        self.store.stats()
    }

    /// Writes every persistent cache changed since its last write (the
    /// service does so within a second of a change; call this before the
    /// primary exits).
    pub fn flush(&self) {
        self.store.flush();
    }
}
