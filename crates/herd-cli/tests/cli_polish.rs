//! The command line reads plainly: a mistyped ctl command gets the right
//! suggestion, errors point to the help page of the command they are
//! about, `scale` past the herd's limit asks for --force, `herd run`
//! without sockets says the program gets none, and the help's usage lines
//! and global options are written once.

mod common;
use common::*;

use std::process::{Command, Output};

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `herd ARGS` with an empty runtime directory: (exit code, stderr).
fn herd(args: &[&str]) -> (i32, String) {
    let dir = TempDir::new("polish");
    let o = Command::new(herd_bin())
        .args(args)
        .env("HERD_RUNTIME_DIR", dir.path())
        .env_remove("HERD_NAME")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn usage_fails(args: &[&str], needles: &[&str]) {
    let (code, err) = herd(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
    }
}

#[test]
fn a_mistyped_ctl_command_suggests_the_ctl_command() {
    usage_fails(
        &["ctl", "stauts"],
        &[
            "unknown command \"stauts\"",
            "did you mean status?",
            "herd ctl --help",
        ],
    );
    let (_, err) = herd(&["ctl", "stauts"]);
    assert!(!err.contains("herd run"), "{err}");
    usage_fails(&["ctl", "lsit"], &["did you mean list?"]);
    // The top level still offers its own commands.
    usage_fails(&["runn"], &["did you mean run?", "herd --help"]);
}

#[test]
fn errors_point_to_the_help_of_their_command() {
    usage_fails(
        &["ctl", "status", "--jsn"],
        &[
            "unknown option --jsn",
            "--json",
            "see herd ctl status --help",
        ],
    );
    usage_fails(
        &["ctl", "scale", "many"],
        &["invalid value \"many\"", "see herd ctl scale --help"],
    );
    usage_fails(
        &["ctl", "status", "extra"],
        &[
            "unexpected argument \"extra\"",
            "see herd ctl status --help",
        ],
    );
    usage_fails(
        &["ctl", "--bogus", "status"],
        &["unknown option --bogus", "see herd ctl"],
    );
    usage_fails(
        &["run", "--wrokers", "2", "--", "true"],
        &["unknown option --wrokers", "see herd run --help"],
    );
    usage_fails(
        &["run", "-w", "x", "--", "true"],
        &["invalid value \"x\"", "see herd run --help"],
    );
    usage_fails(&["--bogus"], &["unknown option --bogus", "see herd --help"]);
}

#[test]
fn help_reads_plainly() {
    let help = |args: &[&str]| {
        let o = Command::new(herd_bin()).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", out(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let top = help(&["--help"]);
    assert!(
        top.contains(
            "Usage: herd run [OPTIONS] -- PROGRAM [ARGS]...\n       herd ctl [--name NAME] COMMAND"
        ),
        "{top}"
    );
    let run = help(&["run", "--help"]);
    assert!(
        run.contains("Usage: herd run [OPTIONS] -- PROGRAM [ARGS]...\n"),
        "{run}"
    );
    assert!(run.contains("--max-workers"), "{run}");
    let ctl = help(&["ctl", "--help"]);
    assert!(
        ctl.contains("Usage: herd ctl [--name NAME | --socket PATH] COMMAND"),
        "{ctl}"
    );
    assert!(ctl.contains("\n  list "), "{ctl}");
    // Options shared by every command are under their own heading, once,
    // and --version belongs to herd alone.
    for (args, text) in [
        (&["run", "--help"][..], run.clone()),
        (&["ctl", "--help"][..], ctl.clone()),
        (
            &["ctl", "status", "--help"][..],
            help(&["ctl", "status", "--help"]),
        ),
        (
            &["ctl", "scale", "--help"][..],
            help(&["ctl", "scale", "--help"]),
        ),
    ] {
        assert!(!text.contains("--version"), "{args:?}:\n{text}");
        assert_eq!(text.matches("--log-format").count(), 1, "{args:?}:\n{text}");
        let global = text
            .find("Global options:")
            .expect("a Global options heading");
        assert!(
            text.find("--log-format").unwrap() > global,
            "{args:?}:\n{text}"
        );
    }
    let status = help(&["ctl", "status", "--help"]);
    let global = status.find("Global options:").unwrap();
    assert!(status.find("--json").unwrap() < global, "{status}");
    assert!(status.find("--name").unwrap() > global, "{status}");
    assert!(top.contains("--version"), "{top}");
}

#[test]
fn run_without_sockets_says_the_program_gets_none() {
    let mut h = start(&["-w", "1", "--", "sleep", "60"], &[]);
    let line = h.expect("the program gets no socket");
    assert!(line.contains("warning"), "{line}");
    assert!(line.contains("-l"), "{line}");
    h.ready(1);
    // A warning, not an error: herd runs the program all the same.
    let o = h.ctl(&["status"]);
    assert!(o.status.success(), "{}", out(&o));
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    assert_eq!(
        h.dump().matches("gets no socket").count(),
        1,
        "{}",
        h.dump()
    );
}

#[test]
fn scale_past_the_limit_needs_force() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "1",
            "--max-workers",
            "2",
            "-l",
            "127.0.0.1:0",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    h.ready(1);
    assert!(!h.said("gets no socket"), "{}", h.dump());
    let o = h.ctl(&["scale", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    for n in ["limit of 2 workers", "--max-workers 2", "--force"] {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
    // Refused before anything changed.
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["workers"].as_array().unwrap().len(), 1, "{s}");
    // Up to the limit needs nothing; past it, --force.
    let o = h.ctl(&["scale", "2"]);
    assert!(o.status.success(), "{}", out(&o));
    let o = h.ctl(&["scale", "3", "--force"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("scaled from 2 to 3 workers (3 ready)"),
        "{}",
        out(&o)
    );
    // Down is never refused, even while above the limit.
    let o = h.ctl(&["scale", "1"]);
    assert!(o.status.success(), "{}", out(&o));
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    h.assert_no_workers_left();
}

/// Without --max-workers the limit is 4 per CPU, and the refusal says so.
#[test]
fn the_default_scale_limit_is_four_per_cpu() {
    let mut h = start(&["-w", "1", "--", "sleep", "60"], &[]);
    h.ready(1);
    let o = h.ctl(&["scale", "1024"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("4 per CPU"), "{err}");
    assert!(err.contains("--force"), "{err}");
    // "limit of L workers (4 per CPU, C CPUs; ...)": L is 4 C.
    let num = |after: &str| -> usize {
        err.split(after)
            .nth(1)
            .unwrap()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(num("limit of "), 4 * num("4 per CPU, "), "{err}");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
}

#[test]
fn max_workers_is_bounded() {
    for (v, why) in [
        ("0", "--max-workers: 0 is out of range: use 1 to 1024"),
        ("1025", "--max-workers: 1025 is out of range: use 1 to 1024"),
        ("lots", "invalid value \"lots\" for --max-workers"),
    ] {
        let (code, err) = run_fails(&["run", "--max-workers", v, "--", "true"], &[]);
        assert_eq!(code, 2, "{v}: {err}");
        assert!(err.contains(why), "{v}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{v}: {err}");
    }
    // The config file's key too.
    let dir = TempDir::new("max-workers");
    let cfg = dir.path().join("herd.toml");
    std::fs::write(&cfg, "max_workers = 5000\n").unwrap();
    let (code, err) = run_fails(
        &["run", "--config", cfg.to_str().unwrap(), "--", "true"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--max-workers: 5000 is out of range"), "{err}");
}
