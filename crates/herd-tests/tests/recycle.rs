//! Recycling by age and by memory: each recycle says why, goes through the
//! successor-first queue one worker at a time, and fails no request.

mod common;
mod supervised;

use serde_json::json;
use supervised::*;

#[test]
fn recycling_by_max_age_replaces_one_worker_at_a_time_and_fails_nothing() {
    let (mut c, addr) = supervised(2, &[("FIXTURE_SUP_MAX_AGE_MS", "800")]);
    let load = Load::start(&addr);
    // Both workers come of age together; they are replaced in turn, and
    // their successors in their turn.
    let mut recycled = Vec::new();
    for _ in 0..4 {
        let v = c.expect(|v| v["event"] == "recycle");
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.contains("older than 800ms"), "{reason}");
        recycled.push(v["worker"].as_u64().unwrap());
    }
    // The last successor ready: nothing is in flight any more.
    let last = c.expect(|v| v["event"] == "fork" && v["worker"] == 6);
    c.expect_event("ready", 6);
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    assert_eq!(recycled, vec![1, 2, 3, 4], "{}", c.dump());
    assert_eq!(
        most_successors_at_once(&c.seen),
        1,
        "two successors at once:\n{}",
        c.dump()
    );
    // A worker recycles no sooner than it is of age.
    let forked = |id: u64| {
        t_ms(
            c.seen
                .iter()
                .find(|v| v["event"] == "fork" && v["worker"] == id)
                .unwrap(),
        )
    };
    for v in c.seen.iter().filter(|v| v["event"] == "recycle") {
        let id = v["worker"].as_u64().unwrap();
        // (`t_ms` is when a line was printed, a few ms after its event.)
        assert!(t_ms(v) + 20 >= forked(id) + 800, "{v}");
    }
    let _ = last;
}

#[test]
fn recycling_by_max_memory_replaces_the_worker_that_grew_and_fails_nothing() {
    let (mut c, addr) = supervised(2, &[("FIXTURE_SUP_MAX_MEMORY", &(96 << 20).to_string())]);
    let load = Load::start(&addr);
    load.wait_more(20);
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "alloc", "mb": 160}}));
    let v = c.expect(|v| v["event"] == "recycle");
    assert_eq!(v["worker"], 1, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("bytes of memory") && reason.contains(&format!("limit {}", 96 << 20)),
        "{reason}"
    );
    c.expect_event("ready", 3);
    let exit = c.expect_event("exit", 1);
    assert_eq!(exit["exited_after_disconnect"], true, "{exit}");
    assert_eq!(exit["code"], 0, "{exit}");
    load.wait_more(50);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    // Only the worker that grew was recycled.
    let recycles: Vec<_> = c.seen.iter().filter(|v| v["event"] == "recycle").collect();
    assert_eq!(recycles.len(), 1, "{}", c.dump());
    let mut ids = live_workers(&mut c);
    ids.sort();
    assert_eq!(ids, vec![2, 3]);
}

#[test]
fn the_applications_own_judgement_replaces_the_worker_it_judges_and_fails_nothing() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_HEARTBEAT_MS", "50"),
            ("FIXTURE_SUP_RECYCLE_WHEN_STATUS", "sick"),
        ],
    );
    let load = Load::start(&addr);
    load.wait_more(20);
    c.cmd(
        json!({"cmd": "send", "worker": 1, "msg": {"cmd": "status", "key": "sick", "value": true}}),
    );
    let v = c.expect(|v| v["event"] == "recycle");
    assert_eq!(v["worker"], 1, "{v}");
    assert_eq!(v["reason"], "worker 1: the application set sick", "{v}");
    // Successor first: worker 3 is ready before worker 1 leaves.
    c.expect(|v| v["event"] == "ready" && v["worker"] == 3);
    let exit = c.expect_event("exit", 1);
    assert_eq!(exit["exited_after_disconnect"], true, "{exit}");
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    assert!(
        c.seen
            .iter()
            .all(|v| !(v["event"] == "recycle" && v["worker"] == 2)),
        "{}",
        c.dump()
    );
}
