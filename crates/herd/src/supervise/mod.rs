//! The supervisor: keeps the wanted number of workers up and replaces them
//! without dropping a request. It is a client of the core: it reads the
//! primary's [`Event`]s and calls `fork`, `disconnect` and `kill`, nothing
//! more.
//!
//! - **Respawn** by [`Restart`] policy with exponential backoff; a slot whose
//!   worker dies [`Supervision::crash_limit`] times within the crash window
//!   without becoming ready (or exits with [`EXIT_CANNOT_BOOT`]) is left
//!   down and an [`Event::Critical`] says why.
//! - **Successor first**: every replacement (reload, hung worker, recycling)
//!   starts the new worker, waits until it is ready, then disconnects the old
//!   one, [`Supervision::surge`] at a time. A successor that fails to become
//!   ready aborts a reload; the old workers keep serving.
//! - **Nanny**: a ready worker whose heartbeat is missing for
//!   [`Supervision::heartbeat_timeout`] is replaced, then killed.
//! - **Recycling** by age, connections handled (with jitter) or memory.
//! - **Signals**: TERM/INT shut down gracefully (a second one kills), HUP
//!   reloads, TTIN/TTOU add or remove a worker.
//!
//! ```no_run
//! # async fn demo() -> Result<(), herd::Error> {
//! use std::time::Duration;
//! let primary = herd::Primary::new()?;
//! let supervision = herd::Supervision::new(4).grace(Duration::from_secs(30));
//! let code = primary.supervise(supervision).await;
//! std::process::exit(code);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::Signal;
use tokio::sync::mpsc;

use crate::primary::{Event, ExitStatus, Primary, WorkerHandle};

/// The exit code with which a worker says "I cannot boot" (bad
/// configuration, missing dependency): it stops the slot's respawns at once
/// instead of crash-looping (sysexits' EX_CONFIG).
pub const EXIT_CANNOT_BOOT: i32 = 78;

/// When a worker that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Whatever the exit, unless it was asked for.
    Always,
    /// After a crash: a signal or a non-zero code, not asked for (default).
    #[default]
    OnFailure,
    /// Never.
    Never,
}

impl std::str::FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure),
            "never" => Ok(Restart::Never),
            o => Err(format!(
                "unknown restart policy {o:?}: use always, on-failure or never"
            )),
        }
    }
}

/// What the supervisor does, with the defaults a production user would pick.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// Workers to keep up.
    pub workers: usize,
    /// When to respawn.
    pub restart: Restart,
    /// First respawn delay after a crash; doubles up to `backoff_max`.
    pub backoff: Duration,
    /// Longest respawn delay.
    pub backoff_max: Duration,
    /// Deaths before ready, within `crash_window`, that trip the breaker.
    pub crash_limit: usize,
    /// The window for `crash_limit`.
    pub crash_window: Duration,
    /// How long a new worker may take to become ready.
    pub boot_timeout: Duration,
    /// How long a disconnecting worker may take before it is killed.
    pub grace: Duration,
    /// Replacements running at once during a reload.
    pub surge: usize,
    /// Replace a ready worker whose heartbeat is missing this long.
    pub heartbeat_timeout: Option<Duration>,
    /// Recycle workers older than this.
    pub max_age: Option<Duration>,
    /// Recycle workers after this many connections, plus up to
    /// `max_requests_jitter` more (chosen per worker).
    pub max_requests: Option<u64>,
    /// Spread of `max_requests`.
    pub max_requests_jitter: u64,
    /// Recycle workers whose resident memory exceeds this many bytes.
    pub max_memory: Option<u64>,
    /// Handle TERM, INT, HUP, TTIN and TTOU.
    pub handle_signals: bool,
}

impl Supervision {
    /// Supervision of `workers` workers with the defaults.
    pub fn new(workers: usize) -> Supervision {
        Supervision {
            workers: workers.max(1),
            restart: Restart::OnFailure,
            backoff: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            crash_limit: 5,
            crash_window: Duration::from_secs(60),
            boot_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(30),
            surge: 1,
            heartbeat_timeout: Some(Duration::from_secs(10)),
            max_age: None,
            max_requests: None,
            max_requests_jitter: 0,
            max_memory: None,
            handle_signals: true,
        }
    }

    /// Sets the grace period of disconnects.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// A rolling restart's progress, in [`Event::Reload`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadPhase {
    /// A reload began; `workers` will be replaced.
    Started {
        /// How many.
        workers: usize,
    },
    /// `old` was replaced by `new` (which is ready).
    Replaced {
        /// The predecessor.
        old: u32,
        /// The successor.
        new: u32,
    },
    /// Every worker was replaced.
    Finished {
        /// How many were replaced.
        replaced: usize,
        /// How long it took.
        took: Duration,
    },
    /// The reload stopped; the remaining old workers keep serving.
    Aborted {
        /// Why.
        reason: String,
    },
}

pub(crate) enum Command {
    Reload,
    Scale(usize),
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Reload,
    Hung,
    Recycle,
}

struct Job {
    slot: usize,
    why: Why,
    reason: String,
}

struct Active {
    slot: usize,
    old: u32,
    new: WorkerHandle,
    why: Why,
    reason: String,
    since: Instant,
}

#[derive(Default)]
struct Slot {
    worker: Option<WorkerHandle>,
    /// Deaths before ready within the crash window: when, and how.
    failures: VecDeque<(Instant, String)>,
    /// The current worker was killed for not being ready in time.
    boot_timed_out: bool,
    backoff: Option<Duration>,
    respawn_at: Option<Instant>,
    broken: bool,
    /// Connections after which this slot's current worker is recycled.
    recycle_after: Option<u64>,
    queued: bool,
}

struct Sup {
    primary: Primary,
    cfg: Supervision,
    slots: BTreeMap<usize, Slot>,
    jobs: VecDeque<Job>,
    active: Vec<Active>,
    /// Workers on their way out: id -> when to kill them.
    retiring: HashMap<u32, Instant>,
    reload: Option<(Instant, usize)>,
    shutting_down: bool,
    rng: u64,
}

impl Primary {
    /// Runs the cluster under supervision until it is shut down (by
    /// [`Primary::shutdown`] or a signal), and returns the exit code for the
    /// process: 0 if every worker left cleanly within the grace period, 1 if
    /// some had to be killed.
    pub async fn supervise(&self, cfg: Supervision) -> i32 {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.inner.control.set(tx).is_err() {
            tracing::error!("supervise called twice");
            return 1;
        }
        let events = self.events();
        let mut sup = Sup {
            primary: self.clone(),
            slots: (0..cfg.workers).map(|i| (i, Slot::default())).collect(),
            cfg,
            jobs: VecDeque::new(),
            active: Vec::new(),
            retiring: HashMap::new(),
            reload: None,
            shutting_down: false,
            rng: u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15,
        };
        sup.run(events, rx).await
    }

    /// Starts a rolling restart: each worker is replaced by a new one started
    /// from the program on disk, one at a time, successor first. Progress
    /// comes as [`Event::Reload`]. Needs [`Primary::supervise`].
    pub fn reload(&self) {
        self.command(Command::Reload);
    }

    /// Sets the number of workers. Needs [`Primary::supervise`].
    pub fn scale(&self, workers: usize) {
        self.command(Command::Scale(workers));
    }

    /// Shuts the cluster down gracefully: `supervise` returns when done.
    pub fn shutdown(&self) {
        self.command(Command::Shutdown);
    }

    fn command(&self, c: Command) {
        match self.inner.control.get() {
            Some(tx) => {
                let _ = tx.send(c);
            }
            None => tracing::warn!("reload/scale/shutdown need Primary::supervise to be running"),
        }
    }
}

impl Sup {
    async fn run(
        &mut self,
        mut events: crate::Events,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) -> i32 {
        use tokio::signal::unix::{signal, SignalKind};
        let sig = |k| signal(k).ok();
        let on = self.cfg.handle_signals;
        let (mut term, mut int, mut hup, mut ttin, mut ttou) = if on {
            (
                sig(SignalKind::terminate()),
                sig(SignalKind::interrupt()),
                sig(SignalKind::hangup()),
                sig(SignalKind::from_raw(Signal::SIGTTIN.as_raw())),
                sig(SignalKind::from_raw(Signal::SIGTTOU.as_raw())),
            )
        } else {
            (None, None, None, None, None)
        };
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        for slot in self.slots.keys().copied().collect::<Vec<_>>() {
            self.spawn(slot);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // A respawn is due at its own time, not at the next tick: the
            // backoff delays are what they say.
            let respawn = self.next_respawn();
            tokio::select! {
                Some(ev) = events.next() => self.on_event(ev),
                _ = tokio::time::sleep_until(respawn.unwrap_or_else(far_future).into()), if respawn.is_some() => self.on_tick(),
                Some(c) = commands.recv() => match c {
                    Command::Reload => self.start_reload(),
                    Command::Scale(n) => self.scale(n),
                    Command::Shutdown => break,
                },
                _ = tick.tick() => self.on_tick(),
                _ = recv(&mut term) => { tracing::info!("SIGTERM: shutting down"); break }
                _ = recv(&mut int) => { tracing::info!("SIGINT: shutting down"); break }
                _ = recv(&mut hup) => { tracing::info!("SIGHUP: rolling restart"); self.start_reload() }
                _ = recv(&mut ttin) => { let n = self.slots.len() + 1; self.scale(n) }
                _ = recv(&mut ttou) => { let n = self.slots.len().saturating_sub(1).max(1); self.scale(n) }
            }
        }
        self.shutting_down = true;
        if self.reload.take().is_some() {
            self.primary
                .inner
                .bus
                .emit(Event::Reload(ReloadPhase::Aborted {
                    reason: "shutting down".into(),
                }));
        }
        let grace = self.cfg.grace;
        tracing::info!("disconnecting all workers (grace {grace:?}; signal again to kill now)");
        let primary = self.primary.clone();
        let clean = tokio::select! {
            r = tokio::time::timeout(grace, primary.disconnect()) => r.is_ok(),
            _ = recv(&mut term) => false,
            _ = recv(&mut int) => false,
        };
        if !clean {
            tracing::warn!("workers still running; killing them");
            let _ = tokio::time::timeout(Duration::from_secs(5), primary.kill_all(Signal::SIGKILL))
                .await;
        }
        if clean {
            0
        } else {
            1
        }
    }

    /// The earliest pending respawn.
    fn next_respawn(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter(|s| s.worker.is_none() && !s.broken)
            .filter_map(|s| s.respawn_at)
            .min()
    }

    fn spawn(&mut self, slot: usize) {
        if self.shutting_down {
            return;
        }
        match self.primary.fork() {
            Ok(w) => {
                let recycle = self.recycle_point();
                let s = self.slots.entry(slot).or_default();
                s.worker = Some(w);
                s.respawn_at = None;
                s.boot_timed_out = false;
                s.recycle_after = recycle;
            }
            Err(e) => {
                tracing::error!(slot, error = %e, "cannot start worker");
                let reason = format!("cannot start a worker: {e}");
                self.trip(slot, reason);
            }
        }
    }

    fn recycle_point(&mut self) -> Option<u64> {
        let max = self.cfg.max_requests?;
        let jitter = self.cfg.max_requests_jitter;
        Some(
            max + if jitter > 0 {
                self.random() % (jitter + 1)
            } else {
                0
            },
        )
    }

    fn random(&mut self) -> u64 {
        // xorshift: enough to spread recycling points.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn trip(&mut self, slot: usize, reason: String) {
        let s = self.slots.entry(slot).or_default();
        s.broken = true;
        s.respawn_at = None;
        tracing::error!(slot, "{reason}");
        self.primary
            .inner
            .bus
            .emit(Event::Critical { slot, reason });
    }

    fn slot_of(&self, id: u32) -> Option<usize> {
        self.slots
            .iter()
            .find(|(_, s)| s.worker.as_ref().is_some_and(|w| w.id() == id))
            .map(|(k, _)| *k)
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Ready { worker } => {
                if let Some(i) = self.active.iter().position(|a| a.new.id() == worker) {
                    let a = self.active.remove(i);
                    self.promote(a);
                } else if let Some(slot) = self.slot_of(worker) {
                    let s = self.slots.get_mut(&slot).unwrap();
                    s.failures.clear();
                    s.backoff = None;
                }
                self.next_jobs();
            }
            Event::Exit {
                worker,
                status,
                exited_after_disconnect,
            } => {
                self.retiring.remove(&worker);
                if let Some(i) = self.active.iter().position(|a| a.new.id() == worker) {
                    let a = self.active.remove(i);
                    let reason =
                        format!("new worker {worker} exited ({status}) before it was ready");
                    self.failed_replacement(a, reason);
                } else if let Some(slot) = self.slot_of(worker) {
                    self.on_slot_exit(slot, worker, status, exited_after_disconnect);
                }
                self.next_jobs();
            }
            _ => {}
        }
    }

    fn on_slot_exit(&mut self, slot: usize, worker: u32, status: ExitStatus, deliberate: bool) {
        let s = self.slots.get_mut(&slot).unwrap();
        let was_ready = s.worker.as_ref().is_some_and(|w| w.is_ready());
        let how = if s.boot_timed_out {
            format!("not ready within {:?}", self.cfg.boot_timeout)
        } else {
            status.to_string()
        };
        s.worker = None;
        s.queued = false;
        self.jobs.retain(|j| j.slot != slot);
        if self.shutting_down {
            return;
        }
        if self.active.iter().any(|a| a.slot == slot) {
            // Its successor is on the way and takes the slot once ready (or
            // the slot is respawned if it fails): respawning now as well
            // would leave one worker outside every slot, never stopped.
            tracing::info!(worker, slot, %status, "worker died while being replaced");
            return;
        }
        let respawn = match self.cfg.restart {
            Restart::Never => false,
            Restart::Always => !deliberate,
            Restart::OnFailure => !deliberate && !status.success(),
        };
        if !respawn {
            tracing::info!(worker, slot, %status, "worker exited; not respawning ({:?})", self.cfg.restart);
            return;
        }
        let now = Instant::now();
        if status.code == Some(EXIT_CANNOT_BOOT) {
            let reason = format!("worker {worker} exited with code {EXIT_CANNOT_BOOT} (cannot boot): slot {slot} stays down");
            return self.trip(slot, reason);
        }
        let (limit, window, base, max) = (
            self.cfg.crash_limit,
            self.cfg.crash_window,
            self.cfg.backoff,
            self.cfg.backoff_max,
        );
        let s = self.slots.get_mut(&slot).unwrap();
        let delay = if was_ready {
            s.failures.clear();
            s.backoff = None;
            Duration::ZERO
        } else {
            s.failures.push_back((now, how));
            while s
                .failures
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > window)
            {
                s.failures.pop_front();
            }
            if s.failures.len() >= limit {
                let seen: Vec<&str> = s.failures.iter().map(|(_, how)| how.as_str()).collect();
                let reason = format!(
                    "slot {slot}: worker died {} times in {window:?} without becoming ready ({}); not respawning",
                    seen.len(),
                    seen.join(", ")
                );
                return self.trip(slot, reason);
            }
            let d = s.backoff.map_or(base, |b| (b * 2).min(max));
            s.backoff = Some(d);
            d
        };
        tracing::info!(worker, slot, %status, "worker died; respawning in {delay:?}");
        s.respawn_at = Some(now + delay);
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.worker.is_none() && !s.broken && s.respawn_at.is_some_and(|t| t <= now)
            })
            .map(|(k, _)| *k)
            .collect();
        for slot in due {
            self.spawn(slot);
        }
        // Successors that take too long to boot.
        let late: Vec<usize> = (0..self.active.len())
            .filter(|&i| now.duration_since(self.active[i].since) > self.cfg.boot_timeout)
            .collect();
        for i in late.into_iter().rev() {
            let a = self.active.remove(i);
            a.new.kill_with(Signal::SIGKILL);
            let reason = format!(
                "new worker {} was not ready within {:?}",
                a.new.id(),
                self.cfg.boot_timeout
            );
            self.failed_replacement(a, reason);
        }
        // Respawned workers that never become ready count as failures.
        for s in self.slots.values_mut() {
            if let Some(w) = &s.worker {
                if !w.is_ready() && now.duration_since(w.started()) > self.cfg.boot_timeout {
                    s.boot_timed_out = true;
                    tracing::warn!(
                        worker = w.id(),
                        "not ready within {:?}; killing it",
                        self.cfg.boot_timeout
                    );
                    w.signal(Signal::SIGKILL);
                }
            }
        }
        // Disconnecting workers past the grace period.
        for (id, deadline) in &self.retiring {
            if *deadline <= now {
                if let Some(w) = self.primary.worker(*id) {
                    tracing::warn!(
                        worker = id,
                        "still running after the grace period; killing it"
                    );
                    w.kill_with(Signal::SIGKILL);
                }
            }
        }
        self.check_health(now);
        self.next_jobs();
    }

    /// The nanny and the recyclers: queue replacements.
    fn check_health(&mut self, now: Instant) {
        let mut wanted = Vec::new();
        for (slot, s) in &self.slots {
            let Some(w) = &s.worker else { continue };
            if s.queued || !w.is_ready() || w.exited_after_disconnect() {
                continue;
            }
            let beat = w.last_heartbeat();
            if let Some(timeout) = self.cfg.heartbeat_timeout {
                let last = beat.as_ref().map_or(w.started(), |(t, _)| *t);
                if now.duration_since(last) > timeout {
                    wanted.push((
                        *slot,
                        Why::Hung,
                        format!("worker {} sent no heartbeat for {timeout:?}", w.id()),
                    ));
                    continue;
                }
            }
            if let Some(age) = self.cfg.max_age {
                if now.duration_since(w.started()) > age {
                    wanted.push((
                        *slot,
                        Why::Recycle,
                        format!("worker {} is older than {age:?}", w.id()),
                    ));
                    continue;
                }
            }
            if let (Some(limit), Some((_, b))) = (s.recycle_after, &beat) {
                if b.handled >= limit {
                    wanted.push((
                        *slot,
                        Why::Recycle,
                        format!(
                            "worker {} handled {} connections (limit {limit})",
                            w.id(),
                            b.handled
                        ),
                    ));
                    continue;
                }
            }
            if let Some(max) = self.cfg.max_memory {
                if let Some(rss) = crate::procfs::rss_bytes(crate::procfs::Proc::Pid(w.pid())) {
                    if rss > max {
                        wanted.push((
                            *slot,
                            Why::Recycle,
                            format!("worker {} uses {rss} bytes of memory (limit {max})", w.id()),
                        ));
                    }
                }
            }
        }
        for (slot, why, reason) in wanted {
            self.enqueue(slot, why, reason);
        }
    }

    fn enqueue(&mut self, slot: usize, why: Why, reason: String) {
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        if s.queued || s.worker.is_none() {
            return;
        }
        s.queued = true;
        tracing::info!(slot, "replacing: {reason}");
        if why == Why::Hung {
            // A hung worker goes first.
            self.jobs.push_front(Job { slot, why, reason });
        } else {
            self.jobs.push_back(Job { slot, why, reason });
        }
    }

    fn next_jobs(&mut self) {
        while self.active.len() < self.cfg.surge.max(1) && !self.shutting_down {
            let Some(job) = self.jobs.pop_front() else {
                break;
            };
            let Some(old) = self.slots.get(&job.slot).and_then(|s| s.worker.clone()) else {
                continue;
            };
            if job.why == Why::Recycle {
                self.primary.inner.bus.emit(Event::Recycle {
                    worker: old.id(),
                    reason: job.reason.clone(),
                });
            }
            match self.primary.fork_successor(&old) {
                Ok(new) => self.active.push(Active {
                    slot: job.slot,
                    old: old.id(),
                    new,
                    why: job.why,
                    reason: job.reason,
                    since: Instant::now(),
                }),
                Err(e) => {
                    if let Some(s) = self.slots.get_mut(&job.slot) {
                        s.queued = false;
                    }
                    if job.why == Why::Reload {
                        self.abort_reload(format!("cannot start a new worker: {e}"));
                    }
                }
            }
        }
        if let Some((since, n)) = self.reload {
            if self.active.iter().all(|a| a.why != Why::Reload)
                && self.jobs.iter().all(|j| j.why != Why::Reload)
            {
                self.reload = None;
                let took = since.elapsed();
                tracing::info!("reload finished: {n} workers replaced in {took:?}");
                self.primary
                    .inner
                    .bus
                    .emit(Event::Reload(ReloadPhase::Finished { replaced: n, took }));
            }
        }
    }

    /// The successor is ready: it takes the slot, the predecessor leaves.
    fn promote(&mut self, a: Active) {
        let old = self.primary.worker(a.old);
        let Some(s) = self.slots.get_mut(&a.slot) else {
            // The slot was scaled away meanwhile.
            a.new.disconnect();
            return;
        };
        s.worker = Some(a.new.clone());
        s.queued = false;
        s.failures.clear();
        s.backoff = None;
        s.recycle_after = None;
        let recycle = self.recycle_point();
        self.slots.get_mut(&a.slot).unwrap().recycle_after = recycle;
        tracing::info!(old = a.old, new = a.new.id(), "replaced ({})", a.reason);
        if let Some(old) = old {
            self.retiring.insert(a.old, Instant::now() + self.cfg.grace);
            if a.why == Why::Hung {
                old.kill_with(Signal::SIGKILL);
            } else {
                old.disconnect();
            }
        }
        if a.why == Why::Reload {
            if let Some((_, n)) = &mut self.reload {
                *n += 1;
            }
            self.primary
                .inner
                .bus
                .emit(Event::Reload(ReloadPhase::Replaced {
                    old: a.old,
                    new: a.new.id(),
                }));
        }
    }

    fn failed_replacement(&mut self, a: Active, reason: String) {
        tracing::warn!("{reason}; the old worker keeps serving");
        let backoff = self.cfg.backoff;
        if let Some(s) = self.slots.get_mut(&a.slot) {
            s.queued = false;
            if s.worker.is_none() && !s.broken && s.respawn_at.is_none() && !self.shutting_down {
                // The old worker died while its successor booted: the slot
                // is empty, start it afresh.
                s.respawn_at = Some(Instant::now() + s.backoff.unwrap_or(backoff));
            }
        }
        if a.why == Why::Reload {
            self.abort_reload(reason);
        } else if a.why == Why::Hung {
            // No successor: a hung worker is still killed, and respawned.
            if let Some(w) = self.primary.worker(a.old) {
                w.signal(Signal::SIGKILL);
            }
        }
    }

    fn abort_reload(&mut self, reason: String) {
        let pending: Vec<usize> = self
            .jobs
            .iter()
            .filter(|j| j.why == Why::Reload)
            .map(|j| j.slot)
            .collect();
        for slot in pending {
            if let Some(s) = self.slots.get_mut(&slot) {
                s.queued = false;
            }
        }
        self.jobs.retain(|j| j.why != Why::Reload);
        for a in self.active.iter().filter(|a| a.why == Why::Reload) {
            a.new.kill_with(Signal::SIGKILL);
        }
        self.active.retain(|a| a.why != Why::Reload);
        if self.reload.take().is_some() {
            self.primary
                .inner
                .bus
                .emit(Event::Reload(ReloadPhase::Aborted { reason }));
        }
    }

    fn start_reload(&mut self) {
        if self.reload.is_some() {
            tracing::info!("a reload is already running");
            return;
        }
        let slots: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| s.worker.is_some() && !s.queued)
            .map(|(k, _)| *k)
            .collect();
        self.reload = Some((Instant::now(), 0));
        self.primary
            .inner
            .bus
            .emit(Event::Reload(ReloadPhase::Started {
                workers: slots.len(),
            }));
        for slot in slots {
            self.enqueue(slot, Why::Reload, "reload".into());
        }
        self.next_jobs();
    }

    fn scale(&mut self, n: usize) {
        let n = n.max(1);
        let current = self.slots.len();
        tracing::info!("scaling from {current} to {n} workers");
        if n > current {
            let start = self.slots.keys().next_back().map_or(0, |k| k + 1);
            for slot in start..start + (n - current) {
                self.slots.insert(slot, Slot::default());
                self.spawn(slot);
            }
        } else {
            while self.slots.len() > n {
                // Empty slots (tripped, or waiting to respawn) go first, then
                // the newest.
                let slot = self
                    .slots
                    .iter()
                    .rev()
                    .find(|(_, s)| s.worker.is_none())
                    .or_else(|| self.slots.iter().next_back())
                    .map(|(k, _)| *k)
                    .unwrap();
                let s = self.slots.remove(&slot).unwrap();
                self.jobs.retain(|j| j.slot != slot);
                // A successor on its way to this slot has nowhere to go.
                for a in self.active.iter().filter(|a| a.slot == slot) {
                    a.new.kill_with(Signal::SIGKILL);
                }
                self.active.retain(|a| a.slot != slot);
                if let Some(w) = s.worker {
                    self.retiring
                        .insert(w.id(), Instant::now() + self.cfg.grace);
                    w.disconnect();
                }
            }
            self.next_jobs();
        }
        self.cfg.workers = n;
    }
}

/// A time no respawn waits for.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}
