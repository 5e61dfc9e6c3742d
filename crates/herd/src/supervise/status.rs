//! The cluster as the supervisor sees it: one snapshot that `herd ctl`,
//! a monitor and the systemd notifications all read.

use std::time::Instant;

use serde::{Serialize, Serializer};

use crate::primary::{ExitStatus, WorkerStatus};

/// The cluster at one moment, from [`Supervisor::status`]: the supervisor's
/// view (wanted, ready, reload, slots) and the core's view of each live
/// worker.
///
/// [`Supervisor::status`]: crate::Supervisor::status
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// Workers wanted.
    pub wanted: usize,
    /// Slots whose worker is ready.
    pub ready: usize,
    /// The reload under way, if one is.
    pub reload: Option<ReloadStatus>,
    /// Shutting down.
    pub stopping: bool,
    /// Workers started to replace another since the start, by why:
    /// `crash`, `reload`, or a recycle's kind (`age`, `requests`,
    /// `memory`, `hung`, `degraded`, `app`).
    pub replacements: std::collections::BTreeMap<String, u64>,
    /// Rolling restarts since the start.
    pub reloads: ReloadTotals,
    /// What a load balancer should be told (see [`Health`]).
    pub health: Health,
    /// Marked down by an operator ([`Supervisor::mark_down`]).
    ///
    /// [`Supervisor::mark_down`]: crate::Supervisor::mark_down
    pub marked_down: bool,
    /// Every slot, by number.
    pub slots: Vec<SlotStatus>,
    /// Every live worker, by id, as [`Primary::status`] shows it (leaving
    /// ones too).
    ///
    /// [`Primary::status`]: crate::Primary::status
    pub workers: Vec<WorkerStatus>,
    /// Seconds since the supervisor was made.
    pub uptime_secs: f64,
}

impl ClusterStatus {
    /// The slot whose worker, or successor, is `worker`.
    pub fn slot_of(&self, worker: u32) -> Option<&SlotStatus> {
        self.slots
            .iter()
            .find(|s| s.worker == Some(worker) || s.successor == Some(worker))
    }
}

/// What a load balancer should be told about this host: three answers,
/// not two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Health {
    /// Every wanted worker is ready and nobody marked the host down: send
    /// traffic.
    Up,
    /// Marked down (by an operator, a shutdown or a reload through health)
    /// while the workers still serve: stop sending new traffic; what is
    /// open finishes.
    Draining,
    /// Fewer workers are ready than wanted (starting, or crashed): do not
    /// send traffic.
    Down,
}

impl Health {
    /// `up`, `draining` or `down`.
    pub fn name(&self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Draining => "draining",
            Health::Down => "down",
        }
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rolling restarts since the start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReloadTotals {
    /// Reloads that replaced every worker.
    pub finished: u64,
    /// Reloads that stopped early.
    pub aborted: u64,
    /// Seconds the finished ones took, added up.
    pub seconds: f64,
    /// How long the last finished one took.
    pub last_seconds: Option<f64>,
}

/// A reload's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReloadStatus {
    /// Workers replaced so far.
    pub replaced: usize,
    /// Workers to replace.
    pub total: usize,
    /// Seconds since it started.
    pub running_secs: f64,
}

/// One worker slot: a place for one worker, kept filled by the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SlotStatus {
    /// Its number, from 0.
    pub slot: usize,
    /// Where it is.
    pub state: SlotState,
    /// Its worker, if it has one.
    pub worker: Option<u32>,
    /// The worker on its way to replace it, if any.
    pub successor: Option<u32>,
    /// Workers started in it after a crash, or to recycle one (not for
    /// reloads).
    pub restarts: u32,
    /// Workers that replaced its worker in reloads.
    pub reloads: u32,
    /// How its last worker ended.
    pub last_exit: Option<LastExit>,
}

/// Where a slot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SlotState {
    /// Its worker is booting.
    Starting,
    /// Its worker is ready.
    Ready,
    /// Its worker is being replaced (its successor waits for its turn, or
    /// boots).
    Replacing,
    /// Waiting to start a worker again after one died.
    Backoff,
    /// Left down by the crash-loop breaker.
    Broken,
    /// Its worker exited and the restart policy keeps it down.
    Stopped,
}

impl SlotState {
    /// The lowercase name: `starting`, `ready`, `replacing`, `backoff`,
    /// `broken`, `stopped`.
    pub fn name(&self) -> &'static str {
        match self {
            SlotState::Starting => "starting",
            SlotState::Ready => "ready",
            SlotState::Replacing => "replacing",
            SlotState::Backoff => "backoff",
            SlotState::Broken => "broken",
            SlotState::Stopped => "stopped",
        }
    }
}

/// How a slot's last worker ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct LastExit {
    /// The worker.
    pub worker: u32,
    /// Its exit code or signal (as `{"code": 3, "signal": null}`).
    #[serde(serialize_with = "exit_status")]
    pub status: ExitStatus,
    /// Why, in words: `crashed`, `crashed before it was ready`, `asked to
    /// leave`, `not ready within 30s`...
    pub reason: String,
    /// Seconds since.
    pub ago_secs: f64,
}

fn exit_status<S: Serializer>(status: &ExitStatus, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Out<'a> {
        code: Option<i32>,
        signal: Option<&'a str>,
    }
    Out {
        code: status.code,
        signal: status.signal.map(|sig| sig.as_str()),
    }
    .serialize(s)
}

/// The supervisor's part of a [`ClusterStatus`], as it published it at
/// `at` (its `workers` empty).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub status: ClusterStatus,
    pub at: Instant,
}

impl Snapshot {
    /// The whole status at `now`: the times brought forward, the core's
    /// `workers` added.
    pub fn complete(&self, workers: Vec<WorkerStatus>, now: Instant) -> ClusterStatus {
        let since = now.saturating_duration_since(self.at).as_secs_f64();
        let mut s = self.status.clone();
        s.uptime_secs += since;
        if let Some(r) = &mut s.reload {
            r.running_secs += since;
        }
        for e in s.slots.iter_mut().filter_map(|s| s.last_exit.as_mut()) {
            e.ago_secs += since;
        }
        s.workers = workers;
        s
    }
}
