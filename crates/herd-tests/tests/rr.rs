//! `rr`: the primary accepts and hands connections to the workers in turn.

mod common;

use std::collections::BTreeMap;

use common::*;

#[test]
fn rr_spreads_1000_connections_over_4_workers_within_5_percent_of_the_mean() {
    let mut c = Cluster::with_policy("rr");
    let (ids, addr) = c.serve(4, "127.0.0.1:0");

    // Four clients, a new connection per request.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|_| http_get(&addr, "/").map(|b| worker_of(&b)))
                    .collect::<std::io::Result<Vec<u32>>>()
            })
        })
        .collect();
    let mut counts: BTreeMap<u32, usize> = ids.iter().map(|id| (*id, 0)).collect();
    for client in clients {
        for id in client.join().unwrap().expect("every request is answered") {
            *counts.get_mut(&id).expect("answered by a worker of ours") += 1;
        }
    }
    assert_eq!(counts.values().sum::<usize>(), 1000);
    let mean = 1000.0 / 4.0;
    for (id, n) in &counts {
        let off = (*n as f64 - mean).abs() / mean;
        assert!(off <= 0.05, "worker {id} got {n}, mean {mean}: {counts:?}");
    }
}

#[test]
fn rr_workers_hold_no_listening_socket_the_primary_accepts() {
    let mut c = Cluster::with_policy("rr");
    let (ids, addr) = c.serve(2, "127.0.0.1:0");
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let listening = listening_sockets(port);
    assert_eq!(listening.len(), 1, "{listening:?}");
    assert!(socket_inodes(c.pid).is_superset(&listening));
    for id in &ids {
        assert!(socket_inodes(c.worker_pid(*id)).is_disjoint(&listening));
    }
    assert!(ids.contains(&worker_of(&http_get(&addr, "/").unwrap())));
}

/// docs/protocol.md: at most 64 connections queued for one worker.
const WINDOW: usize = 64;

#[test]
fn a_worker_that_takes_nothing_is_queued_at_most_a_window_and_the_rest_go_elsewhere() {
    // rr alternates: without a window the stuck worker would get half.
    const CLIENTS: usize = 2 * WINDOW + 40;
    let mut c = Cluster::with_policy("rr");
    let (stuck, addr) = c.fork_serving(&[
        ("FIXTURE_MODE", "noaccept"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
    ]);
    let (server, _) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();

    let waiting = Waiting::start(&addr, "/", CLIENTS);
    waiting.wait_sent();
    // The stuck worker's queue fills to the window and no further; every
    // other connection is answered by the server.
    let answered = || waiting.done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        wait_until(TIMEOUT, || answered() == CLIENTS - WINDOW
            && accept_queue(port) == 0),
        "answered {} of {CLIENTS}, {} waiting in the kernel",
        answered(),
        accept_queue(port)
    );

    c.cmd(serde_json::json!({"cmd": "kill", "worker": stuck, "signal": "SIGKILL"}));
    for (i, r) in waiting.finish().into_iter().enumerate() {
        let body = r.unwrap_or_else(|e| panic!("client {i} lost its connection: {e}"));
        assert_eq!(worker_of(&body), server);
    }
}

#[test]
fn connections_waiting_in_the_primary_go_out_as_a_full_worker_takes_its_queue() {
    // Three windows: the worker's queue fills, the rest wait in the primary
    // (and in the kernel's accept queue), and are handed out only as the
    // worker takes from its queue, which it does not announce.
    const CLIENTS: usize = 3 * WINDOW;
    let mut c = Cluster::with_policy("rr");
    let (late, addr) = c.fork_serving(&[
        ("FIXTURE_MODE", "lateaccept"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
    ]);
    let waiting = Waiting::start(&addr, "/", CLIENTS);
    waiting.wait_sent();
    assert_eq!(waiting.done(), 0, "answered before the worker accepts");

    c.cmd(serde_json::json!({"cmd": "send", "worker": late, "msg": {"cmd": "accept"}}));
    for (i, r) in waiting.finish().into_iter().enumerate() {
        let body = r.unwrap_or_else(|e| panic!("client {i} lost its connection: {e}"));
        assert_eq!(worker_of(&body), late);
    }
}
