//! The dashboard (`/debug` on the monitor port) in real headless Chromium:
//! `herd run -w 3` of a Python worker that reports what it handled and its
//! STATUS= (tests/programs/dash.py), and tests/browser/dashboard.cjs
//! (playwright-core from .deps) driving the page under load: a card per
//! worker with numbers that change, a SIGKILLed worker's card replaced by
//! its successor's within 2 s, actions refused without the token (and
//! with a wrong one) and the page saying so, mark down and up, scale up
//! and down, a reload whose progress shows and after which every pid is
//! new, and no request to any host but the monitor; the Services section:
//! the cache card's counters moving as the workers GET and SET through
//! the services socket (redis-py), the statuses listed and `heartbeat`
//! opened to each worker's value. It takes a screenshot
//! under load; `HERD_UPDATE_SCREENSHOT=1` copies it to docs/dashboard.png.
//!
//! Also, without a browser: the event stream's bound on open pages, and
//! `/status`, `/metrics` and `/statuses/heartbeat` of the same cluster.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "dashboard-test-token";
const WORKERS: usize = 3;

/// The browser script, killed (with its Chromium, its process group) if
/// the test fails first.
struct Script(Child);

impl Drop for Script {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        let _ = killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

/// herd with the dashboard's worker and a monitor with a token: the herd,
/// the app's address and the monitor's.
fn herd_with_monitor(workers: usize) -> (Herd, String, String) {
    let dir = TempDir::new("dash");
    let token = dir.path().join("monitor.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let token = token.to_string_lossy().into_owned();
    let n = workers.to_string();
    let prog = program("dash.py");
    let mut h = start_in(
        dir,
        &[
            "-w",
            &n,
            "--ready",
            "notify",
            "-l",
            "127.0.0.1:0",
            "--monitor",
            "127.0.0.1:0",
            "--monitor-token-file",
            &token,
            "--",
            "python3",
            &prog,
        ],
        // redis-py, for the worker's gets and sets through the services
        // socket (the cache card's counters).
        &[(
            "PYTHONPATH",
            option_env!("HERD_TEST_PYTHONPATH").unwrap_or(""),
        )],
    );
    let addr = h.address();
    let line = h.wait_said("monitor on http://");
    let monitor = line
        .split("monitor on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    h.ready(workers);
    (h, addr, monitor)
}

#[test]
#[cfg_attr(
    not(all(herd_chromium, herd_test_deps)),
    ignore = "needs chromium and the pinned npm packages (scripts/deps.sh)"
)]
fn the_page_shows_the_cluster_live_and_its_actions_work_with_the_token_only() {
    let (h, addr, monitor) = herd_with_monitor(WORKERS);
    let shot = h.dir.path().join("dashboard.png");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let node_path = option_env!("HERD_TEST_NODE_PATH").unwrap_or("");
    use std::os::unix::process::CommandExt;
    let child = Command::new("node")
        .arg(&script)
        .arg(format!("http://{monitor}"))
        .arg(format!("http://{addr}/"))
        .arg(TOKEN)
        .arg(WORKERS.to_string())
        .arg(&shot)
        .env("NODE_PATH", node_path)
        .env("PROFILE", if cfg!(herd_perf) { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("run node");
    let mut script = Script(child);
    let stdout = script.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut steps = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        eprintln!("dashboard.cjs: {line}");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert_eq!(
            v["ok"],
            true,
            "step failed: {line}\nherd said:\n{}",
            h.dump()
        );
        steps.push(v);
    }
    let code = script.0.wait().unwrap();
    assert!(
        code.success(),
        "the browser script failed ({code}); herd said:\n{}",
        h.dump()
    );
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    for want in [
        "loads with a card per worker",
        "numbers change under load",
        "a SIGKILLed worker goes and its successor comes within 2 s",
        "the cache card's counters move with the workers' gets and sets",
        "the statuses list shows heartbeat and opening it shows each worker's value",
        "screenshot under load",
        "without the token an action is refused and the page says so",
        "mark down and up with the token",
        "scale up and down",
        "reload shows its progress and ends with every worker new",
        "replace one worker from its card",
        "drain of a foreign worker is refused, saying why",
        "profile one worker from its card",
        "no request to another host",
    ] {
        assert!(
            names.contains(&want),
            "step {want:?} did not run: {names:?}"
        );
    }
    let kill = steps
        .iter()
        .find(|s| s["step"].as_str().unwrap().contains("SIGKILL"))
        .unwrap();
    assert!(kill["ms"].as_u64().unwrap() <= 2000, "{kill}");
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a screenshot"
    );
    if std::env::var_os("HERD_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard.png");
        std::fs::write(&docs, &png).unwrap();
    }
}

/// Opens `/debug/events` and reads the answer's status line.
fn open_events(monitor: &str) -> (u16, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(monitor).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /debug/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, r)
}

#[test]
fn the_event_stream_serves_32_pages_and_refuses_the_next_until_one_closes() {
    let (_h, _addr, monitor) = herd_with_monitor(1);
    let mut pages: Vec<_> = (0..32)
        .map(|i| {
            let (code, r) = open_events(&monitor);
            assert_eq!(code, 200, "page {i}");
            r
        })
        .collect();
    // Each page gets the snapshot at once.
    for p in pages.iter_mut() {
        let mut line = String::new();
        let deadline = Instant::now() + TIMEOUT;
        while !line.starts_with("event: snapshot") {
            assert!(Instant::now() < deadline, "no snapshot");
            line.clear();
            p.read_line(&mut line).unwrap();
        }
    }
    let (code, mut r) = open_events(&monitor);
    assert_eq!(code, 503);
    let mut rest = String::new();
    let _ = r.read_to_string(&mut rest);
    assert!(
        rest.contains("32 dashboard pages are open already"),
        "{rest}"
    );
    drop(pages.pop());
    wait_until("a page's place is free again", || {
        open_events(&monitor).0 == 200
    });
}

#[test]
#[cfg_attr(not(herd_test_deps), ignore = "needs redis-py: run scripts/deps.sh")]
fn status_and_metrics_count_the_workers_cache_calls_and_the_heartbeat_status_has_every_worker() {
    let (h, addr, monitor) = herd_with_monitor(2);
    let status = |h: &Herd| -> serde_json::Value {
        let (code, body) = http("GET", &format!("http://{monitor}/status"), None);
        assert_eq!(code, 200, "{body}\n{}", h.dump());
        serde_json::from_str(&body).unwrap()
    };
    let before = status(&h)["caches"]["default"].clone();
    let n = 20;
    for _ in 0..n {
        let pid = curl(&addr, "/");
        assert!(
            pid.trim().parse::<u32>().is_ok(),
            "a cache call failed: {pid}"
        );
    }
    // Each request: a GET that hits (but the very first one of all), two
    // SETs (`dash:last` and the worker's own key), a GET that misses.
    let after = status(&h)["caches"]["default"].clone();
    let grew = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap_or(0);
    assert!(grew("misses") >= n, "{before} -> {after}");
    assert!(grew("hits") >= n - 1, "{before} -> {after}");
    assert!(after["entries"].as_u64().unwrap() >= 2, "{after}");
    let (_, metrics) = http("GET", &format!("http://{monitor}/metrics"), None);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("herd_cache_misses_total{cache=\"default\"}"))
        .unwrap_or_else(|| panic!("no cache misses in /metrics:\n{metrics}"));
    let misses: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        misses >= after["misses"].as_u64().unwrap(),
        "{line} vs {after}"
    );

    let ids: Vec<String> = status(&h)["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].to_string())
        .collect();
    let mut beats = serde_json::Value::Null;
    wait_until("a heartbeat from both workers", || {
        let (code, body) = http("GET", &format!("http://{monitor}/statuses/heartbeat"), None);
        beats = serde_json::from_str(&body).unwrap_or_default();
        code == 200
            && beats["answers"]
                .as_object()
                .is_some_and(|a| a.keys().cloned().collect::<Vec<_>>() == ids)
    });
    assert!(beats["missing"].as_array().unwrap().is_empty(), "{beats}");
}
