//! The restart policies (always, on-failure, never) and the respawn
//! backoff: exponential, capped, and reset once a worker is ready.

mod common;
mod supervised;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use supervised::*;

/// How long a respawn that should not happen is waited for. Respawns after
/// a ready worker dies are immediate, so this is ample.
const NO_RESPAWN: Duration = Duration::from_millis(1500);

/// Asserts that no worker beyond `last` is forked within [`NO_RESPAWN`].
fn assert_no_fork_after(c: &mut Cluster, last: u64) {
    let fork = c.expect_within(NO_RESPAWN, |v| {
        v["event"] == "fork" && v["worker"].as_u64() > Some(last)
    });
    assert!(fork.is_none(), "unexpected respawn:\n{}", c.dump());
}

fn exit_with(c: &mut Cluster, worker: u32, code: i32) -> Value {
    c.cmd(json!({"cmd": "send", "worker": worker, "msg": {"cmd": "exit", "code": code}}));
    c.expect_event("exit", worker)
}

#[test]
fn on_failure_respawns_a_crash_but_not_a_clean_exit() {
    let (mut c, addr) = supervised(2, &[]);
    let exit = exit_with(&mut c, 1, 3);
    assert_eq!(exit["code"], 3);
    assert_eq!(exit["exited_after_disconnect"], false);
    // The crash is respawned at once (worker 1 was ready: no backoff).
    c.expect_event("ready", 3);
    let exit = exit_with(&mut c, 2, 0);
    assert_eq!(exit["code"], 0);
    assert_no_fork_after(&mut c, 3);
    assert_eq!(live_workers(&mut c), vec![3]);
    assert_eq!(http_get(&addr, "/").unwrap(), "worker 3\n");
}

#[test]
fn always_respawns_a_clean_exit_but_not_a_worker_the_primary_let_go() {
    let (mut c, _addr) = supervised(2, &[("FIXTURE_SUP_RESTART", "always")]);
    let exit = exit_with(&mut c, 1, 0);
    assert_eq!(exit["code"], 0);
    c.expect_event("ready", 3);
    // A disconnect asked for through the worker's handle is deliberate.
    c.cmd(json!({"cmd": "disconnect", "worker": 2}));
    let exit = c.expect_event("exit", 2);
    assert_eq!(exit["exited_after_disconnect"], true, "{exit}");
    assert_no_fork_after(&mut c, 3);
    assert_eq!(live_workers(&mut c), vec![3]);
}

#[test]
fn a_crash_under_never_leaves_the_slot_down_and_the_other_worker_serves() {
    let (mut c, addr) = supervised(2, &[("FIXTURE_SUP_RESTART", "never")]);
    let exit = exit_with(&mut c, 1, 7);
    assert_eq!(exit["exited_after_disconnect"], false);
    assert_no_fork_after(&mut c, 2);
    assert_eq!(live_workers(&mut c), vec![2]);
    assert_eq!(http_get(&addr, "/").unwrap(), "worker 2\n");
}

#[test]
fn respawn_delays_double_up_to_the_cap_and_reset_once_a_worker_is_ready() {
    let (mut c, _addr) = supervised(
        1,
        &[
            ("FIXTURE_SUP_BACKOFF_MS", "50"),
            ("FIXTURE_SUP_BACKOFF_MAX_MS", "400"),
            ("FIXTURE_SUP_CRASH_LIMIT", "100"),
        ],
    );
    // From now on new workers die at start; then crash the ready one.
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_MODE": "exit", "FIXTURE_EXIT_CODE": "9"}}));
    exit_with(&mut c, 1, 1);
    let first = c.expect_event("fork", 2);
    // Worker k dies at start; the gap to worker k+1's fork is the backoff.
    let mut gaps = Vec::new();
    for k in 2..=8u32 {
        let exit = c.expect_event("exit", k);
        assert_eq!(exit["code"], 9, "{exit}");
        if k == 8 {
            // Let the next one boot: the backoff resets once it is ready.
            c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_MODE": "serve"}}));
        }
        let fork = c.expect_event("fork", k + 1);
        gaps.push(t_ms(&fork) - t_ms(&exit));
    }
    // Nominal: 50, 100, 200, 400 (the cap), 400, 400, 400. (`t_ms` is when
    // a line was printed, a few ms after its event: hence the 20 ms.)
    let nominal = [50, 100, 200, 400, 400, 400, 400];
    for (gap, want) in gaps.iter().zip(nominal) {
        assert!(
            *gap + 20 >= want && *gap < want + 300,
            "respawn gaps {gaps:?} (ms), want about {nominal:?}"
        );
    }
    assert!(gaps[3] >= 3 * gaps[0], "no growth: {gaps:?}");
    let _ = first;
    // Worker 9 boots; kill it: a ready worker's death is respawned at once.
    c.expect_event("ready", 9);
    let exit = exit_with(&mut c, 9, 1);
    let fork = c.expect_event("fork", 10);
    let gap = t_ms(&fork) - t_ms(&exit);
    assert!(gap < 40, "respawn after a ready worker died took {gap} ms");
    c.expect_event("ready", 10);
}

#[test]
fn a_worker_that_dies_while_its_successor_boots_is_not_respawned_beside_it() {
    let (mut c, _addr) = supervised(2, &[("FIXTURE_READINESS", "explicit")]);
    // Successors listen but wait to be told they are ready.
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_WARMUP": "manual"}}));
    c.cmd(json!({"cmd": "reload"}));
    c.expect_event("listening", 3);
    // Worker 1 (being replaced by 3) crashes meanwhile: its slot waits for
    // worker 3 instead of getting a fresh worker beside it.
    exit_with(&mut c, 1, 1);
    assert_no_fork_after(&mut c, 3);
    c.cmd(json!({"cmd": "send", "worker": 3, "msg": {"cmd": "ready"}}));
    c.expect_event("ready", 3);
    c.expect_event("listening", 4);
    c.cmd(json!({"cmd": "send", "worker": 4, "msg": {"cmd": "ready"}}));
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "finished", "{v}");
    c.expect_event("exit", 2);
    // Exactly the two successors: no third worker respawned into slot 0.
    let mut ids = live_workers(&mut c);
    ids.sort();
    assert_eq!(ids, vec![3, 4], "{}", c.dump());
    assert_no_fork_after(&mut c, 4);
}
