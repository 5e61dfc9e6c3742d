//! The monitor: ECV for load balancers (warm-up, mark down and up, monitor
//! mode, a shutdown that drains first), probes, status and metrics, the
//! token on control routes. Real HTTP through curl.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "t0ken-for-tests";

fn get(url: &str) -> (u16, String) {
    curl("GET", url, None)
}

/// A supervised fixture with the monitor on: the cluster, the app's address
/// and the monitor's base URL, once `ready` workers are ready.
fn monitored(n: usize, ready: usize, extra: &[(&str, &str)]) -> (Cluster, String, String) {
    let count = n.to_string();
    let mut env = vec![
        ("FIXTURE_SUPERVISE", count.as_str()),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_MONITOR", "1"),
        ("FIXTURE_POLICY", "rr"),
    ];
    env.extend_from_slice(extra);
    let mut c = Cluster::start(&env);
    let m = c.expect(|v| v["event"] == "monitor");
    let base = format!("http://{}", m["address"].as_str().unwrap());
    let addr = c.expect(|v| v["event"] == "listening")["address"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..ready {
        c.expect(|v| v["event"] == "ready");
    }
    (c, addr, base)
}

#[test]
fn ecv_is_503_while_the_worker_warms_up_gets_no_connection_then_200_once_ready() {
    let (mut c, addr, base) = monitored(
        1,
        0,
        &[
            ("FIXTURE_READINESS", "explicit"),
            ("FIXTURE_WARMUP", "manual"),
        ],
    );
    let (code, body) = get(&format!("{base}/ecv"));
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("status=WARNING&ServeTraffic=false&"),
        "{body}"
    );
    assert_eq!(get(&format!("{base}/readyz")).0, 503);
    // A request sent now waits: nothing reaches a worker that is not warm.
    let waiting = Waiting::start(&addr, "/", 1);
    waiting.wait_sent();
    for _ in 0..5 {
        assert_eq!(get(&format!("{base}/ecv")).0, 503);
    }
    assert_eq!(waiting.done(), 0, "a request reached the warming worker");
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "ready"}}));
    c.expect_event("ready", 1);
    c.expect(|v| v["event"] == "health" && v["health"] == "up");
    let (code, body) = get(&format!("{base}/ecv"));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("status=AVAILABLE&ServeTraffic=true&ip=127.0.0.1&hostname="),
        "{body}"
    );
    let port = addr.rsplit(':').next().unwrap();
    assert!(body.contains(&format!("&port={port}&time=")), "{body}");
    assert_eq!(get(&format!("{base}/readyz")), (200, "available\n".into()));
    let answers = waiting.finish();
    assert_eq!(answers[0].as_ref().unwrap(), "worker 1\n");
}

#[test]
fn marking_down_answers_503_while_workers_serve_and_marking_up_brings_200_back() {
    let (mut c, addr, base) = monitored(2, 2, &[("FIXTURE_MONITOR_TOKEN", TOKEN)]);
    let down = format!("{base}/ecv/markDown");
    assert_eq!(curl("POST", &down, None).0, 401, "no token");
    assert_eq!(curl("POST", &down, Some("wrong")).0, 401, "a wrong token");
    assert_eq!(
        get(&format!("{base}/ecv")).0,
        200,
        "refused calls change nothing"
    );
    assert_eq!(curl("POST", &down, Some(TOKEN)).0, 200);
    c.expect(|v| v["event"] == "health" && v["health"] == "draining");
    let (code, body) = get(&format!("{base}/ecv"));
    assert_eq!(code, 503);
    assert!(
        body.starts_with("status=DISABLED&ServeTraffic=false&"),
        "{body}"
    );
    // The workers still serve what is sent to them.
    for _ in 0..10 {
        assert!(http_get(&addr, "/").unwrap().starts_with("worker "));
    }
    let status: Value = serde_json::from_str(&get(&format!("{base}/status")).1).unwrap();
    assert_eq!(status["marked_down"], true);
    assert_eq!(status["health"], "draining");
    assert_eq!(status["ready"], 2);
    assert_eq!(
        curl("POST", &format!("{base}/ecv/markUp"), Some(TOKEN)).0,
        200
    );
    assert_eq!(get(&format!("{base}/ecv")).0, 200);
}

#[test]
fn control_routes_do_not_exist_without_a_token() {
    let (_c, _addr, base) = monitored(1, 1, &[]);
    let (code, body) = curl("POST", &format!("{base}/ecv/markDown"), Some(TOKEN));
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("give the monitor a token"), "{body}");
    assert_eq!(get(&format!("{base}/ecv")).0, 200, "still up");
    assert_eq!(curl("POST", &format!("{base}/reload"), None).0, 404);
}

#[test]
fn monitor_mode_with_a_probe_the_application_fails_answers_503() {
    let (_c, _addr, base) = monitored(1, 1, &[("FIXTURE_MONITOR_PROBE", "/no-such-page")]);
    let (code, body) = get(&format!("{base}/ecv"));
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("status=WARNING"), "{body}");
    let (code, why) = get(&format!("{base}/readyz"));
    assert_eq!(code, 503);
    assert!(
        why.contains("/no-such-page") && why.contains("404"),
        "{why}"
    );
}

#[test]
fn monitor_mode_with_a_probe_the_application_passes_answers_200() {
    let (_c, _addr, base) = monitored(1, 1, &[("FIXTURE_MONITOR_PROBE", "/")]);
    assert_eq!(get(&format!("{base}/ecv")).0, 200);
}

#[test]
fn on_sigterm_health_turns_503_before_the_first_worker_is_asked_to_disconnect() {
    let (mut c, addr, base) = monitored(
        2,
        2,
        &[
            ("FIXTURE_SUP_DRAIN_MS", "1500"),
            ("FIXTURE_ANNOUNCE_DISCONNECT", "1"),
        ],
    );
    assert_eq!(get(&format!("{base}/ecv")).0, 200);
    c.signal_primary(nix::sys::signal::Signal::SIGTERM);
    assert!(
        wait_until(TIMEOUT, || get(&format!("{base}/ecv")).0 == 503),
        "health never turned 503"
    );
    // Draining: the workers still serve, and none was asked to leave yet.
    assert!(http_get(&addr, "/").unwrap().starts_with("worker "));
    let disconnecting =
        |v: &Value| v["event"] == "message" && v["message"].get("disconnecting").is_some();
    assert!(
        c.expect_within(Duration::ZERO, disconnecting).is_none(),
        "{}",
        c.dump()
    );
    // Then they leave, and the primary exits cleanly.
    c.expect(disconnecting);
    let status = c.wait_exit(TIMEOUT).expect("the primary exits");
    assert_eq!(status.code(), Some(0));
    let order: Vec<&str> = c
        .seen
        .iter()
        .filter_map(|v| {
            if v["event"] == "health" && v["health"] == "draining" {
                Some("draining")
            } else if disconnecting(v) {
                Some("disconnecting")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(order.first(), Some(&"draining"), "{order:?}");
}

#[test]
fn a_crash_shows_in_status_and_metrics_with_its_restart_and_reason() {
    let (mut c, _addr, base) = monitored(2, 2, &[("FIXTURE_HEARTBEAT_MS", "1000")]);
    // A crash: killed from outside, not asked to leave.
    let pid = nix::unistd::Pid::from_raw(c.worker_pid(1) as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    c.expect_event("exit", 1);
    // Within one heartbeat of the exit, /status says so.
    let mut status = Value::Null;
    let seen = wait_until(Duration::from_millis(1000), || {
        status = serde_json::from_str(&get(&format!("{base}/status")).1).unwrap();
        status["slots"][0]["restarts"] == 1
    });
    assert!(seen, "not in /status within a heartbeat: {status}");
    let slot = &status["slots"][0];
    assert_eq!(slot["restarts"], 1, "{status}");
    assert_eq!(slot["last_exit"]["worker"], 1, "{status}");
    assert_eq!(slot["last_exit"]["status"]["signal"], "SIGKILL", "{status}");
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    assert!(
        metrics.contains("herd_worker_restarts_total{reason=\"crash\"} 1"),
        "{metrics}"
    );
    // The successor comes, and the workers' figures are there.
    c.expect(|v| v["event"] == "ready" && v["worker"] == 3);
    let (_, metrics) = get(&format!("{base}/metrics"));
    assert!(
        metrics.contains("process_resident_memory_bytes{worker=\"3\",slot=\"0\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("herd_workers{state=\"ready\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("herd_health{state=\"up\"} 1"), "{metrics}");
}

#[test]
#[cfg_attr(
    not(herd_promtool),
    ignore = "needs promtool (Debian's prometheus package; .ci/run installs it)"
)]
fn metrics_pass_promtools_check() {
    let (mut c, addr, base) = monitored(2, 2, &[]);
    http_get(&addr, "/").unwrap();
    c.cmd(json!({"cmd": "kill", "worker": 2, "signal": "SIGKILL"}));
    c.expect_event("exit", 2);
    let (code, metrics) = get(&format!("{base}/metrics"));
    assert_eq!(code, 200);
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn livez_deps_reload_and_the_agent_check_answer() {
    let (c, _addr, base) = monitored(
        1,
        1,
        &[
            ("FIXTURE_MONITOR_TOKEN", TOKEN),
            ("FIXTURE_MONITOR_AGENT", "1"),
        ],
    );
    let agent = c.seen.iter().find(|v| v["event"] == "monitor").unwrap()["agent"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&format!("{base}/livez")), (200, "alive\n".into()));
    let deps: Value = serde_json::from_str(&get(&format!("{base}/deps")).1).unwrap();
    assert_eq!(deps["herd"]["name"], "herd", "{deps}");
    let agent_says = || {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(&agent).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).unwrap();
        line
    };
    assert_eq!(agent_says(), "ready up 100%\n");
    let (code, body) = curl("POST", &format!("{base}/reload"), Some(TOKEN));
    assert_eq!(
        (code, body.starts_with("reloaded: 1 workers replaced")),
        (200, true),
        "{body}"
    );
    curl("POST", &format!("{base}/ecv/markDown"), Some(TOKEN));
    assert_eq!(agent_says(), "drain\n");
    // Back up, the agent lifts its own drain (HAProxy keeps a drain set by
    // the agent until the agent says `ready`).
    curl("POST", &format!("{base}/ecv/markUp"), Some(TOKEN));
    assert_eq!(agent_says(), "ready up 100%\n");
    let (code, body) = curl("POST", &format!("{base}/scale?workers=lots"), Some(TOKEN));
    assert_eq!(code, 400, "{body}");
    assert_eq!(get(&format!("{base}/nope")).0, 404);
}

#[test]
fn requests_and_their_latency_show_in_status_and_metrics_within_a_heartbeat() {
    let (_c, addr, base) = monitored(1, 1, &[("FIXTURE_HEARTBEAT_MS", "100")]);
    for _ in 0..40 {
        http_get(&addr, "/").unwrap();
    }
    // A steady trickle of 30 ms requests: each interval's p99 sees them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                http_get(&addr, "/slow?ms=30").unwrap();
                n += 1;
            }
            n
        })
    };
    let mut status = Value::Null;
    let seen = wait_until(TIMEOUT, || {
        status = serde_json::from_str(&get(&format!("{base}/status")).1).unwrap();
        let w = &status["workers"][0];
        w["requests"].as_u64().unwrap_or(0) >= 45
            && w["latency_p99_ms"].as_f64().is_some_and(|p| p >= 25.0)
            && w["requests_per_sec"].as_f64().is_some_and(|r| r > 0.0)
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let slow_done = slow.join().unwrap();
    assert!(seen, "{status}");
    // The histogram: every request counted (by the next heartbeat), the
    // slow ones above 25 ms.
    let labels = "worker=\"1\",slot=\"0\"";
    let value = |metrics: &str, line: &str| -> Option<u64> {
        metrics
            .lines()
            .find(|l| l.starts_with(line))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    };
    let count_line = format!("herd_worker_request_duration_seconds_count{{{labels}}}");
    let fast_line = format!("herd_worker_request_duration_seconds_bucket{{le=\"0.025\",{labels}}}");
    let mut metrics = String::new();
    let all = wait_until(Duration::from_secs(2), || {
        metrics = get(&format!("{base}/metrics")).1;
        value(&metrics, &count_line) == Some(40 + slow_done)
    });
    assert!(all, "not every request counted: {metrics}");
    let fast = value(&metrics, &fast_line).unwrap();
    assert_eq!(40 + slow_done - fast, slow_done, "{metrics}");
}
