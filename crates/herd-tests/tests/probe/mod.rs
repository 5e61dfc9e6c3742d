//! Runs the `primary_api` program (the primary's API called directly):
//! its JSON lines, each wait bounded; dropping a [`Probe`] kills it and
//! every worker it reported, so a failing test leaves no process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any single line may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

pub const PROGRAM: &str = env!("CARGO_BIN_EXE_primary_api");

pub struct Probe {
    child: Child,
    lines: mpsc::Receiver<Value>,
    pids: Vec<u32>,
}

impl Probe {
    /// Starts `primary_api` with `args` (the first names the scenario) in
    /// `cwd`, with `env`.
    pub fn start(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Probe {
        let mut cmd = Command::new(PROGRAM);
        cmd.args(args)
            .current_dir(cwd)
            .env_remove("HERD_CHANNEL_FD")
            .env_remove("HERD_SCHED_POLICY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start primary_api");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("primary_api: {line}"),
                }
            }
        });
        Probe {
            child,
            lines,
            pids: Vec::new(),
        }
    }

    /// The next line whose `event` is `event` (noting workers' pids on the
    /// way).
    pub fn expect(&mut self, event: &str) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {event:?} line from primary_api"));
            if v["event"] == "forked" {
                self.pids.push(v["pid"].as_u64().unwrap() as u32);
            }
            if v["event"] == event {
                return v;
            }
        }
    }
}

impl Drop for Probe {
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
