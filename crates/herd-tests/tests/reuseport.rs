//! `reuseport`: each worker accepts on its own SO_REUSEPORT socket. The
//! kernel resets what is queued on such a socket when it closes, so a
//! departed worker's socket is never closed while workers remain: a
//! successor takes it over, and until one does the primary serves it.

mod common;

use common::*;
use serde_json::json;

#[test]
fn reuseport_each_worker_accepts_on_its_own_socket() {
    let mut c = Cluster::with_policy("reuseport");
    let (ids, addr) = c.serve(3, "127.0.0.1:0");
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let listening = listening_sockets(port);
    assert_eq!(listening.len(), 3, "{listening:?}");
    let mut held = std::collections::BTreeSet::new();
    for id in &ids {
        let mine: Vec<_> = socket_inodes(c.worker_pid(*id))
            .intersection(&listening)
            .cloned()
            .collect();
        assert_eq!(mine.len(), 1, "worker {id}: {mine:?}");
        held.insert(mine[0].clone());
    }
    assert_eq!(held, listening);
}

#[test]
fn reuseport_a_worker_replaced_after_it_left_under_a_flood_resets_none() {
    let mut c = Cluster::with_policy("reuseport");
    let (ids, addr) = c.serve(2, "127.0.0.1:0");
    let old = ids[0];
    let old_sockets = socket_inodes(c.worker_pid(old));
    let flood = Flood::start(&addr, 4);
    flood.wait_more(100);

    // The old worker leaves first; connections keep arriving on its socket
    // while its replacement starts.
    c.cmd(json!({"cmd": "disconnect", "worker": old}));
    c.expect_event("exit", old);
    let (new, _) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    flood.wait_more(300);
    let new_sockets = socket_inodes(c.worker_pid(new));
    let served = flood.stop_expecting_no_failure(&c);
    assert!(served.get(&new).is_some_and(|n| *n > 0), "{served:?}");
    // It took over its predecessor's socket.
    assert!(
        !old_sockets.is_disjoint(&new_sockets),
        "{old_sockets:?} {new_sockets:?}"
    );
}

#[test]
fn reuseport_a_successor_shares_its_predecessors_socket_and_none_is_reset() {
    let mut c = Cluster::start(&[
        ("FIXTURE_POLICY", "reuseport"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
    ]);
    let (ids, addr) = c.serve(2, "127.0.0.1:0");
    let (old, other) = (ids[0], ids[1]);
    let flood = Flood::start(&addr, 4);
    flood.wait_more(100);

    c.cmd(json!({"cmd": "fork_successor", "worker": old}));
    let v = c.expect(|v| v["event"] == "forked" || v["event"] == "fork_error");
    let successor = v["worker"].as_u64().expect("forked") as u32;
    c.address_of(successor);
    c.expect_event("ready", successor);
    let (old_sockets, new_sockets, other_sockets) = (
        socket_inodes(c.worker_pid(old)),
        socket_inodes(c.worker_pid(successor)),
        socket_inodes(c.worker_pid(other)),
    );
    // The successor accepts on its predecessor's socket, not on one of its
    // own, so the old one's queue is never orphaned...
    assert!(!old_sockets.is_disjoint(&new_sockets));
    assert!(new_sockets.is_disjoint(&other_sockets));

    // ...and the predecessor can go at once.
    c.cmd(json!({"cmd": "disconnect", "worker": old}));
    c.expect_event("exit", old);
    flood.wait_more(300);
    let served = flood.stop_expecting_no_failure(&c);
    assert!(served.get(&successor).is_some_and(|n| *n > 0), "{served:?}");
}

#[test]
fn reuseport_a_cluster_that_shrinks_under_a_flood_resets_none() {
    let mut c = Cluster::with_policy("reuseport");
    let (ids, addr) = c.serve(3, "127.0.0.1:0");
    let flood = Flood::start(&addr, 4);
    flood.wait_more(100);

    // No successor: the departed worker's socket still takes its share of
    // new connections, which the primary hands to the two left.
    c.cmd(json!({"cmd": "disconnect", "worker": ids[0]}));
    c.expect_event("exit", ids[0]);
    let after = flood.total();
    flood.wait_more(500);
    let served = flood.stop_expecting_no_failure(&c);
    assert!(served.values().sum::<usize>() >= after + 500, "{served:?}");
}

/// Long-lived connections land on the workers in turn (the eBPF placement
/// of `sched::reuseport_rr`, which needs root), and a worker told to leave
/// gets no new ones.
#[test]
#[cfg_attr(
    not(herd_root),
    ignore = "needs root: CAP_BPF to load the placement program; run the tests as root"
)]
fn reuseport_places_long_lived_connections_on_the_workers_in_turn() {
    still_holds(is_root(), "the tests run as root");
    const PER_WORKER: usize = 10;
    let mut c = Cluster::with_policy("reuseport");
    let (ids, addr) = c.serve(4, "127.0.0.1:0");
    let count = |conns: &mut Vec<KeepAlive<std::net::TcpStream>>, n: usize| {
        let mut per_worker = std::collections::BTreeMap::new();
        for _ in 0..n {
            let mut conn = KeepAlive::connect(&addr).unwrap();
            *per_worker
                .entry(worker_of(&conn.get("/").unwrap()))
                .or_insert(0) += 1;
            conns.push(conn);
        }
        per_worker
    };
    let mut open = Vec::new();
    let placed = count(&mut open, 4 * PER_WORKER);
    let expected: std::collections::BTreeMap<u32, usize> =
        ids.iter().map(|id| (*id, PER_WORKER)).collect();
    assert_eq!(placed, expected, "connections per worker");

    // Worker 1 leaves (it still serves its open connections meanwhile):
    // new connections go to the three others only, in turn.
    c.cmd(json!({"cmd": "disconnect", "worker": ids[0]}));
    c.expect_event("disconnect", ids[0]);
    let placed = count(&mut Vec::new(), 3 * PER_WORKER);
    let expected: std::collections::BTreeMap<u32, usize> =
        ids[1..].iter().map(|id| (*id, PER_WORKER)).collect();
    assert_eq!(placed, expected, "connections per worker after one left");
}
