//! Recycling foreign workers: by age, and by the connections they report
//! handling (HERD_HANDLED=N on their NOTIFY_SOCKET), each replaced
//! successor first.

mod common;
use common::*;

#[test]
fn by_age() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "1",
            "--max-age",
            "1s",
            "-l",
            "127.0.0.1:0",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    let addr = h.address();
    h.ready(1);
    h.expect("replacing worker 1: worker 1 is older than 1s");
    h.expect("worker 2 ready");
    h.expect("worker 1 exited");
    assert!(curl(&addr, "/").starts_with("hello from "));
}

/// The worker reports 5 handled connections; the limit is 3.
#[test]
fn by_reported_requests() {
    const REPORTER: &str = r#"
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nHERD_HANDLED=5", os.environ["NOTIFY_SOCKET"])
while True:
    time.sleep(1)
"#;
    let mut h = start(
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--max-requests",
            "3",
            "--",
            "python3",
            "-c",
            REPORTER,
        ],
        &[],
    );
    h.ready(1);
    h.expect("replacing worker 1: worker 1 handled 5 connections (limit 3)");
    h.expect("worker 2 ready");
}
