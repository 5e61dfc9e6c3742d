//! Forking: worker ids, per-fork environment, `setup` settings and events,
//! and a program that cannot be started.

mod common;

use common::*;
use serde_json::{json, Value};

/// Asks worker `id` for these environment variables; returns its answer
/// (`{"id", "env": {name: value|null}, "args"}`).
fn ask_env(c: &mut Cluster, id: u32, names: &[&str]) -> Value {
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "env", "names": names}}));
    let v = c.expect(|v| {
        v["event"] == "message" && v["worker"] == id && v["message"].get("env").is_some()
    });
    v["message"].clone()
}

#[test]
fn worker_ids_run_1_2_3_and_are_never_reused() {
    let mut c = Cluster::start(&[]);
    let ids = [c.fork(&[]), c.fork(&[]), c.fork(&[])];
    assert_eq!(ids, [1, 2, 3]);
    for id in ids {
        c.expect_event("online", id);
        // Each worker knows its own id.
        assert_eq!(ask_env(&mut c, id, &[])["id"], id);
    }
    // With every one of them gone, the next is still a new id.
    c.cmd(json!({"cmd": "kill", "worker": 2, "signal": "SIGKILL"}));
    c.expect_event("exit", 2);
    assert_eq!(c.fork(&[]), 4);
    c.cmd(json!({"cmd": "disconnect_all"}));
    c.expect(|v| v["event"] == "all_disconnected");
    let next = c.fork(&[]);
    assert_eq!(next, 5);
    c.expect_event("online", next);
    assert_eq!(ask_env(&mut c, next, &[])["id"], next);
}

#[test]
fn per_fork_env_reaches_only_that_worker() {
    let mut c = Cluster::start(&[]);
    let a = c.fork(&[("HERD_TEST_COLOUR", "red"), ("HERD_TEST_ONLY_A", "yes")]);
    let b = c.fork(&[("HERD_TEST_COLOUR", "blue")]);
    let plain = c.fork(&[]);
    let names = ["HERD_TEST_COLOUR", "HERD_TEST_ONLY_A"];
    for id in [a, b, plain] {
        c.expect_event("online", id);
    }
    assert_eq!(
        ask_env(&mut c, a, &names)["env"],
        json!({"HERD_TEST_COLOUR": "red", "HERD_TEST_ONLY_A": "yes"})
    );
    assert_eq!(
        ask_env(&mut c, b, &names)["env"],
        json!({"HERD_TEST_COLOUR": "blue", "HERD_TEST_ONLY_A": null})
    );
    assert_eq!(
        ask_env(&mut c, plain, &names)["env"],
        json!({"HERD_TEST_COLOUR": null, "HERD_TEST_ONLY_A": null})
    );
}

#[test]
fn setup_events_carry_the_settings_merged_so_far() {
    let mut c = Cluster::start(&[]);
    let fixture = env!("CARGO_BIN_EXE_fixture");
    c.cmd(json!({"cmd": "setup", "exec": fixture}));
    let first = c.expect(|v| v["event"] == "setup");
    assert_eq!(first["exec"], fixture);
    assert_eq!(first["silent"], false);
    assert_eq!(
        first["args"],
        json!([]),
        "the primary's own arguments: none"
    );

    c.cmd(json!({"cmd": "setup", "args": ["--from-setup"]}));
    let second = c.expect(|v| v["event"] == "setup");
    assert_eq!(second["exec"], fixture, "an earlier field stays");
    assert_eq!(second["args"], json!(["--from-setup"]));

    c.cmd(json!({"cmd": "setup", "silent": true, "args": ["--later"]}));
    let third = c.expect(|v| v["event"] == "setup");
    assert_eq!(third["exec"], fixture);
    assert_eq!(third["silent"], true);
    assert_eq!(third["args"], json!(["--later"]), "a later field wins");
}

#[test]
fn setup_settings_merge_and_reach_the_next_fork() {
    let mut c = Cluster::start(&[]);
    c.cmd(
        json!({"cmd": "setup", "exec": env!("CARGO_BIN_EXE_fixture"),
                 "env": {"HERD_TEST_FIRST": "1"}}),
    );
    c.expect(|v| v["event"] == "setup");
    c.cmd(json!({"cmd": "setup", "args": ["--one", "two"], "env": {"HERD_TEST_SECOND": "2"}}));
    c.expect(|v| v["event"] == "setup");
    let id = c.fork(&[("HERD_TEST_THIRD", "3")]);
    c.expect_event("online", id);
    let got = ask_env(
        &mut c,
        id,
        &["HERD_TEST_FIRST", "HERD_TEST_SECOND", "HERD_TEST_THIRD"],
    );
    assert_eq!(
        got["env"],
        json!({"HERD_TEST_FIRST": "1", "HERD_TEST_SECOND": "2", "HERD_TEST_THIRD": "3"})
    );
    assert_eq!(got["args"], json!(["--one", "two"]));
}

#[test]
fn fork_with_an_exec_path_that_does_not_exist_names_the_path() {
    let mut c = Cluster::start(&[]);
    let missing = "/nonexistent/herd-test/no-such-worker-program";
    c.cmd(json!({"cmd": "setup", "exec": missing}));
    c.expect(|v| v["event"] == "setup");
    c.cmd(json!({"cmd": "fork"}));
    let v = c.expect(|v| v["event"] == "forked" || v["event"] == "fork_error");
    assert_eq!(v["event"], "fork_error", "{v}");
    let error = v["error"].as_str().unwrap();
    assert!(error.contains(missing), "{error}");
    // The primary carries on: a good program forks fine afterwards.
    c.cmd(json!({"cmd": "setup", "exec": env!("CARGO_BIN_EXE_fixture")}));
    c.expect(|v| v["event"] == "setup");
    let id = c.fork(&[]);
    c.expect_event("online", id);
}
