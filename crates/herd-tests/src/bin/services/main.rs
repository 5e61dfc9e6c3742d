//! The services between real processes, for tests/services.rs: the
//! transport, the emitter, the status registry, and the services socket's
//! bridge to the emitter.
//!
//! `SVC` (inherited by the workers) picks the scenario; the primary plays
//! its side, prints `{"event":"forked","pid":PID}` for each worker and then
//! one JSON line `{"event":SCENARIO, ...}` with what it saw. Workers print
//! their own lines, `{"event":"worker", "id":N, ...}`. The test kills the
//! primary and every worker it reported when it is done.

#![deny(unsafe_code)]

mod emitter;
mod resp_bridge;
mod status;
mod transport;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

pub fn say(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Forks a worker and reports its pid.
pub fn fork(primary: &herd::Primary) -> herd::WorkerHandle {
    let w = primary.fork().expect("fork");
    say(serde_json::json!({"event": "forked", "pid": w.pid(), "id": w.id()}));
    w
}

/// Waits, at most 20 s, until `n` workers are online.
pub async fn online(events: &mut herd::Events, n: usize) {
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen < n {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(herd::Event::Online { .. })) => seen += 1,
            Ok(Some(_)) => {}
            _ => panic!("{seen} of {n} workers online within 20 s"),
        }
    }
}

#[tokio::main]
async fn main() {
    let scenario = std::env::var("SVC").unwrap_or_default();
    let primary = herd::role() == herd::Role::Primary;
    match (scenario.as_str(), primary) {
        ("transport", true) => transport::primary().await,
        ("transport", false) => transport::worker().await,
        ("flood", true) => {
            transport::flood_primary().await;
            std::future::pending::<()>().await
        }
        ("flood", false) => transport::flood_worker().await,
        // The primaries stay once they reported, for the workers' lines.
        (s, true) if s.starts_with("emit") => {
            emitter::primary(s).await;
            std::future::pending::<()>().await
        }
        (s, false) if s.starts_with("emit") => emitter::worker(s).await,
        (s, true) if s.starts_with("status") => {
            status::primary(s).await;
            std::future::pending::<()>().await
        }
        (s, false) if s.starts_with("status") => status::worker(s).await,
        ("resp-bridge", true) => resp_bridge::primary().await,
        ("resp-bridge", false) => resp_bridge::worker().await,
        (s, _) => panic!("unknown scenario {s:?}"),
    }
}
