//! Replacing a worker while clients keep connecting: no connection is
//! refused or reset.

mod common;

use common::*;
use serde_json::json;

/// The order a supervisor replaces a worker in: the successor serves
/// before its predecessor is asked to disconnect.
fn replacing_a_worker_under_a_connection_flood_resets_none(policy: &str) {
    let mut c = Cluster::with_policy(policy);
    let (ids, addr) = c.serve(2, "127.0.0.1:0");
    let old = ids[0];
    let flood = Flood::start(&addr, 4);
    flood.wait_more(100);

    let (successor, _) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    c.cmd(json!({"cmd": "disconnect", "worker": old}));
    c.expect_event("exit", old);
    flood.wait_more(300);
    let served = flood.stop_expecting_no_failure(&c);
    assert!(served.get(&successor).is_some_and(|n| *n > 0), "{served:?}");
}
per_policy!(replacing_a_worker_under_a_connection_flood_resets_none: rr, lc, shared, reuseport);
