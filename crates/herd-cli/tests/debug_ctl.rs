//! `herd ctl profile|dump|drain|undrain|replace ID` against `herd run`:
//! a flamegraph of a busy Node worker that names its JavaScript function
//! (perf, with Node's perf map), every thread's backtrace (gdb), a drain
//! refused for a foreign worker with the reason, a replace that gives one
//! slot a new pid without failing a request.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `herd ctl status --json`'s workers: (id, pid).
fn workers(h: &Herd) -> Vec<(u64, u64)> {
    let o = h.ctl(&["status", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["leaving"] == false)
        .map(|w| (w["id"].as_u64().unwrap(), w["pid"].as_u64().unwrap()))
        .collect()
}

/// Removes the perf maps Node writes for its workers, when dropped.
struct PerfMaps(Vec<u32>);

impl Drop for PerfMaps {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
        }
    }
}

#[test]
#[cfg_attr(
    not(herd_perf),
    ignore = "needs perf, and perf record permitted here (Debian: apt-get install linux-perf)"
)]
fn profile_of_a_busy_node_worker_is_an_svg_naming_its_function() {
    let p = program("busy.js");
    let mut h = start(
        &[
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--name",
            "busy",
            "--",
            "node",
            "--perf-basic-prof",
            &p,
        ],
        &[],
    );
    h.name = "busy".into();
    h.ready(1);
    let _maps = PerfMaps(h.worker_pids());
    let o = h.ctl(&["profile", "1", "--seconds", "2"]);
    assert!(o.status.success(), "{}", out(&o));
    let svg = String::from_utf8_lossy(&o.stdout);
    let svg = svg.trim();
    assert!(
        svg.starts_with("<?xml") || svg.starts_with("<svg"),
        "{}",
        &svg[..svg.len().min(300)]
    );
    assert!(svg.contains("<svg"));
    assert!(
        svg.ends_with("</svg>"),
        "{}",
        &svg[svg.len().saturating_sub(300)..]
    );
    assert!(
        svg.contains("herd_busy_marker_js"),
        "the flamegraph does not name the busy function"
    );
    // Bounds, and a worker that is not there.
    for bad in ["0", "61", "x"] {
        let o = h.ctl(&["profile", "1", "--seconds", bad]);
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
        assert!(out(&o).contains("--seconds"), "{}", out(&o));
    }
    let o = h.ctl(&["profile", "9", "--seconds", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("no worker 9"), "{}", out(&o));
}

#[test]
#[cfg_attr(not(herd_gdb), ignore = "needs gdb (Debian: apt-get install gdb)")]
fn dump_of_a_node_worker_prints_every_thread() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--name",
            "dump",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    h.name = "dump".into();
    let addr = h.address();
    h.ready(2);
    let pid = workers(&h).into_iter().find(|w| w.0 == 1).unwrap().1;
    let o = h.ctl(&["dump", "1"]);
    assert!(o.status.success(), "{}", out(&o));
    let dump = String::from_utf8_lossy(&o.stdout);
    assert!(
        dump.contains(&format!("== worker 1: process {pid} (node)")),
        "{dump}"
    );
    assert!(dump.matches("\nThread ").count() >= 2, "{dump}");
    // Node's own threads, by their function.
    assert!(dump.contains("PlatformWorkerThread"), "{dump}");
    assert!(dump.contains("tokio task dump: not available"), "{dump}");
    // It lives on and serves.
    wait_until("worker 1 answering after the dump", || {
        curl(&addr, "/pid").trim() == pid.to_string()
    });
    let o = h.ctl(&["dump", "7"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("no worker 7"), "{}", out(&o));
}

#[test]
fn drain_of_a_foreign_worker_is_refused_and_replace_gives_one_slot_a_new_pid() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--name",
            "one",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    h.name = "one".into();
    let addr = h.address();
    h.ready(2);
    let before = workers(&h);
    let o = h.ctl(&["drain", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("foreign program accepting on its own socket"),
        "{}",
        out(&o)
    );
    let o = h.ctl(&["undrain", "9"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("no worker 9"), "{}", out(&o));

    // Replace worker 1 under load: nothing fails.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, addr, answered) = (stop.clone(), addr.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match curl_result(&addr, "/pid") {
                    Ok(_) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failed.push(e),
                }
            }
            failed
        })
    };
    wait_until("the load under way", || {
        answered.load(Ordering::Relaxed) >= 5
    });
    let o = h.ctl(&["replace", "1"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("worker 1 replaced by worker 3 (slot 0)"),
        "{}",
        out(&o)
    );
    // Some more answers with the new worker in place, then stop.
    let then = answered.load(Ordering::Relaxed);
    wait_until("answers after the replace", || {
        answered.load(Ordering::Relaxed) >= then + 10
    });
    stop.store(true, Ordering::Relaxed);
    let failed = load.join().unwrap();
    assert!(failed.is_empty(), "{} failed: {failed:?}", failed.len());
    let after = workers(&h);
    let pid_of = |ws: &[(u64, u64)], id| ws.iter().find(|w| w.0 == id).map(|w| w.1);
    assert_eq!(pid_of(&after, 2), pid_of(&before, 2), "worker 2 untouched");
    assert!(pid_of(&after, 1).is_none(), "{after:?}");
    let new = pid_of(&after, 3).expect("worker 3");
    assert!(!before.iter().any(|w| w.1 == new));
    let o = h.ctl(&["replace", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
}
