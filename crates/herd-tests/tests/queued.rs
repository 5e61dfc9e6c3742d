//! Connections queued for a worker that goes away without taking them (it
//! disconnects, or is killed) are served by another worker: none is lost
//! while any worker is alive.
//!
//! The stuck worker runs in `noaccept` mode: it listens and never accepts,
//! so whatever reaches it waits, in its connection queue (`rr`, `lc`) or in
//! its socket's accept queue (`shared`, `reuseport`). Under `reuseport` the queue is
//! in the departed worker's own socket, which the primary then serves by
//! hand-off to the workers still here.

mod common;

use common::*;
use serde_json::json;

const CLIENTS: usize = 8;

enum Leave {
    Disconnect,
    SigKill,
}

fn queued_connections_are_served_by_another_worker(policy: &str, leave: Leave) {
    let mut c = Cluster::with_policy(policy);
    let (stuck, addr) = c.fork_serving(&[
        ("FIXTURE_MODE", "noaccept"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
    ]);
    let stuck_pid = c.worker_pid(stuck);
    let primary_sockets = socket_fds(c.pid);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();

    let waiting = Waiting::start(&addr, "/", CLIENTS);
    waiting.wait_sent();
    if matches!(policy, "rr" | "lc") {
        // Each connection has been handed to the stuck worker: the primary
        // accepted it (the kernel's queue is empty) and no longer holds it,
        // so it waits in the worker's connection queue.
        assert!(
            wait_until(TIMEOUT, || accept_queue(port) == 0
                && socket_fds(c.pid) == primary_sockets),
            "the connections never reached worker {stuck}"
        );
    }

    // A worker that serves joins; nothing queued for the stuck one moves yet
    // (under `shared` the queue is the one socket both accept on).
    let (server, _) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    if policy != "shared" {
        assert_eq!(waiting.done(), 0, "answered before the stuck worker left");
    }

    match leave {
        Leave::Disconnect => c.cmd(json!({"cmd": "disconnect", "worker": stuck})),
        Leave::SigKill => nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(stuck_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap(),
    }
    c.expect_event("exit", stuck);

    for (i, r) in waiting.finish().into_iter().enumerate() {
        let body = r.unwrap_or_else(|e| panic!("client {i} lost its connection: {e}"));
        assert_eq!(worker_of(&body), server);
    }
}

fn connections_queued_for_a_worker_that_disconnects_are_served_by_another(policy: &str) {
    queued_connections_are_served_by_another_worker(policy, Leave::Disconnect);
}
per_policy!(connections_queued_for_a_worker_that_disconnects_are_served_by_another:
    rr, lc, shared, reuseport);

fn connections_queued_for_a_worker_killed_with_sigkill_are_served_by_another(policy: &str) {
    queued_connections_are_served_by_another_worker(policy, Leave::SigKill);
}
per_policy!(connections_queued_for_a_worker_killed_with_sigkill_are_served_by_another:
    rr, lc, shared, reuseport);
