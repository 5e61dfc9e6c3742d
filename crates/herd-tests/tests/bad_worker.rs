//! A worker that breaks the channel protocol costs that worker, never the
//! primary or the other workers.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_worker_writing_garbage_on_its_channel_is_dropped_with_an_error_naming_it() {
    let mut c = Cluster::start(&[]);
    let bad = c.fork(&[("FIXTURE_MODE", "garbage")]);
    let error = c.expect_event("error", bad);
    let text = error["error"].as_str().unwrap();
    assert!(text.contains(&format!("worker {bad}")), "{text}");
    // Dropped: its channel closed and its process ended (killed, so not a
    // deliberate exit).
    c.expect_event("disconnect", bad);
    let exit = c.expect_event("exit", bad);
    assert_eq!(exit["exited_after_disconnect"], false, "{exit}");
    assert!(wait_until(TIMEOUT, || !alive(c.worker_pid(bad))));
    c.cmd(json!({"cmd": "workers"}));
    assert_eq!(c.expect(|v| v["event"] == "workers")["ids"], json!([]));
}

#[test]
fn after_a_garbage_worker_is_dropped_the_primary_and_other_workers_keep_working() {
    let mut c = Cluster::start(&[]);
    let good = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let addr = c.expect_event("listening", good)["address"]
        .as_str()
        .unwrap()
        .to_string();
    let bad = c.fork(&[("FIXTURE_MODE", "garbage")]);
    c.expect_event("error", bad);
    c.expect_event("exit", bad);

    // The other worker still answers messages and HTTP.
    c.cmd(json!({"cmd": "send", "worker": good, "msg": {"still": "here"}}));
    c.expect(|v| {
        v["event"] == "message" && v["worker"] == good && v["message"]["echo"]["still"] == "here"
    });
    assert_eq!(http_get(&addr, "/").unwrap(), format!("worker {good}\n"));
    // The primary still forks, and the new worker shares the port (its
    // `listen(0)` gets the same socket as the first worker's).
    let next = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    assert_eq!(c.expect_event("listening", next)["address"], addr.as_str());
    c.cmd(json!({"cmd": "kill", "worker": good, "signal": "SIGKILL"}));
    c.expect_event("exit", good);
    assert_eq!(http_get(&addr, "/").unwrap(), format!("worker {next}\n"));
    assert!(
        c.events_of(good).iter().all(|v| v["event"] != "error"),
        "{}",
        c.dump()
    );
}

#[test]
fn a_worker_attacking_the_page_of_doorbells_costs_nothing_but_its_own_hints() {
    let mut c = Cluster::start(&[]);
    let (good, addr) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let bad = c.fork_misbehaving(&[("MISBEHAVE", "doorbell")]);
    let report = c.expect(|v| {
        v["event"] == "message" && v["worker"] == bad && v["message"].get("doorbell").is_some()
    });
    // The page cannot be shrunk (which would make every other mapping of
    // it fault), grown (memory the primary would hold for ever), nor
    // sealed against the other workers' writes.
    for attempt in ["shrink", "grow", "allocate", "seal"] {
        assert_eq!(
            report["message"]["doorbell"][attempt], "EPERM",
            "{attempt}: {report}"
        );
    }
    // While it writes garbage into the whole page, the primary goes on:
    // messages both ways with it, and with the other worker, and HTTP.
    for n in 0..50 {
        c.cmd(json!({"cmd": "send", "worker": bad, "msg": {"ping": n}}));
        c.expect(|v| v["event"] == "message" && v["worker"] == bad && v["message"]["pong"] == n);
    }
    c.cmd(json!({"cmd": "send", "worker": good, "msg": {"still": "here"}}));
    c.expect(|v| {
        v["event"] == "message" && v["worker"] == good && v["message"]["echo"]["still"] == "here"
    });
    assert_eq!(http_get(&addr, "/").unwrap(), format!("worker {good}\n"));
    assert!(
        alive(c.worker_pid(bad)),
        "the attacker itself is still served"
    );
}
