//! What one worker may make the primary hold: a frame's size and how long
//! it may take to arrive, and how many listens (see docs/security.md,
//! "Limits herd enforces"). Each misbehaving worker costs itself only.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Forks a healthy worker serving HTTP; returns its id and address.
fn healthy(c: &mut Cluster) -> (u32, String) {
    c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")])
}

/// Waits (bounded) for worker `id`'s `error` event and returns its text.
fn expect_error(c: &mut Cluster, id: u32, within: Duration) -> String {
    let v = c
        .expect_within(within, |v| v["event"] == "error" && v["worker"] == id)
        .unwrap_or_else(|| panic!("no error event for worker {id}:\n{}", c.dump()));
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn a_frame_announcing_more_than_the_limit_costs_its_worker_at_the_header() {
    let mut c = Cluster::start(&[]);
    let (good, addr) = healthy(&mut c);
    let len = (64u64 << 20).to_string();
    let bad = c.fork_misbehaving(&[("MISBEHAVE", "announce"), ("MISBEHAVE_LEN", &len)]);
    let error = expect_error(&mut c, bad, Duration::from_secs(5));
    assert!(
        error.contains(&format!("worker {bad}"))
            && error.contains("67108864")
            && error.contains("max_frame"),
        "{error}"
    );
    let exit = c.expect_event("exit", bad);
    assert_eq!(exit["exited_after_disconnect"], false, "{exit}");
    assert_eq!(http_get(&addr, "/").unwrap(), format!("worker {good}\n"));
}

#[test]
fn a_frame_that_stops_arriving_holds_only_what_came_and_times_out() {
    let mut c = Cluster::start(&[]);
    c.cmd(json!({"cmd": "setup", "frame_timeout_ms": 2000}));
    let (good, addr) = healthy(&mut c);
    let before = vm_rss(c.pid);
    // Under the limit: 16 MiB announced, 64 KiB sent, then nothing.
    let bad = c.fork_misbehaving(&[
        ("MISBEHAVE", "announce"),
        ("MISBEHAVE_LEN", &(16u64 << 20).to_string()),
        ("MISBEHAVE_SEND", "65536"),
    ]);
    c.expect_event("online", bad);
    let since = Instant::now();
    // Until the frame is given up on: the primary's memory, sampled.
    let mut most = before;
    let error = loop {
        most = most.max(vm_rss(c.pid));
        if let Some(v) = c.expect_within(Duration::from_millis(20), |v| {
            v["event"] == "error" && v["worker"] == bad
        }) {
            break v["error"].as_str().unwrap().to_string();
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the stalled frame was never timed out (primary grew by {} KiB):\n{}",
            most.saturating_sub(before) >> 10,
            c.dump()
        );
    };
    let took = since.elapsed();
    assert!(
        error.contains("frame_timeout") && error.contains("65536"),
        "{error}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "timed out after {took:?}, not about 2 s"
    );
    assert!(
        most < before + (4 << 20),
        "the primary grew by {} KiB for 64 KiB of a stalled frame",
        (most - before) >> 10
    );
    c.expect_event("exit", bad);
    assert_eq!(http_get(&addr, "/").unwrap(), format!("worker {good}\n"));
}

#[test]
fn listens_beyond_the_limit_are_refused_with_emfile_and_the_setting() {
    let mut c = Cluster::start(&[]);
    let (good, addr) = healthy(&mut c);
    let fds_before = std::fs::read_dir(format!("/proc/{}/fd", c.pid))
        .unwrap()
        .count();
    // The default limit is 1024 listens per worker.
    let bad = c.fork_misbehaving(&[("MISBEHAVE", "listens"), ("MISBEHAVE_N", "1100")]);
    let summary = c.expect(|v| {
        v["event"] == "message" && v["worker"] == bad && v["message"].get("listened").is_some()
    });
    let m = &summary["message"];
    assert_eq!(m["listened"], 1024, "{summary}");
    assert_eq!(m["failed"], 76, "{summary}");
    assert_eq!(m["errno"], libc::EMFILE, "{summary}");
    let message = m["message"].as_str().unwrap();
    assert!(
        message.contains("1024") && message.contains("max_listens"),
        "{message}"
    );
    // What the refused listens would have cost was not spent.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", c.pid))
        .unwrap()
        .count();
    assert!(
        fds < fds_before + 1024 * 3 + 64,
        "{fds} descriptors, {fds_before} before"
    );
    // Everyone else carries on: the healthy worker answers, a new worker
    // listens.
    assert_eq!(http_get(&addr, "/").unwrap(), format!("worker {good}\n"));
    let next = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    assert_eq!(c.address_of(next), addr);
    // The worker at its limit lets go: its listens are closed with it.
    c.cmd(json!({"cmd": "kill", "worker": bad, "signal": "SIGKILL"}));
    c.expect_event("exit", bad);
    assert!(wait_until(TIMEOUT, || {
        std::fs::read_dir(format!("/proc/{}/fd", c.pid))
            .unwrap()
            .count()
            < fds_before + 64
    }));
}

#[test]
fn a_lower_listen_limit_from_the_settings_is_enforced() {
    let mut c = Cluster::start(&[]);
    c.cmd(json!({"cmd": "setup", "max_listens": 10}));
    let bad = c.fork_misbehaving(&[("MISBEHAVE", "listens"), ("MISBEHAVE_N", "15")]);
    let summary = c.expect(|v| {
        v["event"] == "message" && v["worker"] == bad && v["message"].get("listened").is_some()
    });
    assert_eq!(summary["message"]["listened"], 10, "{summary}");
    assert_eq!(summary["message"]["failed"], 5, "{summary}");
}

#[test]
fn a_large_message_leaves_no_buffer_behind_in_the_primary() {
    // glibc keeps freed blocks of up to 32 MiB for reuse once it has freed
    // one (its dynamic mmap threshold): a fixed threshold makes it return
    // them, so that what is measured is what herd holds.
    let mut c = Cluster::start(&[("MALLOC_MMAP_THRESHOLD_", "131072")]);
    let id = c.fork(&[]);
    c.expect_event("online", id);
    let before = vm_rss(c.pid);
    for round in 0..3 {
        c.cmd(json!({"cmd": "send", "worker": id, "msg": {"cmd": "big", "len": 16u64 << 20}}));
        let got =
            c.expect(|v| v["event"] == "message" && v["worker"] == id && v.get("len").is_some());
        assert_eq!(got["ok"], true, "round {round}");
    }
    // The message is printed and dropped; what the reader grew for it went
    // with it.
    let settled = wait_until(Duration::from_secs(5), || {
        vm_rss(c.pid) < before + (4 << 20)
    });
    assert!(
        settled,
        "the primary holds {} KiB more than before three 16 MiB messages",
        (vm_rss(c.pid) - before) >> 10
    );
}
