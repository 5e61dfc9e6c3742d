//! What the supervisor says: [`SupervisorEvent`]s on its own bus, and
//! [`ClusterEvent`]s, the core's events and the supervisor's in one stream,
//! in the order the supervisor saw and made them.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::bus::{Bus, Subscription};
use crate::primary::Event;

/// Something the supervisor decided or saw about the cluster as a whole.
///
/// Its [`Display`](fmt::Display) is a line for a person:
///
/// ```
/// use herd::supervise::{RecycleReason, SupervisorEvent};
/// let ev = SupervisorEvent::Recycle {
///     worker: 3,
///     slot: 0,
///     reason: RecycleReason::Requests { worker: 3, handled: 1012, limit: 1000 },
/// };
/// assert_eq!(ev.to_string(), "recycling worker 3: worker 3 handled 1012 connections (limit 1000)");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A slot's crash-loop breaker tripped (deaths before ready, or
    /// [`EXIT_CANNOT_BOOT`](crate::EXIT_CANNOT_BOOT)): the slot stays down.
    BreakerTripped {
        /// The slot (0-based) left down.
        slot: usize,
        /// Why, with the exit statuses seen.
        reason: String,
    },
    /// A rolling restart's progress.
    Reload(ReloadPhase),
    /// A worker is being replaced, successor first: age, connections,
    /// memory, or a missing heartbeat.
    Recycle {
        /// The worker being replaced.
        worker: u32,
        /// Its slot.
        slot: usize,
        /// Why.
        reason: RecycleReason,
    },
    /// A slot's worker died and a new one starts `after` this delay.
    Respawn {
        /// The slot.
        slot: usize,
        /// The worker that died.
        previous: u32,
        /// The backoff before the new one starts (zero after a worker that
        /// was ready).
        after: Duration,
    },
    /// The wanted number of workers are ready (again).
    ClusterReady {
        /// Ready workers.
        ready: usize,
        /// Wanted workers.
        wanted: usize,
    },
    /// Every slot is down and no worker is ready, or every worker exited,
    /// one failing, and the restart policy starts none again: the
    /// supervisor shuts the cluster down and `run` returns 1.
    GaveUp {
        /// Why.
        reason: String,
    },
    /// The cluster is shutting down: no more respawns or replacements.
    Stopping,
    /// The health verdict changed (see [`Health`](crate::supervise::Health)).
    Health {
        /// The new verdict.
        health: crate::supervise::Health,
    },
    /// An operator took a worker out of rotation
    /// ([`Supervisor::drain`](crate::Supervisor::drain)), or put it back.
    Drain {
        /// The worker.
        worker: u32,
        /// Its slot.
        slot: usize,
        /// Drained (true) or back in rotation.
        drained: bool,
    },
}

impl SupervisorEvent {
    /// A short lowercase name: `breaker_tripped`, `reload`, `recycle`,
    /// `respawn`, `cluster_ready`, `gave_up`, `stopping`, `health`,
    /// `drain`.
    pub fn name(&self) -> &'static str {
        match self {
            SupervisorEvent::BreakerTripped { .. } => "breaker_tripped",
            SupervisorEvent::Reload(_) => "reload",
            SupervisorEvent::Recycle { .. } => "recycle",
            SupervisorEvent::Respawn { .. } => "respawn",
            SupervisorEvent::ClusterReady { .. } => "cluster_ready",
            SupervisorEvent::GaveUp { .. } => "gave_up",
            SupervisorEvent::Stopping => "stopping",
            SupervisorEvent::Health { .. } => "health",
            SupervisorEvent::Drain { .. } => "drain",
        }
    }
}

impl fmt::Display for SupervisorEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorEvent::BreakerTripped { reason, .. } => f.write_str(reason),
            SupervisorEvent::Reload(phase) => write!(f, "{phase}"),
            SupervisorEvent::Recycle { worker, reason, .. } => {
                write!(f, "recycling worker {worker}: {reason}")
            }
            SupervisorEvent::Respawn {
                slot,
                previous,
                after,
            } => write!(
                f,
                "slot {slot}: worker {previous} is respawned {}",
                when(*after)
            ),
            SupervisorEvent::ClusterReady { ready, wanted } => {
                write!(f, "cluster ready: {ready} of {wanted} workers")
            }
            SupervisorEvent::GaveUp { reason } => write!(f, "giving up: {reason}"),
            SupervisorEvent::Stopping => f.write_str("stopping"),
            SupervisorEvent::Health { health } => write!(f, "health: {health}"),
            SupervisorEvent::Drain {
                worker,
                slot,
                drained: true,
            } => write!(
                f,
                "worker {worker} (slot {slot}) drained: out of rotation, serving its open connections"
            ),
            SupervisorEvent::Drain { worker, slot, .. } => {
                write!(f, "worker {worker} (slot {slot}) back in rotation")
            }
        }
    }
}

/// `now`, or `in 200ms`.
pub(crate) fn when(after: Duration) -> String {
    if after.is_zero() {
        "now".into()
    } else {
        format!("in {}", human(after))
    }
}

/// A duration as a person reads it in a log line: `0s`, `206ms`, `1.2s`,
/// `30s`, `2m`, `2m30s`, `1h5m` (never `206.58432ms` or `0ns`).
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return if d.is_zero() {
            "0s".into()
        } else {
            "1ms".into()
        };
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    if s < 60 {
        let tenths = (ms + 50) / 100;
        return if tenths % 10 == 0 {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        };
    }
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m, s) {
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// A rolling restart's progress, in [`SupervisorEvent::Reload`].
#[derive(Debug, Clone, PartialEq)]
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

impl fmt::Display for ReloadPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadPhase::Started { workers } => {
                write!(f, "reload: replacing {workers} workers")
            }
            ReloadPhase::Replaced { old, new } => {
                write!(f, "reload: worker {old} replaced by worker {new}")
            }
            ReloadPhase::Finished { replaced, took } => write!(
                f,
                "reload finished: {replaced} workers replaced in {:.1}s",
                took.as_secs_f64()
            ),
            ReloadPhase::Aborted { reason } => write!(f, "reload aborted: {reason}"),
        }
    }
}

/// Why a worker is recycled. Its [`Display`](fmt::Display) names the
/// worker and the limit: `worker 3 is older than 1h`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RecycleReason {
    /// Older than [`Supervision::max_age`](crate::Supervision::max_age).
    Age {
        /// The worker.
        worker: u32,
        /// The limit.
        limit: Duration,
    },
    /// Handled its share of connections
    /// ([`Supervision::max_requests`](crate::Supervision::max_requests)
    /// plus its jitter).
    Requests {
        /// The worker.
        worker: u32,
        /// Connections it handled.
        handled: u64,
        /// Its limit.
        limit: u64,
    },
    /// Grew past [`Supervision::max_memory`](crate::Supervision::max_memory).
    Memory {
        /// The worker.
        worker: u32,
        /// Its resident memory in bytes.
        rss: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Degraded (see [`Degraded`](crate::supervise::Degraded)): slower
    /// than its own peak while it costs more.
    Degraded {
        /// The worker.
        worker: u32,
        /// Its requests per second now.
        requests_per_sec: f64,
        /// Its peak.
        peak: f64,
    },
    /// The application's own judgement
    /// ([`Supervision::recycle_when`](crate::Supervision::recycle_when)).
    App {
        /// The worker.
        worker: u32,
        /// What the predicate said.
        reason: String,
    },
    /// An operator asked for it
    /// ([`Supervisor::replace`](crate::Supervisor::replace)).
    Operator {
        /// The worker.
        worker: u32,
    },
    /// Hung: no heartbeat within
    /// [`Supervision::heartbeat_timeout`](crate::Supervision::heartbeat_timeout).
    /// It is killed once its successor is ready.
    Hung {
        /// The worker.
        worker: u32,
        /// The timeout.
        timeout: Duration,
    },
}

impl RecycleReason {
    /// A short name for the kind of reason: `age`, `requests`, `memory`,
    /// `hung`, `degraded`, `app` or `operator`.
    pub fn kind(&self) -> &'static str {
        match self {
            RecycleReason::Age { .. } => "age",
            RecycleReason::Requests { .. } => "requests",
            RecycleReason::Memory { .. } => "memory",
            RecycleReason::Hung { .. } => "hung",
            RecycleReason::Degraded { .. } => "degraded",
            RecycleReason::App { .. } => "app",
            RecycleReason::Operator { .. } => "operator",
        }
    }
}

impl fmt::Display for RecycleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecycleReason::Age { worker, limit } => {
                write!(f, "worker {worker} is older than {}", human(*limit))
            }
            RecycleReason::Requests {
                worker,
                handled,
                limit,
            } => write!(
                f,
                "worker {worker} handled {handled} connections (limit {limit})"
            ),
            RecycleReason::Memory { worker, rss, limit } => write!(
                f,
                "worker {worker} uses {rss} bytes of memory (limit {limit})"
            ),
            RecycleReason::Hung { worker, timeout } => {
                write!(f, "worker {worker} sent no heartbeat for {}", human(*timeout))
            }
            RecycleReason::Degraded {
                worker,
                requests_per_sec,
                peak,
            } => write!(
                f,
                "worker {worker} is degraded: {requests_per_sec:.1} requests/s against its peak of {peak:.1}, while its CPU and memory rose"
            ),
            RecycleReason::App { worker, reason } => write!(f, "worker {worker}: {reason}"),
            RecycleReason::Operator { worker } => {
                write!(f, "worker {worker}: replacement asked by an operator")
            }
        }
    }
}

/// The core's events and the supervisor's, in one stream.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// What the core reported (fork, ready, exit, messages...).
    Core(Event),
    /// What the supervisor decided.
    Supervisor(SupervisorEvent),
}

/// The supervisor's two buses.
#[derive(Default)]
pub(crate) struct Emitter {
    supervisor: Bus<SupervisorEvent>,
    all: Bus<ClusterEvent>,
}

impl Emitter {
    /// Publishes one of the supervisor's events, as it is decided.
    pub fn supervisor(&self, ev: SupervisorEvent) {
        if self.all.has_subscribers() {
            self.all.emit(ClusterEvent::Supervisor(ev.clone()));
        }
        self.supervisor.emit(ev);
    }

    /// Passes one of the core's events on to the merged stream, as the
    /// supervisor takes it.
    pub fn core(&self, ev: &Event) {
        if self.all.has_subscribers() {
            self.all.emit(ClusterEvent::Core(ev.clone()));
        }
    }

    /// Ends both streams: the supervisor has stopped.
    pub fn close(&self) {
        self.supervisor.close();
        self.all.close();
    }

    pub fn subscribe(&self) -> SupervisorEvents {
        SupervisorEvents {
            sub: self.supervisor.subscribe(),
        }
    }

    pub fn subscribe_all(&self) -> ClusterEvents {
        ClusterEvents {
            sub: self.all.subscribe(),
        }
    }
}

/// A stream of [`SupervisorEvent`]s, from
/// [`Supervisor::events`](crate::Supervisor::events): those that happen
/// after it was made. Use [`next`](Self::next) in a loop, or as a
/// `futures_core::Stream`. It ends when [`Supervisor::run`] returns.
///
/// [`Supervisor::run`]: crate::Supervisor::run
pub struct SupervisorEvents {
    sub: Subscription<SupervisorEvent>,
}

impl SupervisorEvents {
    /// The next event. Cancel safe.
    pub async fn next(&mut self) -> Option<SupervisorEvent> {
        self.sub.next().await
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<SupervisorEvent> {
        self.sub.try_next()
    }
}

impl futures_core::Stream for SupervisorEvents {
    type Item = SupervisorEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.sub.poll_recv(cx)
    }
}

/// A stream of [`ClusterEvent`]s, from
/// [`Supervisor::cluster_events`](crate::Supervisor::cluster_events). It
/// ends when [`Supervisor::run`](crate::Supervisor::run) returns.
pub struct ClusterEvents {
    sub: Subscription<ClusterEvent>,
}

impl ClusterEvents {
    /// The next event. Cancel safe.
    pub async fn next(&mut self) -> Option<ClusterEvent> {
        self.sub.next().await
    }

    /// The next event if one is already queued.
    pub fn try_next(&mut self) -> Option<ClusterEvent> {
        self.sub.try_next()
    }
}

impl futures_core::Stream for ClusterEvents {
    type Item = ClusterEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.sub.poll_recv(cx)
    }
}

#[cfg(test)]
mod human_tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn durations_read_as_people_write_them() {
        let ms = Duration::from_millis;
        assert_eq!(human(Duration::ZERO), "0s");
        assert_eq!(human(Duration::from_nanos(5)), "1ms");
        assert_eq!(human(Duration::from_micros(206_584)), "206ms");
        assert_eq!(human(ms(1_234)), "1.2s");
        assert_eq!(human(ms(1_960)), "2s");
        assert_eq!(human(ms(30_000)), "30s");
        assert_eq!(human(ms(59_960)), "60s");
        assert_eq!(human(ms(120_000)), "2m");
        assert_eq!(human(ms(150_000)), "2m30s");
        assert_eq!(human(Duration::from_secs(3_900)), "1h5m");
        assert_eq!(human(Duration::from_secs(7_200)), "2h");
    }
}
