//! The store behind every named cache in the primary: entries, leases of
//! single-flight loads and their waiters, watchers, counters and
//! persistence, in one state machine under one lock. Nothing in it blocks
//! or awaits: a waiter is a oneshot the caller awaits, a watcher a bounded
//! queue, and time moves when [`Store::tick`] is called (the service's
//! timer task calls it at [`Store::next_deadline`]; the unit tests move a
//! [`clock::ManualClock`]).

pub(crate) mod clock;
mod lease;
mod lru;
pub(crate) mod persist;
mod table;
#[cfg(test)]
mod tests;
mod ttl;
mod upkeep;

use foldhash::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::options::{check_key, check_name, CacheError, CacheOptions, CacheStats, MAX_CACHES};
use super::{Change, ChangeKind};
use clock::Clock;
use lease::Lease;
pub(crate) use table::Json;
use table::{cost, Table};
pub(crate) use ttl::When;

/// Who holds a lease or waits: a worker, or the primary itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Primary,
    Worker(u32),
}

/// A value and what is left of its life.
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub json: Json,
    pub ttl_ms: Option<u64>,
}

/// The answer to a get.
#[derive(Debug)]
pub(crate) enum Lookup {
    Hit(Value),
    Miss,
    /// The caller holds the lease `token`: it loads and then fills.
    Load(u64),
    /// Another loads; the answer comes here.
    Wait(oneshot::Receiver<Waited>),
}

/// What a waiter is told.
#[derive(Debug)]
pub(crate) enum Waited {
    Hit(Value),
    /// The loader failed: its error.
    Failed(String),
    /// The lease passed to this waiter (its loader died or ran out of
    /// time): load now.
    Load(u64),
    TimedOut(Duration),
}

/// How a get asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GetArgs {
    pub owner: Owner,
    /// Take the lease (or wait) on a miss.
    pub load: bool,
    /// The longest wait for another's load.
    pub wait: Duration,
    /// Note the owner as a holder of a local copy.
    pub track: bool,
}

/// How the store tells a worker that an entry it copied changed.
pub(crate) type Invalidate = Box<dyn Fn(u32, &str, &str) + Send + Sync>;

/// How many change notices a watcher may fall behind before it is ended.
pub(crate) const WATCH_QUEUE: usize = 1024;

struct Watcher {
    id: u64,
    owner: Owner,
    key: Option<String>,
    tx: mpsc::Sender<Change>,
}

struct Named {
    name: Arc<str>,
    options: CacheOptions,
    table: Table,
    leases: HashMap<String, Lease>,
    watchers: Vec<Watcher>,
    stats: CacheStats,
    dirty: bool,
}

#[derive(Default)]
struct Inner {
    caches: HashMap<String, Named>,
    next_token: u64,
}

/// Every named cache of the cluster.
pub(crate) struct Store {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    dir: Option<PathBuf>,
    invalidate: OnceLock<Invalidate>,
    /// Woken when a deadline earlier than those known may have been added.
    pub(crate) wake: tokio::sync::Notify,
}

impl Store {
    /// A store whose persistent caches live in `dir`.
    pub fn new(dir: Option<PathBuf>, clock: Arc<dyn Clock>) -> Store {
        Store {
            inner: Mutex::default(),
            clock,
            dir,
            invalidate: OnceLock::new(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Where change notices for local copies go (set once, by the service).
    pub fn on_invalidate(&self, f: Invalidate) {
        let _ = self.invalidate.set(f);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Opens `name` with `options`: made at the first open (and read back
    /// from its file when it persists), checked against them later.
    pub fn open(&self, name: &str, options: &CacheOptions) -> Result<(), CacheError> {
        check_name(name)?;
        options.check()?;
        let mut inner = self.lock();
        if let Some(named) = inner.caches.get(name) {
            if named.options.shared() != options.shared() {
                return Err(CacheError::Options {
                    name: name.into(),
                    had: format!("{:?}", named.options.shared()),
                });
            }
            return Ok(());
        }
        if inner.caches.len() >= MAX_CACHES {
            return Err(CacheError::Invalid(format!(
                "the cluster holds {MAX_CACHES} named caches already; use fewer names"
            )));
        }
        if options.persist && self.dir.is_none() {
            return Err(CacheError::Invalid(format!(
                "cache {name:?} persists, but the primary's cache service has no directory; \
                 give it one (CacheService::with_dir)"
            )));
        }
        let mut named = Named {
            name: name.into(),
            options: options.shared(),
            table: Table::default(),
            leases: HashMap::default(),
            watchers: Vec::new(),
            stats: CacheStats::default(),
            dirty: false,
        };
        if let (true, Some(dir)) = (options.persist, &self.dir) {
            self.reload(&mut named, persist::path(dir, name));
        }
        inner.caches.insert(name.to_string(), named);
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    fn named<'a>(inner: &'a mut Inner, name: &str) -> Result<&'a mut Named, CacheError> {
        inner.caches.get_mut(name).ok_or_else(|| {
            CacheError::Invalid(format!(
                "no cache named {:?} is open; open it first (Worker::cache, CacheService::cache)",
                name.chars().take(80).collect::<String>()
            ))
        })
    }

    /// Looks `key` up; on a miss with `load`, takes its lease or waits.
    pub fn get(&self, name: &str, key: &str, args: GetArgs) -> Result<Lookup, CacheError> {
        check_key(key)?;
        let now = self.now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let named = Self::named(inner, name)?;
        if let Some(entry) = named.table.touch(key, now) {
            if let (true, Owner::Worker(w)) = (args.track, args.owner) {
                if !entry.readers.contains(&w) {
                    entry.readers.push(w);
                }
            }
            named.stats.hits += 1;
            return Ok(Lookup::Hit(Value {
                json: entry.value.clone(),
                ttl_ms: entry.expires.map(|t| t - now),
            }));
        }
        named.stats.misses += 1;
        if !args.load {
            return Ok(Lookup::Miss);
        }
        if let Some(lease) = named.leases.get_mut(key) {
            let rx = lease.wait(args.owner, now, args.wait, args.track);
            self.wake.notify_one();
            return Ok(Lookup::Wait(rx));
        }
        inner.next_token += 1;
        let token = inner.next_token;
        let named = Self::named(inner, name)?;
        let deadline = now + ms(named.options.lease);
        named
            .leases
            .insert(key.to_string(), Lease::new(token, args.owner, deadline));
        named.stats.loads += 1;
        self.wake.notify_one();
        Ok(Lookup::Load(token))
    }

    /// The loader holding lease `token` is done: its value is stored and
    /// given to every waiter, or its error given to every waiter. `false`
    /// when the lease had ended (a `set` filled the key, or the lease
    /// passed on): the value is not stored.
    pub fn fill(
        &self,
        name: &str,
        key: &str,
        token: u64,
        result: Result<Json, String>,
    ) -> Result<bool, CacheError> {
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        if named.leases.get(key).map(|l| l.token) != Some(token) {
            return Ok(false);
        }
        match result {
            Ok(json) => {
                self.write(named, key, json)?;
            }
            Err(why) => {
                named.stats.load_failures += 1;
                if let Some(lease) = named.leases.remove(key) {
                    lease.fail(&why);
                }
            }
        }
        Ok(true)
    }

    /// Writes `key`; with `leave_if_not_null`, only when it holds no value
    /// or JSON `null`. Whether it wrote.
    pub fn set(
        &self,
        name: &str,
        key: &str,
        json: Json,
        leave_if_not_null: bool,
    ) -> Result<bool, CacheError> {
        check_key(key)?;
        let now = self.now();
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        if leave_if_not_null
            && named
                .table
                .peek(key, now)
                .is_some_and(|e| &*e.value != "null")
        {
            return Ok(false);
        }
        self.write(named, key, json)?;
        Ok(true)
    }

    /// Stores `json` under `key`, ends its lease (waiters get the value),
    /// tells watchers and readers, evicts past the bounds.
    fn write(&self, named: &mut Named, key: &str, json: Json) -> Result<(), CacheError> {
        let size = cost(key, &json);
        if size > named.options.max_bytes {
            return Err(CacheError::Invalid(format!(
                "an entry of {size} bytes is larger than cache {:?}'s max_bytes ({})",
                &*named.name, named.options.max_bytes
            )));
        }
        let now = self.now();
        let expires = named.options.expire.map(|e| now + ms(e));
        let readers = named.table.insert(key, json.clone(), expires);
        named.dirty |= named.options.persist;
        if let Some(lease) = named.leases.remove(key) {
            let tracked = lease.fulfil(&Value {
                json: json.clone(),
                ttl_ms: expires.map(|t| t - now),
            });
            if let Some(entry) = named.table.touch(key, now) {
                entry.readers = tracked;
            }
        }
        self.changed(named, key, ChangeKind::Set, Some(json), readers);
        self.evict(named, key);
        if expires.is_some() {
            self.wake.notify_one();
        }
        Ok(())
    }

    fn evict(&self, named: &mut Named, keep: &str) {
        while named.table.len() > named.options.max_entries
            || named.table.bytes > named.options.max_bytes
        {
            let Some(old) = named.table.oldest(keep) else {
                break;
            };
            if let Some(e) = named.table.remove(&old) {
                named.stats.evictions += 1;
                self.changed(named, &old, ChangeKind::Evicted, None, e.readers);
            }
        }
    }

    /// Removes `key`; whether it held a value.
    pub fn del(&self, name: &str, key: &str) -> Result<bool, CacheError> {
        check_key(key)?;
        let now = self.now();
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        let Some(entry) = named.table.remove(key) else {
            return Ok(false);
        };
        named.dirty |= named.options.persist;
        let live = entry.expires.map_or(true, |t| t > now);
        self.changed(named, key, ChangeKind::Del, None, entry.readers);
        Ok(live)
    }

    /// The keys that hold a value, sorted.
    pub fn keys(&self, name: &str) -> Result<Vec<String>, CacheError> {
        let now = self.now();
        let mut inner = self.lock();
        Ok(Self::named(&mut inner, name)?.table.keys(now))
    }

    /// Change notices of `key` (or of every key), in order, on a queue of
    /// [`WATCH_QUEUE`]; a watcher that falls further behind is ended.
    pub fn watch(
        &self,
        name: &str,
        id: u64,
        owner: Owner,
        key: Option<String>,
    ) -> Result<mpsc::Receiver<Change>, CacheError> {
        if let Some(k) = &key {
            check_key(k)?;
        }
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        named.watchers.push(Watcher { id, owner, key, tx });
        Ok(rx)
    }

    /// Ends watcher `id` of `owner`; whether there was one.
    pub fn unwatch(&self, name: &str, id: u64, owner: Owner) -> Result<bool, CacheError> {
        let mut inner = self.lock();
        let named = Self::named(&mut inner, name)?;
        let before = named.watchers.len();
        named.watchers.retain(|w| !(w.id == id && w.owner == owner));
        Ok(named.watchers.len() != before)
    }

    fn changed(
        &self,
        named: &mut Named,
        key: &str,
        kind: ChangeKind,
        value: Option<Json>,
        readers: Vec<u32>,
    ) {
        if let Some(invalidate) = self.invalidate.get() {
            for w in readers {
                invalidate(w, &named.name, key);
            }
        }
        if named.watchers.is_empty() {
            return;
        }
        let change = Change {
            key: key.to_string(),
            kind,
            value: value.map(|v| v.to_string()),
        };
        named.watchers.retain(|w| {
            if w.key.as_deref().is_some_and(|k| k != key) {
                return !w.tx.is_closed();
            }
            match w.tx.try_send(change.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(cache = %named.name, watcher = w.id, "a watcher fell {WATCH_QUEUE} notices behind; ended");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// The store's clock, now.
    pub fn now_ms(&self) -> u64 {
        self.now()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}
