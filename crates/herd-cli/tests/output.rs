//! Worker output: each line prefixed with its worker id and never
//! interleaved mid-line with another worker's, even when workers write
//! long lines in small pieces at once; JSON lines with --log-format json;
//! nothing with --silent.

mod common;
use common::*;

/// Writes 100 lines of 3000 characters in pieces of 500, flushing each
/// piece, then a last line without a newline; then lingers until stopped.
const WRITER: &str = r#"
import os, sys, time, signal
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
wid = os.environ["HERD_WORKER_ID"]
for i in range(100):
    line = ("%s:%d:" % (wid, i)).ljust(3000, wid)
    for k in range(0, len(line), 500):
        sys.stdout.write(line[k:k + 500]); sys.stdout.flush()
    sys.stdout.write("\n"); sys.stdout.flush()
sys.stderr.write("done %s" % wid); sys.stderr.flush()
os.close(1)
os.close(2)
while True:
    time.sleep(1)
"#;

#[test]
fn lines_are_whole_and_prefixed() {
    let mut h = start(&["-w", "3", "--", "python3", "-c", WRITER], &[]);
    // stdout and stderr are two pipes (the worker's, and herd's own), so
    // the last stderr line says nothing about stdout: wait for both ends.
    for w in 1..=3 {
        h.wait_said(&format!("[w{w}] {w}:99:"));
        h.wait_said(&format!("[w{w}] done {w}"));
    }
    let dump = h.dump();
    let mut counts = [0; 4];
    for line in dump.lines().filter(|l| l.starts_with("[w")) {
        let (prefix, text) = line.split_once("] ").unwrap();
        let w: usize = prefix[2..].parse().unwrap();
        if text.starts_with("done ") {
            continue;
        }
        let (id, _) = text.split_once(':').unwrap();
        assert_eq!(id, w.to_string(), "line of worker {id} under [w{w}]");
        assert_eq!(
            text.len(),
            3000,
            "a cut or interleaved line: {}",
            &text[..60]
        );
        let pad = text.rsplit(':').next().unwrap();
        assert!(
            pad.chars().all(|c| c.to_string() == id),
            "interleaved: {text}"
        );
        counts[w] += 1;
    }
    assert_eq!(&counts[1..], &[100, 100, 100]);
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
}

#[test]
fn json_logs() {
    let p = program("server.js");
    let mut h = start(
        &[
            "--log-format",
            "json",
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    // herd's own lines about worker 1 carry "worker":1 too.
    let line = h.wait_said("\"stream\":\"stdout\"");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["stream"], "stdout");
    // The same timestamp form as herd's own JSON lines.
    let ts = v["timestamp"].as_str().unwrap();
    let own: serde_json::Value = serde_json::from_str(&h.wait_said("\"level\":\"INFO\"")).unwrap();
    assert_eq!(
        ts.len(),
        own["timestamp"].as_str().unwrap().len(),
        "{ts} vs {own}"
    );
    assert!(v["line"].as_str().unwrap().contains("serving fd 3"), "{v}");
    h.wait_said("cluster ready");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    for line in h.dump().lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
}

#[test]
fn silent_discards_worker_output() {
    let p = program("server.js");
    let mut h = start(
        &["--silent", "-w", "1", "-l", "127.0.0.1:0", "--", "node", &p],
        &[],
    );
    let addr = h.address();
    h.ready(1);
    curl(&addr, "/");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    assert!(!h.said("[w1]"), "{}", h.dump());
}

/// herd outlives whatever reads its output: with its stderr a pipe whose
/// reader is gone, it keeps running and stops cleanly.
#[test]
fn a_closed_log_pipe_does_not_stop_herd() {
    let dir = TempDir::new("epipe");
    let p = program("server.js");
    let mut child = std::process::Command::new(herd_bin())
        .args(["run", "-w", "1", "-l", "127.0.0.1:0", "--", "node", &p])
        .env("HERD_RUNTIME_DIR", dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = |d: &std::path::Path| {
        std::process::Command::new(herd_bin())
            .args(["ctl", "status", "--json"])
            .env("HERD_RUNTIME_DIR", d)
            .output()
            .unwrap()
    };
    // Ready means it logged (into the broken pipe) all along the way.
    wait_until("the cluster is ready", || {
        let o = status(dir.path());
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok_and(|s| s["ready"] == 1)
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
