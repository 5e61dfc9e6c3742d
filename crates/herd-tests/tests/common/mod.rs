//! Drives the `fixture` program: start a primary, send it commands, wait for
//! the events it prints. Every wait is bounded; dropping a [`Cluster`] kills
//! the primary and every worker it reported, so a failing test leaves no
//! process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(15);

pub struct Cluster {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    /// Every line received so far, in order.
    pub seen: Vec<Value>,
    /// Lines not yet consumed by an `expect`.
    backlog: Vec<Value>,
    pub pid: u32,
    worker_pids: Vec<u32>,
}

impl Cluster {
    /// Starts a fixture primary with extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> Cluster {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fixture"));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .env_remove("HERD_CHANNEL_FD");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start fixture primary");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("fixture: {line}"),
                }
            }
        });
        let pid = child.id();
        let mut c = Cluster {
            child,
            stdin,
            rx,
            seen: Vec::new(),
            backlog: Vec::new(),
            pid,
            worker_pids: Vec::new(),
        };
        c.expect(|v| v["event"] == "started");
        c
    }

    pub fn cmd(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").expect("write command to fixture");
        self.stdin.flush().unwrap();
    }

    /// Forks a worker with `env` and returns its id.
    pub fn fork(&mut self, env: &[(&str, &str)]) -> u32 {
        let env: serde_json::Map<String, Value> =
            env.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        self.cmd(json!({ "cmd": "fork", "env": env }));
        let v = self.expect(|v| v["event"] == "forked" || v["event"] == "fork_error");
        assert_eq!(v["event"], "forked", "fork failed: {v}");
        self.worker_pids.push(v["pid"].as_u64().unwrap() as u32);
        v["worker"].as_u64().unwrap() as u32
    }

    pub fn worker_pid(&self, id: u32) -> u32 {
        let v = self
            .seen
            .iter()
            .find(|v| v["event"] == "forked" && v["worker"] == id)
            .expect("worker was forked");
        v["pid"].as_u64().unwrap() as u32
    }

    /// Waits for the first not-yet-consumed line that matches `pred`.
    pub fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        self.expect_within(TIMEOUT, pred).unwrap_or_else(|| {
            panic!(
                "timed out waiting for an event; seen so far:\n{}",
                self.dump()
            )
        })
    }

    pub fn expect_within(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return Some(v);
                    }
                    self.backlog.push(v);
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    // The primary's stdout closed (it exited).
                    return None;
                }
            }
        }
    }

    /// Waits for `event` about worker `id`.
    pub fn expect_event(&mut self, event: &str, id: u32) -> Value {
        self.expect(|v| v["event"] == event && v["worker"] == id)
    }

    /// All lines about worker `id` received so far, in order.
    pub fn events_of(&self, id: u32) -> Vec<Value> {
        self.seen
            .iter()
            .filter(|v| v["worker"] == id)
            .cloned()
            .collect()
    }

    pub fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits for the primary process to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn signal_primary(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in &self.worker_pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the command name in parentheses.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`; returns the body.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bad response: {head}")));
    }
    Ok(body.to_string())
}
