//! `Worker::serve` cuts clients that are slow to send a request and
//! connections idle too long, so slow clients cannot hold a reload (or a
//! disconnect) hostage until the grace period runs out.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Asks for worker `id`'s heartbeat until `cond` holds for it (bounded).
fn heartbeat_until(c: &mut Cluster, id: u32, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        c.cmd(json!({"cmd": "heartbeat", "worker": id}));
        let v = c.expect(|v| v["event"] == "heartbeat" && v["worker"] == id);
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "last heartbeat: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cluster (heartbeats every 100 ms) with one `misbehave` worker
/// serving HTTP with these timeouts; its id and address.
fn start(header_ms: u64, idle_ms: u64) -> (Cluster, u32, String) {
    let mut c = Cluster::start(&[("FIXTURE_HEARTBEAT_MS", "100")]);
    let (h, i) = (header_ms.to_string(), idle_ms.to_string());
    let id = c.fork_misbehaving(&[
        ("MISBEHAVE", "serve"),
        ("MISBEHAVE_LISTEN", "127.0.0.1:0"),
        ("MISBEHAVE_HEADER_MS", &h),
        ("MISBEHAVE_IDLE_MS", &i),
    ]);
    let addr = c.address_of(id);
    c.expect_event("ready", id);
    (c, id, addr)
}

/// Reads until the server closes the connection; how long that took, or
/// `None` if it was still open after `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t.elapsed()),
            Err(_) => return None,
        }
    }
}

#[test]
fn a_disconnect_with_slow_clients_ends_in_about_the_header_timeout() {
    const SLOW: usize = 500;
    let (mut c, id, addr) = start(3000, 60_000);
    // Each client sends part of a request head, then nothing.
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    heartbeat_until(&mut c, id, |v| {
        v["beat"]["open"].as_u64() == Some(SLOW as u64)
    });
    let asked = Instant::now();
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    let exit = c
        .expect_within(Duration::from_secs(8), |v| {
            v["event"] == "exit" && v["worker"] == id
        })
        .unwrap_or_else(|| {
            panic!(
                "the worker was still held by its slow clients {:?} after the disconnect",
                asked.elapsed()
            )
        });
    let took = asked.elapsed();
    eprintln!("a disconnect with {SLOW} slow clients took {took:?} (header timeout 3 s)");
    assert_eq!(exit["code"], 0, "{exit}");
    // 3 s from the clients' first byte, plus a second of linger at most.
    assert!(took < Duration::from_secs(6), "took {took:?}");
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(1)).is_some());
    }
}

#[test]
fn a_slow_request_head_is_cut_at_the_header_timeout_but_a_slow_handler_is_not() {
    let (_c, id, addr) = start(1000, 60_000);
    let connected = Instant::now();
    // Part of a head, then silence: closed after about a second.
    let mut partial = TcpStream::connect(&addr).unwrap();
    partial.write_all(b"GET / HTTP/1.1\r\nHost: t").unwrap();
    // Nothing at all: the same.
    let mut silent = TcpStream::connect(&addr).unwrap();
    // A whole request whose handler takes 2.5 s: answered.
    let slow = {
        let addr = addr.clone();
        std::thread::spawn(move || http_get(&addr, "/slow?ms=2500"))
    };
    for s in [&mut partial, &mut silent] {
        closed_within(s, Duration::from_secs(5)).expect("cut");
        let took = connected.elapsed();
        assert!(
            took > Duration::from_millis(700) && took < Duration::from_secs(3),
            "cut after {took:?}"
        );
    }
    assert_eq!(
        slow.join().unwrap().unwrap(),
        format!("slow done by {id}\n")
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (_c, id, addr) = start(60_000, 1000);
    let mut ka = KeepAlive::connect(&addr).unwrap();
    // Requests closer together than the idle timeout keep it open.
    for _ in 0..3 {
        assert_eq!(ka.get("/").unwrap(), format!("worker {id}\n"));
        std::thread::sleep(Duration::from_millis(400));
    }
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut got = [0u8; 12];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"HTTP/1.1 200");
    let took = closed_within(&mut s, Duration::from_secs(5)).expect("closed when idle");
    assert!(
        took > Duration::from_millis(700) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}
