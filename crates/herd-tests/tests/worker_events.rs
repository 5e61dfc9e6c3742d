//! A worker's own events from its fork on: the subscription
//! `Primary::fork_with_events` returns is made before the worker starts,
//! so it sees `Fork` first and the rest of that worker's life, and nothing
//! of any other worker, however fast the forks follow each other.

mod probe;

use probe::Probe;
use serde_json::json;

#[test]
fn a_per_worker_subscription_from_fork_sees_fork_first_then_its_whole_life_only() {
    let n = 12;
    let dir = std::env::temp_dir();
    let mut p = Probe::start(&["events"], &dir, &[("PROBE_FORKS", &n.to_string())]);
    let mut seen = Vec::new();
    for _ in 0..n {
        let v = p.expect("worker_events");
        let id = v["worker"].as_u64().unwrap();
        assert_eq!(
            v["names"],
            json!(["fork", "online", "listening", "ready", "disconnect", "exit"]),
            "worker {id}: {v}"
        );
        let ids = v["ids"].as_array().unwrap();
        assert!(
            ids.iter().all(|w| *w == json!(id)),
            "another worker's event: {v}"
        );
        seen.push(id);
    }
    p.expect("done");
    assert_eq!(seen, (1..=n as u64).collect::<Vec<_>>());
}
