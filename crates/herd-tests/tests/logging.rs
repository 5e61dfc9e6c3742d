//! Debug logging, as Node's `NODE_DEBUG=cluster`.

mod common;

use common::*;
use serde_json::json;

/// Whether `line` is the primary's log of `what` about worker `id`.
fn logs(line: &str, what: &str, id: u32) -> bool {
    line.contains(what) && line.contains(&format!("worker={id}"))
}

#[test]
fn herd_log_debug_makes_the_primary_log_each_workers_life_to_stderr() {
    let mut c = Cluster::start_with(
        Options::new()
            .env("HERD_LOG", "debug")
            .env_remove("RUST_LOG")
            .capture_stderr(),
    );
    let id = c.fork(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    c.expect_event("listening", id);
    c.cmd(json!({"cmd": "disconnect", "worker": id}));
    c.expect_event("exit", id);
    // Each step of the worker's life, in order.
    let steps = [
        "forked worker",
        "worker online",
        "worker listening",
        "worker disconnected",
        "worker exited",
    ];
    let last = steps[steps.len() - 1];
    c.wait_stderr(TIMEOUT, |l| logs(l, last, id))
        .unwrap_or_else(|| panic!("no {last:?} line:\n{}", c.stderr_lines().join("\n")));
    let lines = c.stderr_lines();
    let at: Vec<Option<usize>> = steps
        .iter()
        .map(|s| lines.iter().position(|l| logs(l, s, id)))
        .collect();
    assert!(
        at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
        "steps {steps:?} at lines {at:?}:\n{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().all(|l| !l.contains("\x1b[")),
        "plain text, no colours"
    );
}

#[test]
fn without_herd_log_the_primary_logs_nothing() {
    let mut c = Cluster::start_with(
        Options::new()
            .env_remove("HERD_LOG")
            .env_remove("RUST_LOG")
            .capture_stderr(),
    );
    let id = c.fork(&[]);
    c.expect_event("online", id);
    c.cmd(json!({"cmd": "kill", "worker": id, "signal": "SIGKILL"}));
    c.expect_event("exit", id);
    // A log line about the exit is written before the event is emitted, so
    // it would be in the pipe by now: end the primary, whose workers are
    // all gone, and read its stderr to the end.
    c.signal_primary(nix::sys::signal::Signal::SIGKILL);
    c.wait_exit(TIMEOUT).expect("the primary is gone");
    assert!(c.wait_stderr_end(TIMEOUT), "stderr closes");
    let lines = c.stderr_lines();
    assert!(lines.is_empty(), "{}", lines.join("\n"));
}
