//! What `Primary::settings` shows is what a fork uses, and the scheduling
//! policy is fixed by the first fork, not by reading it: a real primary
//! (`primary_api settings`) and its real worker, which reports its own
//! executable, arguments and directory.

mod common;
mod probe;

use std::path::Path;

use common::TempDir;
use probe::Probe;
use serde_json::{json, Value};

/// Runs the `settings` scenario with arguments of its own, in a directory
/// of its own; returns its report and that directory.
fn report() -> (Value, TempDir) {
    let dir = TempDir::new();
    let mut p = Probe::start(&["settings", "--flag", "two words"], dir.path(), &[]);
    (p.expect("report"), dir)
}

fn canonical(p: impl AsRef<Path>) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

#[test]
fn defaulted_exec_args_and_cwd_are_what_a_fork_uses() {
    let (r, dir) = report();
    let (shown, worker) = (&r["settings"], &r["worker"]);
    assert_eq!(shown["exec"], canonical(probe::PROGRAM), "{r}");
    assert_eq!(shown["exec"], worker["exe"], "{r}");
    assert_eq!(
        shown["args"],
        json!(["settings", "--flag", "two words"]),
        "{r}"
    );
    assert_eq!(shown["args"], worker["args"], "{r}");
    assert_eq!(shown["cwd"], canonical(dir.path()), "{r}");
    assert_eq!(shown["cwd"], worker["cwd"], "{r}");
    assert_eq!(shown["policy"], "rr", "{r}");
}

#[test]
fn a_policy_change_after_the_first_fork_is_refused_naming_the_policy_and_what_to_do() {
    let (r, _dir) = report();
    let refused = r["setup_other_policy_after_fork"]
        .as_str()
        .unwrap_or_else(|| panic!("a change of policy after the first fork was taken: {r}"));
    for part in ["policy is shared", "to rr", "before the first fork"] {
        assert!(refused.contains(part), "{part:?} not in {refused:?}");
    }
    assert_eq!(r["policy_after_refusal"], "shared", "{r}");
    assert_eq!(r["setup_same_policy_after_fork"], Value::Null, "{r}");
    assert_eq!(r["setup_other_field_after_fork"], Value::Null, "{r}");
}

#[test]
fn reading_the_policy_before_the_first_fork_does_not_fix_it() {
    let (r, _dir) = report();
    assert_eq!(r["policy_read"], "rr", "{r}");
    assert_eq!(r["setup_before_fork"], Value::Null, "{r}");
    assert_eq!(r["policy_before_fork"], "shared", "{r}");
    // The fork used it: the worker accepted the connection on the shared
    // socket itself; under rr the primary would have handed it off.
    assert_eq!(r["answer"], "worker 1\n", "{r}");
    assert_eq!(r["handed_off"], 0, "{r}");
}
