//! The supervisor speaks to the service manager by itself (the library,
//! no CLI): with `NOTIFY_SOCKET` set, a supervised fixture sends READY=1
//! once its workers are ready, RELOADING=1 (with MONOTONIC_USEC) then
//! READY=1 around a reload, and STOPPING=1 when SIGTERM stops it. The test
//! plays the manager with a datagram socket of its own.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::Instant;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// The notifications received, in order.
struct Manager {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    /// Waits (at most [`TIMEOUT`]) for the next datagram with a line that
    /// is, or starts with, `field`; returns the datagram.
    fn expect(&mut self, field: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {field:?} from the supervisor; got {:?}",
                self.seen
            );
            self.sock.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l.starts_with(field)) {
                    return msg;
                }
            }
        }
    }
}

#[test]
fn the_supervisor_tells_the_service_manager_ready_reloading_and_stopping() {
    let dir = TempDir::new();
    let path = dir.path().join("notify.sock");
    let mut manager = Manager {
        sock: UnixDatagram::bind(&path).unwrap(),
        seen: Vec::new(),
    };
    let mut c = Cluster::start_with(
        Options::new()
            .env("FIXTURE_SUPERVISE", "2")
            .env("FIXTURE_LISTEN", "127.0.0.1:0")
            .env("NOTIFY_SOCKET", path.to_str().unwrap()),
    );
    manager.expect("READY=1");
    // Said once both were ready, and so the status says right after.
    manager.expect("STATUS=2 of 2 workers ready");
    c.expect_event("ready", 1);
    c.expect_event("ready", 2);
    assert_eq!(
        manager
            .seen
            .iter()
            .filter(|m| m.contains("READY=1"))
            .count(),
        1,
        "{:?}",
        manager.seen
    );

    c.cmd(json!({"cmd": "reload"}));
    let reloading = manager.expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    manager.expect("READY=1");
    let v = c.expect(|v| {
        v["event"] == "reload" && (v["phase"] == "finished" || v["phase"] == "aborted")
    });
    assert_eq!(v["phase"], "finished", "{v}");

    c.signal_primary(Signal::SIGTERM);
    manager.expect("STOPPING=1");
    let done = c.expect(|v| v["event"] == "supervise_done");
    assert_eq!(done["code"], 0, "{}", c.dump());
    assert!(c.wait_exit(TIMEOUT).is_some());
}
