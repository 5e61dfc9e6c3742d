//! Worker life as events: order, states, exit codes and signals.

mod common;

use common::*;
use serde_json::json;

#[test]
fn events_come_in_order_fork_online_listening_exit_with_states() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let fork = c.expect_event("fork", id);
    assert_eq!(fork["state"], "none");
    let online = c.expect_event("online", id);
    assert_eq!(online["state"], "online");
    let listening = c.expect_event("listening", id);
    assert_eq!(listening["state"], "listening");
    assert!(listening["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "exit", "code": 0}}));
    c.expect_event("disconnect", id);
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["state"], "dead");
    assert_eq!(exit["code"], 0);
    let names: Vec<String> = c
        .events_of(id)
        .iter()
        .filter(|v| {
            ["fork", "online", "listening", "disconnect", "exit"]
                .contains(&v["event"].as_str().unwrap_or(""))
        })
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["fork", "online", "listening", "disconnect", "exit"]);
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
