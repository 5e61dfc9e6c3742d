//! Signals meant for herd reach herd only (issue 13, point 4): a
//! terminal's Ctrl-C (SIGINT to herd's whole process group) and
//! `timeout`'s SIGTERM (to herd, then to its whole process group) stop
//! herd gracefully: every worker is disconnected and exits 0, none is
//! killed by a signal, and herd exits 0.

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn herd_command(program: &mut Command, dir: &TempDir, workers: &str) {
    let p = program_path();
    program
        .args(["run", "-w", workers, "--grace", "10s", "-l", "127.0.0.1:0"])
        .args(["--", "python3", &p])
        .env("HERD_RUNTIME_DIR", dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("HERD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

fn program_path() -> String {
    program("server.py")
}

/// Every worker exited 0 (herd's `worker N exited (...)` lines), none by a
/// signal, and herd never said it killed them.
fn assert_graceful(h: &Herd, workers: usize) {
    // herd has exited; its last lines may still be on their way.
    let exited = |h: &Herd| {
        h.dump()
            .lines()
            .filter(|l| l.contains("worker ") && l.contains(" exited ("))
            .count()
    };
    let deadline = std::time::Instant::now() + TIMEOUT;
    while exited(h) < workers {
        assert!(
            std::time::Instant::now() < deadline,
            "not every worker's exit was logged:\n{}",
            h.dump()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let log = h.dump();
    let exits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("worker ") && l.contains(" exited ("))
        .collect();
    assert_eq!(exits.len(), workers, "one exit line per worker:\n{log}");
    for l in &exits {
        assert!(
            l.contains("exited (exit code 0)"),
            "a worker did not exit 0: {l}\n{log}"
        );
    }
    assert!(!log.contains("killing"), "herd killed workers:\n{log}");
}

#[test]
fn ctrl_c_to_herds_process_group_stops_it_gracefully() {
    let dir = TempDir::new("pgint");
    let mut cmd = Command::new(herd_bin());
    herd_command(&mut cmd, &dir, "2");
    // Its own process group, as a shell gives a foreground job.
    cmd.process_group(0);
    let mut h = attach(cmd.spawn().expect("start herd"), dir);
    h.address();
    h.ready(2);
    // What a terminal does on Ctrl-C: SIGINT to the foreground group.
    kill(Pid::from_raw(-(h.pid as i32)), Signal::SIGINT).unwrap();
    assert_eq!(h.wait_exit(), 0, "herd said:\n{}", h.dump());
    assert_graceful(&h, 2);
    h.assert_no_workers_left();
}

/// A `timeout` process, and herd under it: dropping it kills both (herd
/// is in timeout's process group; herd's guard then ends the workers).
struct Timeout {
    herd: Herd,
}

impl Drop for Timeout {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(-(self.herd.pid as i32)), Signal::SIGKILL);
    }
}

#[test]
fn timeouts_sigterm_to_herd_and_its_group_stops_it_gracefully() {
    let dir = TempDir::new("timeout");
    // GNU timeout puts itself in a process group of its own and, when it
    // times out or is itself sent SIGTERM, signals its child and then that
    // whole group: herd receives SIGTERM twice at once.
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(herd_bin());
    herd_command(&mut cmd, &dir, "2");
    let mut t = Timeout {
        herd: attach(cmd.spawn().expect("start timeout"), dir),
    };
    t.herd.address();
    t.herd.ready(2);
    t.herd.signal(Signal::SIGTERM);
    // timeout exits with its child's status.
    assert_eq!(t.herd.wait_exit(), 0, "herd said:\n{}", t.herd.dump());
    assert_graceful(&t.herd, 2);
    t.herd.assert_no_workers_left();
}

#[test]
fn a_sigterm_echoed_to_herds_group_after_herd_took_the_first_is_the_same_stop() {
    // timeout's two signals usually arrive together and are taken as one;
    // on a busy machine herd may take the first before the second comes.
    // That second one, to herd's group, is the same stop, not "signal
    // again to kill them now".
    let dir = TempDir::new("echo");
    let mut cmd = Command::new(herd_bin());
    herd_command(&mut cmd, &dir, "2");
    cmd.process_group(0);
    let mut h = attach(cmd.spawn().expect("start herd"), dir);
    h.address();
    h.ready(2);
    h.signal(Signal::SIGTERM);
    h.expect("SIGTERM: shutting down");
    kill(Pid::from_raw(-(h.pid as i32)), Signal::SIGTERM).unwrap();
    assert_eq!(h.wait_exit(), 0, "herd said:\n{}", h.dump());
    assert_graceful(&h, 2);
    h.assert_no_workers_left();
}
