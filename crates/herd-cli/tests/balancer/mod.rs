//! A real load balancer and load for tests/haproxy.rs: HAProxy (Debian's
//! package) run in the foreground with a generated configuration, its
//! state read from its stats socket, and wrk through it with a Lua script
//! that counts the answers by body. Every wait is bounded; dropping a
//! [`Haproxy`] or a [`Wrk`] kills the process.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{TempDir, TIMEOUT};

pub fn haproxy_bin() -> &'static str {
    option_env!("HERD_TEST_HAPROXY").unwrap_or("haproxy")
}

pub fn wrk_bin() -> &'static str {
    option_env!("HERD_TEST_WRK").unwrap_or("wrk")
}

/// A free loopback port: bound to port 0, then released.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How HAProxy checks a server: ECV over HTTP on the monitor's port, or a
/// TCP check of the server's port with herd's agent check beside it.
#[derive(Clone, Copy, Debug)]
pub enum Check {
    Ecv { port: u16 },
    Agent { port: u16 },
}

/// One herd host behind HAProxy.
#[derive(Clone, Debug)]
pub struct Backend {
    pub name: String,
    pub addr: String,
    pub check: Check,
}

/// The backend section the tests run, as the README's "Run it in
/// production" shows it.
pub fn backend(servers: &[Backend]) -> String {
    let mut c = String::from("backend herd\n    balance roundrobin\n");
    if servers.iter().any(|s| matches!(s.check, Check::Ecv { .. })) {
        c.push_str("    option httpchk GET /ecv\n    http-check expect status 200\n");
    }
    c.push_str("    default-server inter 100ms fall 2 rise 2\n");
    for s in servers {
        let check = match s.check {
            Check::Ecv { port } => format!("check port {port}"),
            Check::Agent { port } => {
                format!("check agent-check agent-port {port} agent-inter 100ms")
            }
        };
        c.push_str(&format!("    server {} {} {check}\n", s.name, s.addr));
    }
    c
}

/// The whole configuration: a frontend on `port` for the backend of
/// `servers`, and the stats socket at `socket`.
pub fn config(port: u16, socket: &str, servers: &[Backend]) -> String {
    format!(
        "global
    stats socket {socket} level admin

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s

frontend web
    bind 127.0.0.1:{port}
    default_backend herd

{}",
        backend(servers)
    )
}

/// `haproxy -f CFG -db` (foreground), killed on drop.
pub struct Haproxy {
    child: Child,
    pub port: u16,
    socket: PathBuf,
    pub config: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `servers` and waits until its stats
    /// socket answers.
    pub fn start(servers: &[Backend]) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let socket = dir.path().join("stats.sock");
        let port = free_port();
        let config = config(port, &socket.to_string_lossy(), servers);
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, &config).unwrap();
        let mut child = Command::new(haproxy_bin())
            .arg("-f")
            .arg(&file)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start haproxy");
        let log = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut h = Haproxy {
            child,
            port,
            socket,
            config,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + TIMEOUT;
        while h.command("show info").is_err() {
            if let Some(status) = h.child.try_wait().unwrap() {
                panic!("haproxy exited ({status}):\n{}", h.log());
            }
            assert!(
                Instant::now() < deadline,
                "haproxy's stats socket never answered:\n{}",
                h.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        h
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What HAProxy wrote (state changes of the servers, warnings).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// One command on the stats socket; its whole answer.
    pub fn command(&self, cmd: &str) -> std::io::Result<String> {
        let mut s = UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// `show stat` for one server of the backend: column name to value
    /// (`status`: UP, DOWN, DRAIN...; `hrsp_2xx`: responses).
    pub fn server(&self, name: &str) -> HashMap<String, String> {
        let csv = self.command("show stat").expect("haproxy show stat");
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .and_then(|h| h.strip_prefix("# "))
            .expect("show stat header")
            .split(',')
            .collect();
        for line in lines {
            let row: Vec<&str> = line.split(',').collect();
            if row.first() == Some(&"herd") && row.get(1) == Some(&name) {
                return header
                    .iter()
                    .zip(row)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            }
        }
        panic!("no server {name} in haproxy's stats:\n{csv}");
    }

    pub fn status(&self, name: &str) -> String {
        self.server(name)["status"].clone()
    }

    /// Responses with status 2xx that the server gave.
    pub fn served(&self, name: &str) -> u64 {
        self.server(name)["hrsp_2xx"].parse().unwrap_or(0)
    }

    /// Waits until HAProxy reports exactly `status` for the server (`UP
    /// 1/2` is still going down, `DOWN 1/2` still coming up); returns how
    /// long it took.
    pub fn wait_status(&self, name: &str, status: &str) -> Duration {
        let t0 = Instant::now();
        loop {
            let now = self.status(name);
            if now == status {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < TIMEOUT,
                "haproxy never saw server {name} {status} (it says {now}):\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until each server has served `n` more responses than now:
    /// traffic flows through all of them.
    pub fn wait_traffic(&self, names: &[&str], n: u64) {
        let base: Vec<u64> = names.iter().map(|s| self.served(s)).collect();
        let t0 = Instant::now();
        while names.iter().zip(&base).any(|(s, b)| self.served(s) < b + n) {
            assert!(
                t0.elapsed() < TIMEOUT,
                "no traffic through {names:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts the answers by status and body (one line each), summed over
/// wrk's threads when it is done.
const SCRIPT: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) answers = {} end
function response(status, headers, body)
  local k = status .. " " .. body:gsub("\n", "")
  answers[k] = (answers[k] or 0) + 1
end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for k, n in pairs(t:get("answers")) do all[k] = (all[k] or 0) + n end
  end
  for k, n in pairs(all) do io.write(string.format("answer %d %s\n", n, k)) end
end
"#;

/// `wrk -t2 -c16 -dN` (keep-alive), killed on drop.
pub struct Wrk {
    child: Child,
    out: Arc<Mutex<String>>,
    started: Instant,
    duration: Duration,
    _dir: TempDir,
}

/// What a wrk run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub requests: u64,
    /// wrk's `Non-2xx or 3xx responses`.
    pub non_2xx: u64,
    /// wrk's `Socket errors`: connect, read, write, timeout.
    pub socket_errors: [u64; 4],
    /// Answers by `STATUS BODY`.
    pub answers: BTreeMap<String, u64>,
    pub text: String,
}

impl Report {
    /// Requests that failed: any socket error or a status not 2xx/3xx.
    pub fn failed(&self) -> u64 {
        self.non_2xx + self.socket_errors.iter().sum::<u64>()
    }

    /// Answers whose body ends with `suffix` (e.g. ` on a`).
    pub fn from(&self, suffix: &str) -> u64 {
        self.answers
            .iter()
            .filter(|(k, _)| k.ends_with(suffix))
            .map(|(_, n)| n)
            .sum()
    }

    fn parse(text: String) -> Report {
        let mut r = Report::default();
        let num = |s: &str| s.trim().trim_end_matches(',').parse::<u64>().unwrap_or(0);
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("answer ") {
                if let Some((n, k)) = rest.split_once(' ') {
                    r.answers.insert(k.to_string(), num(n));
                }
            } else if t.contains(" requests in ") {
                r.requests = num(t.split_whitespace().next().unwrap_or("0"));
            } else if let Some(n) = t.strip_prefix("Non-2xx or 3xx responses:") {
                r.non_2xx = num(n);
            } else if let Some(rest) = t.strip_prefix("Socket errors:") {
                for (i, part) in rest.split(',').enumerate().take(4) {
                    r.socket_errors[i] = num(part.split_whitespace().last().unwrap_or("0"));
                }
            }
        }
        r.text = text;
        r
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [c, r, w, t] = self.socket_errors;
        write!(
            f,
            "{} requests, {} failed (non-2xx {}, socket errors connect {c} read {r} write {w} timeout {t})",
            self.requests,
            self.failed(),
            self.non_2xx
        )
    }
}

impl Wrk {
    /// Starts wrk against `url` for `secs` seconds (wrk counts whole
    /// seconds): 2 threads, 16 keep-alive connections.
    pub fn start(url: &str, secs: u64) -> Wrk {
        let duration = Duration::from_secs(secs);
        let dir = TempDir::new("wrk");
        let script = dir.path().join("count.lua");
        std::fs::write(&script, SCRIPT).unwrap();
        let mut child = Command::new(wrk_bin())
            .args(["-t2", "-c16"])
            .arg(format!("-d{secs}s"))
            .arg("-s")
            .arg(&script)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wrk");
        let out = Arc::new(Mutex::new(String::new()));
        for mut pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = out.clone();
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                out.lock().unwrap().push_str(&s);
            });
        }
        Wrk {
            child,
            out,
            started: Instant::now(),
            duration,
            _dir: dir,
        }
    }

    /// Whether wrk is still measuring (the scenario happened inside its
    /// run, not after it).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
            && self.started.elapsed() + Duration::from_millis(200) < self.duration
    }

    /// Waits for wrk to end (bounded) and parses what it printed.
    pub fn finish(mut self) -> Report {
        let deadline = self.started + self.duration + TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "wrk did not end");
            std::thread::sleep(Duration::from_millis(20));
        };
        // The output threads end with the pipes.
        let t0 = Instant::now();
        let text = loop {
            let text = self.out.lock().unwrap().clone();
            if text.contains("Transfer/sec") || t0.elapsed() > Duration::from_secs(5) {
                break text;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "wrk failed ({status}):\n{text}");
        let report = Report::parse(text);
        assert!(
            report.requests > 0,
            "wrk measured nothing:\n{}",
            report.text
        );
        report
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
