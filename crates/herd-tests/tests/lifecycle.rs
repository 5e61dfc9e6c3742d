//! Worker life as events: order, states, exit codes and signals.

mod common;

use common::*;
use serde_json::json;

/// Life order: the states a worker passes through, in rank order.
const ORDER: [&str; 6] = [
    "none",
    "online",
    "listening",
    "ready",
    "disconnected",
    "dead",
];

fn rank(state: &serde_json::Value) -> usize {
    ORDER
        .iter()
        .position(|s| state == s)
        .unwrap_or_else(|| panic!("unknown state {state}"))
}

#[test]
fn events_come_in_order_fork_online_listening_exit_with_states() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    // The state printed with an event is read when the event is handled, so
    // the worker may already be further on: never behind.
    for (event, state) in [
        ("fork", "none"),
        ("online", "online"),
        ("listening", "listening"),
        ("ready", "ready"),
    ] {
        let v = c.expect_event(event, id);
        assert!(rank(&v["state"]) >= rank(&json!(state)), "{v}");
    }
    c.cmd(json!({"cmd": "state", "worker": id}));
    let v = c.expect(|v| v["event"] == "state");
    assert_eq!(v["state"], "ready");
    assert_eq!(v["connected"], true);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "exit", "code": 0}}));
    c.expect_event("disconnect", id);
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["state"], "dead");
    assert_eq!(exit["code"], 0);
    c.cmd(json!({"cmd": "state", "worker": id}));
    let v = c.expect(|v| v["event"] == "state");
    assert_eq!(
        (
            v["state"].as_str(),
            v["dead"].as_bool(),
            v["connected"].as_bool()
        ),
        (Some("dead"), Some(true), Some(false))
    );
    let names: Vec<String> = c
        .events_of(id)
        .iter()
        .filter(|v| {
            ["fork", "online", "listening", "ready", "disconnect", "exit"]
                .contains(&v["event"].as_str().unwrap_or(""))
        })
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        ["fork", "online", "listening", "ready", "disconnect", "exit"]
    );
}

#[test]
fn a_worker_that_does_not_listen_stays_online() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    // A message round trip proves the worker is up and past its start.
    c.cmd(json!({"cmd": "send", "worker": id, "msg": "ping"}));
    c.expect(|v| v["event"] == "message" && v["worker"] == id);
    c.cmd(json!({"cmd": "state", "worker": id}));
    let v = c.expect(|v| v["event"] == "state");
    assert_eq!(v["state"], "online");
}

#[test]
fn a_worker_exiting_with_code_42_gives_one_disconnect_and_one_exit() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "exit", "code": 42}}));
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 42);
    assert_eq!(exit["signal"], serde_json::Value::Null);
    assert_eq!(exit["exited_after_disconnect"], false);
    // A later worker's full life proves nothing more was coming for this one.
    let other = c.fork(&[]);
    c.expect_event("online", other);
    c.cmd(json!({"cmd": "kill", "worker": other, "signal": "SIGKILL"}));
    c.expect_event("exit", other);
    let count = |e: &str| c.events_of(id).iter().filter(|v| v["event"] == e).count();
    assert_eq!((count("disconnect"), count("exit")), (1, 1), "{}", c.dump());
}

#[test]
fn a_worker_killed_with_sigkill_reports_the_signal() {
    let mut c = Cluster::start(&[]);
    // Killed through the API: deliberate.
    let a = c.fork(&[]);
    c.expect_event("online", a);
    c.cmd(json!({"cmd": "kill", "worker": a, "signal": "SIGKILL"}));
    let exit = c.expect_event("exit", a);
    assert_eq!(exit["signal"], "SIGKILL");
    assert_eq!(exit["code"], serde_json::Value::Null);
    assert_eq!(exit["exited_after_disconnect"], true);
    // Killed from outside: a crash.
    let b = c.fork(&[]);
    c.expect_event("online", b);
    let pid = c.worker_pid(b);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = c.expect_event("exit", b);
    assert_eq!(exit["signal"], "SIGKILL");
    assert_eq!(exit["exited_after_disconnect"], false);
    for id in [a, b] {
        let count = |e: &str| c.events_of(id).iter().filter(|v| v["event"] == e).count();
        assert_eq!((count("disconnect"), count("exit")), (1, 1), "{}", c.dump());
    }
}
