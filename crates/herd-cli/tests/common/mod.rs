//! Drives the `herd` binary: start `herd run` with a program from
//! tests/programs/, wait for what it logs, talk HTTP to its workers. Every
//! wait is bounded; dropping a [`Herd`] kills herd and every worker it
//! reported, so a failing test leaves no process behind. Each test gets its
//! own runtime directory (HERD_RUNTIME_DIR), so tests run in parallel.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single expected event may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

pub fn program(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// A private temporary directory (mode 0700), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "herd-cli-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        // Private, as herd wants its runtime directory (it never changes
        // the mode of one it did not create).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `herd run`.
pub struct Herd {
    pub child: Child,
    pub pid: u32,
    pub dir: TempDir,
    /// Every line herd wrote to stderr (its log) and stdout (worker lines).
    lines: Arc<Mutex<Vec<String>>>,
    rx: Receiver<String>,
    seen: usize,
    pub name: String,
}

pub fn start(args: &[&str], env: &[(&str, &str)]) -> Herd {
    let dir = TempDir::new("run");
    start_in(dir, args, env)
}

pub fn start_in(dir: TempDir, args: &[&str], env: &[(&str, &str)]) -> Herd {
    let mut cmd = Command::new(herd_bin());
    cmd.arg("run").args(args);
    cmd.env("HERD_RUNTIME_DIR", dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("HERD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("start herd");
    attach(child, dir)
}

/// Follows an already started herd's output.
pub fn attach(mut child: Child, dir: TempDir) -> Herd {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
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
        let (tx, lines) = (tx.clone(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("HERD_TEST_VERBOSE").is_some() {
                    eprintln!("| {line}");
                }
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
    }
    let pid = child.id();
    Herd {
        child,
        pid,
        dir,
        lines,
        rx,
        seen: 0,
        name: "herd".into(),
    }
}

impl Herd {
    /// Waits for the next line (after those already consumed) that
    /// contains `needle`, and returns it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_within(TIMEOUT, needle).unwrap_or_else(|| {
            panic!(
                "timed out waiting for {needle:?}; herd said:\n{}",
                self.dump()
            )
        })
    }

    pub fn expect_within(&mut self, timeout: Duration, needle: &str) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen += 1;
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Waits until some line, earlier or later, contains `needle`; returns
    /// the first such line.
    pub fn wait_said(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {needle:?}; herd said:\n{}",
                    self.dump()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether any line so far contains `needle`.
    pub fn said(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(needle))
    }

    pub fn dump(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for `listening on ADDR` and returns ADDR.
    pub fn address(&mut self) -> String {
        let line = self.expect("listening on ");
        line.split("listening on ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// Waits until `n` workers are ready (the cluster-ready line).
    pub fn ready(&mut self, n: usize) {
        self.expect(&format!("cluster ready: {n} of {n} workers"));
    }

    /// Pids of every worker herd reported starting.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let rest = l.split(" started (pid ").nth(1)?;
                rest.trim_end_matches(')').parse().ok()
            })
            .collect()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig);
    }

    /// Waits for herd to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                panic!("herd did not exit; it said:\n{}", self.dump());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `herd ctl ARGS` against this herd.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(herd_bin())
            .arg("ctl")
            .args(args)
            .env("HERD_RUNTIME_DIR", self.dir.path())
            .env("HERD_NAME", &self.name)
            .output()
            .expect("run herd ctl")
    }

    /// Asserts that every worker herd started is gone.
    pub fn assert_no_workers_left(&self) {
        for pid in self.worker_pids() {
            assert!(
                !alive(pid),
                "worker pid {pid} is still running after herd exited"
            );
        }
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        let _ = self.child.wait();
        for pid in self.worker_pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Whether a process runs (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pred` holds, polling; panics with `what` after TIMEOUT.
pub fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !pred() {
        if Instant::now() > deadline {
            panic!("timed out waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `curl -s http://ADDR/PATH`, returning the body (panics on failure).
pub fn curl(addr: &str, path: &str) -> String {
    let out = curl_result(addr, path).unwrap_or_else(|e| panic!("curl {addr}{path}: {e}"));
    out
}

pub fn curl_result(addr: &str, path: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-s", "-S", "--fail", "--max-time", "10"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One request with curl, any status accepted: the status code (0 when
/// curl got no answer) and the body.
pub fn http(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-S",
        "--max-time",
        "10",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    if let Some(t) = token {
        c.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = c.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A minimal HTTP/1.1 client: keep-alive (reconnecting when told
/// `Connection: close`) or one connection per request.
pub struct Client {
    addr: String,
    keep_alive: bool,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: &str, keep_alive: bool) -> Client {
        Client {
            addr: addr.to_string(),
            keep_alive,
            conn: None,
        }
    }

    /// One GET; returns the body. Any failure (refused, reset, early
    /// close, timeout, non-200) is an error.
    pub fn get(&mut self, path: &str) -> Result<String, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            self.conn = Some(BufReader::new(s));
        }
        let r = self.exchange(path);
        if r.is_err() {
            self.conn = None;
        }
        r.map(|(body, close)| {
            if close || !self.keep_alive {
                self.conn = None;
            }
            body
        })
    }

    fn exchange(&mut self, path: &str) -> Result<(String, bool), String> {
        let conn = self.conn.as_mut().unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\n{}\r\n",
            if self.keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            }
        );
        conn.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut status = String::new();
        let n = conn
            .read_line(&mut status)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before a response".into());
        }
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("status {status:?}"));
        }
        let (mut len, mut close) = (0usize, false);
        loop {
            let mut h = String::new();
            conn.read_line(&mut h).map_err(|e| format!("read: {e}"))?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().map_err(|_| "bad content-length")?;
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body)
            .map_err(|e| format!("read body: {e}"))?;
        Ok((String::from_utf8_lossy(&body).into_owned(), close))
    }
}

/// Runs `herd run ARGS` expecting it to fail at once: returns (exit code,
/// stderr).
pub fn run_fails(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let dir = TempDir::new("bad");
    let mut cmd = Command::new(herd_bin());
    cmd.args(args)
        .env("HERD_RUNTIME_DIR", dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("herd {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Pids of processes whose command line contains `token`.
pub fn processes_with(token: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(token) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}
