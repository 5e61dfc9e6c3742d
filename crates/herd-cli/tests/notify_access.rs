//! A worker's NOTIFY_SOCKET speaks only for that worker: READY=1 or
//! WATCHDOG=trigger sent there by another process of the same user is
//! ignored (and said so), while the worker and its descendants are heard;
//! STATUS= reaches `herd ctl status` without its terminal escapes.

mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A worker that reports a STATUS= full of escapes at once, waits for its
/// gate, then has a child process (which stays alive a moment, so that
/// herd can see whose it is) send READY=1.
const WORKER: &str = r#"
import os, socket, subprocess, sys, time
path = os.environ["NOTIFY_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=\x1b[31mred\x1b[0m \x07bell\x1b]0;title\x07", path)
gate = os.environ["GATE"]
while not os.path.exists(gate):
    time.sleep(0.02)
subprocess.run([sys.executable, "-c",
    "import os, socket, time\n"
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
    "s.sendto(b'READY=1', os.environ['NOTIFY_SOCKET'])\n"
    "time.sleep(1)\n"])
while True:
    time.sleep(1)
"#;

#[test]
fn only_the_workers_tree_is_heard() {
    let dir = TempDir::new("notify-access");
    let gate = dir.path().join("gate");
    let mut h = start(
        &[
            "-w", "1", "--ready", "notify", "--", "python3", "-c", WORKER,
        ],
        &[("GATE", gate.to_str().unwrap())],
    );
    h.expect("worker 1 started");
    let sock = h.dir.path().join(format!("notify-{}", h.pid)).join("1");
    wait_until("the notify socket exists", || sock.exists());

    // Its own STATUS= is heard, without the escapes.
    wait_until("the worker's status shows", || {
        let s: serde_json::Value =
            serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap_or_default();
        s["workers"][0]["status"].is_string()
    });
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    let status = s["workers"][0]["status"].as_str().unwrap();
    assert_eq!(status, "[31mred[0m bell]0;title", "{s}");
    let table = String::from_utf8_lossy(&h.ctl(&["status"]).stdout).into_owned();
    assert!(
        !table.contains('\u{1b}'),
        "an escape reached the table: {table:?}"
    );

    // An outsider (this test, same user) is not.
    let outsider = UnixDatagram::unbound().unwrap();
    outsider.send_to(b"READY=1", &sock).unwrap();
    outsider.send_to(b"WATCHDOG=trigger", &sock).unwrap();
    outsider.send_to(b"STATUS=spoofed", &sock).unwrap();
    h.expect_within(
        Duration::from_secs(5),
        &format!(
            "notification from pid {}, not of worker 1's process tree: ignored",
            std::process::id()
        ),
    )
    .unwrap_or_else(|| panic!("no word of the outsider's notification:\n{}", h.dump()));
    assert!(
        !h.said("worker 1 ready"),
        "an outsider made worker 1 ready:\n{}",
        h.dump()
    );
    // Sent after the spoofs, so read after them: once the status shows it,
    // the spoofs were read too.
    std::fs::write(&gate, "").unwrap();
    h.expect("worker 1 ready");
    assert!(
        !h.said("WATCHDOG=trigger"),
        "the outsider's trigger was obeyed:\n{}",
        h.dump()
    );
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["workers"][0]["id"], 1, "{s}");
    assert_eq!(s["workers"][0]["status"], "[31mred[0m bell]0;title", "{s}");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
}
