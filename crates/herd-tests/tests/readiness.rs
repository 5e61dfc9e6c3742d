//! Explicit readiness (cluster2's warm-up): with `Readiness::Explicit` a
//! worker gets connections only once it calls `Worker::ready()`, and one that
//! never does is killed at the boot timeout.

mod common;
mod supervised;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use supervised::*;

/// `n` requests, each on a new connection; the answers counted by worker.
fn who_answers(addr: &str, n: usize) -> BTreeMap<u32, usize> {
    let mut by = BTreeMap::new();
    for _ in 0..n {
        let body = http_get(addr, "/").expect("request");
        *by.entry(worker_of(&body)).or_insert(0) += 1;
    }
    by
}

#[test]
fn an_rr_worker_that_listens_but_is_not_ready_gets_no_connection_until_it_says_so() {
    let mut c = Cluster::start(&[("FIXTURE_POLICY", "rr"), ("FIXTURE_READINESS", "explicit")]);
    // Worker 1 says it is ready as soon as it listens.
    let (one, addr) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    // Worker 2 listens on the same port, then waits to be told.
    let two = c.fork(&[
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_WARMUP", "manual"),
    ]);
    assert_eq!(c.address_of(two), addr);
    c.cmd(json!({"cmd": "state", "worker": two}));
    let v = c.expect(|v| v["event"] == "state" && v["worker"] == two);
    assert_eq!(v["state"], "listening", "{v}");

    let before = who_answers(&addr, 30);
    assert_eq!(
        before,
        BTreeMap::from([(one, 30)]),
        "worker {two} is not ready"
    );
    assert!(
        !c.seen
            .iter()
            .any(|v| v["event"] == "ready" && v["worker"] == two),
        "{}",
        c.dump()
    );

    c.cmd(json!({"cmd": "send", "worker": two, "msg": {"cmd": "ready"}}));
    c.expect_event("ready", two);
    let after = who_answers(&addr, 30);
    // Round-robin: both take turns now.
    assert!(
        after.get(&two).copied().unwrap_or(0) >= 10,
        "after ready(): {after:?}"
    );
    assert!(after.get(&one).copied().unwrap_or(0) >= 10, "{after:?}");
}

#[test]
fn a_worker_that_never_says_ready_is_killed_at_the_boot_timeout_and_the_breaker_says_why() {
    let mut c = Cluster::start(&[
        ("FIXTURE_SUPERVISE", "1"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_READINESS", "explicit"),
        ("FIXTURE_WARMUP", "manual"),
        ("FIXTURE_SUP_BOOT_TIMEOUT_MS", "400"),
        ("FIXTURE_SUP_CRASH_LIMIT", "2"),
        ("FIXTURE_SUP_BACKOFF_MS", "20"),
    ]);
    let fork = c.expect_event("fork", 1);
    c.expect_event("listening", 1);
    let exit = c.expect_event("exit", 1);
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    // (`t_ms` is when each line was printed, a few ms after the event.)
    let lived = t_ms(&exit) - t_ms(&fork);
    assert!(
        (350..3000).contains(&lived),
        "killed after {lived} ms, boot timeout 400 ms"
    );
    // Its replacement is no better: two deaths before ready trip the breaker.
    c.expect_event("exit", 2);
    let v = c.expect(|v| v["event"] == "critical");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("2 times") && reason.contains("not ready within 400ms"),
        "{reason}"
    );
    assert!(
        !c.seen.iter().any(|v| v["event"] == "ready"),
        "{}",
        c.dump()
    );
}

#[test]
fn a_reload_whose_successor_never_becomes_ready_aborts_at_the_boot_timeout() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_READINESS", "explicit"),
            ("FIXTURE_SUP_BOOT_TIMEOUT_MS", "500"),
        ],
    );
    let load = Load::start(&addr);
    load.wait_more(20);
    // From now on new workers listen but never say they are ready.
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_WARMUP": "manual"}}));
    c.cmd(json!({"cmd": "reload"}));
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "aborted", "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("not ready within"),
        "{v}"
    );
    // The successor (worker 3) got nothing and was killed; 1 and 2 serve on.
    let exit = c.expect_event("exit", 3);
    assert_eq!(exit["signal"], "SIGKILL", "{exit}");
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    let mut ids = live_workers(&mut c);
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}
