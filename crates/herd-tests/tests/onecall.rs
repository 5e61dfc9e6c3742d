//! `Cluster::listen`, one call for both roles: in the primary it returns
//! once every worker is ready (health up); in a worker it warms the
//! application up in-process before listening, then serves.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The onecall program's primary; killed, with its workers, on drop.
struct OneCall {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// Lines read while waiting for another (the primary's and the
    /// workers' lines interleave in any order).
    backlog: Vec<Value>,
    pids: Vec<u32>,
}

impl OneCall {
    fn start(warm_ms: u64) -> OneCall {
        let mut child = Command::new(env!("CARGO_BIN_EXE_onecall"))
            .env_remove("HERD_CHANNEL_FD")
            .env("ONECALL_WARMUP_MS", warm_ms.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start onecall");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        OneCall {
            child,
            lines,
            backlog: Vec::new(),
            pids: Vec::new(),
        }
    }

    fn expect(&mut self, event: &str) -> Value {
        if let Some(i) = self.backlog.iter().position(|v| v["event"] == event) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event:?} line"));
            if let Some(pid) = v["pid"].as_u64() {
                self.pids.push(pid as u32);
            }
            if v["event"] == event {
                return v;
            }
            self.backlog.push(v);
        }
    }
}

impl Drop for OneCall {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn one_call_warms_each_worker_up_before_it_serves_and_returns_in_the_primary_once_ready() {
    let started = Instant::now();
    let mut p = OneCall::start(300);
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let v = p.expect("serving");
        addrs.push(v["address"].as_str().unwrap().to_string());
    }
    assert_eq!(addrs[0], addrs[1], "both workers share one address");
    let ready = p.expect("ready");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "ready before the warm-up could end"
    );
    // Every answer comes from a warm cache, filled by the warm-up through
    // the application itself.
    for _ in 0..10 {
        let body = http_get(&addrs[0], "/").unwrap();
        assert!(body.starts_with("cache: warm"), "{body}");
    }
    let monitor = ready["monitor"].as_str().unwrap();
    let ecv = http_get(monitor, "/ecv").unwrap();
    assert!(ecv.starts_with("status=AVAILABLE"), "{ecv}");
    // A graceful stop: the primary's `wait` gives the exit code.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(p.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(p.expect("done")["code"], 0);
    let status = p.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
