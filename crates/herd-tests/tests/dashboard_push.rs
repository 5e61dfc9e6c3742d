//! The dashboard's event stream (`GET /debug/events`) keeps its bounds with
//! real sockets: a page that stops reading is dropped (its connection
//! closed, its place among the 32 given back) while the pages that read
//! keep getting snapshots. The fixture's dashboard ticks every 10 ms, so
//! the slow page's buffers fill in well under a second.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const REQUEST: &[u8] = b"GET /debug/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";

/// Opens the stream and reads the status code (and what came with it).
fn open(monitor: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(monitor).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(REQUEST).unwrap();
    (status(&mut s), s)
}

fn status(s: &mut TcpStream) -> u16 {
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

/// A page with a receive buffer of a few KiB that never reads past the
/// status line.
fn slow_page(monitor: &str) -> TcpStream {
    let mut s = TcpStream::connect(monitor).unwrap();
    // Set after the handshake, it still bounds the window it offers.
    nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::RcvBuf, &2048).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(REQUEST).unwrap();
    assert_eq!(status(&mut s), 200);
    s
}

/// A page that reads all the time, counting what it got.
struct Reader {
    bytes: Arc<AtomicU64>,
    ended: Arc<AtomicBool>,
}

fn reader(monitor: &str) -> Reader {
    let (code, mut s) = open(monitor);
    assert_eq!(code, 200);
    let bytes = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicBool::new(false));
    let (b, e) = (bytes.clone(), ended.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            b.fetch_add(n as u64, Ordering::Relaxed);
        }
        e.store(true, Ordering::Relaxed);
    });
    Reader { bytes, ended }
}

#[test]
fn a_page_that_stops_reading_is_dropped_and_the_others_keep_their_stream() {
    let mut c = Cluster::start(&[
        ("FIXTURE_SUPERVISE", "1"),
        ("FIXTURE_LISTEN", "127.0.0.1:0"),
        ("FIXTURE_MONITOR", "1"),
        ("FIXTURE_MONITOR_DASHBOARD_MS", "10"),
    ]);
    let m = c.expect(|v| v["event"] == "monitor");
    let monitor = m["address"].as_str().unwrap().to_string();
    c.expect(|v| v["event"] == "ready");

    let mut slow = slow_page(&monitor);
    let readers: Vec<Reader> = (0..31).map(|_| reader(&monitor)).collect();
    // Every place is taken until the slow page is dropped; then one frees.
    let freed = Instant::now();
    assert!(
        wait_until(TIMEOUT, || open(&monitor).0 == 200),
        "no place came free: the slow page was never dropped"
    );
    let took = freed.elapsed();
    // Its stream ended: what was buffered drains, then the connection ends.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the slow page's stream did not end: {e}"),
            Ok(_) => assert!(Instant::now() < deadline, "the slow page still gets frames"),
        }
    }
    // The readers were not dropped and still get snapshots (several
    // KiB each).
    let before: Vec<u64> = readers
        .iter()
        .map(|r| r.bytes.load(Ordering::Relaxed))
        .collect();
    assert!(
        wait_until(TIMEOUT, || readers
            .iter()
            .zip(&before)
            .all(|(r, b)| r.bytes.load(Ordering::Relaxed) > *b + 8192)),
        "a reading page stopped getting snapshots"
    );
    assert!(
        readers.iter().all(|r| !r.ended.load(Ordering::Relaxed)),
        "a reading page was dropped"
    );
    eprintln!("the slow page was dropped within {took:?}");
}
