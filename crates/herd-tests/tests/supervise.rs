//! The supervisor: respawn, crash-loop breaker, rolling restarts that drop
//! nothing, the nanny, recycling and graceful shutdown.

mod common;
mod supervised;

use std::time::Duration;

use common::*;
use serde_json::json;
use supervised::*;

fn zero_loss_reloads(policy: &str) {
    let (mut c, addr) = supervised(2, &[("FIXTURE_POLICY", policy)]);
    let load = Load::start(&addr);
    for _ in 0..20 {
        c.cmd(json!({"cmd": "reload"}));
        let v = c.expect(|v| {
            v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
        });
        assert_eq!(v["phase"], "finished", "{v}");
        assert_eq!(v["replaced"], 2);
    }
    let (ok, failed, errors) = load.finish();
    assert_eq!(
        failed,
        0,
        "{policy}: {failed} failed requests of {}: {errors:?}",
        ok + failed
    );
    assert!(ok > 100, "{policy}: only {ok} requests made it");
}

#[test]
fn twenty_rolling_reloads_under_load_drop_nothing_rr() {
    zero_loss_reloads("rr");
}

#[test]
fn twenty_rolling_reloads_under_load_drop_nothing_reuseport() {
    zero_loss_reloads("reuseport");
}

#[test]
fn a_reload_whose_new_build_cannot_boot_aborts_and_the_old_workers_keep_serving() {
    let (mut c, addr) = supervised(2, &[]);
    let load = Load::start(&addr);
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_MODE": "exit", "FIXTURE_EXIT_CODE": "3"}}));
    c.cmd(json!({"cmd": "reload"}));
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "aborted", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("before it was ready"),
        "{v}"
    );
    let body = http_get(&addr, "/").unwrap();
    assert!(
        body.starts_with("worker 1") || body.starts_with("worker 2"),
        "{body}"
    );
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > 0);
}

#[test]
fn a_worker_that_crashes_at_start_trips_the_breaker_and_the_others_keep_serving() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_SUP_CRASH_LIMIT", "3"),
            ("FIXTURE_SUP_BACKOFF_MS", "20"),
        ],
    );
    // From now on new workers crash at start; then crash worker 1.
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_MODE": "exit", "FIXTURE_EXIT_CODE": "9"}}));
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "exit", "code": 1}}));
    let v = c.expect(|v| v["event"] == "critical");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("3 times") && reason.contains("exit code 9"),
        "{reason}"
    );
    assert_eq!(http_get(&addr, "/").unwrap(), "worker 2\n");
}

#[test]
fn a_worker_exiting_with_the_cannot_boot_code_trips_the_breaker_at_once() {
    let (mut c, _addr) = supervised(1, &[]);
    c.cmd(
        json!({"cmd": "send", "worker": 1, "msg": {"cmd": "exit", "code": herd::EXIT_CANNOT_BOOT}}),
    );
    let v = c.expect(|v| v["event"] == "critical");
    assert!(v["reason"].as_str().unwrap().contains("cannot boot"), "{v}");
    assert!(
        !c.seen
            .iter()
            .any(|v| v["event"] == "fork" && v["worker"] == 2),
        "{}",
        c.dump()
    );
}

#[test]
fn a_worker_that_blocks_its_runtime_is_replaced_by_the_nanny() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_HEARTBEAT_MS", "100"),
            ("FIXTURE_SUP_HEARTBEAT_TIMEOUT_MS", "1000"),
        ],
    );
    let pid = c.worker_pid(1);
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "spin"}}));
    let exit = c.expect_event("exit", 1);
    assert_eq!(exit["signal"], "SIGKILL");
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
    // Its successor (worker 3) was ready before it was killed.
    let ready = c
        .seen
        .iter()
        .position(|v| v["event"] == "ready" && v["worker"] == 3);
    let exit = c
        .seen
        .iter()
        .position(|v| v["event"] == "exit" && v["worker"] == 1);
    assert!(ready.is_some() && ready < exit, "{}", c.dump());
    assert!(http_get(&addr, "/").is_ok());
}

#[test]
fn recycling_by_max_requests_with_jitter_spreads_recycles_and_fails_nothing() {
    let (mut c, addr) = supervised(
        3,
        &[
            ("FIXTURE_SUP_MAX_REQUESTS", "30"),
            ("FIXTURE_SUP_JITTER", "300"),
            ("FIXTURE_HEARTBEAT_MS", "50"),
        ],
    );
    let load = Load::start(&addr);
    // Each of the three first workers is recycled once it has handled its
    // own limit: 30 plus a jitter of 0..=300 drawn per worker.
    let mut limits = Vec::new();
    for id in 1..=3 {
        let v = c.expect(|v| v["event"] == "recycle" && v["worker"] == id);
        let reason = v["reason"].as_str().unwrap();
        // "worker N handled H connections (limit L)"
        let number_after = |word: &str| -> u64 {
            let rest = reason
                .split(word)
                .nth(1)
                .unwrap_or_else(|| panic!("{reason}"));
            rest.trim_start()
                .split(|ch: char| !ch.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{reason}"))
        };
        let (handled, limit) = (number_after("handled"), number_after("limit"));
        assert!((30..=330).contains(&limit), "{reason}");
        assert!(handled >= limit, "{reason}");
        limits.push(limit);
    }
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    // With jitter the workers do not share one limit (all three equal by
    // chance: about 1 in 90,000), so they recycle at different times.
    assert!(limits.iter().any(|l| *l != limits[0]), "{limits:?}");
    assert_eq!(most_successors_at_once(&c.seen), 1, "{}", c.dump());
}

#[test]
fn graceful_shutdown_lets_a_slow_request_finish_and_exits_0() {
    let (mut c, addr) = supervised(1, &[]);
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || http_get(&addr, "/slow?ms=700&notify=1")
    });
    c.expect(|v| v["event"] == "message" && v["message"]["slow_started"].is_u64());
    c.signal_primary(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(slow.join().unwrap().unwrap(), "slow done by 1\n");
    let status = c.wait_exit(Duration::from_secs(10)).expect("primary exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn past_the_grace_period_the_worker_is_killed_and_the_exit_code_says_so() {
    let (mut c, addr) = supervised(1, &[("FIXTURE_SUP_GRACE_MS", "300")]);
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || http_get(&addr, "/slow?ms=5000&notify=1")
    });
    c.expect(|v| v["event"] == "message" && v["message"]["slow_started"].is_u64());
    c.signal_primary(nix::sys::signal::Signal::SIGTERM);
    let status = c.wait_exit(Duration::from_secs(10)).expect("primary exits");
    c.expect_within(Duration::from_millis(200), |_| false);
    assert_eq!(status.code(), Some(1), "{}", c.dump());
    assert!(slow.join().unwrap().is_err());
}
