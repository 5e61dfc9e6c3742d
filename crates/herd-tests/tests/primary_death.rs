//! No worker outlives its primary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

#[test]
fn sigkill_to_the_primary_ends_every_worker_within_2_seconds() {
    let mut c = Cluster::start(&[]);
    let listen = [("FIXTURE_LISTEN", "127.0.0.1:0")];
    let ids = [c.fork(&listen), c.fork(&listen), c.fork(&[])];
    let addr = c.expect_event("listening", ids[0])["address"]
        .as_str()
        .unwrap()
        .to_string();
    c.expect_event("listening", ids[1]);
    c.expect_event("online", ids[2]);
    // One worker is busy with a request when its primary dies.
    let _client = std::thread::spawn(move || http_get(&addr, "/slow?ms=5000&notify=1"));
    c.expect(|v| v["event"] == "message" && v["message"].get("slow_started").is_some());
    let pids: Vec<u32> = ids.iter().map(|id| c.worker_pid(*id)).collect();
    assert!(pids.iter().all(|p| alive(*p)));

    c.signal_primary(Signal::SIGKILL);
    let killed = Instant::now();
    let gone = wait_until(Duration::from_secs(2), || pids.iter().all(|p| !alive(*p)));
    let still: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        gone,
        "workers {still:?} outlived their primary by {:?}",
        killed.elapsed()
    );
}
