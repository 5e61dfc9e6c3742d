//! Heartbeats: what a worker reports at each interval, including the fields
//! the application sets with `Worker::set_status`, reaches the primary's
//! `WorkerHandle::last_heartbeat`.

mod common;

use common::*;
use serde_json::{json, Value};

/// Asks for worker `id`'s last heartbeat until `cond` holds for it; returns
/// that answer (fails after [`TIMEOUT`]).
fn heartbeat_until(c: &mut Cluster, id: u32, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        c.cmd(json!({"cmd": "heartbeat", "worker": id}));
        let v = c.expect(|v| v["event"] == "heartbeat" && v["worker"] == id);
        if cond(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last heartbeat of worker {id}: {v}"
        );
        // The next beat is at most one interval (50 ms) away.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn the_applications_status_fields_reach_the_primarys_last_heartbeat() {
    let mut c = Cluster::start(&[("FIXTURE_HEARTBEAT_MS", "50")]);
    let (id, addr) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    c.cmd(json!({"cmd": "send", "worker": id, "msg":
        {"cmd": "status", "key": "queue", "value": {"depth": 7, "name": "jobs"}}}));
    c.cmd(json!({"cmd": "send", "worker": id, "msg":
        {"cmd": "status", "key": "build", "value": "1.2.3"}}));
    let v = heartbeat_until(&mut c, id, |v| v["beat"]["app"]["build"] == "1.2.3");
    assert_eq!(
        v["beat"]["app"]["queue"],
        json!({"depth": 7, "name": "jobs"})
    );
    assert!(v["age_ms"].as_u64().unwrap() < 5_000, "{v}");

    // The core's own fields: connections handled so far.
    for _ in 0..3 {
        http_get(&addr, "/").unwrap();
    }
    let v = heartbeat_until(&mut c, id, |v| v["beat"]["handled"].as_u64() >= Some(3));
    assert_eq!(
        v["beat"]["open"].as_u64().map(|n| n <= 1),
        Some(true),
        "{v}"
    );
    // A field set again replaces the old value.
    c.cmd(json!({"cmd": "send", "worker": id, "msg":
        {"cmd": "status", "key": "queue", "value": {"depth": 0}}}));
    heartbeat_until(&mut c, id, |v| v["beat"]["app"]["queue"]["depth"] == 0);
}

#[test]
fn a_heartbeat_reports_the_workers_uptime_memory_and_cpu_time() {
    let mut c = Cluster::start(&[("FIXTURE_HEARTBEAT_MS", "50")]);
    let (id, _addr) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let first = heartbeat_until(&mut c, id, |v| v["beat"]["rss"].as_u64() > Some(0));
    let rss0 = first["beat"]["rss"].as_u64().unwrap();
    assert!(
        rss0 > 1 << 20,
        "a tokio process uses more than 1 MiB: {first}"
    );
    let up0 = first["beat"]["uptime_ms"].as_u64().unwrap();
    // Touching 64 MiB shows in the resident memory, and takes CPU time.
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "alloc", "mb": 64}}));
    c.expect(|v| v["event"] == "message" && v["message"]["allocated"] == 64);
    let later = heartbeat_until(&mut c, id, |v| {
        v["beat"]["rss"].as_u64() > Some(rss0 + (48 << 20))
    });
    assert!(
        later["beat"]["uptime_ms"].as_u64().unwrap() > up0,
        "{later}"
    );
    assert!(later["beat"]["cpu_ms"].as_u64().unwrap() > 0, "{later}");
}
