//! The supervisor's decisions: a state machine over the worker slots. It is
//! told what happened (the core's `Ready` and `Exit`, a tick, a command),
//! always with the time `now`, and acts through a [`Core`]. No runtime, no
//! clock of its own: the unit tests drive it with later `Instant`s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::breaker::{Breaker, Verdict};
use super::config::{Restart, Supervision, EXIT_CANNOT_BOOT};
use super::core::{Core, Kill};
use super::events::{Emitter, RecycleReason, SupervisorEvent};
use super::health::{self, Jitter};
use super::replace::ReplaceQueue;
use super::status::{ClusterStatus, LastExit, ReloadStatus, SlotState, SlotStatus, Snapshot};
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
    /// Whether every wanted worker was ready after the last step.
    full: bool,
    jitter: Jitter,
    born: Instant,
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
            full: false,
            born: now,
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

    /// The earliest respawn due, which should not wait for the next tick.
    pub fn next_due(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| match s.state {
                State::Backoff { at } => Some(at),
                _ => None,
            })
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

    /// Starts every slot's first worker.
    pub fn start(&mut self, now: Instant) {
        let pending: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Pending))
            .map(|(k, _)| *k)
            .collect();
        for slot in pending {
            self.spawn(slot, false);
        }
        self.settle(now);
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
        let due: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Backoff { at } if at <= now))
            .map(|(k, _)| *k)
            .collect();
        for slot in due {
            self.spawn(slot, true);
        }
        self.check_boots(now);
        for (id, r) in &mut self.retiring {
            if r.kill_at.is_some_and(|t| t <= now) {
                tracing::warn!("worker {id} still running after the grace period; killing it");
                self.core.kill(*id, Kill::Deliberate);
                r.kill_at = None;
            }
        }
        self.check_health(now);
        self.settle(now);
    }

    /// Asks for a rolling restart; returns the id its outcome will carry.
    /// One asked while another runs runs after it (asked several times
    /// meanwhile, it runs once).
    pub fn reload(&mut self, now: Instant) -> Result<u64, ReloadError> {
        if self.stopping {
            return Err(ReloadError::Stopping);
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
            let first = self.slots.keys().next_back().map_or(0, |k| k + 1);
            for slot in first..first + (n - current) {
                self.slots.insert(slot, Slot::new());
                self.spawn(slot, false);
            }
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
        self.emit(SupervisorEvent::Stopping);
    }

    // ---- the slots ----

    fn spawn(&mut self, slot: usize, respawn: bool) {
        if self.stopping {
            return;
        }
        match self.core.fork() {
            Ok(id) => {
                let recycle_after = self.jitter.recycle_point(&self.cfg);
                let Some(s) = self.slots.get_mut(&slot) else {
                    return;
                };
                s.restarts += u32::from(respawn);
                s.state = State::Up(Current {
                    id,
                    boot: Boot::Booting,
                    recycle_after,
                });
            }
            Err(e) => {
                tracing::error!("cannot start a worker for slot {slot}: {e}");
                self.trip(slot, format!("cannot start a worker: {e}"));
            }
        }
    }

    fn trip(&mut self, slot: usize, reason: String) {
        if let Some(s) = self.slots.get_mut(&slot) {
            s.state = State::Broken;
        }
        tracing::error!("{reason}");
        self.emit(SupervisorEvent::BreakerTripped { slot, reason });
    }

    fn slot_where(&self, pred: impl Fn(&State) -> bool) -> Option<usize> {
        self.slots
            .iter()
            .find(|(_, s)| pred(&s.state))
            .map(|(k, _)| *k)
    }

    fn on_ready(&mut self, id: u32, now: Instant) {
        let successor_of = self
            .slot_where(|st| matches!(st, State::Replacing { successor, .. } if *successor == id));
        if let Some(slot) = successor_of {
            if !self.stopping {
                self.promote(slot, now);
            }
            return;
        }
        for s in self.slots.values_mut() {
            if let Some(c) = s.state.current_mut().filter(|c| c.id == id) {
                c.boot = Boot::Ready;
                s.breaker.ready();
                return;
            }
        }
    }

    fn on_exit(&mut self, id: u32, status: ExitStatus, deliberate: bool, now: Instant) {
        if let Some(r) = self.retiring.remove(&id) {
            if let Some(s) = self.slots.get_mut(&r.slot) {
                s.last_exit = Some((id, status, r.why, now));
            }
            return;
        }
        let successor_of = self
            .slot_where(|st| matches!(st, State::Replacing { successor, .. } if *successor == id));
        if let Some(slot) = successor_of {
            let reason = format!("new worker {id} exited ({status}) before it was ready");
            return self.failed_replacement(slot, reason, now);
        }
        if let Some(slot) = self.slot_where(|st| st.current().is_some_and(|c| c.id == id)) {
            self.on_slot_exit(slot, id, status, deliberate, now);
        }
    }

    fn on_slot_exit(
        &mut self,
        slot: usize,
        id: u32,
        status: ExitStatus,
        deliberate: bool,
        now: Instant,
    ) {
        let (cfg, stopping) = (&self.cfg, self.stopping);
        let s = self.slots.get_mut(&slot).unwrap();
        let (cur, successor) = match std::mem::replace(&mut s.state, State::Stopped) {
            State::Up(c) => (c, None),
            State::Queued { old, .. } => {
                // Nothing left to replace.
                self.queue.finished(slot);
                (old, None)
            }
            State::Replacing {
                old: Old::Running(c),
                why,
                successor,
                since,
            } => {
                s.state = State::Replacing {
                    old: Old::Died(c.id),
                    why,
                    successor,
                    since,
                };
                (c, Some(successor))
            }
            other => {
                s.state = other;
                return;
            }
        };
        let overdue = format!("not ready within {:?}", cfg.boot_timeout);
        let words = match (deliberate, cur.boot) {
            (true, _) => "asked to leave".to_string(),
            (false, Boot::Overdue) => overdue.clone(),
            (false, _) if status.success() => "exited".into(),
            (false, Boot::Ready) => "crashed".into(),
            (false, Boot::Booting) => "crashed before it was ready".into(),
        };
        s.last_exit = Some((id, status, words, now));
        if let Some(successor) = successor {
            // Its successor takes the slot once ready (or the slot starts
            // afresh if it fails): respawning now as well would leave one
            // worker outside every slot, never stopped.
            tracing::info!(
                "worker {id} died ({status}) while being replaced; slot {slot} waits for worker {successor}"
            );
            return;
        }
        if stopping {
            return;
        }
        let respawn = match cfg.restart {
            Restart::Never => false,
            Restart::Always => !deliberate,
            Restart::OnFailure => !deliberate && !status.success(),
        };
        if !respawn {
            tracing::info!(
                "worker {id} exited ({status}); not respawning (restart policy {})",
                cfg.restart
            );
            return;
        }
        if status.code == Some(EXIT_CANNOT_BOOT) {
            let reason = format!(
                "worker {id} exited with code {EXIT_CANNOT_BOOT} (cannot boot): slot {slot} stays down"
            );
            return self.trip(slot, reason);
        }
        let how = if cur.boot == Boot::Overdue {
            overdue
        } else {
            status.to_string()
        };
        match s.breaker.death(cfg, slot, cur.ready(), how, now) {
            Verdict::Trip(reason) => self.trip(slot, reason),
            Verdict::Respawn(after) => {
                tracing::info!("worker {id} died ({status}); respawning in {after:?}");
                s.state = State::Backoff { at: now + after };
                self.emit(SupervisorEvent::Respawn {
                    slot,
                    previous: id,
                    after,
                });
            }
        }
    }

    /// Workers (and successors) not ready within the boot timeout.
    fn check_boots(&mut self, now: Instant) {
        let late: Vec<(usize, u32)> = self
            .slots
            .iter()
            .filter_map(|(k, s)| match s.state {
                State::Replacing {
                    successor, since, ..
                } if health::boot_overdue(&self.cfg, since, now) => Some((*k, successor)),
                _ => None,
            })
            .collect();
        for (slot, successor) in late {
            self.core.kill(successor, Kill::Deliberate);
            let reason = format!(
                "new worker {successor} was not ready within {:?}",
                self.cfg.boot_timeout
            );
            self.failed_replacement(slot, reason, now);
        }
        for s in self.slots.values_mut() {
            let Some(c) = s.state.current_mut().filter(|c| c.boot == Boot::Booting) else {
                continue;
            };
            let Some(w) = self.core.worker(c.id) else {
                continue;
            };
            if !w.ready && health::boot_overdue(&self.cfg, w.started, now) {
                tracing::warn!(
                    "worker {} was not ready within {:?}; killing it",
                    c.id,
                    self.cfg.boot_timeout
                );
                c.boot = Boot::Overdue;
                self.core.kill(c.id, Kill::AsCrash);
            }
        }
    }

    /// The nanny and the recyclers queue replacements.
    fn check_health(&mut self, now: Instant) {
        let mut wanted = Vec::new();
        for (slot, s) in &self.slots {
            let State::Up(c) = &s.state else { continue };
            if !c.ready() {
                continue;
            }
            let Some(w) = self.core.worker(c.id).filter(|w| !w.leaving) else {
                continue;
            };
            let rss = || self.core.rss(c.id);
            if let Some(reason) = health::check(&self.cfg, c.id, &w, c.recycle_after, rss, now) {
                wanted.push((*slot, reason));
            }
        }
        for (slot, reason) in wanted {
            self.enqueue(slot, Why::Recycle(reason));
        }
    }

    fn enqueue(&mut self, slot: usize, why: Why) {
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        let State::Up(old) = s.state else { return };
        tracing::info!("replacing worker {}: {why}", old.id);
        // A hung worker goes first.
        self.queue.push(slot, why.is_hung());
        s.state = State::Queued { old, why };
    }

    fn retire(&mut self, id: u32, slot: usize, why: String, now: Instant) {
        let kill_at = Some(now + self.cfg.grace);
        self.retiring.insert(id, Retiring { slot, kill_at, why });
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
        }
    }

    fn status(&self, slot: usize, now: Instant) -> SlotStatus {
        let (state, worker, successor) = match &self.state {
            State::Pending => (SlotState::Starting, None, None),
            State::Stopped => (SlotState::Stopped, None, None),
            State::Backoff { .. } => (SlotState::Backoff, None, None),
            State::Broken => (SlotState::Broken, None, None),
            State::Up(c) if c.ready() => (SlotState::Ready, Some(c.id), None),
            State::Up(c) => (SlotState::Starting, Some(c.id), None),
            State::Queued { old, .. } => (SlotState::Replacing, Some(old.id), None),
            State::Replacing { old, successor, .. } => {
                let old = match old {
                    Old::Running(c) => Some(c.id),
                    Old::Died(_) => None,
                };
                (SlotState::Replacing, old, Some(*successor))
            }
        };
        SlotStatus {
            slot,
            state,
            worker,
            successor,
            restarts: self.restarts,
            reloads: self.reloads,
            last_exit: self
                .last_exit
                .as_ref()
                .map(|(worker, status, reason, at)| LastExit {
                    worker: *worker,
                    status: *status,
                    reason: reason.clone(),
                    ago_secs: now.saturating_duration_since(*at).as_secs_f64(),
                }),
        }
    }
}

impl<C: Core> Machine<C> {
    /// The supervisor's part of the status, at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let status = ClusterStatus {
            wanted: self.cfg.workers,
            ready: self.ready_count(),
            reload: self.reload.as_ref().map(|r| ReloadStatus {
                replaced: r.replaced,
                total: r.total,
                running_secs: now.saturating_duration_since(r.started).as_secs_f64(),
            }),
            stopping: self.stopping,
            slots: self.slots.iter().map(|(k, s)| s.status(*k, now)).collect(),
            workers: Vec::new(),
            uptime_secs: now.saturating_duration_since(self.born).as_secs_f64(),
        };
        Snapshot { status, at: now }
    }

    fn ready_count(&self) -> usize {
        self.slots
            .values()
            .filter(|s| s.state.current().is_some_and(Current::ready))
            .count()
    }
}

/// The replacement flow: successors, promotions, reloads, and what is
/// checked after every step.
mod rolling;
