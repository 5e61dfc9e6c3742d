//! `/status`: the cluster and every worker as one JSON document (also what
//! `herd ctl status --json` prints).

use serde::Serialize;

use crate::primary::ListenStatus;
use crate::supervise::{ClusterStatus, Health, LastExit, ReloadStatus, SlotStatus};
use crate::WorkerStatus;

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
    /// The cache's Redis link (`up: false` while Redis is away), when the
    /// cache service runs on Redis.
    #[cfg(feature = "redis")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<crate::RedisHealth>,
    /// The status registry's names (`services::status`): what
    /// `get_status` can read, and who holds each. Names only: the values
    /// are `GET /statuses/NAME` (reading them asks every holder).
    pub statuses: Vec<crate::services::StatusName>,
    /// Each named cache's counters (this process's `CacheService`; empty
    /// without one), by name: what `/metrics` shows as `herd_cache_*`.
    pub caches: std::collections::BTreeMap<String, crate::CacheStats>,
    /// The primary's watches for its workers' next requests
    /// (`Primary::watch_stats`); `null` when the watch is off.
    pub watch: Option<crate::WatchStats>,
}

/// One worker in the document: the core's view, and its slot's.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Worker {
    #[serde(flatten)]
    pub status: WorkerStatus,
    /// Its slot; none for a worker on its way out.
    pub slot: Option<usize>,
    /// Workers started in its slot after a crash or to recycle one (not
    /// for reloads, counted apart in `reloads`).
    pub restarts: u32,
    /// Workers that replaced its slot's worker in reloads.
    pub reloads: u32,
    pub last_exit: Option<LastExit>,
}

impl Document {
    pub fn new(s: ClusterStatus, listeners: Vec<ListenStatus>, policy: String) -> Document {
        let workers = s
            .workers
            .iter()
            .map(|w| {
                let slot = s.slot_of(w.id);
                Worker {
                    status: w.clone(),
                    slot: slot.map(|s| s.slot),
                    restarts: slot.map_or(0, |s| s.restarts),
                    reloads: slot.map_or(0, |s| s.reloads),
                    last_exit: slot.and_then(|s| s.last_exit.clone()),
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
            #[cfg(feature = "redis")]
            redis: crate::services::cache::redis_health(),
            statuses: Vec::new(),
            caches: crate::services::cache::metrics_snapshot()
                .into_iter()
                .collect(),
            watch: None,
        }
    }

    /// The document with what `primary` alone knows: the status
    /// registry's names and its watch's figures.
    pub fn with_primary(mut self, primary: &crate::Primary) -> Document {
        if let Ok(reg) = primary.statuses() {
            self.statuses = reg.names();
        }
        self.watch = primary.watch_stats();
        self
    }
}

/// The `/status` document of `sup`'s cluster, as JSON: what `GET /status`
/// answers and `herd ctl status --json` prints. Reads /proc: call it where
/// blocking is fine.
pub fn status_json(sup: &crate::Supervisor) -> serde_json::Value {
    let policy = sup.primary().policy().to_string();
    let doc =
        Document::new(sup.status(), sup.primary().listens(), policy).with_primary(sup.primary());
    serde_json::to_value(doc).unwrap_or(serde_json::Value::Null)
}
