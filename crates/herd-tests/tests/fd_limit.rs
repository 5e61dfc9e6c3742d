//! A worker at its open-files limit loses no connection: what it cannot
//! take stays queued until it can, and it says so on stderr, at warning
//! level, without HERD_LOG.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

/// Requests in all, and how many clients send them at once.
const REQUESTS: usize = 1000;
const CLIENTS: usize = 100;

/// One `GET /slow?ms=50` with `Connection: close`; the body of a 200.
fn slow_get(addr: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET /slow?ms=50 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)
        .map_err(|e| format!("read: {e}"))?;
    match resp.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("no response: {resp:?}")),
    }
}

#[test]
fn a_worker_at_its_open_files_limit_loses_no_connection() {
    // The clients need more descriptors than the usual soft limit.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();

    let mut c = Cluster::start_with(
        Options::new()
            .env_remove("HERD_LOG")
            .env_remove("RUST_LOG")
            .capture_stderr(),
    );
    // 64 descriptors: a few for the runtime and the channel, the rest for
    // connections, far fewer than the clients open at once.
    let id = c.fork_misbehaving(&[
        ("MISBEHAVE", "serve"),
        ("MISBEHAVE_LISTEN", "127.0.0.1:0"),
        ("MISBEHAVE_NOFILE", "64"),
    ]);
    let addr = c.address_of(id);
    c.expect_event("ready", id);

    let per_client = REQUESTS / CLIENTS;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || (0..per_client).map(|_| slow_get(&addr)).collect::<Vec<_>>())
        })
        .collect();
    let results: Vec<Result<String, String>> = clients
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {REQUESTS} requests failed, e.g. {:?}\nstderr:\n{}",
        failed.len(),
        failed.first(),
        c.stderr_lines().join("\n")
    );
    assert!(results
        .iter()
        .all(|r| r.as_deref() == Ok(&*format!("slow done by {id}\n"))));
    // The worker did meet its limit, and said so at warning level.
    let warning = c.wait_stderr(Duration::from_secs(5), |l| {
        l.contains("WARN") && l.contains("open-files limit")
    });
    assert!(
        warning.is_some(),
        "no warning about the open-files limit:\n{}",
        c.stderr_lines().join("\n")
    );
}
