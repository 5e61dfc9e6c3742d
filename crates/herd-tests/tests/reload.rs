//! Rolling restarts beyond the basics in supervise.rs: a surge of several
//! successors at once, SIGHUP, and a reload that starts the executable now
//! on disk (a new build).

mod common;
mod supervised;

use std::os::unix::fs::PermissionsExt;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;
use supervised::*;

/// Waits for the end of the running reload; asserts it finished, replacing
/// `n` workers.
fn expect_finished(c: &mut Cluster, n: u64) -> serde_json::Value {
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "finished", "{v}");
    assert_eq!(v["replaced"], n, "{v}");
    v
}

#[test]
fn a_reload_with_surge_2_replaces_two_at_a_time_and_drops_nothing() {
    let (mut c, addr) = supervised(4, &[("FIXTURE_SUP_SURGE", "2")]);
    let load = Load::start(&addr);
    for _ in 0..5 {
        c.cmd(json!({"cmd": "reload"}));
        expect_finished(&mut c, 4);
    }
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    // Two successors boot together, never three.
    assert_eq!(
        most_successors_at_once(&c.seen),
        2,
        "surge 2:\n{}",
        c.dump()
    );
    for old in 17..=20 {
        c.expect_event("exit", old);
    }
    let mut ids = live_workers(&mut c);
    ids.sort();
    assert_eq!(ids, vec![21, 22, 23, 24]);
}

#[test]
fn sighup_to_the_primary_starts_a_rolling_restart() {
    let (mut c, addr) = supervised(2, &[]);
    let load = Load::start(&addr);
    c.signal_primary(Signal::SIGHUP);
    let v = c.expect(|v| v["event"] == "reload");
    assert_eq!(v["phase"], "started", "{v}");
    assert_eq!(v["workers"], 2, "{v}");
    expect_finished(&mut c, 2);
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    c.expect_event("exit", 1);
    c.expect_event("exit", 2);
    let mut ids = live_workers(&mut c);
    ids.sort();
    assert_eq!(ids, vec![3, 4]);
    assert_eq!(
        most_successors_at_once(&c.seen),
        1,
        "one at a time by default:\n{}",
        c.dump()
    );
}

/// The build a fixture's answer names: `worker N build B`.
fn build_of(body: &str) -> String {
    body.trim()
        .rsplit_once(" build ")
        .map(|(_, b)| b.to_string())
        .unwrap_or_else(|| panic!("no build in {body:?}"))
}

#[test]
fn a_reload_starts_the_new_executable_put_on_disk_at_the_same_path() {
    let dir = TempDir::new();
    let app = dir.path().join("app");
    // Build "a": a copy of the fixture, which answers `build a` because the
    // primary (and so its workers) run with FIXTURE_BUILD=a.
    std::fs::copy(env!("CARGO_BIN_EXE_fixture"), &app).unwrap();
    let (mut c, addr) = {
        let mut c = Cluster::start_with(
            Options::new()
                .program(&app)
                .env("FIXTURE_BUILD", "a")
                .env("FIXTURE_SUPERVISE", "2")
                .env("FIXTURE_LISTEN", "127.0.0.1:0"),
        );
        let addr = c.expect(|v| v["event"] == "listening")["address"]
            .as_str()
            .unwrap()
            .to_string();
        c.expect_event("ready", 1);
        c.expect_event("ready", 2);
        (c, addr)
    };
    assert_eq!(build_of(&http_get(&addr, "/").unwrap()), "a");
    let load = Load::start(&addr);

    // Deploy build "b" as a deployment tool would: write it beside, then
    // rename it over the old one. Build b is a different program at that
    // path (a script that runs the fixture as build b).
    let next = dir.path().join("app.new");
    std::fs::write(
        &next,
        format!(
            "#!/bin/sh\nFIXTURE_BUILD=b exec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_fixture")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&next, &app).unwrap();

    c.cmd(json!({"cmd": "reload"}));
    expect_finished(&mut c, 2);
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
    // Every answer now comes from build b, from the new workers.
    for _ in 0..10 {
        let body = http_get(&addr, "/").unwrap();
        assert_eq!(build_of(&body), "b", "{body}");
        let id: u32 = body.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(id == 3 || id == 4, "{body}");
    }
    // The primary itself still runs build a (nothing restarted it).
    assert!(alive(c.pid));
}

#[test]
fn a_shutdown_during_a_reload_aborts_the_reload_and_still_exits_cleanly() {
    let (mut c, addr) = supervised(2, &[("FIXTURE_READINESS", "explicit")]);
    let load = Load::start(&addr);
    // The successor listens but waits to be told it is ready: the reload
    // is under way when the shutdown comes.
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_WARMUP": "manual"}}));
    c.cmd(json!({"cmd": "reload"}));
    c.expect_event("listening", 3);
    load.wait_more(20);
    let (ok, failed, errors) = load.finish();
    c.signal_primary(Signal::SIGTERM);
    let v = c.expect(|v| v["event"] == "reload" && v["phase"] != "started");
    assert_eq!(v["phase"], "aborted", "{v}");
    assert_eq!(v["reason"], "shutting down", "{v}");
    let done = c.expect(|v| v["event"] == "supervise_done");
    assert_eq!(done["code"], 0, "{}", c.dump());
    assert!(c.wait_exit(TIMEOUT).is_some());
    assert_eq!(failed, 0, "{failed} of {} failed: {errors:?}", ok + failed);
}
