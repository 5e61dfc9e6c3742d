//! Host names are resolved in the worker, never in the primary: the one
//! dispatch thread that hands every worker its connections must not wait
//! on DNS.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_listen_frame_naming_a_host_is_refused_at_once_while_other_workers_keep_serving() {
    let mut c = Cluster::with_policy("rr");
    let (_, addr) = c.serve(2, "127.0.0.1:0");
    let flood = Flood::start(&addr, 4);
    flood.wait_more(50);
    let sent = Instant::now();
    let bad = c.fork(&[("FIXTURE_MODE", "hostlisten")]);
    let error = c.expect_event("error", bad);
    let took = sent.elapsed();
    let text = error["error"].as_str().unwrap();
    assert!(text.contains(&format!("worker {bad}")), "{text}");
    // Refused by the frame's type (an address, never a name), not after a
    // lookup: well within what a DNS query for a name could take.
    assert!(took < Duration::from_secs(2), "took {took:?}: {text}");
    c.expect_event("exit", bad);
    flood.wait_more(50);
    flood.stop_expecting_no_failure(&c);
}

#[test]
fn a_worker_listening_on_localhost_resolves_it_itself_and_serves() {
    let mut c = Cluster::with_policy("rr");
    let (id, address) = c.fork_serving(&[("FIXTURE_LISTEN", "localhost:0")]);
    let event = c
        .seen
        .iter()
        .find(|v| v["event"] == "listening" && v["worker"] == id)
        .cloned()
        .unwrap();
    // The primary was sent, and bound, an address: loopback, a real port.
    assert!(
        address.starts_with("127.0.0.1:") || address.starts_with("[::1]:"),
        "{address}"
    );
    assert!(!address.ends_with(":0"), "{address}");
    assert!(
        event["kind"] == "tcp4" || event["kind"] == "tcp6",
        "{event}"
    );
    assert_eq!(http_get(&address, "/").unwrap(), format!("worker {id}\n"));
}
