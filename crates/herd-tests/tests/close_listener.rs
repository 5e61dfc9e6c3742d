//! Closing one listener while `axum::serve` owns it (Node's
//! `server.close()`), with its `ListenerCloser`: the worker's other
//! listener keeps serving, the closed one's address is served by the
//! other workers only (or refused when none listens there), and the
//! connections that waited for the closed listener are not lost.

mod common;
mod listeners_worker;

use common::*;
use listeners_worker::*;
use serde_json::json;

/// Clients sent to the listener that is then closed.
const QUEUED: usize = 8;

/// Waits for worker `id`'s `{"serve_ended": name}`.
fn expect_serve_ended(c: &mut Cluster, id: u32, name: &str) {
    c.expect(|v| {
        v["event"] == "message" && v["worker"] == id && v["message"]["serve_ended"] == name
    });
}

fn closing_one_listener_under_axum_serve_leaves_its_port_to_the_other_workers(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let a = fork_listeners(&mut c);
    // Two listens of port 0: two ports.
    let x = listen(&mut c, a, "x", "127.0.0.1:0");
    let y = listen(&mut c, a, "y", "127.0.0.1:0");
    assert_ne!(x, y);

    // Clients wait for `a` on x: its server takes nothing for now.
    assert_eq!(
        ask(&mut c, a, json!({"cmd": "pause", "name": "x"}))["paused"],
        "x"
    );
    let waiting = Waiting::start(&x, "/", QUEUED);
    waiting.wait_sent();
    let handed_off = policy == "rr" || policy == "lc";
    assert!(
        wait_until(TIMEOUT, || if handed_off {
            // In `a`'s connection queue.
            listens_on(&mut c, &x) == [(1, QUEUED as u64)]
        } else {
            // In the kernel's queue of the socket `a` accepts on.
            accept_queue(port_of(&x)) == QUEUED
        }),
        "the clients do not all wait for worker {a}\n{}",
        c.dump()
    );
    // Another worker listens on x (its first listen of port 0).
    let b = fork_listeners(&mut c);
    assert_eq!(listen(&mut c, b, "x", "127.0.0.1:0"), x);
    if handed_off {
        // They stay in `a`'s queue: none went to `b` yet.
        assert_eq!(waiting.done(), 0);
    }
    assert_eq!(worker_of(&http_get(&y, "/").unwrap()), a);

    // `a` closes x while its axum::serve runs.
    assert_eq!(
        ask(&mut c, a, json!({"cmd": "close", "name": "x"}))["closed"],
        "x"
    );
    for (i, r) in waiting.finish().into_iter().enumerate() {
        let body = r.unwrap_or_else(|e| panic!("client {i} waiting on x was lost: {e}"));
        assert_eq!(worker_of(&body), b, "client {i}");
    }
    for _ in 0..6 {
        assert_eq!(worker_of(&http_get(&x, "/").unwrap()), b);
    }
    assert_eq!(listens_on(&mut c, &x), [(1, 0)]);
    // Its server returned (the closer's `closed()` was its graceful
    // shutdown); the other listener of `a` goes on.
    expect_serve_ended(&mut c, a, "x");
    for _ in 0..3 {
        assert_eq!(worker_of(&http_get(&y, "/").unwrap()), a);
    }

    // No other worker listens on y: closed, it is refused.
    assert_eq!(
        ask(&mut c, a, json!({"cmd": "close", "name": "y"}))["closed"],
        "y"
    );
    expect_serve_ended(&mut c, a, "y");
    assert!(
        wait_until(TIMEOUT, || std::net::TcpStream::connect(&y).is_err()),
        "{y} still accepts"
    );
    assert!(listens_on(&mut c, &y).is_empty());
    // And `a` itself is still there, serving nothing.
    c.cmd(json!({"cmd": "state", "worker": a}));
    let v = c.expect(|v| v["event"] == "state" && v["worker"] == a);
    assert_eq!(v["dead"], false, "{v}");
}
per_policy!(closing_one_listener_under_axum_serve_leaves_its_port_to_the_other_workers:
    rr, lc, shared, reuseport);

/// `Worker::serve` on a listener closed by its closer: it ends by itself
/// (its idle keep-alive connection closed after the linger), while the
/// worker's other `Worker::serve` goes on and the worker stays connected.
fn closing_a_listener_ends_worker_serve_on_it_and_only_it(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let a = fork_listeners(&mut c);
    let serve = |c: &mut Cluster, name: &str| {
        let r = ask(
            c,
            a,
            json!({"cmd": "listen", "name": name, "addr": "127.0.0.1:0", "serve": "herd"}),
        );
        assert_eq!(r["listened"], name, "{r}");
        r["address"].as_str().unwrap().to_string()
    };
    let (x, y) = (serve(&mut c, "x"), serve(&mut c, "y"));
    let mut idle = KeepAlive::connect(&x).unwrap();
    assert_eq!(worker_of(&idle.get("/").unwrap()), a);

    assert_eq!(
        ask(&mut c, a, json!({"cmd": "close", "name": "x"}))["closed"],
        "x"
    );
    expect_serve_ended(&mut c, a, "x");
    // Its idle keep-alive connection was closed, not left open.
    assert!(idle.get("/").is_err(), "x's idle connection still served");
    assert!(
        wait_until(TIMEOUT, || std::net::TcpStream::connect(&x).is_err()),
        "{x} still accepts"
    );
    for _ in 0..3 {
        assert_eq!(worker_of(&http_get(&y, "/").unwrap()), a);
    }
    c.cmd(json!({"cmd": "state", "worker": a}));
    let v = c.expect(|v| v["event"] == "state" && v["worker"] == a);
    assert_eq!(
        (v["dead"].clone(), v["connected"].clone()),
        (json!(false), json!(true)),
        "{v}"
    );
}
per_policy!(closing_a_listener_ends_worker_serve_on_it_and_only_it: rr, shared);
