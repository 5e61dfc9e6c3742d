//! Readiness and liveness of foreign workers.
//!
//! With `shared` and `reuseport` the kernel routes connections to whoever
//! accepts on the socket, so "not routed to before READY=1" means, for
//! herd: a worker that has not sent READY=1 does not count as ready (no
//! ready event, not in the ready count that herd reports to systemd and in
//! status), and a rolling restart does not stop the old worker until its
//! successor sent READY=1, so requests keep being answered by ready
//! workers meanwhile. The program here accepts nothing until the test opens
//! its gate, then sends READY=1. `--ready listening` waits the same way, for
//! the program to wait on its socket (seen in /proc). The contrast test
//! shows that with a rule that does not wait for the program
//! (`delay:0s`) the old worker is stopped before the new one is ready.

mod common;
use common::*;

fn gate(dir: &TempDir, id: u32) -> std::path::PathBuf {
    dir.path().join(format!("gate-{id}"))
}

fn start_gated(ready: &str, sched: &str, dir: &TempDir) -> (Herd, String) {
    let p = program("server.py");
    let gates = dir.path().join("gate-{id}");
    let mut h = start(
        &[
            "-w",
            "1",
            "--sched",
            sched,
            "--ready",
            ready,
            "-l",
            "127.0.0.1:0",
            "--",
            "python3",
            &p,
        ],
        &[("READY_GATE", gates.to_str().unwrap())],
    );
    let addr = h.address();
    (h, addr)
}

#[test]
fn late_ready_notify_is_waited_for_before_the_old_worker_goes() {
    late_ready("notify", "shared");
}

/// Under reuseport the successor shares its predecessor's socket: the old
/// worker serves it alone until the new one is ready.
#[test]
fn late_ready_notify_with_reuseport() {
    late_ready("notify", "reuseport");
}

#[test]
fn listening_waits_for_the_program_to_accept() {
    late_ready("listening", "shared");
}

fn late_ready(rule: &str, sched: &str) {
    let dir = TempDir::new("gates");
    let (mut h, addr) = start_gated(rule, sched, &dir);
    h.expect("worker 1 started");
    // Warming up (it said so with STATUS=): running, but not ready.
    let mut s = serde_json::Value::Null;
    wait_until("the worker reports warming up", || {
        s = serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
        s["workers"][0]["status"] == "warming up"
    });
    assert_eq!(s["ready"], 0, "{s}");
    assert_eq!(s["workers"][0]["state"], "listening", "{s}");
    assert!(!h.said("worker 1 ready"));
    std::fs::write(gate(&dir, 1), "").unwrap();
    h.expect("worker 1 ready");
    h.ready(1);
    let old: u32 = curl(&addr, "/pid").trim().parse().unwrap();

    // A reload: the successor warms up; the old worker keeps serving.
    let ctl = {
        let (dir, name) = (h.dir.path().to_path_buf(), h.name.clone());
        std::thread::spawn(move || {
            std::process::Command::new(herd_bin())
                .args(["ctl", "reload"])
                .env("HERD_RUNTIME_DIR", dir)
                .env("HERD_NAME", name)
                .output()
                .unwrap()
        })
    };
    h.expect("worker 2 started");
    for _ in 0..20 {
        assert_eq!(curl(&addr, "/pid").trim(), old.to_string());
    }
    assert!(alive(old), "the old worker was stopped before READY=1");
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    let new = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == 2)
        .cloned()
        .unwrap();
    assert_ne!(new["state"], "ready", "{s}");
    assert!(!h.said("worker 2 ready"));

    // READY=1: now the old one goes and the new one serves.
    std::fs::write(gate(&dir, 2), "").unwrap();
    h.expect("worker 2 ready");
    // The supervisor's line (the CLI no longer repeats it).
    h.wait_said("worker 1 replaced by worker 2 (reload)");
    let out = ctl.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded: 1 worker replaced"));
    wait_until("the old worker exits", || !alive(old));
    let now: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    assert_ne!(now, old);
}

/// The contrast: with `--ready delay:0s` a successor counts as ready as
/// soon as it runs, so the old worker is stopped while the new one is still
/// warming up (requests then wait in the socket's queue for it).
#[test]
fn a_rule_that_does_not_wait_stops_the_old_worker_early() {
    let dir = TempDir::new("gates");
    let (mut h, addr) = start_gated("delay:0s", "shared", &dir);
    h.ready(1);
    std::fs::write(gate(&dir, 1), "").unwrap();
    let old: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    h.signal(nix::sys::signal::Signal::SIGHUP);
    h.expect("worker 2 started");
    wait_until("the old worker exits", || !alive(old));
    assert!(!gate(&dir, 2).exists());
    // This request waits in the queue until the new worker warms up.
    let waiting = {
        let addr = addr.clone();
        std::thread::spawn(move || curl(&addr, "/pid"))
    };
    std::fs::write(gate(&dir, 2), "").unwrap();
    let now: u32 = waiting.join().unwrap().trim().parse().unwrap();
    assert_ne!(now, old);
}

/// A worker whose WATCHDOG=1 stops (hung, as the nanny sees it) is
/// replaced: successor first, then the hung one is killed.
#[test]
fn a_worker_whose_watchdog_stops_is_replaced() {
    let dir = TempDir::new("watchdog");
    let p = program("server.py");
    let stop = dir.path().join("stop-{id}");
    let mut h = start(
        &[
            "-w",
            "1",
            "--ready",
            "notify",
            "--heartbeat-timeout",
            "1s",
            "-l",
            "127.0.0.1:0",
            "--",
            "python3",
            &p,
        ],
        &[("WATCHDOG_STOP", stop.to_str().unwrap())],
    );
    let addr = h.address();
    h.ready(1);
    let old: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    // Pings keep it: a heartbeat is recent.
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    assert!(
        s["workers"][0]["heartbeat_age_secs"].as_f64().unwrap() < 1.0,
        "{s}"
    );
    std::fs::write(dir.path().join("stop-1"), "").unwrap();
    h.expect("worker 1 sent no heartbeat for 1s");
    h.expect("worker 2 ready");
    let exit = h.expect("worker 1 exited");
    assert!(exit.contains("SIGKILL"), "{exit}");
    wait_until("the hung worker is gone", || !alive(old));
    let now: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    assert_ne!(now, old);
}
