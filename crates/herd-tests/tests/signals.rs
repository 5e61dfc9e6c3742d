//! SIGTERM and SIGINT to the primary: a graceful shutdown, and a second
//! signal that cuts it short.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// Forks two listening workers that announce their disconnect; returns
/// their ids and the shared address.
fn two_listening_workers(c: &mut Cluster) -> ([u32; 2], String) {
    let env = [
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_ANNOUNCE_DISCONNECT", "1"),
    ];
    let ids = [c.fork(&env), c.fork(&env)];
    let addr = c.expect_event("listening", ids[0])["address"]
        .as_str()
        .unwrap()
        .to_string();
    c.expect_event("listening", ids[1]);
    (ids, addr)
}

fn is_message_with(v: &Value, key: &str) -> bool {
    v["event"] == "message" && v["message"].get(key).is_some()
}

fn sigterm_then_workers_finish_their_requests_and_the_primary_exits_0(sig: Signal) {
    let mut c = Cluster::start(&[]);
    let (ids, addr) = two_listening_workers(&mut c);
    let pids: Vec<u32> = ids.iter().map(|id| c.worker_pid(*id)).collect();
    let client = std::thread::spawn(move || http_get(&addr, "/slow?ms=800&notify=1"));
    c.expect(|v| is_message_with(v, "slow_started"));

    c.signal_primary(sig);
    // Every worker is asked to disconnect...
    for id in ids {
        c.expect(|v| v["worker"] == id && is_message_with(v, "disconnecting"));
    }
    // ...and the one with an open request finishes it.
    let body = client.join().unwrap().expect("the open request completes");
    assert!(body.starts_with("slow done by"), "{body}");
    let status = c.wait_exit(TIMEOUT).expect("the primary exits");
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", c.dump());
    assert!(
        wait_until(TIMEOUT, || pids.iter().all(|p| !alive(*p))),
        "no worker is left"
    );
}

#[test]
fn sigterm_to_the_primary_disconnects_workers_gracefully_and_exits_0() {
    sigterm_then_workers_finish_their_requests_and_the_primary_exits_0(Signal::SIGTERM);
}

#[test]
fn sigint_to_the_primary_disconnects_workers_gracefully_and_exits_0() {
    sigterm_then_workers_finish_their_requests_and_the_primary_exits_0(Signal::SIGINT);
}

#[test]
fn a_second_signal_to_the_primary_kills_the_workers_at_once() {
    let mut c = Cluster::start(&[]);
    let (ids, addr) = two_listening_workers(&mut c);
    let pids: Vec<u32> = ids.iter().map(|id| c.worker_pid(*id)).collect();
    // A request far longer than the test may take keeps one worker from
    // finishing its graceful disconnect.
    let client = std::thread::spawn(move || http_get(&addr, "/slow?ms=60000&notify=1"));
    c.expect(|v| is_message_with(v, "slow_started"));

    c.signal_primary(Signal::SIGTERM);
    // The first signal was handled: the workers were asked to disconnect.
    for id in ids {
        c.expect(|v| v["worker"] == id && is_message_with(v, "disconnecting"));
    }
    c.signal_primary(Signal::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(5), || pids.iter().all(|p| !alive(*p))),
        "the second signal killed every worker"
    );
    assert!(
        c.wait_exit(TIMEOUT).is_some(),
        "the primary exits after the second signal"
    );
    let answer = client.join().unwrap();
    assert!(
        answer.is_err(),
        "the 60 s request was cut short: {answer:?}"
    );
}
