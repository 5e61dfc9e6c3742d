//! The supervisor's decisions: a state machine over the worker slots. It is
//! told what happened (the core's `Ready` and `Exit`, a tick, a command),
//! always with the time `now`, and acts through a [`Core`]. No runtime, no
//! clock of its own: the unit tests drive it with later `Instant`s.
//!
//! Over 500 lines: the slot states and the machine's fields are one
//! definition each, and belong together; what the machine does is split
//! by concept into the files of `machine/`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::breaker::Breaker;
use super::config::Supervision;
use super::core::{Core, Kill};
use super::events::{Emitter, RecycleReason, SupervisorEvent};
use super::health::Jitter;
use super::replace::ReplaceQueue;
use super::status::Health;
use super::{ReloadDone, ReloadError};
use crate::primary::{Event, ExitStatus};

/// Where a slot's worker is in its boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boot {
    Booting,
    Ready,
    /// Killed for not being ready within the boot timeout.
    Overdue,
}

/// A slot's worker.
#[derive(Debug, Clone, Copy)]
struct Current {
    id: u32,
    boot: Boot,
    /// Connections after which it is recycled.
    recycle_after: Option<u64>,
}

impl Current {
    fn ready(&self) -> bool {
        self.boot == Boot::Ready
    }
}

/// Why a worker is replaced.
#[derive(Debug, Clone)]
enum Why {
    Reload,
    Recycle(RecycleReason),
}

impl Why {
    fn is_reload(&self) -> bool {
        matches!(self, Why::Reload)
    }
    fn is_hung(&self) -> bool {
        matches!(self, Why::Recycle(RecycleReason::Hung { .. }))
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Why::Reload => f.write_str("reload"),
            Why::Recycle(r) => write!(f, "{r}"),
        }
    }
}

/// The predecessor of a booting successor.
#[derive(Debug, Clone, Copy)]
enum Old {
    Running(Current),
    /// It died meanwhile: the slot waits for the successor.
    Died(u32),
}

impl Old {
    fn id(&self) -> u32 {
        match self {
            Old::Running(c) => c.id,
            Old::Died(id) => *id,
        }
    }
}

/// Where a slot is. Each transition is one assignment.
#[derive(Debug, Clone)]
enum State {
    /// Not started yet.
    Pending,
    /// No worker, and the restart policy starts none.
    Stopped,
    /// A worker starts again at `at`.
    Backoff { at: Instant },
    /// Left down by the breaker.
    Broken,
    /// Its worker runs.
    Up(Current),
    /// Its worker waits for its turn to be replaced.
    Queued { old: Current, why: Why },
    /// Its successor boots.
    Replacing {
        old: Old,
        why: Why,
        successor: u32,
        since: Instant,
    },
}

impl State {
    /// The slot's own worker, if it has one running.
    fn current(&self) -> Option<&Current> {
        match self {
            State::Up(c)
            | State::Queued { old: c, .. }
            | State::Replacing {
                old: Old::Running(c),
                ..
            } => Some(c),
            _ => None,
        }
    }

    fn current_mut(&mut self) -> Option<&mut Current> {
        match self {
            State::Up(c)
            | State::Queued { old: c, .. }
            | State::Replacing {
                old: Old::Running(c),
                ..
            } => Some(c),
            _ => None,
        }
    }

    fn why(&self) -> Option<&Why> {
        match self {
            State::Queued { why, .. } | State::Replacing { why, .. } => Some(why),
            _ => None,
        }
    }
}

struct Slot {
    state: State,
    breaker: Breaker,
    /// The delay before the next try after a fork that failed for want of
    /// resources (EAGAIN, ENOMEM, EMFILE...): doubles up to the backoff cap.
    fork_backoff: Option<std::time::Duration>,
    restarts: u32,
    reloads: u32,
    last_exit: Option<(u32, ExitStatus, String, Instant)>,
}

/// A predecessor on its way out.
struct Retiring {
    slot: usize,
    /// When to kill it; `None` once killed.
    kill_at: Option<Instant>,
    why: String,
}

struct DrainReload {
    id: u64,
    at: Instant,
    begun: bool,
}

struct ReloadRun {
    id: u64,
    started: Instant,
    total: usize,
    replaced: usize,
}

pub(crate) struct Machine<C> {
    core: C,
    cfg: Supervision,
    emit: Arc<Emitter>,
    slots: BTreeMap<usize, Slot>,
    queue: ReplaceQueue,
    retiring: HashMap<u32, Retiring>,
    reload: Option<ReloadRun>,
    /// The reload asked for while one ran: it runs next.
    next_reload: Option<u64>,
    reload_ids: u64,
    outcomes: Vec<(u64, Result<ReloadDone, ReloadError>)>,
    emitted: Vec<SupervisorEvent>,
    stopping: bool,
    gave_up: bool,
    /// Marked down by an operator.
    marked_down: bool,
    /// A reload through health, marked down for it: it begins at `at`
    /// (after the drain delay) and the mark lifts when it ends.
    drain_reload: Option<DrainReload>,
    /// The health verdict after the last step.
    health: Health,
    /// Each worker's course, for the degraded rule.
    declines: HashMap<u32, super::judge::Decline>,
    /// Workers started to replace another, by why: `crash`, `reload`, or
    /// a recycle's kind (`age`, `requests`, `memory`, `hung`, `degraded`,
    /// `app`).
    replacements: std::collections::BTreeMap<&'static str, u64>,
    /// Reloads that finished, that were aborted, and the seconds the
    /// finished ones took in all.
    reloads: super::status::ReloadTotals,
    /// Whether every wanted worker was ready after the last step.
    full: bool,
    jitter: Jitter,
    born: Instant,
    fork_failures: ForkFailures,
}

impl<C: Core> Machine<C> {
    pub fn new(cfg: Supervision, core: C, emit: Arc<Emitter>, now: Instant) -> Self {
        let slots = (0..cfg.workers).map(|i| (i, Slot::new())).collect();
        Machine {
            core,
            queue: ReplaceQueue::new(cfg.surge),
            jitter: Jitter::new(u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15),
            cfg,
            emit,
            slots,
            retiring: HashMap::new(),
            reload: None,
            next_reload: None,
            reload_ids: 0,
            outcomes: Vec::new(),
            emitted: Vec::new(),
            stopping: false,
            gave_up: false,
            marked_down: false,
            drain_reload: None,
            health: Health::Down,
            declines: HashMap::new(),
            replacements: std::collections::BTreeMap::new(),
            reloads: super::status::ReloadTotals::default(),
            full: false,
            born: now,
            fork_failures: ForkFailures::default(),
        }
    }

    pub fn config(&self) -> &Supervision {
        &self.cfg
    }

    pub fn wanted(&self) -> usize {
        self.cfg.workers
    }

    pub fn stopping(&self) -> bool {
        self.stopping
    }

    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// The earliest respawn (or reload through health) due, which should
    /// not wait for the next tick (now, while slots wait for their first
    /// worker).
    pub fn next_due(&self) -> Option<Instant> {
        if !self.stopping
            && self
                .slots
                .values()
                .any(|s| matches!(s.state, State::Pending))
        {
            return Some(Instant::now());
        }
        let drain = self
            .drain_reload
            .as_ref()
            .filter(|d| !d.begun)
            .map(|d| d.at);
        self.slots
            .values()
            .filter_map(|s| match s.state {
                State::Backoff { at } => Some(at),
                _ => None,
            })
            .chain(drain)
            .min()
    }

    /// The reloads that ended since the last call, by id.
    pub fn take_outcomes(&mut self) -> Vec<(u64, Result<ReloadDone, ReloadError>)> {
        std::mem::take(&mut self.outcomes)
    }

    /// The events emitted since the last call.
    pub fn take_emitted(&mut self) -> Vec<SupervisorEvent> {
        std::mem::take(&mut self.emitted)
    }

    fn emit(&mut self, ev: SupervisorEvent) {
        self.emitted.push(ev.clone());
        self.emit.supervisor(ev);
    }

    // ---- what happens ----

    /// Starts the slots' first workers, [`SPAWN_BATCH`] now and the rest
    /// at the next steps ([`tick`](Self::tick)).
    pub fn start(&mut self, now: Instant) {
        self.spawn_pending();
        self.settle(now);
    }

    /// Starts up to [`SPAWN_BATCH`] slots that wait for their first worker.
    fn spawn_pending(&mut self) {
        let pending: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Pending))
            .map(|(k, _)| *k)
            .take(SPAWN_BATCH)
            .collect();
        for slot in pending {
            self.spawn(slot, false);
        }
    }

    /// One of the core's events.
    pub fn on_event(&mut self, ev: &Event, now: Instant) {
        match *ev {
            Event::Ready { worker } => self.on_ready(worker, now),
            Event::Exit {
                worker,
                status,
                exited_after_disconnect,
            } => self.on_exit(worker, status, exited_after_disconnect, now),
            _ => return,
        }
        self.settle(now);
    }

    /// Time passed: respawns due, boot timeouts, grace periods, the nanny
    /// and the recyclers.
    pub fn tick(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.spawn_pending();
        let due: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Backoff { at } if at <= now))
            .map(|(k, _)| *k)
            .take(SPAWN_BATCH)
            .collect();
        for slot in due {
            self.spawn(slot, true);
        }
        self.check_boots(now);
        for (id, r) in &mut self.retiring {
            if r.kill_at.is_some_and(|t| t <= now) {
                tracing::warn!(
                    worker = id,
                    "worker {id} still running after the grace period; killing it"
                );
                self.core.kill(*id, Kill::Deliberate);
                r.kill_at = None;
            }
        }
        self.check_health(now);
        if let Some(d) = self
            .drain_reload
            .as_mut()
            .filter(|d| !d.begun && d.at <= now)
        {
            d.begun = true;
            let id = d.id;
            if self.reload.is_none() {
                self.begin_reload(id, now);
            } else {
                self.next_reload = Some(id);
            }
        }
        self.settle(now);
    }

    /// Asks for a rolling restart; returns the id its outcome will carry.
    /// One asked while another runs runs after it (asked several times
    /// meanwhile, it runs once).
    pub fn reload(&mut self, now: Instant) -> Result<u64, ReloadError> {
        if self.stopping {
            return Err(ReloadError::Stopping);
        }
        if let Some(d) = self.drain_reload.as_ref().filter(|d| !d.begun) {
            // Still draining for the reload asked before: this is the same.
            return Ok(d.id);
        }
        if self.reload.is_some() {
            if let Some(id) = self.next_reload {
                return Ok(id);
            }
            tracing::info!("a reload is running; the next one starts when it ends");
            self.reload_ids += 1;
            self.next_reload = Some(self.reload_ids);
            return Ok(self.reload_ids);
        }
        self.reload_ids += 1;
        let id = self.reload_ids;
        if self.cfg.reload_via_health {
            let delay = self.cfg.drain_delay;
            tracing::info!(
                "reload: marking the host down for {} first",
                crate::supervise::events::human(delay)
            );
            self.drain_reload = Some(DrainReload {
                id,
                at: now + delay,
                begun: false,
            });
            self.tick(now);
            return Ok(id);
        }
        self.begin_reload(id, now);
        self.settle(now);
        Ok(id)
    }

    /// Keeps `n` workers (at least 1) from now on.
    pub fn scale(&mut self, n: usize, now: Instant) {
        let n = n.max(1);
        let current = self.slots.len();
        if self.stopping || n == current {
            return;
        }
        tracing::info!("scaling from {current} to {n} workers");
        if n > current {
            // New slots start in batches, as at the start.
            let first = self.slots.keys().next_back().map_or(0, |k| k + 1);
            for slot in first..first + (n - current) {
                self.slots.insert(slot, Slot::new());
            }
            self.spawn_pending();
        }
        while self.slots.len() > n {
            // Slots without a worker go first, then the newest.
            let slot = self
                .slots
                .iter()
                .rev()
                .find(|(_, s)| s.state.current().is_none())
                .map(|(k, _)| *k)
                .unwrap_or_else(|| *self.slots.keys().next_back().unwrap());
            let s = self.slots.remove(&slot).unwrap();
            self.queue.finished(slot);
            if let State::Replacing { successor, .. } = s.state {
                // Its successor has nowhere to go.
                self.core.kill(successor, Kill::Deliberate);
            }
            if let Some(c) = s.state.current() {
                self.retire(c.id, slot, "scaled away".into(), now);
                self.core.disconnect(c.id);
            }
        }
        self.cfg.workers = n;
        self.settle(now);
    }

    /// Begins the shutdown: no more respawns or replacements. (The shell
    /// disconnects the workers.)
    pub fn stop(&mut self, _now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(run) = self.reload.take() {
            self.reload_aborted(run.id, "shutting down".into());
        }
        if let Some(id) = self.next_reload.take() {
            self.outcomes.push((id, Err(ReloadError::Stopping)));
        }
        if let Some(d) = self.drain_reload.take().filter(|d| !d.begun) {
            self.outcomes.push((d.id, Err(ReloadError::Stopping)));
        }
        self.emit(SupervisorEvent::Stopping);
        self.note_health();
    }
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: State::Pending,
            breaker: Breaker::default(),
            restarts: 0,
            reloads: 0,
            last_exit: None,
            fork_backoff: None,
        }
    }
}

/// Slots started in one step at most: the rest wait for the next step, so
/// that a command (a stop) is taken between batches however many workers
/// there are.
pub(super) const SPAWN_BATCH: usize = 16;

/// Forks that failed for want of resources since the last line about them.
#[derive(Default)]
struct ForkFailures {
    slots: usize,
    last_error: String,
    retry_in: Option<std::time::Duration>,
    logged_at: Option<Instant>,
}

/// `now + d`, for any `d` a caller may give (a grace of `Duration::MAX`
/// means "never", not a panic).
pub(super) fn later(now: Instant, d: std::time::Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 86_400))
}

/// Births and deaths: spawning, respawning, the breaker, boot timeouts,
/// the nanny and the recyclers.
mod slots;

/// The replacement flow: successors, promotions, reloads, and what is
/// checked after every step.
mod rolling;

/// The status the machine publishes.
mod view;

/// Health: the verdict, the operator's mark, reloads through health.
mod verdict;

/// An operator's actions on one worker: drain, undrain, replace.
mod operator;
