//! `lc`: the primary hands each connection to the worker with the fewest
//! open connections.

mod common;

use std::collections::BTreeMap;

use common::*;

#[test]
fn lc_sends_new_connections_away_from_a_worker_holding_many_long_lived_ones() {
    let mut c = Cluster::with_policy("lc");
    // The first worker, alone, takes 20 long-lived (keep-alive) connections.
    let (busy, addr) = c.serve(1, "127.0.0.1:0");
    let busy = busy[0];
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut conn = KeepAlive::connect(&addr).unwrap();
        assert_eq!(worker_of(&conn.get("/").unwrap()), busy);
        held.push(conn);
    }
    // Two more workers join.
    let (others, _) = c.serve(2, "127.0.0.1:0");

    // New connections (one at a time, each closed after its response) all
    // go to the two idle workers, and both get some.
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..30 {
        let id = worker_of(&http_get(&addr, "/").unwrap());
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!(
        counts.get(&busy),
        None,
        "the busy worker got some: {counts:?}"
    );
    for id in &others {
        assert!(counts.get(id).is_some_and(|n| *n > 0), "{counts:?}");
    }
    // The long-lived connections are still served, by their worker.
    for conn in &mut held {
        assert_eq!(worker_of(&conn.get("/").unwrap()), busy);
    }
}
