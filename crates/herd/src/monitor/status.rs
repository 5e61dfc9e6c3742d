//! `/status`: the cluster and every worker as one JSON document (also what
//! `herd ctl status --json` prints).

use serde::Serialize;

use crate::primary::ListenStatus;
use crate::supervise::{ClusterStatus, Health, LastExit, ReloadStatus, SlotStatus};
use crate::WorkerState;

/// The `/status` document: the cluster's figures at the top, then its
/// listeners, slots and workers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Document {
    pub pid: u32,
    pub herd_version: &'static str,
    pub policy: String,
    pub uptime_secs: f64,
    pub wanted: usize,
    pub ready: usize,
    pub health: Health,
    pub marked_down: bool,
    pub stopping: bool,
    pub reload: Option<ReloadStatus>,
    pub replacements: std::collections::BTreeMap<String, u64>,
    pub reloads: crate::supervise::ReloadTotals,
    pub listeners: Vec<ListenStatus>,
    pub slots: Vec<SlotStatus>,
    pub workers: Vec<Worker>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Worker {
    pub id: u32,
    pub pid: u32,
    /// Its slot; none for a worker on its way out.
    pub slot: Option<usize>,
    pub state: WorkerState,
    pub leaving: bool,
    pub foreign: bool,
    pub uptime_secs: f64,
    pub rss_bytes: Option<u64>,
    pub cpu_secs: Option<f64>,
    pub connections: Option<u64>,
    pub handled: Option<u64>,
    pub requests: Option<u64>,
    pub requests_per_sec: Option<f64>,
    pub in_flight: Option<u64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    #[serde(skip)]
    pub latency: Option<(Vec<u64>, f64)>,
    pub heartbeat_age_secs: Option<f64>,
    /// Workers started in its slot before it (crashes, recycles, reloads).
    pub restarts: u32,
    pub last_exit: Option<LastExit>,
    /// What the worker says of itself (`STATUS=`, or its status fields).
    pub status: Option<String>,
}

impl Document {
    pub fn new(s: ClusterStatus, listeners: Vec<ListenStatus>, policy: String) -> Document {
        let workers = s
            .workers
            .iter()
            .map(|w| {
                let slot = s.slot_of(w.id);
                Worker {
                    id: w.id,
                    pid: w.pid,
                    slot: slot.map(|s| s.slot),
                    state: w.state,
                    leaving: w.leaving,
                    foreign: w.foreign,
                    uptime_secs: w.uptime_secs,
                    rss_bytes: w.rss_bytes,
                    cpu_secs: w.cpu_secs,
                    connections: w.connections,
                    handled: w.handled,
                    requests: w.requests,
                    requests_per_sec: w.requests_per_sec,
                    in_flight: w.in_flight,
                    latency_p50_ms: w.latency_p50_ms,
                    latency_p99_ms: w.latency_p99_ms,
                    latency: w.latency.clone(),
                    heartbeat_age_secs: w.heartbeat_age_secs,
                    restarts: slot.map_or(0, |s| s.restarts + s.reloads),
                    last_exit: slot.and_then(|s| s.last_exit.clone()),
                    status: w.status.clone(),
                }
            })
            .collect();
        Document {
            pid: std::process::id(),
            herd_version: env!("CARGO_PKG_VERSION"),
            policy,
            uptime_secs: s.uptime_secs,
            wanted: s.wanted,
            ready: s.ready,
            health: s.health,
            marked_down: s.marked_down,
            stopping: s.stopping,
            reload: s.reload.clone(),
            replacements: s.replacements.clone(),
            reloads: s.reloads.clone(),
            listeners,
            slots: s.slots,
            workers,
        }
    }
}

/// The `/status` document of `sup`'s cluster, as JSON: what `GET /status`
/// answers and `herd ctl status --json` prints. Reads /proc: call it where
/// blocking is fine.
pub fn status_json(sup: &crate::Supervisor) -> serde_json::Value {
    let policy = sup.primary().policy().to_string();
    let doc = Document::new(sup.status(), sup.primary().listens(), policy);
    serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
}
