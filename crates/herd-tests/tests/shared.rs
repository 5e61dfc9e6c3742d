//! `shared`: every worker accepts on the one socket the primary bound, as
//! Node's SCHED_NONE.

mod common;

use common::*;

#[test]
fn shared_every_worker_accepts_on_one_socket() {
    let mut c = Cluster::with_policy("shared");
    let (ids, addr) = c.serve(3, "127.0.0.1:0");
    let port: u16 = addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let listening = listening_sockets(port);
    assert_eq!(listening.len(), 1, "{listening:?}");
    for id in &ids {
        assert!(
            socket_inodes(c.worker_pid(*id)).is_superset(&listening),
            "worker {id} does not hold the socket"
        );
    }
    for _ in 0..10 {
        assert!(ids.contains(&worker_of(&http_get(&addr, "/").unwrap())));
    }
}

#[test]
fn shared_a_worker_that_never_accepts_holds_up_no_connection() {
    // The kernel queue is the one socket's: the worker that accepts takes
    // every connection while the other sits idle, and nothing waits for it.
    let mut c = Cluster::with_policy("shared");
    let (_stuck, addr) = c.fork_serving(&[
        ("FIXTURE_MODE", "noaccept"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
    ]);
    let (server, _) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    for _ in 0..20 {
        assert_eq!(worker_of(&http_get(&addr, "/").unwrap()), server);
    }
}
