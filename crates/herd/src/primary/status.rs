//! [`WorkerStatus`]: one worker as the primary sees it now, for status
//! pages and `herd ctl status`.

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
    /// A foreign program rather than a herd-aware worker.
    pub foreign: bool,
    /// Seconds since it was started.
    pub uptime_secs: f64,
    /// Resident memory in bytes, from /proc.
    pub rss_bytes: Option<u64>,
    /// CPU time used (user and system) in seconds, from /proc.
    pub cpu_secs: Option<f64>,
    /// Open connections: reported by a herd-aware worker; counted from
    /// /proc for a foreign one (TCP only).
    pub connections: Option<u64>,
    /// Connections handled since start, when reported.
    pub handled: Option<u64>,
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
}

impl From<Beat> for Heartbeat {
    fn from(b: Beat) -> Heartbeat {
        Heartbeat {
            uptime_ms: b.uptime_ms,
            rss: b.rss,
            cpu_ms: b.cpu_ms,
            open: b.open,
            handled: b.handled,
            app: b.app,
        }
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
        workers
            .into_iter()
            .map(|w| {
                let beat = w.last_heartbeat();
                let p = Proc::Pid(w.pid());
                let (connections, handled, status) = if w.is_foreign() {
                    let handled = beat.as_ref().map(|(_, b)| b.handled).filter(|h| *h > 0);
                    (
                        inodes.as_ref().and_then(|i| procfs::count_sockets(p, i)),
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
                    state: w.state(),
                    leaving: w.exited_after_disconnect(),
                    foreign: w.is_foreign(),
                    uptime_secs: w.started().elapsed().as_secs_f64(),
                    rss_bytes: procfs::rss_bytes(p),
                    cpu_secs: procfs::cpu_ms(p).map(|ms| ms as f64 / 1000.0),
                    connections,
                    handled,
                    heartbeat_age_secs: beat.map(|(t, _)| t.elapsed().as_secs_f64()),
                    status,
                }
            })
            .collect()
    }
}
