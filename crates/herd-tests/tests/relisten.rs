//! Closing a listener and listening again on its port at once, as Node's
//! `server.close(); server.listen(port)`: alone on the port (the socket is
//! closed before the next listen is answered) and beside another worker
//! (the new listen shares the socket the other worker holds), for every
//! policy, twenty times in a row without one EADDRINUSE.

mod common;
mod listeners_worker;

use common::*;
use listeners_worker::*;
use serde_json::json;

const TIMES: usize = 20;

/// The listening sockets on the port of `addr` a cluster of `workers`
/// sharing it has: one, or one per worker under `reuseport`.
fn sockets_expected(policy: &str, workers: usize) -> usize {
    if policy == "reuseport" {
        workers
    } else {
        1
    }
}

fn a_worker_alone_on_a_port_closes_and_listens_on_it_again_at_once(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let id = fork_listeners(&mut c);
    let addr = listen_on_a_free_port(&mut c, id, "web");
    assert_eq!(worker_of(&http_get(&addr, "/").unwrap()), id);
    for i in 0..TIMES {
        let r = ask(&mut c, id, json!({"cmd": "relisten", "name": "web"}));
        assert_eq!(r["relistened"], "web", "re-listen {i}: {r}\n{}", c.dump());
        assert_eq!(r["address"], addr.as_str());
        assert_eq!(
            worker_of(&http_get(&addr, "/").unwrap()),
            id,
            "re-listen {i}"
        );
        assert_eq!(listens_on(&mut c, &addr), [(1, 0)], "re-listen {i}");
        assert_eq!(listening_sockets(port_of(&addr)).len(), 1, "re-listen {i}");
    }
}
per_policy!(a_worker_alone_on_a_port_closes_and_listens_on_it_again_at_once:
    rr, lc, shared, reuseport);

fn a_worker_sharing_a_port_closes_and_listens_again_sharing_the_same_socket(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let (a, b) = (fork_listeners(&mut c), fork_listeners(&mut c));
    let addr = listen_on_a_free_port(&mut c, a, "web");
    assert_eq!(listen(&mut c, b, "web", &addr), addr);
    let sockets = sockets_expected(policy, 2);
    assert_eq!(listening_sockets(port_of(&addr)).len(), sockets);
    for i in 0..TIMES {
        let r = ask(&mut c, a, json!({"cmd": "relisten", "name": "web"}));
        assert_eq!(r["relistened"], "web", "re-listen {i}: {r}\n{}", c.dump());
        assert_eq!(r["address"], addr.as_str());
        // One listen, both workers in it: the re-listen joined the socket
        // that the other worker kept.
        assert_eq!(listens_on(&mut c, &addr), [(2, 0)], "re-listen {i}");
        assert_eq!(
            listening_sockets(port_of(&addr)).len(),
            sockets,
            "re-listen {i}"
        );
        let who = worker_of(&http_get(&addr, "/").unwrap());
        assert!(who == a || who == b, "re-listen {i}: {who}");
    }
    assert!(
        served_by_eventually(&addr, a),
        "the re-listened worker gets no connection"
    );
    assert!(
        served_by_eventually(&addr, b),
        "the other worker gets no connection"
    );
}
per_policy!(a_worker_sharing_a_port_closes_and_listens_again_sharing_the_same_socket:
    rr, lc, shared, reuseport);
