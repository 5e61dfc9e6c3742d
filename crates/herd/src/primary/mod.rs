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

mod events;
mod foreign;
mod settings;
mod worker;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::channel::UnixStream;
use nix::sys::signal::Signal;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tokio::sync::{watch, Notify};

use crate::channel::wire::{Control, Kind, VERSION};
use crate::channel::{Frame, Outbox, Reader};
use crate::message::Message;
use crate::sched::{Policy, Table};
use crate::sys::{install_child_setup, ChildSetup};
use crate::{Error, ENV_CHANNEL_FD, ENV_HEARTBEAT_MS, ENV_WORKER_ID};
use events::Bus;
pub use events::{Event, Events};
pub use settings::{Readiness, Settings};
pub use worker::{WorkerHandle, WorkerState, WorkerStatus};

/// How a worker's process ended: an exit code or a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
            signal: s.signal().and_then(|n| Signal::try_from(n).ok()),
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
#[derive(Clone)]
pub struct Primary {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    settings: Mutex<Settings>,
    policy: OnceLock<Policy>,
    next_id: AtomicU32,
    workers: Mutex<BTreeMap<u32, WorkerHandle>>,
    pub(crate) bus: Bus,
    pub(crate) table: Table,
    forker: Forker,
    registry_changed: Notify,
    /// The primary's own runtime (see [`start_runtime`]).
    rt: tokio::runtime::Handle,
    signals_started: AtomicBool,
    /// The supervisor's command queue, once `supervise` runs.
    pub(crate) control: OnceLock<tokio::sync::mpsc::UnboundedSender<crate::supervise::Command>>,
    /// The program path at start: a reload execs what is on disk there now.
    default_exec: Option<std::path::PathBuf>,
    /// Foreign workers' sockets and notification directory, once bound.
    foreign: Mutex<Option<Arc<foreign::State>>>,
    /// Workers started per slot (for `restarts`).
    slot_starts: Mutex<Vec<u32>>,
}

impl Inner {
    pub(crate) fn remove(&self, id: u32) {
        self.workers.lock().unwrap().remove(&id);
        self.registry_changed.notify_waiters();
    }
}

impl Primary {
    /// Creates the primary with default settings. Call it inside a tokio
    /// runtime, in the primary process (see [`crate::role`]).
    ///
    /// # Errors
    /// [`Error::Role`] when called in a worker process.
    pub fn new() -> Result<Primary, Error> {
        Primary::with_settings(Settings::default())
    }

    /// Creates the primary with `settings`.
    pub fn with_settings(settings: Settings) -> Result<Primary, Error> {
        if crate::role() == crate::Role::Worker {
            return Err(Error::Role(format!(
                "Primary::new called in a worker process ({ENV_CHANNEL_FD} is set); use Worker::connect"
            )));
        }
        crate::logging::init();
        raise_open_files_limit();
        let runtime = start_runtime()?;
        Ok(Primary {
            inner: Arc::new(Inner {
                settings: Mutex::new(settings),
                policy: OnceLock::new(),
                next_id: AtomicU32::new(1),
                workers: Mutex::new(BTreeMap::new()),
                bus: Bus::default(),
                table: Table::default(),
                forker: Forker::start(runtime.clone()),
                rt: runtime,
                registry_changed: Notify::new(),
                signals_started: AtomicBool::new(false),
                control: OnceLock::new(),
                default_exec: std::env::current_exe().ok(),
                foreign: Mutex::new(None),
                slot_starts: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Merges `settings` into those in force and emits [`Event::Setup`], as
    /// Node's `setupPrimary`.
    pub fn setup(&self, settings: Settings) {
        let merged = {
            let mut s = self.inner.settings.lock().unwrap();
            s.merge(settings);
            s.clone()
        };
        self.inner.bus.emit(Event::Setup(merged));
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.inner.settings.lock().unwrap().clone()
    }

    /// The scheduling policy: fixed by the first fork.
    pub fn policy(&self) -> Policy {
        *self.inner.policy.get_or_init(|| {
            self.inner
                .settings
                .lock()
                .unwrap()
                .policy
                .unwrap_or_else(Policy::from_env)
        })
    }

    /// All events of the cluster, from now on.
    pub fn events(&self) -> Events {
        self.inner.bus.subscribe(None)
    }

    /// Starts a worker.
    pub fn fork(&self) -> Result<WorkerHandle, Error> {
        self.fork_with_env(std::iter::empty::<(OsString, OsString)>())
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
        self.fork_inner(env, None)
    }

    /// Starts a worker that will replace `old`: with the `reuseport` policy
    /// it takes over `old`'s sockets, so connections queued there are served
    /// across the replacement. Disconnect `old` once the successor is ready.
    pub fn fork_successor(&self, old: &WorkerHandle) -> Result<WorkerHandle, Error> {
        self.fork_inner(std::iter::empty::<(OsString, OsString)>(), Some(old.id()))
    }

    fn fork_inner<I, K, V>(&self, env: I, predecessor: Option<u32>) -> Result<WorkerHandle, Error>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        // Sockets, channels and their tasks belong to the primary's runtime.
        let _rt = self.inner.rt.enter();
        let _ = self.policy();
        self.start_signal_handling();
        let settings = self.settings();
        if let Some(spec) = settings.foreign.clone() {
            let env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
            // Bound before the id is taken, so a bind error wastes none.
            self.foreign_state(&spec)?;
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            return self.fork_foreign(id, &spec, env, predecessor);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let exec = match (&settings.exec, &self.inner.default_exec) {
            (Some(p), _) | (None, Some(p)) => p.clone(),
            (None, None) => {
                return Err(Error::Role(
                    "cannot find the current executable: set `exec` in the settings".into(),
                ))
            }
        };
        let args: Vec<OsString> = settings
            .args
            .clone()
            .unwrap_or_else(|| std::env::args_os().skip(1).collect());

        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::io("socketpair for the worker channel", e))?;

        let mut cmd = std::process::Command::new(&exec);
        cmd.args(&args)
            .env(ENV_WORKER_ID, id.to_string())
            .env(ENV_CHANNEL_FD, theirs.as_raw_fd().to_string())
            .env(
                ENV_HEARTBEAT_MS,
                settings.get_heartbeat().as_millis().to_string(),
            );
        for (k, v) in &settings.env {
            cmd.env(k, v);
        }
        for (k, v) in env {
            cmd.env(k.into(), v.into());
        }
        settings.apply_to(&mut cmd);
        install_child_setup(
            &mut cmd,
            ChildSetup {
                keep: vec![theirs.as_raw_fd()],
                moves: Vec::new(),
                parent_death_kill: true,
                parent_pid: std::process::id() as i32,
            },
        );
        let mut child = self.inner.forker.spawn(cmd).map_err(|source| Error::Exec {
            path: exec.clone(),
            source,
        })?;
        drop(theirs);
        let pid = child.id().unwrap_or(0);

        let stream = unix_stream(ours).map_err(|e| Error::io("worker channel", e))?;
        let outbox = Outbox::start(stream.clone());
        let handle = self.register(id, pid, outbox, &mut child, None, predecessor);
        tracing::debug!(worker = id, pid, exec = %exec.display(), "forked worker");
        self.inner.bus.emit(Event::Fork { worker: id });
        tokio::spawn(supervise(
            self.inner.clone(),
            handle.clone(),
            child,
            Reader::new(stream),
        ));
        Ok(handle)
    }

    /// Builds a worker's handle and enters it in the registry (the
    /// successor link first, before the worker can ask to listen).
    fn register(
        &self,
        id: u32,
        pid: u32,
        outbox: Arc<Outbox>,
        child: &mut tokio::process::Child,
        foreign: Option<Signal>,
        predecessor: Option<u32>,
    ) -> WorkerHandle {
        let mut workers = self.inner.workers.lock().unwrap();
        let slot = match predecessor.and_then(|p| workers.get(&p)) {
            Some(old) => old.slot(),
            None => {
                let used: std::collections::BTreeSet<usize> =
                    workers.values().map(|w| w.slot()).collect();
                (0..).find(|s| !used.contains(s)).unwrap_or(0)
            }
        };
        {
            let mut starts = self.inner.slot_starts.lock().unwrap();
            if starts.len() <= slot {
                starts.resize(slot + 1, 0);
            }
            starts[slot] += 1;
        }
        let (exit, _) = watch::channel(None);
        let handle = WorkerHandle {
            shared: Arc::new(worker::Shared {
                id,
                pid,
                outbox,
                life: Mutex::new(worker::Life {
                    state: WorkerState::None,
                    connected: true,
                    dead: false,
                    exited_after_disconnect: false,
                    disconnect_sent: false,
                    ready: false,
                }),
                primary: Arc::downgrade(&self.inner),
                exit,
                stdout: Mutex::new(child.stdout.take()),
                stderr: Mutex::new(child.stderr.take()),
                started: std::time::Instant::now(),
                beat: Mutex::new(None),
                foreign,
                slot,
                status_text: Mutex::new(None),
            }),
        };
        if let Some(old) = predecessor {
            // Registered before the successor can ask to listen.
            self.inner.table.set_successor(id, old);
        }
        workers.insert(id, handle.clone());
        handle
    }

    /// Binds the sockets of the foreign worker spec in the settings (see
    /// [`crate::foreign`]) now, rather than at the first fork, so that a
    /// bad address, a port in use or a missing permission is reported
    /// before any worker starts. Returns what was bound, in descriptor
    /// order; later calls return the same.
    ///
    /// # Errors
    /// [`Error::Listen`] naming the address (with a hint for EADDRINUSE and
    /// EACCES), [`Error::Unsupported`] for the `rr` and `lc` policies,
    /// [`Error::Role`] when the settings have no foreign spec.
    pub fn bind_foreign(&self) -> Result<Vec<crate::foreign::Bound>, Error> {
        let spec = self.settings().foreign.ok_or_else(|| {
            Error::Role("bind_foreign needs a foreign worker spec in the settings".into())
        })?;
        Ok(self.foreign_state(&spec)?.bound.clone())
    }

    fn foreign_state(&self, spec: &crate::foreign::Foreign) -> Result<Arc<foreign::State>, Error> {
        let _rt = self.inner.rt.enter();
        let mut slot = self.inner.foreign.lock().unwrap();
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let state = Arc::new(foreign::prepare(&self.inner, self.policy(), spec)?);
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

    /// A snapshot of every live worker, by id: state, memory, connections,
    /// restarts, what it reports. Reads /proc for memory (and for foreign
    /// workers' connections, the TCP table: on a busy machine that takes a
    /// while, so call it from a blocking-friendly context).
    pub fn status(&self) -> Vec<WorkerStatus> {
        let ports = self
            .inner
            .foreign
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.ports.clone())
            .unwrap_or_default();
        let starts = self.inner.slot_starts.lock().unwrap().clone();
        let workers = self.workers();
        let inodes = if workers.iter().any(|w| w.is_foreign()) && !ports.is_empty() {
            Some(crate::procfs::tcp_connection_inodes(&ports))
        } else {
            None
        };
        workers
            .into_iter()
            .map(|w| {
                let beat = w.last_heartbeat();
                let rss = crate::procfs::rss_bytes(crate::procfs::Proc::Pid(w.pid()));
                let (connections, handled, status) = if w.is_foreign() {
                    let handled = beat.as_ref().map(|(_, b)| b.handled).filter(|h| *h > 0);
                    (
                        inodes
                            .as_ref()
                            .and_then(|i| crate::procfs::count_sockets(crate::procfs::Proc::Pid(w.pid()), i)),
                        handled,
                        w.shared.status_text.lock().unwrap().clone(),
                    )
                } else {
                    match &beat {
                        Some((_, b)) => (
                            Some(b.open),
                            Some(b.handled),
                            (!b.app.is_empty())
                                .then(|| serde_json::Value::Object(b.app.clone()).to_string()),
                        ),
                        None => (None, None, None),
                    }
                };
                WorkerStatus {
                    id: w.id(),
                    pid: w.pid(),
                    slot: w.slot(),
                    state: w.state().name().to_string(),
                    leaving: w.exited_after_disconnect(),
                    foreign: w.is_foreign(),
                    uptime_secs: w.started().elapsed().as_secs_f64(),
                    restarts: starts.get(w.slot()).copied().unwrap_or(1).saturating_sub(1),
                    rss_bytes: rss,
                    connections,
                    handled,
                    heartbeat_age_secs: beat.map(|(t, _)| t.elapsed().as_secs_f64()),
                    status,
                }
            })
            .collect()
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

    fn start_signal_handling(&self) {
        // Under `supervise`, the supervisor owns the signals.
        let on = self
            .inner
            .settings
            .lock()
            .unwrap()
            .handle_signals
            .unwrap_or(true)
            && self.inner.control.get().is_none();
        if !on || self.inner.signals_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let primary = self.clone();
        self.inner.rt.spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                tracing::warn!("cannot install SIGTERM/SIGINT handlers");
                return;
            };
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("{name}: disconnecting all workers (send it again to kill them)");
            tokio::select! {
                _ = primary.disconnect() => {
                    tracing::info!("all workers gone; exiting");
                    std::process::exit(0);
                }
                _ = async { tokio::select! { _ = term.recv() => (), _ = int.recv() => () } } => {
                    tracing::warn!("second signal: killing all workers");
                    let _ = tokio::time::timeout(Duration::from_secs(5), primary.kill_all(Signal::SIGKILL)).await;
                    std::process::exit(1);
                }
            }
        });
    }
}

pub(crate) fn unix_stream(fd: OwnedFd) -> std::io::Result<Arc<UnixStream>> {
    Ok(Arc::new(UnixStream::from_std(
        std::os::unix::net::UnixStream::from(fd),
    )?))
}

/// Watches one worker: its channel and its process. Emits `Disconnect` and
/// `Exit` exactly once each, in that order.
async fn supervise(
    inner: Arc<Inner>,
    w: WorkerHandle,
    mut child: tokio::process::Child,
    reader: Reader,
) {
    let mut read_task = tokio::spawn(read_loop(inner.clone(), w.clone(), reader));
    let mut read_done = false;
    let status = tokio::select! {
        _ = &mut read_task => {
            read_done = true;
            w.disconnected(&inner);
            child.wait().await
        }
        s = child.wait() => s,
    };
    if !read_done {
        // The process is gone; its end of the channel closes with it. Let the
        // reader take what the worker wrote before dying, but do not wait on
        // a descendant that may have inherited the descriptor.
        if tokio::time::timeout(Duration::from_secs(1), &mut read_task)
            .await
            .is_err()
        {
            read_task.abort();
        }
        w.disconnected(&inner);
    }
    let status = match status {
        Ok(s) => ExitStatus::from(s),
        Err(e) => {
            tracing::warn!(worker = w.id(), error = %e, "cannot wait for worker");
            ExitStatus::default()
        }
    };
    w.exited(&inner, status);
}

async fn read_loop(inner: Arc<Inner>, w: WorkerHandle, mut reader: Reader) {
    let mut online = false;
    loop {
        let result = match reader.next().await {
            Ok(Some(frame)) => on_frame(&inner, &w, &mut online, frame),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let e = match e {
                Error::Protocol(m) => Error::Protocol(format!("worker {}: {m}", w.id())),
                e => e,
            };
            tracing::warn!(worker = w.id(), error = %e, "dropping worker");
            inner.bus.emit(Event::Error {
                worker: w.id(),
                error: Arc::new(e),
            });
            w.signal(Signal::SIGKILL);
            return;
        }
    }
}

fn on_frame(inner: &Inner, w: &WorkerHandle, online: &mut bool, frame: Frame) -> Result<(), Error> {
    if frame.kind == Kind::User {
        if !*online {
            return Err(Error::Protocol("message before hello".into()));
        }
        inner.bus.emit(Event::Message {
            worker: w.id(),
            message: Message::new(frame.body),
        });
        return Ok(());
    }
    let control = frame.control()?;
    if !*online {
        return match control {
            Control::Hello {
                version: VERSION, ..
            } => {
                *online = true;
                w.online(inner);
                Ok(())
            }
            Control::Hello { version, .. } => Err(Error::Protocol(format!(
                "worker speaks protocol version {version}, this primary speaks {VERSION}"
            ))),
            other => Err(Error::Protocol(format!("expected hello, got {other:?}"))),
        };
    }
    let link = crate::sched::Link {
        id: w.id(),
        handoff: true,
    };
    match control {
        Control::Listen {
            seq,
            addr,
            index,
            options,
        } => {
            let policy = *inner.policy.get().unwrap_or(&Policy::RoundRobin);
            let (reply, fds) = inner
                .table
                .listen(policy, &link, seq, &addr, index, options);
            let _ = w.shared.outbox.control(&reply, fds);
        }
        Control::Listening { handle } => {
            if let Some(address) = inner.table.listening(&link, handle) {
                w.listening(inner, address);
                if inner.settings.lock().unwrap().get_readiness() == Readiness::Listening {
                    w.ready(inner);
                }
            }
        }
        Control::Ready => {
            if inner.settings.lock().unwrap().get_readiness() == Readiness::Explicit {
                w.ready(inner);
            }
        }
        Control::Heartbeat(beat) => w.heartbeat(beat),
        Control::Unlisten { handle } => inner.table.unlisten(w.id(), handle),
        Control::Closed { handle, n } => inner.table.closed(w.id(), handle, n),
        Control::Disconnecting => {
            w.mark_leaving();
            inner.table.stop_routing(w.id());
        }
        other => {
            return Err(Error::Protocol(format!(
                "worker sent a primary-only message: {other:?}"
            )))
        }
    }
    Ok(())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, as Go's
/// runtime does: connections waiting in workers' queues count against it
/// (the kernel's limit on descriptors in flight), and workers inherit it.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the open-files limit"),
    }
}

/// Starts the primary's own runtime: one thread, current-thread flavour,
/// that runs everything on the primary's side of the channels (readers,
/// writers, accept loops, process reaping), as Node's primary runs on one
/// event loop. Whatever runtime the application chose, a connection handed
/// to a worker then costs no wake-up of a second runtime thread; measured by
/// `bench/run.sh connrate`, that is a fifth of the primary's CPU per
/// connection. The application's own tasks (and the supervisor) stay on its
/// runtime: they talk to this one through thread-safe queues.
///
/// The thread runs in the `SCHED_BATCH` class (unless `HERD_PRIMARY_SCHED`
/// is `normal`): woken by a new connection while every CPU is busy, it does
/// not preempt a worker (or the client); it waits for its turn (a CPU that
/// frees, or the end of the running task's slice), and by then accepts and
/// hands off several connections for one wake-up. On an
/// idle CPU it runs at once, as before. Measured by `bench/run.sh connrate`
/// (docs/benchmarks.md): a third less CPU per connection, and more
/// requests per second with lower latency, as the workers are interrupted
/// less. Workers are forked from another thread and do not inherit it.
fn start_runtime() -> Result<tokio::runtime::Handle, Error> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    let batch = std::env::var("HERD_PRIMARY_SCHED").map_or(true, |v| v.trim() != "normal");
    std::thread::Builder::new()
        .name("herd-primary".into())
        .spawn(move || {
            if batch {
                if let Err(e) = crate::sys::set_thread_batch_scheduling() {
                    tracing::debug!(error = %e, "cannot put the herd-primary thread in SCHED_BATCH");
                }
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(std::future::pending::<()>());
        })
        .map_err(|e| Error::io("cannot start the herd-primary thread", e))?;
    rx.recv()
        .map_err(|_| Error::Role("the herd-primary thread died at start".into()))?
        .map_err(|e| Error::io("cannot build the primary's runtime", e))
}

type SpawnReply = std_mpsc::SyncSender<std::io::Result<tokio::process::Child>>;

/// Forks from one dedicated thread that lives as long as the process, so
/// that the children's parent-death signal (which fires when the forking
/// *thread* exits) only fires when the primary itself dies.
struct Forker {
    tx: Mutex<std_mpsc::Sender<(std::process::Command, SpawnReply)>>,
}

impl Forker {
    fn start(runtime: tokio::runtime::Handle) -> Forker {
        let (tx, rx) = std_mpsc::channel::<(std::process::Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("herd-forker".into())
            .spawn(move || {
                let _guard = runtime.enter();
                for (cmd, reply) in rx {
                    let _ = reply.send(tokio::process::Command::from(cmd).spawn());
                }
                // The primary is gone but the process lives on: park forever,
                // keeping this thread (the children's parent) alive with it.
                loop {
                    std::thread::park();
                }
            })
            .expect("cannot start the herd-forker thread");
        Forker { tx: Mutex::new(tx) }
    }

    /// Spawns `cmd` on the forker thread. Blocks the caller for the time of
    /// fork and exec (well under a millisecond), as Node's `fork` does.
    fn spawn(&self, cmd: std::process::Command) -> std::io::Result<tokio::process::Child> {
        let gone = || std::io::Error::other("the herd-forker thread is gone");
        let (reply, rx) = std_mpsc::sync_channel(1);
        self.tx
            .lock()
            .unwrap()
            .send((cmd, reply))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}
