//! A worker's own exit after a graceful disconnect, as in Node: the worker
//! leaves when its program ends, with the program's own exit code, after
//! its own cleanup; the library ends it only past its exit timeout.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_worker_returning_code_3_from_main_after_a_graceful_disconnect_is_reported_as_code_3() {
    let dir = TempDir::new();
    let cleanup = dir.path().join("cleanup");
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_AFTER_DISCONNECT", "exit:3"),
        ("FIXTURE_CLEANUP_FILE", cleanup.to_str().unwrap()),
    ]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 3, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true, "{}", c.dump());
    // The program's own code after its server stopped ran to the end.
    assert_eq!(
        std::fs::read_to_string(&cleanup).expect("the worker's cleanup ran"),
        format!("worker {id} cleaned up")
    );
}

#[test]
fn a_worker_that_disconnects_itself_exits_with_its_own_code() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_AFTER_DISCONNECT", "exit:7"),
    ]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "disconnect"}}));
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 7, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true);
}

#[test]
fn a_worker_whose_main_never_returns_is_ended_at_its_exit_timeout() {
    let mut c = Cluster::start(&[("FIXTURE_EXIT_TIMEOUT_MS", "300")]);
    let id = c.fork(&[
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_AFTER_DISCONNECT", "hang"),
    ]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    let disconnect = c.expect_event("disconnect", id);
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], herd::EXIT_TIMEOUT, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true);
    let waited = exit["t_ms"].as_u64().unwrap() - disconnect["t_ms"].as_u64().unwrap();
    assert!(
        (250..5_000).contains(&waited),
        "ended {waited} ms after its disconnect, not at the 300 ms exit timeout: {}",
        c.dump()
    );
}

#[test]
fn a_worker_whose_main_never_returns_is_not_ended_before_its_exit_timeout() {
    let mut c = Cluster::start(&[("FIXTURE_EXIT_TIMEOUT_MS", "60000")]);
    let id = c.fork(&[
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_AFTER_DISCONNECT", "hang"),
    ]);
    c.expect_event("listening", id);
    let pid = c.worker_pid(id);
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    c.expect_event("disconnect", id);
    // Its channel is closed; it is the program's own to end now. A second
    // later it is still there (the library did not end it for the program).
    assert!(
        !wait_until(std::time::Duration::from_secs(1), || !alive(pid)),
        "the worker was ended before its exit timeout: {}",
        c.dump()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["signal"], "SIGKILL", "{}", c.dump());
}

#[test]
fn a_worker_whose_own_accept_loop_ends_at_the_disconnect_returns_its_code() {
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[
        ("FIXTURE_MODE", "acceptloop"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_AFTER_DISCONNECT", "exit:5"),
    ]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    // `accept` said the listener is closed, the loop ended, `main` returned
    // 5: well before the 30 s exit timeout.
    let exit = c.expect_event("exit", id);
    assert_eq!(exit["code"], 5, "{}", c.dump());
    assert_eq!(exit["exited_after_disconnect"], true);
}
