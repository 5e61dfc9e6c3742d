//! A worker's whole process tree belongs to its worker: run through a
//! wrapper (`sh -c 'node server.js; true'`), the Node server is a child of
//! the worker, not the worker itself, and still nothing of it outlives the
//! worker: not after a graceful stop, not when the wrapper crashes, not
//! after a boot-timeout kill, not when the primary is killed with SIGKILL.
//! No zombie is left either.

mod common;
use common::*;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Kills on drop whatever descendants a test saw, so a failing test leaves
/// nothing behind.
struct Strays(Vec<u32>);

impl Drop for Strays {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

fn wrapped(extra: &[&str]) -> Herd {
    let p = program("server.js");
    let script = format!("node {p}; true");
    let mut args: Vec<&str> = vec!["-w", "1", "-l", "127.0.0.1:0", "--grace", "5s"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", &script]);
    start(&args, &[])
}

/// The pids of the Node servers the workers' output announced.
fn node_pids(h: &Herd) -> Vec<u32> {
    h.dump()
        .lines()
        .filter(|l| l.contains("serving fd 3"))
        .filter_map(|l| l.split("(pid ").nth(1)?.split(')').next()?.parse().ok())
        .collect()
}

/// Zombie children of `pid`.
fn zombies_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str()) {
            out.push(p);
        }
    }
    out
}

fn within(limit: Duration, what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !pred() {
        assert!(Instant::now() < deadline, "{what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_graceful_stop_ends_the_wrapped_server() {
    let mut h = wrapped(&["--ready", "delay:300ms"]);
    let addr = h.address();
    h.ready(1);
    let node: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    let _strays = Strays(vec![node]);
    assert!(
        !h.worker_pids().contains(&node),
        "node is the wrapper's child"
    );
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    assert!(!alive(node), "node (pid {node}) outlived a graceful stop");
    h.assert_no_workers_left();
}

#[test]
fn sigkill_of_the_primary_ends_the_wrapped_server() {
    let mut h = wrapped(&["--ready", "delay:300ms"]);
    let addr = h.address();
    h.ready(1);
    let node: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    let _strays = Strays(vec![node]);
    h.signal(Signal::SIGKILL);
    let _ = h.wait_exit();
    within(Duration::from_secs(2), "node still runs", || !alive(node));
    assert!(
        curl_result(&addr, "/pid").is_err(),
        "the port is still served"
    );
}

#[test]
fn a_wrapper_that_crashes_takes_its_server_along() {
    let mut h = wrapped(&["--ready", "delay:300ms"]);
    let addr = h.address();
    h.ready(1);
    let node: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    let _strays = Strays(vec![node]);
    let sh = h.worker_pids()[0];
    kill(Pid::from_raw(sh as i32), Signal::SIGKILL).unwrap();
    h.expect("worker 1 died");
    within(Duration::from_secs(1), "node outlived its wrapper", || {
        !alive(node)
    });
    h.expect("worker 2 ready");
    let now: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    assert_ne!(now, node);
    within(Duration::from_secs(2), "zombies left", || {
        zombies_of(h.pid).is_empty()
    });
}

/// Under `--ready notify` the worker never becomes ready (the Node server
/// sends no READY=1): each worker is killed at the boot timeout, and with
/// it its server, every time.
#[test]
fn a_boot_timeout_kill_ends_the_wrapped_server() {
    let mut h = wrapped(&["--ready", "notify", "--boot-timeout", "1s"]);
    h.address();
    h.expect("worker 1 was not ready within 1s");
    h.expect("worker 2 started");
    h.expect("worker 2 was not ready within 1s");
    h.expect("worker 3 started");
    let nodes = node_pids(&h);
    let _strays = Strays(nodes.clone());
    assert!(nodes.len() >= 2, "servers seen: {nodes:?}\n{}", h.dump());
    // Those of workers 1 and 2 are gone; only the current one may run.
    for pid in &nodes[..2] {
        within(
            Duration::from_secs(1),
            "a timed-out worker's server runs",
            || !alive(*pid),
        );
    }
    within(Duration::from_secs(2), "zombies left", || {
        zombies_of(h.pid).is_empty()
    });
    h.signal(Signal::SIGTERM);
    h.wait_exit();
    for pid in node_pids(&h) {
        assert!(!alive(pid), "node {pid} outlived herd");
    }
}
