//! Foreign programs serve the sockets herd passes them (systemd socket
//! activation): a Node.js server (`server.listen({ fd: 3 })`) and a Python
//! one (`socket.socket(fileno=3)`), each with two workers under `shared` and
//! under `reuseport`, answering curl. Each worker checks LISTEN_PID is its
//! own pid.

mod common;
use common::*;

fn serves(program: &str, interpreter: &str, sched: &str) {
    let p = program_path(program);
    let mut h = start(
        &[
            "-w",
            "2",
            "--sched",
            sched,
            "-l",
            "127.0.0.1:0",
            "--",
            interpreter,
            &p,
        ],
        &[],
    );
    let addr = h.address();
    h.ready(2);
    // Both workers took fd 3 with LISTEN_PID equal to their own pid.
    for w in 1..=2 {
        let line = h.wait_said(&format!("[w{w}] worker {w} (pid "));
        assert!(line.contains("serving fd 3"), "{line}");
    }
    let pids = h.worker_pids();
    assert_eq!(pids.len(), 2, "{}", h.dump());
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = curl(&addr, "/pid");
        let pid: u32 = body
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("body {body:?}"));
        assert!(pids.contains(&pid), "answer from unknown pid {pid}");
        answered.insert(pid);
    }
    assert!(curl(&addr, "/").starts_with("hello from "));
    if sched == "reuseport" {
        // Twenty connections from different ports: the kernel's hash puts
        // them on both sockets (1 chance in 2^19 of all on one).
        assert_eq!(answered.len(), 2, "only {answered:?} answered");
    }
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    h.assert_no_workers_left();
}

fn program_path(name: &str) -> String {
    program(name)
}

#[test]
fn node_shared() {
    serves("server.js", "node", "shared");
}

#[test]
fn node_reuseport() {
    serves("server.js", "node", "reuseport");
}

#[test]
fn python_shared() {
    serves("server.py", "python3", "shared");
}

#[test]
fn python_reuseport() {
    serves("server.py", "python3", "reuseport");
}

/// Named sockets reach the worker as LISTEN_FDNAMES, in -l order.
#[test]
fn names_and_order_of_sockets() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "1",
            "-l",
            "web=127.0.0.1:0",
            "-l",
            "admin=127.0.0.1:0",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    let web = h.expect("listening on ");
    assert!(web.contains("(fd 3, name web)"), "{web}");
    let admin = h.expect("listening on ");
    assert!(admin.contains("(fd 4, name admin)"), "{admin}");
    let line = h.wait_said("[w1] worker 1");
    assert!(line.contains("LISTEN_FDNAMES=web:admin"), "{line}");
}
