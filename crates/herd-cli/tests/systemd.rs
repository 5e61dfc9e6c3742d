//! herd under systemd, without systemd: a wrapper plays the service
//! manager's part, binding a socket at descriptor 3 and exec'ing herd with
//! LISTEN_FDS=1, LISTEN_PID (herd's pid: the exec keeps the wrapper's),
//! LISTEN_FDNAMES, WATCHDOG_USEC and a NOTIFY_SOCKET this test listens on.
//! herd serves the passed socket (it binds nothing), and tells READY=1 once
//! its workers are ready, RELOADING=1 (with MONOTONIC_USEC) then READY=1
//! around a reload, WATCHDOG=1, and STOPPING=1 when asked to stop.

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Instant;

const WRAPPER: &str = r#"
import os, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(128)
print("port=%d" % s.getsockname()[1], flush=True)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
pid = str(os.getpid())
os.environ.update(LISTEN_FDS="1", LISTEN_PID=pid, LISTEN_FDNAMES="web", WATCHDOG_USEC="400000", WATCHDOG_PID=pid)
os.execv(sys.argv[1], sys.argv[1:])
"#;

struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    /// Waits for a datagram holding `field`; returns it.
    fn expect(&mut self, field: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("no {field:?} from herd; got {:?}", self.seen);
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if msg.lines().any(|l| l == field || l.starts_with(field)) {
                    return msg;
                }
            }
        }
    }
}

#[test]
fn passed_sockets_and_sd_notify() {
    let dir = TempDir::new("sd");
    let manager = TempDir::new("sd-manager");
    let notify_path = manager.path().join("notify.sock");
    let mut n = Notifications {
        sock: UnixDatagram::bind(&notify_path).unwrap(),
        seen: Vec::new(),
    };
    let p = program("server.js");
    let child = Command::new("python3")
        .args([
            "-c",
            WRAPPER,
            herd_bin(),
            "run",
            "-w",
            "2",
            "--",
            "node",
            &p,
        ])
        .env("HERD_RUNTIME_DIR", dir.path())
        .env("NOTIFY_SOCKET", &notify_path)
        .env_remove("HERD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut h = attach(child, dir);
    let port_line = h.expect("port=");
    let port = port_line.trim_start_matches("port=").trim().to_string();
    let addr = format!("127.0.0.1:{port}");
    // herd serves the passed socket, named as systemd named it.
    let l = h.expect("listening on ");
    assert!(
        l.contains(&addr) && l.contains("name web") && l.contains("from systemd"),
        "{l}"
    );
    let w = h.wait_said("[w1] worker 1");
    assert!(w.contains("LISTEN_FDNAMES=web"), "{w}");

    n.expect("READY=1");
    // Sent once both workers were ready (they stay so).
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["ready"], 2, "READY=1 before the workers were: {s}");
    n.expect("STATUS=2 of 2 workers ready");
    n.expect("WATCHDOG=1");
    assert!(curl(&addr, "/").starts_with("hello from "));

    h.signal(nix::sys::signal::Signal::SIGHUP);
    let reloading = n.expect("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    n.expect("READY=1");
    h.expect("reload finished");

    h.signal(nix::sys::signal::Signal::SIGTERM);
    n.expect("STOPPING=1");
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    h.assert_no_workers_left();
}
