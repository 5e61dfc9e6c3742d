//! `herd ctl status` tells the truth (issue 13, point 6): old workers
//! still leaving after a reload are shown apart and not counted in the
//! header; RESTARTS counts crashes and recycles, not reloads (finished or
//! aborted); each row shows its slot's last exit and when; RSS, CONNS and
//! CPU cover the worker's whole process tree; and with `--restart
//! on-failure` a program whose every worker exits 0 ends herd with 0.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;

fn tree_server(workers: &str, extra: &[&str], env: &[(&str, &str)]) -> (Herd, String) {
    let p = program("tree_server.py");
    let mut args = vec!["-w", workers, "--grace", "20s", "-l", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "python3", &p]);
    let mut h = start(&args, env);
    let addr = h.address();
    (h, addr)
}

fn status_json(h: &Herd) -> serde_json::Value {
    let o = h.ctl(&["status", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn table(h: &Herd) -> String {
    let o = h.ctl(&["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Workers' figures by id, from the --json document.
fn worker(s: &serde_json::Value, id: u64) -> serde_json::Value {
    s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no worker {id}: {s}"))
}

/// `GET /hold` sent, its answer not read: a request under way.
fn hold(addr: &str) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    c
}

/// Connections the workers' trees hold, added up.
fn connections(s: &serde_json::Value) -> u64 {
    s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["connections"].as_u64())
        .sum()
}

#[test]
fn after_a_reload_old_workers_leaving_are_shown_apart_and_not_counted() {
    let gate_dir = TempDir::new("gate");
    let gate = gate_dir.path().join("go");
    let gate_s = gate.to_string_lossy().into_owned();
    let (mut h, addr) = tree_server("2", &[], &[("HOLD_GATE", &gate_s)]);
    h.ready(2);
    // Slow requests, spread over both workers' children.
    let mut held: Vec<TcpStream> = (0..8).map(|_| hold(&addr)).collect();
    wait_until("the workers hold the slow requests", || {
        connections(&status_json(&h)) >= 8
    });
    let o = h.ctl(&["reload"]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        h.dump()
    );
    let t = table(&h);
    let header = t.lines().next().unwrap();
    assert!(
        header.contains("2 of 2 workers ready (") && header.contains(" old leaving)"),
        "{t}"
    );
    let (current, leaving) = t.split_once("\nleaving (").unwrap_or_else(|| panic!("{t}"));
    let rows = |text: &str| -> Vec<u32> {
        text.lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    };
    assert_eq!(rows(current), vec![3, 4], "{t}");
    let old = rows(leaving.split_once('\n').unwrap().1);
    assert!(!old.is_empty() && old.iter().all(|id| *id <= 2), "{t}");
    // Every row says "leaving" in the old part.
    assert!(
        leaving.lines().skip(2).all(|l| l.contains(" leaving ")),
        "{t}"
    );
    std::fs::write(&gate, "").unwrap();
    for c in &mut held {
        let mut buf = [0u8; 256];
        let _ = c.read(&mut buf);
    }
}

#[test]
fn rss_cpu_and_connections_count_the_workers_whole_process_tree() {
    let gate_dir = TempDir::new("gate");
    let gate = gate_dir.path().join("go");
    let gate_s = gate.to_string_lossy().into_owned();
    let (mut h, addr) = tree_server("1", &[], &[("HOLD_GATE", &gate_s), ("CHILD_MB", "64")]);
    h.ready(1);
    let _c = hold(&addr);
    // The master holds no connection and little memory: the child does.
    wait_until("the worker's tree holds the connection", || {
        connections(&status_json(&h)) == 1
    });
    let w = worker(&status_json(&h), 1);
    assert!(
        w["rss_bytes"].as_u64().unwrap() >= 64 << 20,
        "the child's 64 MiB: {w}"
    );
    assert!(w["cpu_secs"].as_f64().is_some(), "{w}");
    let t = table(&h);
    assert!(t.lines().nth(2).unwrap().contains(" CPU "), "{t}");
    std::fs::write(&gate, "").unwrap();
}

#[test]
fn restarts_count_crashes_and_recycles_not_reloads_and_rows_say_the_last_exit() {
    let fail_dir = TempDir::new("fail");
    let fail = fail_dir.path().join("fail");
    let fail_s = fail.to_string_lossy().into_owned();
    let (mut h, _addr) = tree_server("1", &[], &[("FAIL_GATE", &fail_s)]);
    h.ready(1);
    // A finished reload: not a restart.
    assert!(h.ctl(&["reload"]).status.success(), "{}", h.dump());
    let w = worker(&status_json(&h), 2);
    assert_eq!(
        (w["restarts"].as_u64(), w["reloads"].as_u64()),
        (Some(0), Some(1)),
        "{w}"
    );
    // An aborted reload (the new build exits 1): not a restart either.
    std::fs::write(&fail, "").unwrap();
    let o = h.ctl(&["reload"]);
    assert!(!o.status.success(), "{}", h.dump());
    let w = worker(&status_json(&h), 2);
    assert_eq!(
        w["restarts"].as_u64(),
        Some(0),
        "after an aborted reload: {w}"
    );
    std::fs::remove_file(&fail).unwrap();
    // A crash: one.
    let pid = w["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    h.expect("worker 4 ready");
    let w = worker(&status_json(&h), 4);
    assert_eq!(w["restarts"].as_u64(), Some(1), "after a crash: {w}");
    let t = table(&h);
    let row = t
        .lines()
        .find(|l| l.starts_with("4 "))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(
        row.contains("crashed (signal SIGKILL) ") && row.contains("s ago"),
        "{t}"
    );
}

#[test]
fn a_recycle_counts_as_a_restart() {
    let (mut h, _addr) = tree_server("1", &["--max-age", "2s"], &[]);
    h.ready(1);
    h.expect("worker 2 ready");
    // One worker left, the n-th started: n-1 recycles (it may be recycled
    // again meanwhile: the count follows).
    let mut last = serde_json::Value::Null;
    wait_until("one recycled worker alone", || {
        last = status_json(&h);
        last["workers"].as_array().unwrap().len() == 1
            && last["workers"][0]["id"].as_u64() >= Some(2)
            && last["workers"][0]["state"] == "ready"
    });
    let w = &last["workers"][0];
    assert_eq!(
        w["restarts"].as_u64(),
        Some(w["id"].as_u64().unwrap() - 1),
        "after recycles: {w}"
    );
}

#[test]
fn on_failure_ends_herd_with_0_when_every_worker_exits_0() {
    let mut h = start(
        &[
            "-w",
            "2",
            "--restart",
            "on-failure",
            "-l",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            "exit 0",
        ],
        &[],
    );
    assert_eq!(h.wait_exit(), 0, "herd said:\n{}", h.dump());
    h.wait_said("every worker exited 0");
}

#[test]
fn always_restarts_workers_that_exit_0() {
    let mut h = start(
        &[
            "-w",
            "1",
            "--restart",
            "always",
            "-l",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            "exit 0",
        ],
        &[],
    );
    h.expect("worker 2 started");
    assert!(h.child.try_wait().unwrap().is_none(), "{}", h.dump());
}
