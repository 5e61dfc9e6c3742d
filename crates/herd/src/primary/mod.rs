//! The primary: forks workers, keeps their registry, routes their messages
//! and reports their lives as [`Event`]s.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::Error> {
//! let primary = herd::Primary::new()?;
//! let mut events = primary.events();
//! for _ in 0..2 {
//!     primary.fork()?;
//! }
//! while let Some(event) = events.next().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

mod drain;
pub(crate) mod events;
mod foreign;
pub(crate) mod link;
mod runtime;
mod settings;
mod spawn;
mod status;
mod tree;
mod worker;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::sched::{Policy, Table};
use crate::{Error, Signal, ENV_CHANNEL_FD};
use events::Bus;
pub use events::{Event, Events};
use runtime::Forker;
pub use settings::{limits, Readiness, Settings, SettingsBuilder};
pub use status::{Heartbeat, ListenStatus, WorkerStatus};
pub use worker::{WorkerHandle, WorkerState};

/// How a worker's process ended: an exit code or a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExitStatus {
    /// The exit code, if the process exited.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<Signal>,
}

impl ExitStatus {
    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(s: std::process::ExitStatus) -> Self {
        ExitStatus {
            code: s.code(),
            signal: s.signal().and_then(Signal::from_raw),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit code {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "unknown status"),
        }
    }
}

/// The primary process of a cluster, as Node's `cluster` object in the
/// primary. Cheap to clone; all clones are the same cluster.
///
/// It is mechanism only: it forks, shares ports, routes messages and
/// reports events. Keeping a number of workers up, replacing them and
/// handling signals is policy: [`Supervisor`](crate::Supervisor) does that
/// on top of it.
#[derive(Clone)]
pub struct Primary {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    settings: Mutex<Settings>,
    policy: OnceLock<Policy>,
    next_id: AtomicU32,
    pub(crate) workers: Mutex<BTreeMap<u32, WorkerHandle>>,
    pub(crate) bus: Bus,
    /// The services registered in this primary (`crate::services`).
    pub(crate) services: crate::services::host::Registry,
    /// The library's own services, made on first use.
    pub(crate) slots: crate::services::Slots,
    pub(crate) table: Table,
    forker: Forker,
    pub(crate) registry_changed: Notify,
    /// The primary's own runtime (see [`runtime::start_runtime`]).
    pub(crate) rt: tokio::runtime::Handle,
    /// The page of doorbells its workers ring, watched by `rt`'s thread
    /// (`crate::channel::doorbell`); none when the watch is off or no
    /// memfd could be made.
    pub(crate) doorbells: Option<Arc<crate::channel::doorbell::Doorbells>>,
    /// The program path at start: a reload execs what is on disk there now.
    default_exec: Option<std::path::PathBuf>,
    /// Foreign workers' sockets and notification directory, once bound.
    foreign: Mutex<Option<Arc<foreign::State>>>,
}

impl Primary {
    /// Creates the primary with default settings. Call it inside a tokio
    /// runtime, in the primary process (see [`crate::role`]).
    ///
    /// # Errors
    /// [`Error::WrongRole`] when called in a worker process.
    pub fn new() -> Result<Primary, Error> {
        Primary::with_settings(Settings::default())
    }

    /// Creates the primary with `settings`.
    ///
    /// # Errors
    /// As [`Primary::new`], and [`Error::Io`] when its threads cannot start.
    pub fn with_settings(settings: impl Into<Settings>) -> Result<Primary, Error> {
        let settings = settings.into();
        if crate::role() == crate::Role::Worker {
            return Err(Error::WrongRole(format!(
                "Primary::new called in a worker process ({ENV_CHANNEL_FD} is set); use Worker::connect"
            )));
        }
        crate::logging::init();
        runtime::raise_open_files_limit();
        let (rt, doorbells) = runtime::start_runtime()?;
        tree::init(&rt);
        Ok(Primary {
            inner: Arc::new(Inner {
                settings: Mutex::new(settings),
                policy: OnceLock::new(),
                next_id: AtomicU32::new(1),
                workers: Mutex::new(BTreeMap::new()),
                bus: Bus::default(),
                services: Default::default(),
                slots: Default::default(),
                table: Table::default(),
                forker: Forker::start(rt.clone())?,
                rt,
                doorbells,
                registry_changed: Notify::new(),
                default_exec: std::env::current_exe().ok(),
                foreign: Mutex::new(None),
            }),
        })
    }

    /// Merges `settings` into those in force and emits [`Event::Setup`], as
    /// Node's `setupPrimary`.
    ///
    /// # Errors
    /// [`Error::PolicyFixed`] when `settings` asks for another scheduling
    /// policy than the one the first fork fixed (asking for the same one is
    /// fine); nothing is merged then.
    pub fn setup(&self, settings: impl Into<Settings>) -> Result<(), Error> {
        let settings = settings.into();
        let merged = {
            let mut s = self.inner.settings.lock().unwrap();
            // Checked under the settings' lock, which fixing the policy
            // takes too: a setup and a first fork never cross.
            if let (Some(&policy), Some(asked)) = (self.inner.policy.get(), settings.policy) {
                if asked != policy {
                    return Err(Error::PolicyFixed { policy, asked });
                }
            }
            s.merge(settings);
            s.clone()
        };
        self.inner.bus.emit(Event::Setup(self.shown(merged)));
        Ok(())
    }

    /// The settings in force, with what is left to its default filled in
    /// as a fork will use it: the program ([`Settings::exec`]: this
    /// program's own executable), its arguments ([`Settings::args`]: this
    /// program's own, without its name), its working directory
    /// ([`Settings::cwd`]: the primary's, now) and the scheduling policy
    /// ([`Settings::policy`]: see [`policy`](Self::policy)). Pass them back
    /// to [`setup`](Self::setup) and they become settings of their own: the
    /// directory is then entered at each fork, where a defaulted one is
    /// inherited (which a worker run as another user may need).
    pub fn settings(&self) -> Settings {
        let raw = self.inner.settings.lock().unwrap().clone();
        self.shown(raw)
    }

    /// `s` as [`settings`](Self::settings) shows it: the defaults a fork
    /// uses filled in, the working directory too.
    fn shown(&self, s: Settings) -> Settings {
        let mut s = self.with_defaults(s);
        if s.cwd.is_none() {
            // What a fork inherits.
            s.cwd = std::env::current_dir().ok();
        }
        s
    }

    /// `s` with the program, its arguments and the policy filled in: what
    /// the spawn path reads, so that what is shown is what is used. (The
    /// working directory is left as set: a worker not given one inherits
    /// the primary's rather than entering it, which a worker run as another
    /// user might not be allowed to.)
    pub(super) fn with_defaults(&self, mut s: Settings) -> Settings {
        if s.exec.is_none() {
            s.exec.clone_from(&self.inner.default_exec);
        }
        if s.args.is_none() {
            s.args = Some(std::env::args_os().skip(1).collect());
        }
        let fixed = self.inner.policy.get().copied();
        s.policy = Some(fixed.or(s.policy).unwrap_or_else(Policy::from_env));
        s
    }

    /// The scheduling policy: the one the settings name (else
    /// `HERD_SCHED_POLICY`, else `rr`), fixed by the first fork (or
    /// [`bind_foreign`](Self::bind_foreign)). Reading it fixes nothing: a
    /// `setup` before the first fork may still change it.
    pub fn policy(&self) -> Policy {
        if let Some(&p) = self.inner.policy.get() {
            return p;
        }
        let set = self.inner.settings.lock().unwrap().policy;
        set.unwrap_or_else(Policy::from_env)
    }

    /// Fixes the scheduling policy (the first time) and returns it: at the
    /// first fork, and when sockets are first bound for foreign workers.
    fn fix_policy(&self) -> Policy {
        if let Some(&p) = self.inner.policy.get() {
            return p;
        }
        // Fixed while holding the settings' lock, which `setup` checks
        // under: a setup either comes before (and its policy is the one
        // fixed) or after (and is checked against it), never between.
        let settings = self.inner.settings.lock().unwrap();
        *self
            .inner
            .policy
            .get_or_init(|| settings.policy.unwrap_or_else(Policy::from_env))
    }

    /// All events of the cluster, from now on.
    pub fn events(&self) -> Events {
        self.inner.bus.subscribe(None)
    }

    /// Starts a worker.
    ///
    /// Its events can be watched with [`WorkerHandle::events`], from the
    /// moment that is called; [`fork_with_events`](Self::fork_with_events)
    /// subscribes before the worker starts, to see all of them.
    ///
    /// # Errors
    /// [`Error::Exec`] naming the program when it cannot be started.
    pub fn fork(&self) -> Result<WorkerHandle, Error> {
        self.spawn(Vec::new(), None, false).map(|(w, _)| w)
    }

    /// Starts a worker with extra environment variables, as Node's
    /// `cluster.fork(env)`.
    ///
    /// # Errors
    /// [`Error::Exec`] naming the program when it cannot be started.
    pub fn fork_with_env<I, K, V>(&self, env: I) -> Result<WorkerHandle, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.spawn(env_of(env), None, false).map(|(w, _)| w)
    }

    /// Starts a worker, as [`fork`](Self::fork), and returns with its
    /// handle a subscription to its events made before it started: the
    /// stream begins with its [`Event::Fork`], then `Online`, `Listening`
    /// and the rest of its life up to `Exit`, and holds no other worker's
    /// events. (A [`WorkerHandle::events`] called after `fork` returns
    /// misses the `Fork`, and may miss more: the worker runs meanwhile.)
    ///
    /// ```no_run
    /// # async fn demo(primary: herd::Primary) -> Result<(), herd::Error> {
    /// let (worker, mut events) = primary.fork_with_events()?;
    /// while let Some(event) = events.next().await {
    ///     println!("worker {}: {}", worker.id(), event.name());
    ///     if let herd::Event::Exit { .. } = event {
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Primary::fork`].
    pub fn fork_with_events(&self) -> Result<(WorkerHandle, Events), Error> {
        self.forked_with_events(Vec::new())
    }

    /// [`fork_with_env`](Self::fork_with_env) and
    /// [`fork_with_events`](Self::fork_with_events) together.
    ///
    /// # Errors
    /// As [`Primary::fork`].
    pub fn fork_with_env_and_events<I, K, V>(&self, env: I) -> Result<(WorkerHandle, Events), Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.forked_with_events(env_of(env))
    }

    fn forked_with_events(
        &self,
        env: Vec<(OsString, OsString)>,
    ) -> Result<(WorkerHandle, Events), Error> {
        let (worker, events) = self.spawn(env, None, true)?;
        Ok((worker, events.expect("spawn subscribes when asked")))
    }

    /// Starts a worker that will replace `old`: with the `reuseport` policy
    /// it takes over `old`'s sockets, so connections queued there are served
    /// across the replacement. Disconnect `old` once the successor is ready.
    ///
    /// # Errors
    /// As [`Primary::fork`].
    pub fn fork_successor(&self, old: &WorkerHandle) -> Result<WorkerHandle, Error> {
        self.spawn(Vec::new(), Some(old.id()), false)
            .map(|(w, _)| w)
    }

    /// Binds the sockets of the foreign worker spec in the settings (see
    /// [`crate::foreign`]) now, rather than at the first fork, so that a
    /// bad address, a port in use or a missing permission is reported
    /// before any worker starts. Returns what was bound, in descriptor
    /// order; later calls return the same.
    ///
    /// # Errors
    /// [`Error::Listen`] naming the address (with a hint for EADDRINUSE and
    /// EACCES), [`Error::Unsupported`] for the `rr` and `lc` policies or
    /// when the settings have no foreign spec.
    pub fn bind_foreign(&self) -> Result<Vec<crate::foreign::Bound>, Error> {
        let spec = self.settings().foreign.ok_or_else(|| {
            Error::Unsupported(
                "bind_foreign needs a foreign worker spec in the settings (Settings::foreign)"
                    .into(),
            )
        })?;
        Ok(self.foreign_state(&spec)?.bound.clone())
    }

    fn foreign_state(&self, spec: &crate::foreign::Foreign) -> Result<Arc<foreign::State>, Error> {
        let _rt = self.inner.rt.enter();
        let mut slot = self.inner.foreign.lock().unwrap();
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let state = Arc::new(foreign::prepare(&self.inner, self.fix_policy(), spec)?);
        *slot = Some(state.clone());
        Ok(state)
    }

    /// Removes the files herd made for foreign workers (their notification
    /// sockets). Call it when the cluster is done.
    pub fn remove_foreign_files(&self) {
        if let Some(s) = self.inner.foreign.lock().unwrap().as_ref() {
            s.remove_files();
        }
    }

    /// Whether the primary's dispatch thread (which runs its side of every
    /// channel and socket) answers within `within`: a no-op is run on it.
    /// What a liveness probe asks.
    pub async fn responsive(&self, within: std::time::Duration) -> bool {
        let task = self.inner.rt.spawn(async {});
        matches!(tokio::time::timeout(within, task).await, Ok(Ok(())))
    }

    /// The live workers (not yet both disconnected and exited), by id.
    pub fn workers(&self) -> Vec<WorkerHandle> {
        self.inner
            .workers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    /// The live worker with this id.
    pub fn worker(&self, id: u32) -> Option<WorkerHandle> {
        self.inner.workers.lock().unwrap().get(&id).cloned()
    }

    /// Disconnects every worker gracefully and returns once all are gone
    /// (at once if there are none).
    pub async fn disconnect(&self) {
        self.until_all_gone(WorkerHandle::disconnect).await
    }

    /// Kills every worker with `signal` and returns once all are gone.
    pub async fn kill_all(&self, signal: Signal) {
        self.until_all_gone(|w| w.kill_with(signal)).await
    }

    /// Applies `act` to every live worker (again to any forked meanwhile)
    /// until the registry is empty.
    async fn until_all_gone(&self, act: impl Fn(&WorkerHandle)) {
        loop {
            let changed = self.inner.registry_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let workers = self.workers();
            if workers.is_empty() {
                return;
            }
            workers.iter().for_each(&act);
            changed.await;
        }
    }
}

/// A fork's extra environment, as the spawn path takes it.
fn env_of<I, K, V>(env: I) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<OsString>,
    V: Into<OsString>,
{
    env.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}
