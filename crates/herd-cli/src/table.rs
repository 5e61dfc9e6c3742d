//! `herd ctl status` as a table: the current workers (one per slot, and a
//! successor booting to replace one), then, apart, the old workers still
//! leaving (after a reload or a recycle, finishing their connections).
//! The header counts the current ones only.
//!
//! Columns: RSS, CONNS and CPU are the worker's whole process tree (a
//! gunicorn master's children too); CPU is the CPU time used since the
//! worker started (user plus system), not a percentage; RESTARTS counts the
//! workers started in its slot after a crash or to recycle one, never for
//! a reload; LAST EXIT is how its slot's previous worker ended, and when.

use crate::client::{columns, human_bytes, human_duration};
use crate::ctl::{Status, WorkerStatusOut};

/// The status as a table.
pub fn table(s: &Status) -> String {
    let (current, leaving): (Vec<&WorkerStatusOut>, Vec<&WorkerStatusOut>) = s
        .workers
        .iter()
        .partition(|w| w.slot.is_some() && !w.leaving);
    let mut out = format!(
        "herd {:?} (pid {}): {} of {} workers ready{}, policy {}, ready when {}{}{}\n",
        s.name,
        s.pid,
        s.ready,
        s.wanted,
        if leaving.is_empty() {
            String::new()
        } else {
            format!(" ({} old leaving)", leaving.len())
        },
        s.policy,
        s.ready_rule,
        if s.reloading { ", reloading" } else { "" },
        if s.stopping { ", stopping" } else { "" },
    );
    for l in &s.listening {
        out.push_str(&format!(
            "listening on {} (fd {}, name {})\n",
            l.address, l.fd, l.name
        ));
    }
    let mut rows = vec![header()];
    rows.extend(current.iter().map(|w| row(w)));
    out.push_str(&columns(rows));
    if !leaving.is_empty() {
        out.push_str(&format!(
            "leaving ({}): replaced, finishing their connections\n",
            leaving.len()
        ));
        let mut rows = vec![header()];
        rows.extend(leaving.iter().map(|w| row(w)));
        out.push_str(&columns(rows));
    }
    out
}

fn header() -> [String; 12] {
    [
        "ID",
        "PID",
        "STATE",
        "UPTIME",
        "RSS",
        "CPU",
        "CONNS",
        "REQ/S",
        "P99",
        "RESTARTS",
        "LAST EXIT",
        "STATUS",
    ]
    .map(String::from)
}

fn row(w: &WorkerStatusOut) -> [String; 12] {
    [
        w.id.to_string(),
        w.pid.to_string(),
        if w.leaving && w.state != "dead" {
            "leaving".to_string()
        } else {
            w.state.clone()
        },
        human_duration(w.uptime_secs),
        w.rss_bytes.map_or("-".into(), human_bytes),
        w.cpu_secs.map_or("-".into(), |c| format!("{c:.1}s")),
        w.connections.map_or("-".into(), |c| c.to_string()),
        w.requests_per_sec.map_or("-".into(), |r| format!("{r:.1}")),
        w.latency_p99_ms.map_or("-".into(), |p| format!("{p:.1}ms")),
        w.restarts.to_string(),
        w.last_exit.as_ref().map_or("-".into(), |(why, ago)| {
            format!("{why} {} ago", human_duration(*ago))
        }),
        w.status.clone().unwrap_or_else(|| "-".into()),
    ]
}
