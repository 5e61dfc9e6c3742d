//! The seam between a [`Cache`](super::Cache) handle and where its entries
//! live: the store in this process (the primary), or the primary's store
//! reached over the channel (a worker). Another backend (Redis, issue 16)
//! is one more implementation of [`Backend`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::store::{GetArgs, Json, Lookup, Owner, Store, Value, Waited};
use super::{CacheError, CacheStats, Change};

pub(crate) type BoxFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

/// What a get with a loader is told once any wait is over.
#[derive(Debug, Clone)]
pub(crate) enum Got {
    Hit(Value),
    Miss,
    /// Load now, then fill with this lease token.
    Load(u64),
}

/// Where a cache's entries live.
pub(crate) trait Backend: Send + Sync {
    fn open<'a>(&'a self, cache: &'a str, options: &'a super::CacheOptions) -> BoxFut<'a, ()>;
    /// Looks up; on a miss with `load`, takes the lease or waits up to
    /// `wait` for another's load (its error comes back as
    /// [`CacheError::Load`], the end of the wait as [`CacheError::Timeout`]).
    /// `track`: the caller keeps a local copy and is to be told when the
    /// entry changes.
    fn get<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        load: bool,
        wait: Duration,
        track: bool,
    ) -> BoxFut<'a, Got>;
    fn fill<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        token: u64,
        result: Result<Json, String>,
    ) -> BoxFut<'a, bool>;
    fn set<'a>(&'a self, cache: &'a str, key: &'a str, json: Json, leave: bool)
        -> BoxFut<'a, bool>;
    fn del<'a>(&'a self, cache: &'a str, key: &'a str) -> BoxFut<'a, bool>;
    fn keys<'a>(&'a self, cache: &'a str) -> BoxFut<'a, Vec<String>>;
    fn watch<'a>(
        &'a self,
        cache: &'a str,
        key: Option<String>,
    ) -> BoxFut<'a, (u64, mpsc::Receiver<Change>)>;
    fn unwatch<'a>(&'a self, cache: &'a str, id: u64) -> BoxFut<'a, bool>;
    fn stats<'a>(&'a self, cache: &'a str) -> BoxFut<'a, CacheStats>;
}

/// Turns a lookup into what the caller is told, waiting as needed.
pub(crate) async fn settle(lookup: Lookup) -> Result<Got, CacheError> {
    match lookup {
        Lookup::Hit(v) => Ok(Got::Hit(v)),
        Lookup::Miss => Ok(Got::Miss),
        Lookup::Load(token) => Ok(Got::Load(token)),
        Lookup::Wait(rx) => match rx.await {
            Ok(Waited::Hit(v)) => Ok(Got::Hit(v)),
            Ok(Waited::Load(token)) => Ok(Got::Load(token)),
            Ok(Waited::Failed(why)) => Err(CacheError::Load(why)),
            Ok(Waited::TimedOut(after)) => Err(CacheError::Timeout(after)),
            Err(_) => Err(CacheError::Transport(
                "the cache store stopped while this call waited".into(),
            )),
        },
    }
}

/// The store in this process, used by the primary's own handles.
pub(crate) struct InProcess {
    pub store: Arc<Store>,
    pub next_watch: std::sync::atomic::AtomicU64,
}

impl Backend for InProcess {
    fn open<'a>(&'a self, cache: &'a str, options: &'a super::CacheOptions) -> BoxFut<'a, ()> {
        Box::pin(async move { self.store.open(cache, options) })
    }
    fn get<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        load: bool,
        wait: Duration,
        _track: bool,
    ) -> BoxFut<'a, Got> {
        Box::pin(async move {
            let args = GetArgs {
                owner: Owner::Primary,
                load,
                wait,
                track: false,
            };
            settle(self.store.get(cache, key, args)?).await
        })
    }
    fn fill<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        token: u64,
        result: Result<Json, String>,
    ) -> BoxFut<'a, bool> {
        Box::pin(async move { self.store.fill(cache, key, token, result) })
    }
    fn set<'a>(
        &'a self,
        cache: &'a str,
        key: &'a str,
        json: Json,
        leave: bool,
    ) -> BoxFut<'a, bool> {
        Box::pin(async move { self.store.set(cache, key, json, leave) })
    }
    fn del<'a>(&'a self, cache: &'a str, key: &'a str) -> BoxFut<'a, bool> {
        Box::pin(async move { self.store.del(cache, key) })
    }
    fn keys<'a>(&'a self, cache: &'a str) -> BoxFut<'a, Vec<String>> {
        Box::pin(async move { self.store.keys(cache) })
    }
    fn watch<'a>(
        &'a self,
        cache: &'a str,
        key: Option<String>,
    ) -> BoxFut<'a, (u64, mpsc::Receiver<Change>)> {
        Box::pin(async move {
            let id = self
                .next_watch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok((id, self.store.watch(cache, id, Owner::Primary, key)?))
        })
    }
    fn unwatch<'a>(&'a self, cache: &'a str, id: u64) -> BoxFut<'a, bool> {
        Box::pin(async move { self.store.unwatch(cache, id, Owner::Primary) })
    }
    fn stats<'a>(&'a self, cache: &'a str) -> BoxFut<'a, CacheStats> {
        Box::pin(async move {
            self.store
                .stats()
                .into_iter()
                .find(|(n, _)| n == cache)
                .map(|(_, s)| s)
                .ok_or_else(|| CacheError::Invalid(format!("no cache named {cache:?} is open")))
        })
    }
}
