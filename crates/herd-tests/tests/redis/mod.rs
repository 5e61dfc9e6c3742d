//! For the tests on Redis: a `redis-server` of the test's own on a Unix
//! socket (killed on drop, restartable on the same socket), and the cache
//! fixture run against it, one instance per "host", steered on its stdin
//! and read line by line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const TIMEOUT: Duration = Duration::from_secs(40);

pub struct Redis {
    pub dir: PathBuf,
    child: Option<Child>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Redis {
    pub fn start() -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "herd-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Redis { dir, child: None };
        r.up();
        r
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts the server (again) and waits until it answers PING.
    pub fn up(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(option_env!("HERD_TEST_REDIS_SERVER").unwrap_or("redis-server"))
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--notify-keyspace-events", "Ex", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server did not answer on {:?} within 10 s",
            self.socket()
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One herd instance (the cache fixture) on the test's Redis.
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Value>,
    pub lines: Vec<Value>,
    pub stderr: Arc<Mutex<String>>,
    name: String,
}

impl Host {
    pub fn start(name: &str, scenario: &str, workers: usize, env: &[(&str, String)]) -> Host {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cache"));
        cmd.env("CACHE_SCENARIO", scenario)
            .env("CACHE_WORKERS", workers.to_string())
            .env("CACHE_CLUSTER_HOST", name)
            .env("CACHE_COMMANDS", "1")
            .env_remove("HERD_CHANNEL_FD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the cache fixture");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str::<Value>(&line).unwrap_or(json!({"raw": line}));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Host {
            stdin: child.stdin.take(),
            child,
            rx,
            lines: Vec::new(),
            stderr,
            name: name.into(),
        }
    }

    /// The first line (from now or already read) that `want` accepts.
    pub fn wait_for(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.lines.iter().find(|v| want(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.lines.push(v.clone());
                    if want(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{}: no {what} within {TIMEOUT:?}; saw {:#?}\nstderr: {}",
                    self.name,
                    self.lines,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    pub fn event(&mut self, name: &str) -> Value {
        self.wait_for(name, |v| v["event"] == name)
    }

    /// A worker's report carrying `field`.
    pub fn report(&mut self, field: &str) -> Value {
        self.wait_for(field, |v| {
            v["event"] == "msg" && v["msg"].get(field).is_some()
        })["msg"]
            .clone()
    }

    pub fn command(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").unwrap();
        stdin.flush().unwrap();
    }

    /// The Redis link's health, asked now, once `want` holds of it
    /// (asked again every 50 ms until then, within the timeout).
    pub fn health_until(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let before = self.lines.len();
            self.command(json!({"health": true}));
            let v = self.wait_for("health", |v| v["event"] == "health");
            self.lines.retain(|l| l["event"] != "health");
            let _ = before;
            if want(&v["health"]) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{}: health never became as wanted: {v}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads to the fixture's end (`done`) and its exit.
    pub fn finish(&mut self) {
        // The fixture's runtime waits for its read of stdin at its end.
        drop(self.stdin.take());
        self.event("done");
        let status = self.child.wait().expect("wait for the fixture");
        assert!(
            status.success(),
            "{}: fixture failed: {status:?}; {:#?}",
            self.name,
            self.lines
        );
    }

    /// Every worker's reports carrying `field`, with their worker.
    pub fn with(&self, field: &str) -> Vec<(u64, Value)> {
        self.lines
            .iter()
            .filter(|v| v["event"] == "msg" && v["msg"].get(field).is_some())
            .map(|v| (v["worker"].as_u64().unwrap(), v["msg"].clone()))
            .collect()
    }

    pub fn outcomes(&self) -> Vec<Value> {
        self.with("outcomes")
            .into_iter()
            .flat_map(|(_, m)| m["outcomes"].as_array().unwrap().clone())
            .collect()
    }

    pub fn stats(&self, cache: &str) -> Value {
        let s = self
            .lines
            .iter()
            .rev()
            .find(|v| v["event"] == "stats")
            .expect("stats");
        s["stats"][cache].clone()
    }

    /// SIGKILLs the primary (its workers follow when their channel closes).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of an instance on `redis` in `cluster`.
pub fn on(redis: &Redis, cluster: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_REDIS", redis.url()),
        ("CACHE_CLUSTER", cluster.to_string()),
    ]
}
