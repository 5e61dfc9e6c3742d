//! `herd ctl status|reload|scale|stop` against a running cluster, and the
//! control socket's protection: mode 0600, owned by the user, in a 0700
//! directory, so no other user can open it.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn status_reload_scale_stop() {
    let p = program("server.js");
    let mut h = start(
        &[
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--name",
            "web",
            "--",
            "node",
            &p,
        ],
        &[],
    );
    h.name = "web".into();
    let addr = h.address();
    h.ready(2);
    curl(&addr, "/");

    // The socket: 0600, ours, in a 0700 directory.
    let sock = h.dir.path().join("web.sock");
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
    let dir = std::fs::metadata(h.dir.path()).unwrap();
    assert_eq!(
        dir.permissions().mode() & 0o077,
        0,
        "runtime dir open to others"
    );

    // status: a table with a row per worker.
    let o = h.ctl(&["status"]);
    assert!(o.status.success(), "{}", out(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.contains("2 of 2 workers ready"), "{table}");
    assert!(table.contains("ID  PID"), "{table}");
    for header in ["STATE", "UPTIME", "RSS", "CONNS", "RESTARTS", "STATUS"] {
        assert!(table.contains(header), "{table}");
    }
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()) && l.contains(" ready "))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    let pids = h.worker_pids();
    for pid in &pids {
        assert!(table.contains(&pid.to_string()), "{table}");
    }

    // reload: answers when done, every worker replaced.
    let o = h.ctl(&["reload"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("reloaded: 2 workers replaced"),
        "{}",
        out(&o)
    );
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    let ids: Vec<u64> = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !w["leaving"].as_bool().unwrap())
        .map(|w| w["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![3, 4], "{s}");
    assert!(
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["id"].as_u64().unwrap() >= 3)
            .all(|w| w["restarts"] == 0 && w["reloads"] == 1),
        "{s}"
    );

    // scale: answers once the wanted number are ready.
    let o = h.ctl(&["scale", "3"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("scaled from 2 to 3 workers (3 ready)"),
        "{}",
        out(&o)
    );
    let o = h.ctl(&["scale", "1"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        out(&o).contains("scaled from 3 to 1 workers"),
        "{}",
        out(&o)
    );
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["workers"].as_array().unwrap().len(), 1, "{s}");
    curl(&addr, "/");
    let o = h.ctl(&["scale", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("cannot scale to 0"), "{}", out(&o));

    // stop: answers, then returns once herd has exited.
    let o = h.ctl(&["stop"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("stopping 1 worker"), "{}", out(&o));
    assert!(out(&o).contains("stopped"), "{}", out(&o));
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    assert!(!sock.exists(), "control socket left behind");
    h.assert_no_workers_left();

    // Nobody there now: a clear answer and exit code 3.
    let o = h.ctl(&["status"]);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        out(&o).contains("no herd named \"web\" is running"),
        "{}",
        out(&o)
    );
}

#[test]
fn a_second_herd_with_the_same_name_is_refused() {
    let p = program("server.js");
    let mut h = start(&["-w", "1", "-l", "127.0.0.1:0", "--", "node", &p], &[]);
    h.ready(1);
    let o = std::process::Command::new(herd_bin())
        .args(["run", "-w", "1", "-l", "127.0.0.1:0", "--", "node", &p])
        .env("HERD_RUNTIME_DIR", h.dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("a herd named \"herd\" is already running"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Three herds of one name started at the same moment: exactly one runs,
/// the others exit at once with a clear error, and `herd ctl stop` stops
/// the one that runs (no herd is left unreachable behind a socket another
/// took over).
#[test]
fn of_herds_started_together_under_one_name_exactly_one_runs() {
    let p = program("server.js");
    let dir = TempDir::new("race");
    let path = dir.path().to_path_buf();
    let args = [
        "run",
        "--name",
        "same",
        "-w",
        "1",
        "-l",
        "127.0.0.1:0",
        "--",
        "node",
        &p,
    ];
    let children: Vec<std::process::Child> = (0..3)
        .map(|_| {
            std::process::Command::new(herd_bin())
                .args(args)
                .env("HERD_RUNTIME_DIR", &path)
                .env_remove("NOTIFY_SOCKET")
                .env_remove("LISTEN_FDS")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut herds: Vec<Herd> = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        // Only the first owns (and removes) the directory.
        let d = if i == 0 {
            TempDir(path.clone())
        } else {
            TempDir(path.join(format!("not-{i}")))
        };
        let mut h = attach(c, d);
        h.name = "same".into();
        herds.push(h);
    }
    std::mem::forget(dir);
    // Each either runs its cluster or exits.
    for h in herds.iter_mut() {
        wait_until("each herd runs or exits", || {
            h.said("cluster ready: 1 of 1") || h.child.try_wait().unwrap().is_some()
        });
    }
    let mut running: Vec<&mut Herd> = Vec::new();
    let mut refused: Vec<&mut Herd> = Vec::new();
    for h in herds.iter_mut() {
        if h.child.try_wait().unwrap().is_none() {
            running.push(h);
        } else {
            refused.push(h);
        }
    }
    for h in refused {
        let code = h.wait_exit();
        assert_eq!(code, 1, "{}", h.dump());
        assert!(
            h.said("a herd named \"same\" is already running (pid "),
            "{}",
            h.dump()
        );
        h.assert_no_workers_left();
    }
    let h = running.into_iter().next().unwrap();
    let o = std::process::Command::new(herd_bin())
        .args(["ctl", "--name", "same", "stop"])
        .env("HERD_RUNTIME_DIR", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    h.assert_no_workers_left();
}
