//! Scaling: `scale(n)` up and down, SIGTTIN / SIGTTOU one worker up or
//! down; a worker scaled away leaves gracefully, so no request fails.

mod common;
mod supervised;

use std::collections::BTreeSet;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;
use supervised::*;

/// Waits until workers `ids` are all ready.
fn expect_ready(c: &mut Cluster, ids: &[u32]) {
    for id in ids {
        c.expect_event("ready", *id);
    }
}

/// Waits until workers `ids` have all exited, each gracefully (asked to
/// disconnect, exit code 0).
fn expect_graceful_exits(c: &mut Cluster, ids: &[u32]) {
    for id in ids {
        let v = c.expect_event("exit", *id);
        assert_eq!(v["exited_after_disconnect"], true, "{v}");
        assert_eq!(v["code"], 0, "{v}");
    }
}

/// Requests on new connections until every worker of `ids` has answered.
fn all_answer(addr: &str, ids: &[u32]) {
    let want: BTreeSet<u32> = ids.iter().copied().collect();
    let mut seen = BTreeSet::new();
    assert!(
        wait_until(TIMEOUT, || {
            seen.insert(worker_of(&http_get(addr, "/").expect("request")));
            seen.is_superset(&want)
        }),
        "only {seen:?} answered, want {want:?}"
    );
}

#[test]
fn scale_up_then_down_under_load_fails_no_request() {
    let (mut c, addr) = supervised(2, &[]);
    let load = Load::start(&addr);
    c.cmd(json!({"cmd": "scale", "workers": 4}));
    expect_ready(&mut c, &[3, 4]);
    all_answer(&addr, &[1, 2, 3, 4]);
    load.wait_more(50);
    c.cmd(json!({"cmd": "scale", "workers": 1}));
    // The newest go first; the first worker stays.
    expect_graceful_exits(&mut c, &[2, 3, 4]);
    load.wait_more(50);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    assert_eq!(live_workers(&mut c), vec![1]);
    assert!(
        !c.seen
            .iter()
            .any(|v| v["event"] == "fork" && v["worker"].as_u64() > Some(4)),
        "scaling down respawned something:\n{}",
        c.dump()
    );
}

#[test]
fn sigttin_adds_one_worker_and_sigttou_removes_one_under_load() {
    let (mut c, addr) = supervised(2, &[]);
    let load = Load::start(&addr);
    c.signal_primary(Signal::SIGTTIN);
    expect_ready(&mut c, &[3]);
    all_answer(&addr, &[1, 2, 3]);
    c.signal_primary(Signal::SIGTTOU);
    expect_graceful_exits(&mut c, &[3]);
    c.signal_primary(Signal::SIGTTOU);
    expect_graceful_exits(&mut c, &[2]);
    load.wait_more(50);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    assert_eq!(live_workers(&mut c), vec![1]);
    // And up again from one.
    c.signal_primary(Signal::SIGTTIN);
    expect_ready(&mut c, &[4]);
    all_answer(&addr, &[1, 4]);
}

#[test]
fn scaling_down_during_a_surge_reload_cancels_the_successors_of_the_slots_removed() {
    let (mut c, addr) = supervised(
        3,
        &[
            ("FIXTURE_READINESS", "explicit"),
            ("FIXTURE_SUP_SURGE", "3"),
        ],
    );
    let load = Load::start(&addr);
    // Successors listen but wait to be told they are ready: all three boot
    // at once (surge 3).
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_WARMUP": "manual"}}));
    c.cmd(json!({"cmd": "reload"}));
    for id in [4, 5, 6] {
        c.expect_event("listening", id);
    }
    c.cmd(json!({"cmd": "scale", "workers": 1}));
    expect_graceful_exits(&mut c, &[2, 3]);
    for id in [5, 6] {
        let v = c.expect_event("exit", id);
        assert_eq!(v["signal"], "SIGKILL", "{v}");
    }
    c.cmd(json!({"cmd": "send", "worker": 4, "msg": {"cmd": "ready"}}));
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "finished", "{v}");
    expect_graceful_exits(&mut c, &[1]);
    load.wait_more(50);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    assert_eq!(live_workers(&mut c), vec![4], "{}", c.dump());
}
