//! Stop works while forks fail: herd runs as a user of its own with a low
//! process limit (RLIMIT_NPROC), asked for far more workers than the limit
//! allows. The forks that fail back off (a few lines, not one per try),
//! and SIGTERM still stops herd within a second. Runs as root (to take a
//! user id no other process has, so the limit counts only herd's).

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Pids of the processes whose real uid is `uid`.
fn processes_of(uid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok());
        if real == Some(uid) {
            out.push(pid);
        }
    }
    out
}

/// Kills every process of `uid` on drop: nothing outlives a failed test.
struct KillAll(u32);

impl Drop for KillAll {
    fn drop(&mut self) {
        for _ in 0..3 {
            for pid in processes_of(self.0) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn sigterm_stops_herd_within_a_second_while_forks_fail() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root, to run herd as a user of its own");
        return;
    }
    // A user id nobody else has: the process limit counts only herd's.
    let uid = 3_000_000 + std::process::id() % 1_000_000;
    assert!(processes_of(uid).is_empty(), "uid {uid} is in use");
    let _cleanup = KillAll(uid);
    let dir = TempDir::new("nproc");
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    // 40 tasks (threads count): herd's own threads, its guard, and a few
    // dozen workers; the other ~170 slots cannot fork.
    let child = Command::new("python3")
        .args([
            "-c",
            "import os, resource, sys\n\
             resource.setrlimit(resource.RLIMIT_NPROC, (40, 40))\n\
             os.execv(sys.argv[1], sys.argv[1:])",
            herd_bin(),
            "run",
            "-w",
            "200",
            "--grace",
            "5s",
            "--",
            "sleep",
            "600",
        ])
        .uid(uid)
        .gid(uid)
        .env("HERD_RUNTIME_DIR", dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("HERD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut h = attach(child, TempDir(dir.path().to_path_buf()));
    std::mem::forget(dir);
    h.expect("cannot start workers for");
    // Let it go on failing: the next line about it comes after a second.
    h.expect("cannot start workers for");
    let started = h.worker_pids().len();
    assert!(started > 0 && started < 200, "{started} workers started");

    let asked = Instant::now();
    h.signal(Signal::SIGTERM);
    let code = h.wait_exit();
    let took = asked.elapsed();
    eprintln!("stopped in {took:?} with {started} workers running, exit {code}");
    assert!(
        took < Duration::from_secs(1),
        "SIGTERM took {took:?} to stop herd:\n{}",
        h.dump()
    );
    // One line per worker's life events, a few about the failures: not
    // one per try.
    let lines = h.dump().lines().count();
    let failures = h
        .dump()
        .lines()
        .filter(|l| l.contains("cannot start"))
        .count();
    assert!(
        failures <= 5,
        "{failures} lines about failed forks:\n{}",
        h.dump()
    );
    assert!(
        lines <= 4 * started + 30,
        "{lines} log lines for {started} workers:\n{}",
        h.dump()
    );
    h.assert_no_workers_left();
    wait_until("every process of herd's user is gone", || {
        processes_of(uid).is_empty()
    });
}
