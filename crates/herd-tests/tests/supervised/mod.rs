//! What the supervisor tests share: a supervised fixture cluster, and a
//! steady two-client load that counts every failed request.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Starts a fixture primary under `supervise` with `n` workers serving HTTP
/// on one `127.0.0.1:0` port (`extra`: more environment, e.g.
/// `FIXTURE_SUP_*`), and waits until all `n` are ready; returns the cluster
/// and the shared address.
pub fn supervised(n: usize, extra: &[(&str, &str)]) -> (Cluster, String) {
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
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<String>>>,
}

impl Load {
    pub fn start(addr: &str) -> Load {
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

    pub fn finish(self) -> (u64, u64, Vec<String>) {
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

impl Load {
    /// Requests answered so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests than now are answered (the load flows).
    pub fn wait_more(&self, n: u64) {
        let target = self.ok() + n;
        assert!(
            wait_until(TIMEOUT, || self.ok() >= target),
            "the load stalled at {} answers",
            self.ok()
        );
    }
}

/// The milliseconds since the primary started at which line `v` was printed.
pub fn t_ms(v: &Value) -> u64 {
    v["t_ms"].as_u64().expect("t_ms")
}

/// The most successors that were started but not yet ready at any one
/// time, over `lines`: a successor is the worker forked right after a
/// `recycle` event or while a reload runs. `lines` in the order printed.
pub fn most_successors_at_once(lines: &[Value]) -> usize {
    let mut reloading = false;
    let mut after_recycle = false;
    let mut booting = std::collections::BTreeSet::new();
    let mut most = 0;
    for v in lines {
        match v["event"].as_str().unwrap_or("") {
            "reload" if v["phase"] == "started" => reloading = true,
            "reload" if v["phase"] == "finished" || v["phase"] == "aborted" => reloading = false,
            "recycle" => after_recycle = true,
            "fork" => {
                if reloading || after_recycle {
                    booting.insert(v["worker"].as_u64().unwrap());
                    most = most.max(booting.len());
                }
                after_recycle = false;
            }
            "ready" | "exit" => {
                booting.remove(&v["worker"].as_u64().unwrap());
            }
            _ => {}
        }
    }
    most
}

/// The ids of the live workers, as the primary lists them.
pub fn live_workers(c: &mut Cluster) -> Vec<u64> {
    c.cmd(serde_json::json!({"cmd": "workers"}));
    let v = c.expect(|v| v["event"] == "workers");
    v["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect()
}
