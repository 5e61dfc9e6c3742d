//! The supervisor: respawn, crash-loop breaker, rolling restarts that drop
//! nothing, the nanny, recycling and graceful shutdown.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

fn supervised(n: usize, extra: &[(&str, &str)]) -> (Cluster, String) {
    let count = n.to_string();
    let mut env = vec![
        ("FIXTURE_SUPERVISE", count.as_str()),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
    ];
    env.extend_from_slice(extra);
    let mut c = Cluster::start(&env);
    let v = c.expect(|v| v["event"] == "listening");
    let addr = v["address"].as_str().unwrap().to_string();
    // Every worker ready, each one counted once: only then do they all
    // share the port (a lone listener that exits would close it).
    let mut ready = std::collections::BTreeSet::new();
    while ready.len() < n {
        let v = c.expect(|v| v["event"] == "ready");
        ready.insert(v["worker"].as_u64().unwrap());
    }
    (c, addr)
}

/// Keeps two clients busy until stopped: one over a keep-alive connection,
/// one with a new connection per request. Counts successes and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for keepalive in [true, false] {
            let (addr, stop, ok, failed) =
                (addr.to_string(), stop.clone(), ok.clone(), failed.clone());
            threads.push(std::thread::spawn(move || {
                let mut errors = Vec::new();
                let mut conn: Option<std::io::BufReader<std::net::TcpStream>> = None;
                while !stop.load(Ordering::Relaxed) {
                    match request(&addr, keepalive, &mut conn) {
                        Ok(()) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!("keepalive={keepalive}: {e}"));
                            conn = None;
                        }
                    }
                }
                errors
            }));
        }
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let errors = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}

/// One GET; on a keep-alive connection the server may answer the last
/// request with `Connection: close`, after which a new connection is used.
fn request(
    addr: &str,
    keepalive: bool,
    conn: &mut Option<std::io::BufReader<std::net::TcpStream>>,
) -> std::io::Result<()> {
    use std::io::{BufRead, Read, Write};
    if conn.is_none() {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        *conn = Some(std::io::BufReader::new(s));
    }
    let r = conn.as_mut().unwrap();
    let close = if keepalive {
        ""
    } else {
        "Connection: close\r\n"
    };
    write!(r.get_mut(), "GET / HTTP/1.1\r\nHost: t\r\n{close}\r\n")?;
    let mut status = String::new();
    r.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("status line {status:?}")));
    }
    let mut len = 0usize;
    let mut server_closes = !keepalive;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection: close") {
            server_closes = true;
        }
        if h == "\r\n" || h.is_empty() {
            break;
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    if server_closes {
        *conn = None;
    }
    Ok(())
}

fn zero_loss_reloads(policy: &str) {
    let (mut c, addr) = supervised(2, &[("FIXTURE_POLICY", policy)]);
    let load = Load::start(&addr);
    for _ in 0..20 {
        c.cmd(json!({"cmd": "reload"}));
        let v = c.expect(|v| {
            v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
        });
        assert_eq!(v["phase"], "finished", "{v}");
        assert_eq!(v["replaced"], 2);
    }
    let (ok, failed, errors) = load.finish();
    assert_eq!(
        failed,
        0,
        "{policy}: {failed} failed requests of {}: {errors:?}",
        ok + failed
    );
    assert!(ok > 100, "{policy}: only {ok} requests made it");
}

#[test]
fn twenty_rolling_reloads_under_load_drop_nothing_rr() {
    zero_loss_reloads("rr");
}

#[test]
fn twenty_rolling_reloads_under_load_drop_nothing_reuseport() {
    zero_loss_reloads("reuseport");
}

#[test]
fn a_reload_whose_new_build_cannot_boot_aborts_and_the_old_workers_keep_serving() {
    let (mut c, addr) = supervised(2, &[]);
    let load = Load::start(&addr);
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_MODE": "exit", "FIXTURE_EXIT_CODE": "3"}}));
    c.cmd(json!({"cmd": "reload"}));
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "aborted", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("before it was ready"),
        "{v}"
    );
    let body = http_get(&addr, "/").unwrap();
    assert!(
        body.starts_with("worker 1") || body.starts_with("worker 2"),
        "{body}"
    );
    let (ok, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{errors:?}");
    assert!(ok > 0);
}

#[test]
fn a_worker_that_crashes_at_start_trips_the_breaker_and_the_others_keep_serving() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_SUP_CRASH_LIMIT", "3"),
            ("FIXTURE_SUP_BACKOFF_MS", "20"),
        ],
    );
    // From now on new workers crash at start; then crash worker 1.
    c.cmd(json!({"cmd": "setup", "env": {"FIXTURE_MODE": "exit", "FIXTURE_EXIT_CODE": "9"}}));
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "exit", "code": 1}}));
    let v = c.expect(|v| v["event"] == "critical");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("3 times") && reason.contains("exit code 9"),
        "{reason}"
    );
    assert_eq!(http_get(&addr, "/").unwrap(), "worker 2\n");
}

#[test]
fn a_worker_exiting_with_the_cannot_boot_code_trips_the_breaker_at_once() {
    let (mut c, _addr) = supervised(1, &[]);
    c.cmd(
        json!({"cmd": "send", "worker": 1, "msg": {"cmd": "exit", "code": herd::EXIT_CANNOT_BOOT}}),
    );
    let v = c.expect(|v| v["event"] == "critical");
    assert!(v["reason"].as_str().unwrap().contains("cannot boot"), "{v}");
    assert!(
        !c.seen
            .iter()
            .any(|v| v["event"] == "fork" && v["worker"] == 2),
        "{}",
        c.dump()
    );
}

#[test]
fn a_worker_that_blocks_its_runtime_is_replaced_by_the_nanny() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_HEARTBEAT_MS", "100"),
            ("FIXTURE_SUP_HEARTBEAT_TIMEOUT_MS", "1000"),
        ],
    );
    let pid = c.worker_pid(1);
    c.cmd(json!({"cmd": "send", "worker": 1, "msg": {"cmd": "spin"}}));
    let exit = c.expect_event("exit", 1);
    assert_eq!(exit["signal"], "SIGKILL");
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
    // Its successor (worker 3) was ready before it was killed.
    let ready = c
        .seen
        .iter()
        .position(|v| v["event"] == "ready" && v["worker"] == 3);
    let exit = c
        .seen
        .iter()
        .position(|v| v["event"] == "exit" && v["worker"] == 1);
    assert!(ready.is_some() && ready < exit, "{}", c.dump());
    assert!(http_get(&addr, "/").is_ok());
}

#[test]
fn recycling_by_max_requests_with_jitter_spreads_recycles_and_fails_nothing() {
    let (mut c, addr) = supervised(
        2,
        &[
            ("FIXTURE_SUP_MAX_REQUESTS", "40"),
            ("FIXTURE_SUP_JITTER", "40"),
            ("FIXTURE_HEARTBEAT_MS", "50"),
        ],
    );
    let load = Load::start(&addr);
    let first = c.expect(|v| v["event"] == "recycle");
    let second = c.expect(|v| v["event"] == "recycle" && v["worker"] != first["worker"]);
    let (_, failed, errors) = load.finish();
    assert_eq!(failed, 0, "{errors:?}");
    assert!(first["reason"].as_str().unwrap().contains("connections"));
    // With jitter, each worker got its own limit.
    let limit = |v: &serde_json::Value| {
        v["reason"]
            .as_str()
            .unwrap()
            .rsplit("limit ")
            .next()
            .unwrap()
            .to_string()
    };
    let limits: Vec<String> = c
        .seen
        .iter()
        .filter(|v| v["event"] == "recycle")
        .map(limit)
        .collect();
    assert!(limits.len() >= 2, "{limits:?}");
    let _ = second;
}

#[test]
fn graceful_shutdown_lets_a_slow_request_finish_and_exits_0() {
    let (mut c, addr) = supervised(1, &[]);
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || http_get(&addr, "/slow?ms=700&notify=1")
    });
    c.expect(|v| v["event"] == "message" && v["message"]["slow_started"].is_u64());
    c.signal_primary(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(slow.join().unwrap().unwrap(), "slow done by 1\n");
    let status = c.wait_exit(Duration::from_secs(10)).expect("primary exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn past_the_grace_period_the_worker_is_killed_and_the_exit_code_says_so() {
    let (mut c, addr) = supervised(1, &[("FIXTURE_SUP_GRACE_MS", "300")]);
    let slow = std::thread::spawn({
        let addr = addr.clone();
        move || http_get(&addr, "/slow?ms=5000&notify=1")
    });
    c.expect(|v| v["event"] == "message" && v["message"]["slow_started"].is_u64());
    c.signal_primary(nix::sys::signal::Signal::SIGTERM);
    let status = c.wait_exit(Duration::from_secs(10)).expect("primary exits");
    c.expect_within(Duration::from_millis(200), |_| false);
    assert_eq!(status.code(), Some(1), "{}", c.dump());
    assert!(slow.join().unwrap().is_err());
}
