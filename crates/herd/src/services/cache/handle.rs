//! [`Cache`]: one named cache as the application uses it, typed with
//! serde, in the primary or in a worker.

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;

use super::backend::{Backend, Got};
use super::local::LocalCopy;
use super::store::Json;
use super::{CacheError, CacheOptions, CacheStats, Change};

/// How long a get waits for another caller's load unless told otherwise
/// ([`Cache::get_or_load_within`]).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// A named cache shared by the whole cluster (module docs: [`crate::services::cache`]).
///
/// Cheap to clone; every clone is the same cache.
#[derive(Clone)]
pub struct Cache {
    name: Arc<str>,
    backend: Arc<dyn Backend>,
    local: Option<Arc<LocalCopy>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name)
            .field("local_copy", &self.local.is_some())
            .finish()
    }
}

/// A value as JSON, as messages are written (a NaN is refused, a
/// `herd::Binary` goes as base64).
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Json, CacheError> {
    let mut out = Vec::with_capacity(64);
    crate::message::codec::to_writer(&mut out, value)?;
    // serde_json writes UTF-8 only.
    String::from_utf8(out)
        .map(Into::into)
        .map_err(|e| CacheError::Codec(e.to_string()))
}

fn decode<T: DeserializeOwned>(json: &str) -> Result<T, CacheError> {
    Ok(crate::message::codec::from_str(json)?)
}

impl Cache {
    pub(crate) async fn open(
        name: &str,
        options: &CacheOptions,
        backend: Arc<dyn Backend>,
        local: Option<Arc<LocalCopy>>,
    ) -> Result<Cache, CacheError> {
        backend.open(name, options).await?;
        Ok(Cache {
            name: name.into(),
            backend,
            local: local.filter(|_| options.local_copy),
        })
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, or `None`: no load, no wait.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, CacheError> {
        if let Some(json) = self.local.as_ref().and_then(|l| l.get(key)) {
            return decode(&json).map(Some);
        }
        let epoch = self.local.as_ref().map(|l| l.epoch());
        match self
            .backend
            .get(&self.name, key, false, Duration::ZERO, epoch.is_some())
            .await?
        {
            Got::Hit(v) => {
                self.keep(key, &v.json, v.ttl_ms, epoch);
                decode(&v.json).map(Some)
            }
            Got::Miss | Got::Load(_) => Ok(None),
        }
    }

    /// The value of `key`, shared: with the local copy, the value decoded
    /// at the first hit is kept beside its JSON, so a later hit is an
    /// `Arc` clone, with no decoding (and no message). Without a local
    /// copy, as [`get`](Self::get).
    pub async fn get_shared<T>(&self, key: &str) -> Result<Option<Arc<T>>, CacheError>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if let Some(local) = &self.local {
            match local.get_decoded::<T>(key) {
                Some(Ok(shared)) => return Ok(Some(shared)),
                Some(Err(json)) => {
                    let shared = Arc::new(decode::<T>(&json)?);
                    local.remember(key, &json, shared.clone());
                    return Ok(Some(shared));
                }
                None => {}
            }
        }
        Ok(self.get::<T>(key).await?.map(Arc::new))
    }

    /// The value of `key`; when there is none, `loader` makes it, once for
    /// the whole cluster: of every caller that misses at once, in any
    /// worker, one loads and the others wait ([`DEFAULT_WAIT`] at most)
    /// for its value. A loader that fails passes its error to every
    /// waiter ([`CacheError::Load`]).
    pub async fn get_or_load<T, F, Fut, E>(&self, key: &str, loader: F) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        self.get_or_load_within(key, DEFAULT_WAIT, loader).await
    }

    /// [`get_or_load`](Self::get_or_load), waiting at most `wait` for
    /// another's load: past it the call fails with
    /// [`CacheError::Timeout`] and its registration as a waiter is
    /// cancelled.
    pub async fn get_or_load_within<T, F, Fut, E>(
        &self,
        key: &str,
        wait: Duration,
        loader: F,
    ) -> Result<T, CacheError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        if let Some(json) = self.local.as_ref().and_then(|l| l.get(key)) {
            return decode(&json);
        }
        let epoch = self.local.as_ref().map(|l| l.epoch());
        let got = self
            .backend
            .get(&self.name, key, true, wait, epoch.is_some())
            .await?;
        let token = match got {
            Got::Hit(v) => {
                self.keep(key, &v.json, v.ttl_ms, epoch);
                return decode(&v.json);
            }
            Got::Load(token) => token,
            Got::Miss => {
                return Err(CacheError::Transport(
                    "the store answered a get with a loader by a miss".into(),
                ))
            }
        };
        // The lease is ours: load, and fill it whatever happens, so that
        // waiters hear at once (a loader that panics or is cancelled here
        // is a failure too: the guard fills with an error).
        let mut guard = FillGuard {
            cache: self,
            key,
            token,
            armed: true,
        };
        let loaded = loader().await;
        guard.armed = false;
        match loaded {
            Ok(value) => match encode(&value) {
                Ok(json) => {
                    self.backend.fill(&self.name, key, token, Ok(json)).await?;
                    Ok(value)
                }
                Err(e) => {
                    let _ = self
                        .backend
                        .fill(&self.name, key, token, Err(e.to_string()))
                        .await;
                    Err(e)
                }
            },
            Err(e) => {
                let why = e.to_string();
                self.backend
                    .fill(&self.name, key, token, Err(why.clone()))
                    .await?;
                Err(CacheError::Load(why))
            }
        }
    }

    fn keep(&self, key: &str, json: &Json, ttl_ms: Option<u64>, epoch: Option<u64>) {
        if let (Some(local), Some(epoch)) = (&self.local, epoch) {
            local.keep(key, json.clone(), ttl_ms, epoch);
        }
    }

    /// Writes `key` (and ends a load in flight: its waiters get this
    /// value).
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), CacheError> {
        self.write(key, value, false).await.map(|_| ())
    }

    /// Writes `key` only when it holds no value or `null`
    /// (cluster2's `leave_if_not_null`); whether it wrote.
    pub async fn set_if_null<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<bool, CacheError> {
        self.write(key, value, true).await
    }

    async fn write<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        leave_if_not_null: bool,
    ) -> Result<bool, CacheError> {
        let json = encode(value)?;
        let wrote = self
            .backend
            .set(&self.name, key, json, leave_if_not_null)
            .await;
        if let Some(local) = &self.local {
            local.invalidate(key);
        }
        wrote
    }

    /// Removes `key`; whether it held a value.
    pub async fn del(&self, key: &str) -> Result<bool, CacheError> {
        let had = self.backend.del(&self.name, key).await;
        if let Some(local) = &self.local {
            local.invalidate(key);
        }
        had
    }

    /// The keys that hold a value, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, CacheError> {
        self.backend.keys(&self.name).await
    }

    /// The changes of `key`, in the order they happened.
    pub async fn watch(&self, key: &str) -> Result<Watch, CacheError> {
        self.watching(Some(key.to_string())).await
    }

    /// The changes of every key, in the order they happened.
    pub async fn watch_all(&self) -> Result<Watch, CacheError> {
        self.watching(None).await
    }

    async fn watching(&self, key: Option<String>) -> Result<Watch, CacheError> {
        let (id, rx) = self.backend.watch(&self.name, key).await?;
        Ok(Watch {
            cache: self.clone(),
            id,
            rx,
            ended: false,
        })
    }

    /// The cache's counters, as the primary keeps them.
    pub async fn stats(&self) -> Result<CacheStats, CacheError> {
        self.backend.stats(&self.name).await
    }

    /// Hits served by this process's local copy, without a message.
    pub fn local_hits(&self) -> u64 {
        self.local
            .as_ref()
            .map_or(0, |l| l.hits.load(Ordering::Relaxed))
    }
}

struct FillGuard<'a> {
    cache: &'a Cache,
    key: &'a str,
    token: u64,
    armed: bool,
}

impl Drop for FillGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (backend, name, key, token) = (
            self.cache.backend.clone(),
            self.cache.name.clone(),
            self.key.to_string(),
            self.token,
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let why = "the loader was cancelled or panicked".to_string();
                let _ = backend.fill(&name, &key, token, Err(why)).await;
            });
        }
    }
}

/// The change notices of a [`Cache::watch`] or [`Cache::watch_all`], in
/// order. Dropping it, or [`unwatch`](Self::unwatch), ends the watch.
#[derive(Debug)]
pub struct Watch {
    cache: Cache,
    id: u64,
    rx: mpsc::Receiver<Change>,
    ended: bool,
}

impl Watch {
    /// The next change; `None` when the watch ended (the service stopped,
    /// or this watcher fell a thousand notices behind).
    pub async fn next(&mut self) -> Option<Change> {
        self.rx.recv().await
    }

    /// Ends the watch, telling the store now.
    pub async fn unwatch(mut self) -> Result<(), CacheError> {
        self.ended = true;
        self.cache
            .backend
            .unwatch(&self.cache.name, self.id)
            .await
            .map(|_| ())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (backend, name, id) = (self.cache.backend.clone(), self.cache.name.clone(), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = backend.unwatch(&name, id).await;
            });
        }
    }
}
