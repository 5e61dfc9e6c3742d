//! [`WorkerStatus`]: one worker as the primary sees it now, for status
//! pages and `herd ctl status`.

use std::time::Instant;

use serde::Serialize;

use super::{Primary, WorkerState};
use crate::channel::wire::Beat;
use crate::procfs::{self, Proc};

/// One worker as [`Primary::status`] shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// The worker's id.
    pub id: u32,
    /// Its process id.
    pub pid: u32,
    /// Where it is in its life.
    pub state: WorkerState,
    /// Asked to go (disconnecting, killed, being replaced).
    pub leaving: bool,
    /// Taken out of rotation ([`Primary::drain`](crate::Primary::drain)):
    /// routed no new connection, serving the ones it has.
    pub drained: bool,
    /// A foreign program rather than a herd-aware worker.
    pub foreign: bool,
    /// Seconds since it was started.
    pub uptime_secs: f64,
    /// Resident memory in bytes of the worker's whole process tree (its
    /// group and every process below it: a gunicorn master's children
    /// too), from /proc; pages shared between them count in each.
    pub rss_bytes: Option<u64>,
    /// CPU time used (user and system) since it started, in seconds, by
    /// its whole process tree (the live processes), from /proc.
    pub cpu_secs: Option<f64>,
    /// Open connections: reported by a herd-aware worker; counted from
    /// /proc for a foreign one (TCP only, held by any process of its
    /// tree).
    pub connections: Option<u64>,
    /// Connections handled since start, when reported.
    pub handled: Option<u64>,
    /// Requests served since start (a herd-aware worker serving with
    /// [`Worker::serve`](crate::Worker::serve)).
    pub requests: Option<u64>,
    /// Requests per second over the last heartbeat interval (a foreign
    /// worker's: connections handled, from `HERD_HANDLED=`).
    pub requests_per_sec: Option<f64>,
    /// Requests under way.
    pub in_flight: Option<u64>,
    /// The median request duration over the last interval, in ms.
    pub latency_p50_ms: Option<f64>,
    /// The 99th percentile over the last interval, in ms.
    pub latency_p99_ms: Option<f64>,
    /// The latency histogram since start (counts per bucket) and the sum
    /// of durations in seconds, for /metrics.
    #[serde(skip)]
    pub(crate) latency: Option<(Vec<u64>, f64)>,
    /// Seconds since the last heartbeat (`WATCHDOG=1` for a foreign worker).
    pub heartbeat_age_secs: Option<f64>,
    /// What the worker says of itself: `STATUS=` for a foreign worker, its
    /// heartbeat's application fields for a herd-aware one.
    pub status: Option<String>,
}

/// What a herd-aware worker last reported of itself (see
/// [`WorkerHandle::last_heartbeat`](crate::WorkerHandle::last_heartbeat)).
/// A foreign worker's has only `handled` (from `HERD_HANDLED=`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Milliseconds since the worker connected.
    pub uptime_ms: u64,
    /// Resident memory in bytes (0 where unknown).
    pub rss: u64,
    /// CPU time used, user plus system, in milliseconds (0 where unknown).
    pub cpu_ms: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted since the worker started.
    pub handled: u64,
    /// Fields the application set with [`Worker::set_status`](crate::Worker::set_status).
    pub app: serde_json::Map<String, serde_json::Value>,
    /// Requests served since the worker started (herd-aware workers
    /// serving with [`Worker::serve`](crate::Worker::serve)).
    pub requests: u64,
    /// Requests under way.
    pub in_flight: u64,
    /// CPU seconds used per second over the last interval.
    pub cpu_per_sec: Option<f64>,
    /// Requests (for a foreign worker: connections handled) per second
    /// over the last heartbeat interval.
    pub requests_per_sec: Option<f64>,
    /// The median request duration over the last interval, in ms.
    pub latency_p50_ms: Option<f64>,
    /// The 99th percentile over the last interval, in ms.
    pub latency_p99_ms: Option<f64>,
    /// Requests per latency bucket since the start (bounds:
    /// [`LATENCY_BOUNDS_MS`](crate::worker::LATENCY_BOUNDS_MS), then one
    /// for slower ones).
    pub latency_buckets: Vec<u64>,
    /// The requests' durations added up, in seconds.
    pub latency_sum_secs: f64,
}

/// Per second, from two counts `dt` apart.
fn rate(now: u64, before: u64, dt: std::time::Duration) -> Option<f64> {
    (dt.as_secs_f64() > 0.0).then(|| now.saturating_sub(before) as f64 / dt.as_secs_f64())
}

impl Heartbeat {
    /// What a worker's heartbeat says, with its interval's figures from
    /// the one before (`prev`, and when it came).
    pub(crate) fn from_beat(
        mut b: Beat,
        prev: Option<&(Instant, Heartbeat)>,
        now: Instant,
    ) -> Heartbeat {
        // What a worker sends is checked: a histogram of another shape is
        // no histogram.
        if b.latency_buckets.len() != crate::worker::LATENCY_BOUNDS_MS.len() + 1 {
            b.latency_buckets.clear();
        }
        let cpu_per_sec = prev.and_then(|(at, p)| {
            let dt = now.saturating_duration_since(*at).as_secs_f64();
            (dt > 0.0).then(|| b.cpu_ms.saturating_sub(p.cpu_ms) as f64 / 1000.0 / dt)
        });
        let (rps, p50, p99) = match prev {
            Some((at, p)) => {
                let dt = now.saturating_duration_since(*at);
                let delta: Vec<u64> = b
                    .latency_buckets
                    .iter()
                    .enumerate()
                    .map(|(i, n)| n.saturating_sub(p.latency_buckets.get(i).copied().unwrap_or(0)))
                    .collect();
                (
                    rate(b.requests, p.requests, dt),
                    crate::worker::quantile_ms(&delta, 0.5),
                    crate::worker::quantile_ms(&delta, 0.99),
                )
            }
            None => (None, None, None),
        };
        Heartbeat {
            uptime_ms: b.uptime_ms,
            rss: b.rss,
            cpu_ms: b.cpu_ms,
            open: b.open,
            handled: b.handled,
            app: b.app,
            requests: b.requests,
            in_flight: b.in_flight,
            cpu_per_sec,
            requests_per_sec: rps,
            latency_p50_ms: p50,
            latency_p99_ms: p99,
            latency_buckets: b.latency_buckets,
            latency_sum_secs: b.latency_sum_us as f64 / 1e6,
        }
    }

    /// A foreign worker's `HERD_HANDLED=N`, with the rate since the last.
    pub(crate) fn with_handled(
        mut self,
        handled: u64,
        since: Option<Instant>,
        now: Instant,
    ) -> Heartbeat {
        if let Some(at) = since {
            self.requests_per_sec = rate(handled, self.handled, now.saturating_duration_since(at));
        }
        self.handled = handled;
        self
    }
}

/// One listen, as [`Primary::listens`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ListenStatus {
    /// Its handle (the order listens were made in).
    pub handle: u32,
    /// The address, as bound (in JSON, its text form).
    #[serde(serialize_with = "crate::addr::as_text")]
    pub address: crate::ListenAddr,
    /// Workers in it.
    pub workers: usize,
    /// Connections the primary handed to workers since it began (`rr`,
    /// `lc`; 0 where workers accept themselves).
    pub handed_off: u64,
    /// Accepted by the primary and waiting for a worker with room.
    pub waiting: u64,
    /// In workers' connection queues, not yet taken.
    pub queued: u64,
}

impl Primary {
    /// Every listen of the cluster now, with its hand-off counts.
    pub fn listens(&self) -> Vec<ListenStatus> {
        self.inner.table.listens()
    }

    /// What the primary's thread's watches for its workers' next requests
    /// came to (docs/architecture.md, "Doorbells"); `None` when the watch
    /// is off (`HERD_PRIMARY_SPIN_US=0`).
    pub fn watch_stats(&self) -> Option<crate::WatchStats> {
        self.inner.doorbells.as_ref().map(|b| b.stats())
    }

    /// A snapshot of every live worker, by id: state, memory, CPU,
    /// connections, what it reports. Reads /proc (for foreign workers'
    /// connections, the TCP table too: on a busy machine that takes a
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
        let workers = self.workers();
        let inodes = (workers.iter().any(|w| w.is_foreign()) && !ports.is_empty())
            .then(|| procfs::tcp_connection_inodes(&ports));
        // One scan of /proc for every worker's tree.
        let pids: Vec<u32> = workers.iter().map(|w| w.pid()).collect();
        let trees = procfs::trees(&pids);
        let tree_of = |pid: u32| {
            std::iter::once(pid)
                .chain(trees.get(&pid).into_iter().flatten().copied())
                .map(Proc::Pid)
                .collect::<Vec<_>>()
        };
        // A sum over the tree; `None` when the worker's own process is
        // gone (or unreadable).
        let sum = |tree: &[Proc], read: &dyn Fn(Proc) -> Option<u64>| {
            let first = read(*tree.first()?)?;
            Some(first + tree[1..].iter().filter_map(|p| read(*p)).sum::<u64>())
        };
        workers
            .into_iter()
            .map(|w| {
                let beat = w.last_heartbeat();
                let tree = tree_of(w.pid());
                let (connections, handled, status) = if w.is_foreign() {
                    let handled = beat.as_ref().map(|(_, b)| b.handled).filter(|h| *h > 0);
                    (
                        inodes
                            .as_ref()
                            .and_then(|i| procfs::count_sockets_in(&tree, i)),
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
                let served = beat
                    .as_ref()
                    .map(|(_, b)| b)
                    .filter(|b| !w.is_foreign() && !b.latency_buckets.is_empty());
                let rate = beat.as_ref().and_then(|(_, b)| b.requests_per_sec);
                WorkerStatus {
                    requests: served.map(|b| b.requests),
                    requests_per_sec: rate,
                    in_flight: served.map(|b| b.in_flight),
                    latency_p50_ms: served.and_then(|b| b.latency_p50_ms),
                    latency_p99_ms: served.and_then(|b| b.latency_p99_ms),
                    latency: served.map(|b| (b.latency_buckets.clone(), b.latency_sum_secs)),
                    id: w.id(),
                    pid: w.pid(),
                    state: w.state(),
                    leaving: w.exited_after_disconnect(),
                    drained: self.is_drained(w.id()),
                    foreign: w.is_foreign(),
                    uptime_secs: w.started().elapsed().as_secs_f64(),
                    rss_bytes: sum(&tree, &procfs::rss_bytes),
                    cpu_secs: sum(&tree, &procfs::cpu_ms).map(|ms| ms as f64 / 1000.0),
                    connections,
                    handled,
                    heartbeat_age_secs: beat.map(|(t, _)| t.elapsed().as_secs_f64()),
                    status,
                }
            })
            .collect()
    }
}
