//! Runs the `talk` program (src/bin/talk.rs) for one scenario and waits,
//! bounded, for its report; dropping a [`Talk`] kills the primary and the
//! workers it reported, so a failing test leaves no process behind.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Talk {
    child: Child,
    lines: mpsc::Receiver<Value>,
    pids: Vec<u32>,
}

impl Talk {
    pub fn start(scenario: &str) -> Talk {
        let mut child = Command::new(env!("CARGO_BIN_EXE_talk"))
            .env_remove("HERD_CHANNEL_FD")
            .env("TALK", scenario)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start talk");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Talk {
            child,
            lines,
            pids: Vec::new(),
        }
    }

    /// The scenario's report: the line whose `event` is `scenario`.
    pub fn report(mut self, scenario: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(v) = self.lines.recv_timeout(left) else {
                panic!("talk {scenario}: no report within 30 s");
            };
            if v["event"] == "forked" {
                self.pids.push(v["pid"].as_u64().unwrap() as u32);
            } else if v["event"] == scenario {
                return v;
            }
        }
    }
}

impl Drop for Talk {
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
