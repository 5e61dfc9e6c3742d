//! A rolling restart of foreign Node workers under steady load loses no
//! request: keep-alive clients and clients opening a new connection per
//! request run throughout two reloads. The Node program (programs/server.js)
//! stops the way the README recommends: on SIGTERM it stops accepting,
//! answers with `Connection: close`, and closes idle keep-alive connections
//! only after a linger.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

fn rolling_restart_under_load(sched: &str) {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "2",
            "--sched",
            sched,
            "--grace",
            "10s",
            "-l",
            "127.0.0.1:0",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    let addr = h.address();
    h.ready(2);
    let first = h.worker_pids();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let pids = Arc::new(Mutex::new(BTreeSet::<u32>::new()));
    let mut clients = Vec::new();
    for i in 0..6 {
        let keep_alive = i % 2 == 0;
        let (addr, stop, failures, pids) =
            (addr.clone(), stop.clone(), failures.clone(), pids.clone());
        clients.push(std::thread::spawn(move || {
            let mut c = Client::new(&addr, keep_alive);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match c.get("/pid") {
                    Ok(body) => {
                        n += 1;
                        if let Ok(pid) = body.trim().parse() {
                            pids.lock().unwrap().insert(pid);
                        }
                    }
                    Err(e) => failures.lock().unwrap().push(format!(
                        "{} client: {e}",
                        if keep_alive {
                            "keep-alive"
                        } else {
                            "new-connection"
                        }
                    )),
                }
            }
            n
        }));
    }
    for round in 1..=2 {
        let out = h.ctl(&["reload"]);
        assert!(
            out.status.success(),
            "reload {round}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            h.dump()
        );
    }
    // The last old workers finish their connections and exit.
    for pid in &first {
        wait_until("the first workers exit", || !alive(*pid));
    }
    stop.store(true, Ordering::Relaxed);
    let served: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        served + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
    assert!(served > 100, "only {served} requests served");
    // Three generations of two workers answered.
    let seen = pids.lock().unwrap();
    assert!(seen.len() >= 5, "answers came from {seen:?}");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    h.assert_no_workers_left();
}

#[test]
fn rolling_restart_reuseport_loses_nothing() {
    rolling_restart_under_load("reuseport");
}

#[test]
fn rolling_restart_shared_loses_nothing() {
    rolling_restart_under_load("shared");
}

/// Reloads back to back, each asked as soon as the previous one returned:
/// every one succeeds (none is "already in progress"), and each replaces
/// both workers.
#[test]
fn thirty_back_to_back_reloads_all_succeed() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--grace",
            "5s",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    let addr = h.address();
    h.ready(2);
    for round in 1..=30 {
        let o = h.ctl(&["reload"]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "reload {round}: {said}\n{}", h.dump());
        assert!(
            said.contains("reloaded: 2 workers replaced"),
            "reload {round}: {said}"
        );
    }
    assert!(curl(&addr, "/").starts_with("hello from "));
    // 2 first workers and 2 per reload.
    h.expect("worker 62 ready");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    h.assert_no_workers_left();
}
