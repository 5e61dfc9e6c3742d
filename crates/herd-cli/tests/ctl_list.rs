//! Every herd on the machine: `herd ctl list` shows each running herd of
//! this user, and `herd ctl` commands find the herd by itself when only
//! one runs (and say which names to choose from when several do).

mod common;
use common::*;

use std::process::{Command, Output, Stdio};

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `herd ctl ARGS` in runtime directory `dir`, with no HERD_NAME.
fn ctl(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(herd_bin())
        .arg("ctl")
        .args(args)
        .env("HERD_RUNTIME_DIR", dir)
        .env_remove("HERD_NAME")
        .output()
        .expect("run herd ctl")
}

/// A second herd in the runtime directory of `first` (which owns it).
fn start_beside(first: &Herd, args: &[&str]) -> Herd {
    let child = Command::new(herd_bin())
        .arg("run")
        .args(args)
        .env("HERD_RUNTIME_DIR", first.dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("HERD_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start herd");
    // A directory that does not exist: dropping it removes nothing.
    attach(child, TempDir(first.dir.path().join("not-mine")))
}

#[test]
fn list_shows_every_running_herd_and_ctl_needs_a_name_only_when_several_run() {
    let p = program("server.js");
    let mut a = start(
        &[
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--name",
            "alpha",
            "--",
            "node",
            &p,
        ],
        &[("HERD_NAME", "")],
    );
    a.name = "alpha".into();
    let a_addr = a.address();
    a.ready(1);
    let dir = a.dir.path().to_path_buf();

    // One herd: no --name needed.
    let o = ctl(&dir, &["status"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("herd \"alpha\""), "{}", out(&o));

    let mut b = start_beside(
        &a,
        &[
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--name",
            "beta",
            "--",
            "node",
            &p,
        ],
    );
    b.name = "beta".into();
    let b_addr = b.address();
    b.ready(2);

    // The table: a header and one row per herd, in name order.
    let o = ctl(&dir, &["list"]);
    assert!(o.status.success(), "{}", out(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for h in ["NAME", "PID", "READY", "UPTIME", "LISTENING", "PROGRAM"] {
        assert!(lines[0].contains(h), "{text}");
    }
    for (line, name, pid, ready, addr) in [
        (lines[1], "alpha", a.pid, "1/1", &a_addr),
        (lines[2], "beta", b.pid, "2/2", &b_addr),
    ] {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], name, "{text}");
        assert_eq!(cells[1], pid.to_string(), "{text}");
        assert_eq!(cells[2], ready, "{text}");
        assert_eq!(cells[4], addr.as_str(), "{text}");
        assert_eq!(cells[5], "node", "{text}");
        assert!(cells[6].ends_with("server.js"), "{text}");
    }

    // The same as JSON.
    let o = ctl(&dir, &["list", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!(rows[0]["name"], "alpha");
    assert_eq!(rows[0]["pid"], a.pid);
    assert_eq!(rows[0]["wanted"], 1);
    assert_eq!(rows[0]["ready"], 1);
    assert_eq!(rows[0]["listening"][0]["address"], a_addr.as_str());
    assert_eq!(rows[1]["name"], "beta");
    assert_eq!(rows[1]["pid"], b.pid);
    assert_eq!(rows[1]["wanted"], 2);
    assert_eq!(rows[1]["ready"], 2);
    assert_eq!(rows[1]["program"][0], "node");
    assert!(rows[1]["uptime_secs"].as_f64().unwrap() >= 0.0, "{v}");

    // Two herds, no --name: which one is not guessed.
    let o = ctl(&dir, &["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("2 herds are running (alpha, beta)"), "{err}");
    assert!(err.contains("--name"), "{err}");
    assert!(o.stdout.is_empty(), "{}", out(&o));

    // With --name, each is reached.
    let o = ctl(&dir, &["--name", "beta", "status"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("herd \"beta\""), "{}", out(&o));

    // One left: found again without --name.
    let o = ctl(&dir, &["--name", "alpha", "stop"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(a.wait_exit(), 0, "{}", a.dump());
    let o = ctl(&dir, &["status"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("herd \"beta\""), "{}", out(&o));
    let o = ctl(&dir, &["list"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 2);

    // None left: a clear line and exit code 3, for list and for status.
    let o = ctl(&dir, &["stop"]);
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(b.wait_exit(), 0, "{}", b.dump());
    for args in [&["list"][..], &["status"][..]] {
        let o = ctl(&dir, args);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", out(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("no herd is running"), "{err}");
    }
    let o = ctl(&dir, &["list", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    a.assert_no_workers_left();
    b.assert_no_workers_left();
}

/// With no herd ever started, list says so: exit code 3, one line.
#[test]
fn list_with_no_herd_running() {
    let dir = TempDir::new("list-none");
    let o = ctl(dir.path(), &["list"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(o.stdout.is_empty(), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.starts_with("herd: no herd is running"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// A --name that cannot name a herd (a path, too long, empty) is bad
/// usage, never a path outside the runtime directory.
#[test]
fn ctl_names_are_bounded() {
    let dir = TempDir::new("ctl-name");
    let long = "n".repeat(65);
    for name in ["../x", "a/b", "", ".hidden", long.as_str()] {
        let o = ctl(dir.path(), &["--name", name, "status"]);
        assert_eq!(o.status.code(), Some(2), "{name:?}: {}", out(&o));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(err.contains("--name"), "{err}");
        assert!(err.contains("1 to 64 letters"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
