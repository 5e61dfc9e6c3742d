//! The supervisor: keeps the wanted number of workers up and replaces them
//! without dropping a request. It is a client of the core: it reads the
//! primary's [`Event`]s and calls `fork`, `disconnect` and `kill`, nothing
//! more. A [`Supervisor`] is its handle; it owns the cluster's state
//! ([`ClusterStatus`]) and says what it does as [`SupervisorEvent`]s.
//!
//! - **Respawn** by [`Restart`] policy with exponential backoff; a slot whose
//!   worker dies [`Supervision::crash_limit`] times within the crash window
//!   without becoming ready (or exits with [`EXIT_CANNOT_BOOT`]) is left
//!   down ([`SupervisorEvent::BreakerTripped`]). When every slot is down,
//!   the supervisor gives up: it shuts down and `run` returns 1. When every
//!   worker exited and the policy starts none again (`on-failure` after
//!   exits 0, `never`), the cluster ends too: `run` returns 0 if each
//!   exited 0, else 1.
//! - **Successor first**: every replacement (reload, hung worker, recycling)
//!   starts the new worker, waits until it is ready, then disconnects the old
//!   one, [`Supervision::surge`] at a time. A successor that fails to become
//!   ready aborts a reload; the old workers keep serving.
//! - **Nanny**: a ready worker whose heartbeat is missing for
//!   [`Supervision::heartbeat_timeout`] is replaced, then killed.
//! - **Recycling** by age, connections handled (with jitter) or memory.
//! - **Signals** (unless [`Supervision::handle_signals`] is off): TERM/INT
//!   shut down gracefully (a second one, a second or more later, kills;
//!   one sent to herd and to its process group at once is one), HUP reloads, TTIN/TTOU add
//!   or remove a worker.
//! - **systemd**: READY=1, RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1
//!   to the service manager ([`Supervision::systemd`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::Error> {
//! use std::time::Duration;
//! use herd::{Primary, Supervision, Supervisor};
//!
//! let primary = Primary::new()?;
//! let sup = Supervisor::new(primary, Supervision::new(4).grace(Duration::from_secs(30)));
//! let mut events = sup.events();
//! tokio::spawn(async move {
//!     while let Some(event) = events.next().await {
//!         println!("{event}");
//!     }
//! });
//! // Later, from anywhere: a rolling restart, awaited to its end.
//! let handle = sup.clone();
//! tokio::spawn(async move {
//!     match handle.reload().await {
//!         Ok(done) => println!("{} workers replaced in {:?}", done.replaced, done.took),
//!         Err(e) => eprintln!("{e}"),
//!     }
//! });
//! let code = sup.run().await;
//! std::process::exit(code);
//! # }
//! ```

mod breaker;
mod config;
mod core;
mod events;
mod health;
mod judge;
mod machine;
mod notify;
mod replace;
mod signals;
mod status;
mod statuses;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::Signal;
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{Restart, Supervision, EXIT_CANNOT_BOOT};
pub use events::{
    ClusterEvent, ClusterEvents, RecycleReason, ReloadPhase, SupervisorEvent, SupervisorEvents,
};
pub use judge::{Degraded, WorkerHealth};
pub use status::{
    ClusterStatus, Health, LastExit, ReloadStatus, ReloadTotals, SlotState, SlotStatus,
};

use crate::primary::{Event, Primary};
use events::Emitter;
use machine::Machine;
use notify::Notify;
use status::Snapshot;

/// A finished reload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadDone {
    /// Workers replaced.
    pub replaced: usize,
    /// From the start of the reload to its last replacement.
    pub took: Duration,
}

/// Why a reload did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A successor failed (exited, or was not ready in time), or could not
    /// be started; the old workers keep serving.
    #[error("reload aborted: {reason}")]
    Aborted {
        /// Why.
        reason: String,
    },
    /// The cluster is shutting down (or the supervisor is gone).
    #[error("the cluster is shutting down")]
    Stopping,
}

/// A reload under way, from [`Supervisor::reload`]: resolves when the
/// supervisor considers it finished. Dropping it cancels nothing.
#[derive(Debug)]
pub struct Reload {
    rx: oneshot::Receiver<Result<ReloadDone, ReloadError>>,
}

impl Future for Reload {
    type Output = Result<ReloadDone, ReloadError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ReloadError::Stopping)))
    }
}

/// What the handle sends to the running supervisor.
enum Command {
    Reload(Option<oneshot::Sender<Result<ReloadDone, ReloadError>>>),
    Scale(usize),
    /// One worker more or less (a signal).
    ScaleBy {
        delta: isize,
        signal: &'static str,
    },
    Shutdown,
    /// A stop signal: graceful the first time, a kill after that.
    Terminate {
        signal: &'static str,
    },
    Kill,
    /// Mark the host down (true) or up.
    MarkDown(bool),
}

/// The supervisor of a cluster: cheap to clone, every clone the same
/// supervisor. [`new`](Self::new) starts nothing; [`run`](Self::run)
/// drives the cluster until it is shut down. Commands sent before `run`
/// wait for it.
#[derive(Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
}

struct Shared {
    primary: Primary,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Sender<Arc<Snapshot>>,
    emitter: Arc<Emitter>,
    /// What `run` takes, once.
    parts: Mutex<Option<Parts>>,
}

struct Parts {
    machine: Machine<Primary>,
    commands: mpsc::UnboundedReceiver<Command>,
    notify: Notify,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.state.borrow();
        f.debug_struct("Supervisor")
            .field("wanted", &s.status.wanted)
            .field("ready", &s.status.ready)
            .field("stopping", &s.status.stopping)
            .finish()
    }
}

impl Supervisor {
    /// A supervisor of `primary`'s workers, as `cfg` says. Starts nothing;
    /// reads the service manager from the environment now, unless
    /// [`Supervision::systemd`] named one.
    pub fn new(primary: Primary, cfg: Supervision) -> Supervisor {
        let manager = match &cfg.systemd {
            config::Systemd::FromEnv => crate::systemd::ServiceManager::from_env().map(Arc::new),
            config::Systemd::Given(m) => m.clone(),
        };
        let emitter = Arc::new(Emitter::default());
        let now = Instant::now();
        let machine = Machine::new(cfg, primary.clone(), emitter.clone(), now);
        let (state, _) = watch::channel(Arc::new(machine.snapshot(now)));
        statuses::register_replace_queue(&primary, &state);
        let (tx, rx) = mpsc::unbounded_channel();
        Supervisor {
            shared: Arc::new(Shared {
                primary,
                commands: tx,
                state,
                emitter,
                parts: Mutex::new(Some(Parts {
                    machine,
                    commands: rx,
                    notify: Notify::new(manager),
                })),
            }),
        }
    }

    /// The primary supervised.
    pub fn primary(&self) -> &Primary {
        &self.shared.primary
    }

    /// Starts a rolling restart: each worker is replaced by a new one
    /// started from the program on disk, successor first, as many at once
    /// as [`Supervision::surge`]. The command is sent now; the returned
    /// future resolves when the reload finished or was aborted, and
    /// dropping it cancels nothing. A reload asked while one runs runs
    /// after it (several asked meanwhile make one).
    ///
    /// # Errors
    /// The future gives [`ReloadError::Aborted`] when a successor failed,
    /// [`ReloadError::Stopping`] when the cluster shuts down first.
    pub fn reload(&self) -> Reload {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Reload(Some(tx)));
        Reload { rx }
    }

    /// Keeps `workers` workers (at least 1): new slots start at once,
    /// removed ones (empty slots first, then the newest) disconnect
    /// gracefully. Watch [`status`](Self::status) for the result.
    pub fn scale(&self, workers: usize) {
        self.send(Command::Scale(workers));
    }

    /// Shuts the cluster down gracefully: every worker is asked to
    /// disconnect and given [`Supervision::grace`]; `run` returns when
    /// they are gone.
    pub fn shutdown(&self) {
        self.send(Command::Shutdown);
    }

    /// Marks the host down: health answers "draining" (a load balancer
    /// polling it stops sending new traffic) while every worker keeps
    /// serving, until [`mark_up`](Self::mark_up).
    pub fn mark_down(&self) {
        self.send(Command::MarkDown(true));
    }

    /// Marks the host up again after [`mark_down`](Self::mark_down).
    pub fn mark_up(&self) {
        self.send(Command::MarkDown(false));
    }

    /// Waits until the status says the host is marked `down` (or up), as
    /// asked just before: what a caller that then reads health needs.
    /// Bounded (2 s), and at once when the supervisor is not running.
    pub async fn marked(&self, down: bool) {
        let mut rx = self.shared.state.subscribe();
        let wait = rx.wait_for(|s| s.status.marked_down == down);
        let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
    }

    /// Kills every worker now (what a second TERM does); `run` returns 1.
    pub fn kill(&self) {
        self.send(Command::Kill);
    }

    /// The cluster now: the supervisor's view and the core's view of each
    /// worker. Reads /proc (see [`Primary::status`]): call it from a
    /// blocking-friendly context.
    pub fn status(&self) -> ClusterStatus {
        let snapshot = self.shared.state.borrow().clone();
        snapshot.complete(self.shared.primary.status(), Instant::now())
    }

    /// The supervisor's view alone (no /proc read): cheap, for a health
    /// answer.
    #[cfg_attr(not(feature = "monitor"), allow(dead_code))]
    pub(crate) fn state(&self) -> ClusterStatus {
        let snapshot = self.shared.state.borrow().clone();
        snapshot.complete(Vec::new(), Instant::now())
    }

    /// The supervisor's events from now on (subscribe before
    /// [`run`](Self::run) to see them all).
    pub fn events(&self) -> SupervisorEvents {
        self.shared.emitter.subscribe()
    }

    /// The core's events and the supervisor's in one stream, in the order
    /// the supervisor took and made them: a `Recycle` comes before its
    /// successor's `Fork`, a successor's `Ready` before the `Replaced` it
    /// caused. The core's events come once `run` runs.
    pub fn cluster_events(&self) -> ClusterEvents {
        self.shared.emitter.subscribe_all()
    }

    fn send(&self, command: Command) {
        // Fails only once `run` has returned: then a reload's future says
        // the cluster is stopping, and nothing else matters.
        let _ = self.shared.commands.send(command);
    }

    /// Drives the cluster until it is shut down ([`shutdown`],
    /// [`kill`], a signal, giving up when every slot is down, or every
    /// worker gone with the restart policy starting none again) and
    /// returns the exit code for the process: 0 when every worker left
    /// within the grace period (or all exited 0 by themselves), 1 when
    /// some were killed, one failed for good or the supervisor gave up. It runs once: a second call returns 1 at once. It never
    /// exits the process.
    ///
    /// [`shutdown`]: Self::shutdown
    /// [`kill`]: Self::kill
    pub async fn run(self) -> i32 {
        let parts = self.shared.parts.lock().unwrap().take();
        let Some(parts) = parts else {
            tracing::error!("the supervisor is already running (or has run): it runs once");
            return 1;
        };
        drive(self.shared.clone(), parts).await
    }
}

type Waiter = (u64, oneshot::Sender<Result<ReloadDone, ReloadError>>);

/// The shell around the state machine: core events, commands, ticks and
/// the next due respawn in, `Instant::now()` with each, and after each step
/// the status published and systemd told.
async fn drive(shared: Arc<Shared>, parts: Parts) -> i32 {
    let Parts {
        mut machine,
        mut commands,
        mut notify,
    } = parts;
    let primary = shared.primary.clone();
    let mut core = primary.events();
    let signals = machine
        .config()
        .handle_signals
        .then(|| signals::spawn(shared.commands.clone()));
    let grace = machine.config().grace;
    let drain_delay = machine.config().drain_delay;
    let mut waiters: Vec<Waiter> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watchdog = notify.watchdog_every().map(tokio::time::interval);
    let (kill, killed) = watch::channel(false);
    let mut draining: Option<Pin<Box<dyn Future<Output = bool> + Send>>> = None;

    machine.start(Instant::now());
    let clean = loop {
        publish(&shared, &mut machine, &mut notify, &mut waiters);
        if machine.stopping() && draining.is_none() {
            // Health says "draining" from now (published above); the
            // workers keep serving through the drain delay, then leave.
            draining = Some(Box::pin(stop_workers(
                primary.clone(),
                drain_delay,
                grace,
                killed.clone(),
            )));
        }
        let due = machine.next_due();
        tokio::select! {
            Some(ev) = core.next() => take(&shared, &mut machine, &ev),
            Some(command) = commands.recv() => {
                let now = Instant::now();
                match command {
                    Command::Reload(reply) => match (machine.reload(now), reply) {
                        (Ok(id), Some(reply)) => waiters.push((id, reply)),
                        (Ok(_), None) => {}
                        (Err(e), Some(reply)) => { let _ = reply.send(Err(e)); }
                        (Err(e), None) => tracing::info!("not reloading: {e}"),
                    },
                    Command::Scale(n) => machine.scale(n, now),
                    Command::ScaleBy { delta, signal } => {
                        let n = machine.wanted().saturating_add_signed(delta).max(1);
                        if !machine.stopping() {
                            tracing::info!("{signal}: scaling to {n} workers");
                            machine.scale(n, now);
                        }
                    }
                    Command::Shutdown => machine.stop(now),
                    Command::Terminate { signal } if machine.stopping() => {
                        tracing::warn!("{signal} again: killing the workers now");
                        let _ = kill.send(true);
                    }
                    Command::Terminate { signal } => {
                        tracing::info!("{signal}: shutting down");
                        machine.stop(now);
                    }
                    Command::Kill => {
                        machine.stop(now);
                        let _ = kill.send(true);
                    }
                    Command::MarkDown(down) => machine.mark_down(down, now),
                }
            }
            _ = sleep_until(due), if due.is_some() => machine.tick(Instant::now()),
            _ = tick.tick() => machine.tick(Instant::now()),
            _ = next_watchdog(&mut watchdog) => notify.watchdog(),
            clean = async { draining.as_mut().unwrap().await }, if draining.is_some() => break clean,
        }
    };
    // The last exits, for the last status.
    while let Some(ev) = core.try_next() {
        take(&shared, &mut machine, &ev);
    }
    publish(&shared, &mut machine, &mut notify, &mut waiters);
    for (_, reply) in waiters {
        let _ = reply.send(Err(ReloadError::Stopping));
    }
    if let Some(signals) = signals {
        signals.abort();
    }
    shared.emitter.close();
    if clean && !machine.gave_up() {
        0
    } else {
        1
    }
}

/// One of the core's events: passed on to the merged stream, then decided
/// on.
fn take(shared: &Shared, machine: &mut Machine<Primary>, ev: &Event) {
    shared.emitter.core(ev);
    machine.on_event(ev, Instant::now());
}

/// After a step: the status published (first: systemd's READY=1 must not
/// come before the status that says so), systemd told, finished reloads
/// answered.
fn publish(
    shared: &Shared,
    machine: &mut Machine<Primary>,
    notify: &mut Notify,
    waiters: &mut Vec<Waiter>,
) {
    let snapshot = Arc::new(machine.snapshot(Instant::now()));
    shared.state.send_replace(snapshot.clone());
    notify.step(&machine.take_emitted(), &snapshot.status);
    for (id, outcome) in machine.take_outcomes() {
        let (done, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
            .into_iter()
            .partition(|(w, _)| *w == id);
        *waiters = waiting;
        for (_, reply) in done {
            let _ = reply.send(outcome.clone());
        }
    }
}

/// After `drain_delay`, disconnects every worker; kills those left after
/// `grace`, or at once when `kill` says so. True when all left in time.
async fn stop_workers(
    primary: Primary,
    drain_delay: Duration,
    grace: Duration,
    mut kill: watch::Receiver<bool>,
) -> bool {
    if !drain_delay.is_zero() {
        tracing::info!(
            "health says draining; disconnecting the workers in {}",
            crate::supervise::events::human(drain_delay)
        );
        tokio::select! {
            _ = tokio::time::sleep(drain_delay) => {}
            _ = kill.wait_for(|k| *k) => {}
        }
    }
    tracing::info!(
        "disconnecting all workers (grace {}; signal again to kill them now)",
        crate::supervise::events::human(grace)
    );
    let clean = tokio::select! {
        r = tokio::time::timeout(grace, primary.disconnect()) => r.is_ok(),
        _ = kill.wait_for(|k| *k) => false,
    };
    if !clean {
        tracing::warn!("workers still running; killing them");
        let _ =
            tokio::time::timeout(Duration::from_secs(5), primary.kill_all(Signal::SIGKILL)).await;
    }
    clean
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn next_watchdog(every: &mut Option<tokio::time::Interval>) {
    match every {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
