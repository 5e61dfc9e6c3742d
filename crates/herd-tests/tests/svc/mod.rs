//! Runs the `services` program (src/bin/services) for one scenario and
//! waits, bounded, for its lines; dropping a [`Svc`] kills the primary and
//! every worker it reported, so a failing test leaves no process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Svc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    pub pids: Vec<u32>,
    /// Every line so far.
    pub seen: Vec<Value>,
}

impl Svc {
    pub fn start(scenario: &str) -> Svc {
        Svc::start_with(scenario, &[])
    }

    pub fn start_with(scenario: &str, env: &[(&str, &str)]) -> Svc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_services"));
        cmd.env_remove("HERD_CHANNEL_FD")
            .env("SVC", scenario)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start services");
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Svc {
            child,
            stdin,
            lines,
            pids: Vec::new(),
            seen: Vec::new(),
        }
    }

    /// Writes a line to the primary's stdin.
    pub fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The first line (from now, or seen already and not taken) that
    /// `pred` accepts, within `within`.
    pub fn wait(&mut self, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(v) = self.lines.recv_timeout(left) else {
                panic!("no such line within {within:?}; seen: {:?}", self.seen);
            };
            if v["event"] == "forked" {
                self.pids.push(v["pid"].as_u64().unwrap() as u32);
            }
            if pred(&v) {
                return v;
            }
            self.seen.push(v);
        }
    }

    /// The scenario's report: the line whose `event` is `scenario`.
    pub fn report(&mut self, scenario: &str) -> Value {
        self.wait(Duration::from_secs(60), |v| v["event"] == scenario)
    }

    /// Worker `id`'s line of `event` `what`.
    pub fn worker_line(&mut self, id: u64, what: &str) -> Value {
        self.wait(Duration::from_secs(60), |v| {
            v["event"] == what && v["id"].as_u64() == Some(id)
        })
    }
}

impl Drop for Svc {
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
