//! Workers started as another user (`herd run --user nobody`, as root)
//! speak sd_notify to herd: their READY=1 makes them ready, their
//! WATCHDOG=1 keeps them alive (and one that stops sending is replaced),
//! while another user cannot even reach their socket and a process of the
//! same user outside the worker's tree is not heard. With real `herd run`
//! processes serving tests/programs/server.py.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

/// Fails, not skips, when the cfg said root and the run is not.
fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "built as root (cfg herd_root) but run as another user: rebuild"
    );
}

/// A temporary directory that nobody may read (the workers' gates).
fn open_dir(tag: &str) -> TempDir {
    let d = TempDir::new(tag);
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// `herd run --user nobody --ready notify -l 127.0.0.1:0 OPTIONS -- python3 server.py`.
fn start_nobody(options: &[&str], env: &[(&str, &str)]) -> Herd {
    let p = program("server.py");
    let mut args = vec!["--user", "nobody", "--ready", "notify", "-l", "127.0.0.1:0"];
    args.extend(options);
    args.extend(["--", "python3", &p]);
    start(&args, env)
}

/// The NOTIFY_SOCKET herd gave process `pid`.
fn notify_socket(pid: u32) -> PathBuf {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let v = env
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"NOTIFY_SOCKET="))
        .expect("a NOTIFY_SOCKET");
    PathBuf::from(String::from_utf8(v.to_vec()).unwrap())
}

/// The uid of each of process `pid`'s real, effective, saved and fs ids.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|u| u.parse().unwrap())
        .collect()
}

/// Sends `msg` to `socket` from a fresh python3 running as `uid`:`gid`;
/// its stdout says `sent` or the error's name.
fn send_as(uid: u32, gid: u32, socket: &Path, msg: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import socket, sys\n\
             s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
             try:\n    s.sendto(sys.argv[2].encode(), sys.argv[1]); print('sent')\n\
             except OSError as e:\n    print(type(e).__name__)\n",
        ])
        .arg(socket)
        .arg(msg)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
#[cfg_attr(not(herd_root), ignore = "needs root (herd run --user needs it)")]
fn nobody_workers_become_ready_by_their_ready_1() {
    assert_root();
    let (uid, _) = nobody();
    let mut h = start_nobody(&["-w", "2"], &[]);
    let addr = h.address();
    h.ready(2);
    let pids = h.worker_pids();
    assert_eq!(pids.len(), 2, "{}", h.dump());
    let mut served = std::collections::HashSet::new();
    wait_until("both workers answer", || {
        served.insert(curl(&addr, "/pid").trim().to_string());
        served.len() == 2
    });
    let mut dir = None;
    for pid in pids {
        assert!(uids(pid).iter().all(|&u| u == uid), "worker {pid}");
        // Its socket: the worker's own, 0600, in herd's 0711 directory.
        let sock = notify_socket(pid);
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o600), "{sock:?}");
        let parent = sock.parent().unwrap().to_path_buf();
        let pm = std::fs::metadata(&parent).unwrap();
        assert_eq!((pm.uid(), pm.mode() & 0o7777), (0, 0o711), "{parent:?}");
        dir = Some(parent);
    }
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    let dir = dir.unwrap();
    assert!(!dir.exists(), "{dir:?} left behind");
}

#[test]
#[cfg_attr(not(herd_root), ignore = "needs root (herd run --user needs it)")]
fn a_nobody_worker_is_kept_by_its_watchdog_and_replaced_without_it() {
    assert_root();
    let gates = open_dir("user-watchdog");
    let stop = gates.path().join("stop-{id}");
    let mut h = start_nobody(
        &["-w", "2", "--heartbeat-timeout", "1s"],
        &[("WATCHDOG_STOP", stop.to_str().unwrap())],
    );
    h.ready(2);
    let pids = h.worker_pids();
    // Pings keep both: their heartbeats are recent.
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    for w in s["workers"].as_array().unwrap() {
        assert!(w["heartbeat_age_secs"].as_f64().unwrap() < 1.0, "{s}");
    }
    // Worker 1 stops pinging: replaced, its successor first.
    std::fs::write(gates.path().join("stop-1"), "").unwrap();
    h.expect("worker 1 sent no heartbeat for 1s");
    h.expect("worker 3 ready");
    let exit = h.expect("worker 1 exited");
    assert!(exit.contains("SIGKILL"), "{exit}");
    // Worker 2, which kept pinging for as long, is still there.
    assert!(alive(pids[1]), "worker 2 was not kept:\n{}", h.dump());
    assert!(!h.said("worker 2 sent no heartbeat"), "{}", h.dump());
    let s: serde_json::Value =
        serde_json::from_slice(&h.ctl(&["status", "--json"]).stdout).unwrap();
    let w2 = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == 2)
        .unwrap_or_else(|| panic!("no worker 2: {s}"));
    assert!(w2["heartbeat_age_secs"].as_f64().unwrap() < 1.0, "{s}");
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
}

#[test]
#[cfg_attr(not(herd_root), ignore = "needs root (herd run --user needs it)")]
fn other_users_and_nobodys_outsiders_cannot_make_a_worker_ready() {
    assert_root();
    let (uid, gid) = nobody();
    let gates = open_dir("user-spoof");
    let gate = gates.path().join("ready-{id}");
    let mut h = start_nobody(&["-w", "1"], &[("READY_GATE", gate.to_str().unwrap())]);
    h.expect("worker 1 started");
    let pid = h.worker_pids()[0];
    let sock = notify_socket(pid);
    wait_until("the notify socket exists", || sock.exists());

    // Another user cannot reach it.
    let other = uid - 1;
    assert_ne!(other, 0);
    assert_eq!(
        send_as(other, other, &sock, "READY=1"),
        "PermissionError",
        "uid {other} reached {sock:?}"
    );
    // nobody itself can, but is not of the worker's tree: ignored.
    assert_eq!(send_as(uid, gid, &sock, "READY=1"), "sent");
    let line = h.expect("not of worker 1's process tree: ignored");
    assert!(line.contains("notification from "), "{line}");
    assert!(!h.said("worker 1 ready"), "spoofed ready:\n{}", h.dump());
    // The worker's own READY=1 is heard.
    std::fs::write(gates.path().join("ready-1"), "").unwrap();
    h.ready(1);
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
}

#[test]
#[cfg_attr(not(herd_root), ignore = "needs root (herd run --user needs it)")]
fn a_temporary_directory_nobody_can_search_is_refused_at_start() {
    assert_root();
    let tmp = TempDir::new("user-tmpdir"); // 0700: nobody cannot search it
    let p = program("server.py");
    let (code, err) = run_fails(
        &[
            "run",
            "--user",
            "nobody",
            "--ready",
            "notify",
            "-l",
            "127.0.0.1:0",
            "--",
            "python3",
            &p,
        ],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(tmp.path().to_str().unwrap())
            && err.contains("cannot search it")
            && err.contains("set TMPDIR"),
        "{err}"
    );
    assert!(!err.contains("worker 1 started"), "{err}");
    // Nothing was made in it.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}
