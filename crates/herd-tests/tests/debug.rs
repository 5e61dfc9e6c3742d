//! Debugging one live worker through the monitor: drain it (no new
//! connection, its open keep-alive connection still answered), put it
//! back, replace it (a new pid for that slot only, no request failed),
//! profile it (a flamegraph SVG naming the function it is busy in, sampled
//! in-process) and dump its threads (gdb). Every route needs the token.
//! Real HTTP through curl and raw sockets.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const TOKEN: &str = "t0ken-for-debug-tests";

/// `curl -X METHOD URL` (with the token if given): the status code, the
/// content type and the body.
fn curl(method: &str, url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-m",
        "150",
        "-X",
        method,
        "-w",
        "\n%{http_code} %{content_type}",
        url,
    ]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let (code, kind) = tail.split_once(' ').unwrap_or((tail, ""));
    (
        code.trim().parse().unwrap_or(0),
        kind.trim().to_string(),
        body.to_string(),
    )
}

fn post(base: &str, path: &str) -> (u16, String) {
    let (code, _, body) = curl("POST", &format!("{base}{path}"), Some(TOKEN));
    (code, body)
}

/// A supervised fixture under `policy` with the monitor (and its token):
/// the cluster, the app's address, the monitor's base URL, once `n`
/// workers are ready.
fn monitored(n: usize, policy: &str, extra: &[(&str, &str)]) -> (Cluster, String, String) {
    let count = n.to_string();
    let mut env = vec![
        ("FIXTURE_SUPERVISE", count.as_str()),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_MONITOR", "1"),
        ("FIXTURE_MONITOR_TOKEN", TOKEN),
        ("FIXTURE_POLICY", policy),
    ];
    env.extend_from_slice(extra);
    let mut c = Cluster::start(&env);
    let m = c.expect(|v| v["event"] == "monitor");
    let base = format!("http://{}", m["address"].as_str().unwrap());
    let addr = c.expect(|v| v["event"] == "listening")["address"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..n {
        c.expect(|v| v["event"] == "ready");
    }
    (c, addr, base)
}

fn status(base: &str) -> Value {
    let (code, _, body) = curl("GET", &format!("{base}/status"), None);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `/status`'s worker `id`, if it is there.
fn worker_in(doc: &Value, id: u32) -> Option<Value> {
    doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .cloned()
}

/// Drain, undrain, replace under a policy where the primary routes.
fn drain_undrain_replace(policy: &str) {
    let (c, addr, base) = monitored(2, policy, &[]);
    // A keep-alive connection to one worker: the one drained.
    let mut kept = KeepAlive::connect(&addr).unwrap();
    let drained = worker_of(&kept.get("/").unwrap());
    let other = if drained == 1 { 2 } else { 1 };
    let before = status(&base);
    let other_pid = worker_in(&before, other).unwrap()["pid"].clone();
    assert_eq!(worker_in(&before, drained).unwrap()["drained"], false);

    let (code, body) = post(&base, &format!("/workers/{drained}/drain"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("drained"), "{body}");
    assert_eq!(worker_in(&status(&base), drained).unwrap()["drained"], true);
    // New connections: none to the drained worker.
    for _ in 0..30 {
        let by = worker_of(&http_get(&addr, "/").unwrap());
        assert_eq!(
            by, other,
            "a new connection reached drained worker {drained}"
        );
    }
    // Its open connection is still answered, by it.
    for _ in 0..3 {
        assert_eq!(worker_of(&kept.get("/").unwrap()), drained);
    }
    // Draining the only worker left in rotation is refused.
    let (code, body) = post(&base, &format!("/workers/{other}/drain"));
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("only worker in rotation"), "{body}");

    // Back in rotation: new connections reach it again.
    let (code, body) = post(&base, &format!("/workers/{drained}/undrain"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        worker_in(&status(&base), drained).unwrap()["drained"],
        false
    );
    // Under lc the kept connection would leave it the busier worker, never
    // picked while the other's connections are closed: it goes first, and
    // new connections are tried until its close is counted (10 s at most).
    drop(kept);
    assert!(
        wait_until(Duration::from_secs(10), || worker_of(
            &http_get(&addr, "/").unwrap()
        ) == drained),
        "worker {drained} got no new connection after undrain"
    );

    // Replace it under load: a new worker in its slot, the other untouched,
    // not one request failed.
    let flood = Flood::start(&addr, 4);
    flood.wait_more(50);
    let (code, body) = post(&base, &format!("/workers/{drained}/replace"));
    assert_eq!(code, 200, "{body}");
    let new: u32 = body
        .split("replaced by worker ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{body}"));
    assert!(new > 2, "{body}");
    flood.wait_more(50);
    let served = flood.stop_expecting_no_failure(&c);
    assert!(served.get(&new).copied().unwrap_or(0) > 0, "{served:?}");
    let after = status(&base);
    assert_eq!(worker_in(&after, other).unwrap()["pid"], other_pid);
    assert!(worker_in(&after, new).is_some());
    let slots = after["slots"].as_array().unwrap();
    assert!(slots.iter().any(|s| s["worker"] == new), "{after}");
    assert!(!slots.iter().any(|s| s["worker"] == drained), "{after}");
    assert_eq!(after["replacements"]["operator"], 1, "{after}");
}

#[test]
fn a_drained_worker_gets_no_new_connection_under_rr_then_comes_back_and_is_replaced() {
    drain_undrain_replace("rr");
}

#[test]
fn a_drained_worker_gets_no_new_connection_under_lc_then_comes_back_and_is_replaced() {
    drain_undrain_replace("lc");
}

#[test]
fn drain_under_shared_is_refused_with_the_reason_and_changes_nothing() {
    let (_c, _addr, base) = monitored(2, "shared", &[]);
    let (code, body) = post(&base, "/workers/1/drain");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("accepts its connections itself"), "{body}");
    assert!(body.contains("policy shared"), "{body}");
    assert_eq!(worker_in(&status(&base), 1).unwrap()["drained"], false);
}

#[test]
fn worker_routes_need_the_token_and_answer_404_for_no_such_worker() {
    let (_c, _addr, base) = monitored(2, "rr", &[]);
    for (method, path) in [
        ("POST", "/workers/1/drain"),
        ("POST", "/workers/1/undrain"),
        ("POST", "/workers/1/replace"),
        ("GET", "/workers/1/profile?seconds=1"),
        ("GET", "/workers/1/dump"),
    ] {
        let url = format!("{base}{path}");
        let (code, _, body) = curl(method, &url, None);
        assert_eq!(code, 401, "{path} without the token: {body}");
        assert!(body.contains("Bearer"), "{body}");
        let (code, _, _) = curl(method, &url, Some("wrong"));
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, body) = post(&base, "/workers/77/drain");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no worker 77"), "{body}");
    let (code, body) = post(&base, "/workers/x/drain");
    assert_eq!(code, 400, "{body}");
    let (code, _, body) = curl("GET", &format!("{base}/workers/1/drain"), Some(TOKEN));
    assert_eq!(code, 405, "{body}");
    // Nothing was drained on the way.
    let doc = status(&base);
    assert!(doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["drained"] == false));
}

#[test]
fn worker_routes_do_not_exist_without_a_token() {
    let mut c = Cluster::start(&[
        ("FIXTURE_SUPERVISE", "1"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_MONITOR", "1"),
        ("FIXTURE_POLICY", "rr"),
    ]);
    let m = c.expect(|v| v["event"] == "monitor");
    let base = format!("http://{}", m["address"].as_str().unwrap());
    c.expect(|v| v["event"] == "ready");
    let (code, _, body) = curl("POST", &format!("{base}/workers/1/drain"), Some(TOKEN));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("give the monitor a token"), "{body}");
}

#[test]
fn profile_of_a_busy_worker_is_an_svg_flamegraph_naming_the_function_it_spins_in() {
    let (_c, _addr, base) = monitored(1, "rr", &[("FIXTURE_BUSY", "1")]);
    let (code, kind, svg) = curl(
        "GET",
        &format!("{base}/workers/1/profile?seconds=2"),
        Some(TOKEN),
    );
    assert_eq!(code, 200, "{svg}");
    assert_eq!(kind, "image/svg+xml");
    let svg = svg.trim();
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(
        svg.ends_with("</svg>"),
        "{}",
        &svg[svg.len().saturating_sub(200)..]
    );
    assert!(svg.contains("<svg"), "no svg element");
    assert!(
        svg.contains("herd_busy_marker_fixture"),
        "the flamegraph does not name the busy function"
    );
    // Out of bounds: a clear 400, nothing recorded.
    for bad in ["0", "61", "ten"] {
        let (code, _, body) = curl(
            "GET",
            &format!("{base}/workers/1/profile?seconds={bad}"),
            Some(TOKEN),
        );
        assert_eq!(code, 400, "seconds={bad}: {body}");
        assert!(body.contains("from 1 to 60"), "{body}");
    }
    let (code, _, body) = curl(
        "GET",
        &format!("{base}/workers/9/profile?seconds=1"),
        Some(TOKEN),
    );
    assert_eq!(code, 404, "{body}");
}

#[test]
#[cfg_attr(not(herd_gdb), ignore = "needs gdb (Debian: apt-get install gdb)")]
fn dump_prints_every_thread_naming_the_busy_thread_and_its_function() {
    // gdb stops the worker while it reads it (seconds, for a debug build):
    // drained first, as an operator would, the nanny leaves it alone.
    let (c, addr, base) = monitored(2, "rr", &[("FIXTURE_BUSY", "1")]);
    let (code, body) = post(&base, "/workers/1/drain");
    assert_eq!(code, 200, "{body}");
    let pid = c.worker_pid(1);
    let (code, kind, dump) = curl("GET", &format!("{base}/workers/1/dump"), Some(TOKEN));
    assert_eq!(code, 200, "{dump}");
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(
        dump.contains(&format!("== worker 1: process {pid} (fixture)")),
        "{dump}"
    );
    assert!(dump.contains("\"herd-busy\""), "no busy thread in:\n{dump}");
    assert!(dump.contains("herd_busy_marker_fixture"), "{dump}");
    assert!(dump.contains("tokio task dump: not available"), "{dump}");
    // The worker lives on and serves after gdb let go of it.
    assert!(alive(pid));
    let (code, body) = post(&base, "/workers/1/undrain");
    assert_eq!(code, 200, "{body}");
    assert!(
        wait_until(Duration::from_secs(10), || worker_of(
            &http_get(&addr, "/").unwrap()
        ) == 1),
        "worker 1 serves no new connection after the dump"
    );
    let (code, _, body) = curl("GET", &format!("{base}/workers/5/dump"), Some(TOKEN));
    assert_eq!(code, 404, "{body}");
}
