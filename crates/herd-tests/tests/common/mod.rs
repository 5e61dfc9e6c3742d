//! Drives the `fixture` program: start a primary, send it commands, wait for
//! the events it prints. Every wait is bounded; dropping a [`Cluster`] kills
//! the primary and every worker it reported, so a failing test leaves no
//! process behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// How to start a fixture primary, for [`Cluster::start_with`]; plain
/// [`Cluster::start`] takes only extra environment variables.
#[derive(Debug, Default, Clone)]
pub struct Options {
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    capture_stderr: bool,
    user: Option<(u32, u32)>,
    cwd: Option<std::path::PathBuf>,
    program: Option<std::path::PathBuf>,
}

impl Options {
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets an environment variable for the primary (its workers inherit it).
    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Removes an environment variable the test process may have.
    pub fn env_remove(mut self, key: &str) -> Options {
        self.env_remove.push(key.to_string());
        self
    }

    /// Pipes the primary's stderr (which its workers share) to the test:
    /// see [`Cluster::stderr_lines`] and [`Cluster::wait_stderr`].
    pub fn capture_stderr(mut self) -> Options {
        self.capture_stderr = true;
        self
    }

    /// Runs the primary (and so its workers) as this user and group, e.g.
    /// 65534 (nobody) to meet the errors an unprivileged server meets.
    pub fn user(mut self, uid: u32, gid: u32) -> Options {
        self.user = Some((uid, gid));
        self
    }

    /// Runs this program as the primary instead of the fixture (a copy of
    /// the fixture, or a script that execs it).
    pub fn program(mut self, path: impl Into<std::path::PathBuf>) -> Options {
        self.program = Some(path.into());
        self
    }

    /// The primary's working directory (its workers inherit it).
    pub fn cwd(mut self, dir: impl Into<std::path::PathBuf>) -> Options {
        self.cwd = Some(dir.into());
        self
    }
}

/// A captured stderr: the lines so far, and the thread that reads them.
struct Stderr {
    lines: Arc<Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

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
    /// Lines of stderr, when captured.
    stderr: Option<Stderr>,
}

impl Cluster {
    /// Starts a fixture primary with extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> Cluster {
        let options = env.iter().fold(Options::new(), |o, (k, v)| o.env(k, v));
        Cluster::start_with(options)
    }

    /// Starts a fixture primary as `options` say.
    pub fn start_with(options: Options) -> Cluster {
        let program = options
            .program
            .clone()
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_fixture").into());
        let mut cmd = Command::new(program);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .env_remove("HERD_CHANNEL_FD")
            .env_remove("HERD_PRIMARY_SPIN_US");
        for k in &options.env_remove {
            cmd.env_remove(k);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        if options.capture_stderr {
            cmd.stderr(Stdio::piped());
        }
        if let Some((uid, gid)) = options.user {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        if let Some(dir) = &options.cwd {
            cmd.current_dir(dir);
        }
        // A program just written may still be open for writing in a child
        // that another thread forked at that moment (ETXTBSY): try again.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(libc_etxtbsy()) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                r => break r.expect("start fixture primary"),
            }
        };
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().map(|pipe| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
            Stderr { lines, reader }
        });
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
            stderr,
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
            .find(|v| {
                (v["event"] == "forked" || v["event"] == "fork")
                    && v["worker"] == id
                    && v["pid"].is_u64()
            })
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
                    if v["event"] == "fork" {
                        if let Some(pid) = v["pid"].as_u64() {
                            self.worker_pids.push(pid as u32);
                        }
                    }
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

    /// The stderr lines received so far (needs [`Options::capture_stderr`]).
    pub fn stderr_lines(&self) -> Vec<String> {
        let stderr = self.stderr.as_ref().expect("stderr is not captured");
        stderr.lines.lock().unwrap().clone()
    }

    /// Waits until some stderr line matches `pred`; returns it, or `None`
    /// after `timeout`.
    /// Waits until stderr is closed by every process that had it (the
    /// primary and its workers) and read to its end; false after `timeout`.
    pub fn wait_stderr_end(&self, timeout: Duration) -> bool {
        let stderr = self.stderr.as_ref().expect("stderr is not captured");
        wait_until(timeout, || stderr.reader.is_finished())
    }

    pub fn wait_stderr(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.stderr_lines().into_iter().find(|l| pred(l));
            found.is_some()
        });
        found
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

/// ETXTBSY ("text file busy").
fn libc_etxtbsy() -> i32 {
    nix::errno::Errno::ETXTBSY as i32
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
    let s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    get_over(s, path)
}

/// Sends a GET with `Connection: close` on `s` and returns the body of a
/// 200 answer.
fn get_over(mut s: impl std::io::Read + std::io::Write, path: &str) -> std::io::Result<String> {
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

// ---- Port sharing: policies, listeners, clients ----

/// The scheduling policies, as `FIXTURE_POLICY` names them.
pub const POLICIES: [&str; 4] = ["rr", "lc", "shared", "reuseport"];

/// `per_policy!(scenario: rr, lc, shared, reuseport);` makes a module
/// `scenario` holding one test per policy named, each calling
/// `scenario("rr")` and so on, so a failure names its policy. Attributes
/// before the scenario go on each of its tests, e.g.
/// `per_policy!(#[cfg_attr(not(herd_ipv6), ignore = "...")] scenario: rr)`.
#[allow(unused_macros)]
macro_rules! per_policy {
    // The attributes travel as one token tree: they repeat, and so do the
    // policies, so they cannot both be expanded in one repetition.
    (@mod $attrs:tt $scenario:ident: $($policy:ident),+) => {
        mod $scenario {
            $( $crate::common::per_policy!(@test $attrs $scenario $policy); )+
        }
    };
    (@test [$(#[$attr:meta])*] $scenario:ident $policy:ident) => {
        $(#[$attr])*
        #[test]
        fn $policy() {
            super::$scenario(stringify!($policy));
        }
    };
    ($(#[$attr:meta])* $scenario:ident: $($policy:ident),+ $(,)?) => {
        $crate::common::per_policy!(@mod [$(#[$attr])*] $scenario: $($policy),+);
    };
}
#[allow(unused_imports)]
pub(crate) use per_policy;

impl Cluster {
    /// Starts a fixture primary with `FIXTURE_POLICY=policy`.
    pub fn with_policy(policy: &str) -> Cluster {
        Cluster::start(&[("FIXTURE_POLICY", policy)])
    }

    /// Waits for worker `id`'s next `listening` event; returns its address.
    pub fn address_of(&mut self, id: u32) -> String {
        let v = self.expect_event("listening", id);
        v["address"].as_str().expect("address").to_string()
    }

    /// Forks a worker with `env`, waits until it is routed to (its
    /// `listening` and `ready` events) and returns its id and address.
    pub fn fork_serving(&mut self, env: &[(&str, &str)]) -> (u32, String) {
        let id = self.fork(env);
        let address = self.address_of(id);
        self.expect_event("ready", id);
        (id, address)
    }

    /// Forks `n` workers serving HTTP on `listen`, each routed to, and
    /// returns their ids and the address they share.
    pub fn serve(&mut self, n: usize, listen: &str) -> (Vec<u32>, String) {
        let mut ids = Vec::new();
        let mut shared: Option<String> = None;
        for _ in 0..n {
            let (id, address) = self.fork_serving(&[("FIXTURE_LISTEN", listen)]);
            if let Some(a) = &shared {
                assert_eq!(a, &address, "workers got different addresses");
            }
            shared = Some(address);
            ids.push(id);
        }
        (ids, shared.expect("n > 0"))
    }
}

/// The worker id in a fixture body `worker N`.
pub fn worker_of(body: &str) -> u32 {
    body.trim()
        .strip_prefix("worker ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a `worker N` body: {body:?}"))
}

/// How many sockets process `pid` holds open.
pub fn socket_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

/// Connections waiting in the kernel's accept queues of the TCP sockets
/// listening on `port` (the `rx_queue` of LISTEN lines in /proc/net/tcp*).
pub fn accept_queue(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let listening = f.get(3) == Some(&"0A");
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if listening && local_port == Some(port) {
                let rx = f.get(4).and_then(|q| q.split(':').nth(1));
                n += rx
                    .and_then(|q| usize::from_str_radix(q, 16).ok())
                    .unwrap_or(0);
            }
        }
    }
    n
}

/// Whether the tests run as root (some need to drop privileges).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The lowest port anyone may bind (net.ipv4.ip_unprivileged_port_start).
pub fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// For a test that build.rs let run (its cfg set): panics if the condition
/// it saw no longer holds, say the tests were built as root and run as
/// another user. Rebuilding as this user, or with HERD_TESTS_RECHECK set to
/// something new, runs build.rs again, and the test is then skipped.
pub fn still_holds(holds: bool, condition: &str) {
    assert!(
        holds,
        "built where {condition}, which no longer holds: rebuild the tests \
         here (HERD_TESTS_RECHECK=$(date +%s) makes build.rs look again)"
    );
}

/// An HTTP/1.1 client that keeps one connection open across requests.
pub struct KeepAlive<S> {
    stream: BufReader<S>,
}

impl KeepAlive<std::net::TcpStream> {
    pub fn connect(addr: &str) -> std::io::Result<Self> {
        let s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(KeepAlive {
            stream: BufReader::new(s),
        })
    }
}

impl KeepAlive<std::os::unix::net::UnixStream> {
    pub fn connect_unix(path: &std::path::Path) -> std::io::Result<Self> {
        let s = std::os::unix::net::UnixStream::connect(path)?;
        s.set_read_timeout(Some(TIMEOUT))?;
        Ok(KeepAlive {
            stream: BufReader::new(s),
        })
    }
}

impl<S: std::io::Read + std::io::Write> KeepAlive<S> {
    /// Sends `GET path` on the connection and reads one response; returns
    /// the body of a 200, an error for anything else.
    pub fn get(&mut self, path: &str) -> std::io::Result<String> {
        use std::io::Read;
        // One write: a request split over segments waits on delayed ACKs.
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes())?;
        let mut status = String::new();
        if self.stream.read_line(&mut status)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(std::io::Error::other)?;
                }
            }
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body)?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!("bad response: {status}")));
        }
        String::from_utf8(body).map_err(std::io::Error::other)
    }
}

/// Requests sent, each on its own connection, whose responses are awaited
/// on threads: for connections that must wait (queued for a worker that
/// does not accept) and be answered later.
pub struct Waiting {
    /// How many have connected and sent their request.
    pub sent: Arc<std::sync::atomic::AtomicUsize>,
    /// How many have their response (or an error).
    pub done: Arc<std::sync::atomic::AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<std::io::Result<String>>>,
}

impl Waiting {
    /// Starts `n` `GET path` requests to `addr`, each on a new connection.
    pub fn start(addr: &str, path: &str, n: usize) -> Waiting {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sent = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let threads = (0..n)
            .map(|_| {
                let (addr, path) = (addr.to_string(), path.to_string());
                let (sent, done) = (sent.clone(), done.clone());
                std::thread::spawn(move || {
                    use std::io::Read;
                    let result = (|| {
                        let mut s = std::net::TcpStream::connect(&addr)?;
                        s.set_read_timeout(Some(TIMEOUT))?;
                        write!(
                            s,
                            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
                        )?;
                        sent.fetch_add(1, Ordering::SeqCst);
                        let mut resp = String::new();
                        s.read_to_string(&mut resp)?;
                        match resp.split_once("\r\n\r\n") {
                            Some((head, body)) if head.starts_with("HTTP/1.1 200") => {
                                Ok(body.to_string())
                            }
                            _ => Err(std::io::Error::other(format!("bad response: {resp:?}"))),
                        }
                    })();
                    done.fetch_add(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        Waiting {
            sent,
            done,
            threads,
        }
    }

    /// Waits until every request is sent (its connection established).
    pub fn wait_sent(&self) {
        let n = self.threads.len();
        assert!(
            wait_until(TIMEOUT, || self
                .sent
                .load(std::sync::atomic::Ordering::SeqCst)
                == n),
            "not all {n} clients connected"
        );
    }

    pub fn done(&self) -> usize {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every response, in request order.
    pub fn finish(self) -> Vec<std::io::Result<String>> {
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect()
    }
}

/// A flood of HTTP requests, each on a new connection, from a few threads,
/// until stopped; records who answered and every failure.
pub struct Flood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    served: Arc<Mutex<std::collections::BTreeMap<u32, usize>>>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    pub fn start(addr: &str, clients: usize) -> Flood {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let addr = addr.to_string();
                let (stop, served, errors) = (stop.clone(), served.clone(), errors.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match http_get(&addr, "/") {
                            Ok(body) => {
                                *served.lock().unwrap().entry(worker_of(&body)).or_insert(0) += 1
                            }
                            Err(e) => errors.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Flood {
            stop,
            served,
            errors,
            threads,
        }
    }

    /// Requests answered so far, in all.
    pub fn total(&self) -> usize {
        self.served.lock().unwrap().values().sum()
    }

    /// Requests worker `id` answered so far.
    pub fn served_by(&self, id: u32) -> usize {
        self.served.lock().unwrap().get(&id).copied().unwrap_or(0)
    }

    /// Waits until `n` more requests than now are answered.
    pub fn wait_more(&self, n: usize) {
        let target = self.total() + n;
        assert!(
            wait_until(TIMEOUT, || self.total() >= target
                || !self.errors.lock().unwrap().is_empty()),
            "the flood stalled at {} answers",
            self.total()
        );
    }

    /// Stops the flood; returns the answers by worker and the failures.
    pub fn stop(self) -> (std::collections::BTreeMap<u32, usize>, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let served = self.served.lock().unwrap().clone();
        let errors = self.errors.lock().unwrap().clone();
        (served, errors)
    }

    /// Stops the flood, fails the test (with the cluster's events) if any
    /// request failed, and returns the answers by worker.
    pub fn stop_expecting_no_failure(self, c: &Cluster) -> std::collections::BTreeMap<u32, usize> {
        let (served, errors) = self.stop();
        assert!(
            errors.is_empty(),
            "{} failed: {errors:?}\n{}",
            errors.len(),
            c.dump()
        );
        served
    }
}

/// A fresh directory under the system's temporary directory, removed (with
/// what it holds) on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("herd-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain HTTP/1.1 GET over a Unix socket, with `Connection: close`.
pub fn unix_http_get(path: &std::path::Path, uri: &str) -> std::io::Result<String> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    get_over(s, uri)
}

/// The sockets process `pid` holds, as `socket:[INODE]`.
pub fn socket_inodes(pid: u32) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.starts_with("socket:"))
                .collect()
        })
        .unwrap_or_default()
}

/// The TCP sockets listening on 127.0.0.1:`port`, as `socket:[INODE]`
/// (from /proc/net/tcp).
pub fn listening_sockets(port: u16) -> std::collections::BTreeSet<String> {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (f.len() > 9 && f[1] == local && f[3] == "0A").then(|| format!("socket:[{}]", f[9]))
        })
        .collect()
}

// ---- harden: what one worker may cost the primary ----

/// Process `pid`'s resident memory in bytes (VmRSS in /proc/PID/status).
pub fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The `misbehave` program (crates/herd-tests/src/bin/misbehave.rs).
pub const MISBEHAVE: &str = env!("CARGO_BIN_EXE_misbehave");
/// The `fixture` program.
pub const FIXTURE: &str = env!("CARGO_BIN_EXE_fixture");

impl Cluster {
    /// Forks a `misbehave` worker with `env` (then sets the fixture back as
    /// the worker program) and returns its id.
    pub fn fork_misbehaving(&mut self, env: &[(&str, &str)]) -> u32 {
        self.cmd(json!({"cmd": "setup", "exec": MISBEHAVE}));
        let id = self.fork(env);
        self.cmd(json!({"cmd": "setup", "exec": FIXTURE}));
        id
    }
}

/// `curl -X METHOD URL` (with the token if given): the status code and body.
pub fn curl(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    curl_with(method, url, token, None)
}

/// [`curl`] with a request body (sent as JSON) if given.
pub fn curl_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-m", "10", "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
