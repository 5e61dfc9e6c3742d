//! [`CacheService`]: the primary's side, which holds the store, serves
//! the workers' requests, and runs the store's clock and persistence.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backend::{Backend, InProcess};
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
    pub(super) store: Arc<Store>,
    pub(super) backend: Arc<dyn Backend>,
    #[cfg(feature = "redis")]
    pub(super) redis: Option<Arc<super::on_redis::Engine>>,
    /// The store worker's side, in standalone mode (standalone/).
    pub(super) standalone: Option<Arc<super::standalone::Standalone>>,
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
            #[cfg(feature = "redis")]
            redis: None,
            standalone: None,
        };
        super::service_wire::serve(primary, &service.store)?;
        *super::SERVED.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&service.store);
        run_timers(&service.store);
        Ok(service)
    }

    /// Starts the service on the Redis server at `url`
    /// (`redis://HOST:PORT[/DB]`, `redis://:PASSWORD@HOST:PORT`,
    /// `unix:///PATH`), shared with every herd instance that names the
    /// same `cluster` (1 to 64 ASCII letters, digits, `._-`): its entries
    /// are Redis's `herd:{cluster}:*` keys. Its workers open caches as
    /// with [`new`](Self::new); how it works and what differs: the
    /// library's docs/architecture.md, "Many hosts". The connections are
    /// made in the background: the service starts while Redis is away,
    /// and says so ([`redis_health`](Self::redis_health)).
    ///
    /// ```no_run
    /// # async fn demo(primary: herd::Primary) -> Result<(), Box<dyn std::error::Error>> {
    /// let service = herd::CacheService::with_redis(&primary, "redis://10.0.0.5:6379", "shop")?;
    /// // ... primary.fork() the workers; they open caches with Worker::cache.
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Service`] for a URL or cluster name that is not
    /// one, or when a cache service runs already.
    #[cfg(feature = "redis")]
    pub fn with_redis(
        primary: &crate::Primary,
        url: &str,
        cluster: &str,
    ) -> Result<CacheService, crate::Error> {
        use super::on_redis::{serve::OnRedis, Engine};
        let bad = |why: String| crate::Error::Service {
            name: super::service_wire::SERVICE.into(),
            why,
        };
        let engine = Engine::start(url, cluster).map_err(bad)?;
        super::on_redis::serve::serve(primary, &engine)?;
        *super::on_redis::SERVED
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&engine);
        Ok(CacheService {
            store: Arc::new(Store::new(None, SystemClock::shared())),
            backend: Arc::new(OnRedis {
                engine: engine.clone(),
                next_watch: 1.into(),
            }),
            redis: Some(engine),
            standalone: None,
        })
    }

    /// Shares the primary's `emitter` with the other hosts on this Redis:
    /// an emit to every worker (the primary's `emit`, or any emit naming
    /// [`Target::AllWorkers`](crate::Target::AllWorkers)) also reaches every
    /// worker and the primary's subscriptions of every other host, in the
    /// order it was made, as from that host's primary
    /// ([`Origin::Primary`](crate::services::Origin::Primary)). Call it
    /// once, before forking.
    ///
    /// ```no_run
    /// # async fn demo(primary: herd::Primary) -> Result<(), Box<dyn std::error::Error>> {
    /// let service = herd::CacheService::with_redis(&primary, "unix:///run/redis.sock", "shop")?;
    /// service.share_emitter(&primary.emitter()?)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Service`] when the service is not on Redis, or the
    /// emitter is shared already.
    #[cfg(feature = "redis")]
    pub fn share_emitter(&self, emitter: &crate::Emitter) -> Result<(), crate::Error> {
        let bad = |why: String| crate::Error::Service {
            name: crate::services::emitter::SERVICE.into(),
            why,
        };
        let engine = self.redis.as_ref().ok_or_else(|| {
            bad("the cache service is not on Redis (CacheService::with_redis)".into())
        })?;
        engine.share_emitter(emitter.clone()).map_err(bad)
    }

    /// The Redis link's state, when the service runs on Redis.
    #[cfg(feature = "redis")]
    pub fn redis_health(&self) -> Option<super::RedisHealth> {
        self.redis.as_ref().map(|e| e.health())
    }

    /// Opens the cache `name` for the primary's own use.
    pub async fn cache(&self, name: &str, options: CacheOptions) -> Result<Cache, CacheError> {
        Cache::open(name, &options, self.backend.clone(), None).await
    }

    /// The store it serves (the RESP socket serves it too).
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Every cache's counters, by name (of a standalone store: as its
    /// worker sent them last, at most a second old; see
    /// [`fetch_stats`](Self::fetch_stats)).
    pub fn stats(&self) -> Vec<(String, CacheStats)> {
        #[cfg(feature = "redis")]
        if let Some(engine) = &self.redis {
            return engine.stats();
        }
        if let Some(standalone) = &self.standalone {
            return standalone.stats();
        }
        self.store.stats()
    }

    /// Writes every persistent cache changed since its last write (the
    /// service does so within a second of a change; call this before the
    /// primary exits).
    pub fn flush(&self) {
        match &self.standalone {
            Some(standalone) => standalone.flush(),
            None => self.store.flush(),
        }
    }
}

/// The store's timer: expiries, lease and wait deadlines, persistence (in
/// the primary, or in a standalone store worker), for as long as the store
/// lives.
pub(super) fn run_timers(store: &Arc<Store>) {
    let weak = Arc::downgrade(store);
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
            // A blocking thread only when there is something to write:
            // nothing persists in most clusters, and a thread a second
            // is a cost (and, at a process limit, a failure) for nothing.
            if tokio::time::Instant::now() >= next_flush {
                if woken.needs_flush() {
                    let s = woken.clone();
                    let _ = tokio::task::spawn_blocking(move || s.flush()).await;
                }
                next_flush = tokio::time::Instant::now() + PERSIST_EVERY;
            }
        }
    });
}
