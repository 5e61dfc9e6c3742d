//! Bad input: one clear line naming the problem and what to do, a non-zero
//! exit (2 for bad usage, 1 for what the system refused), and nothing left
//! running (no process carries the test's unique token).

mod common;
use common::*;

fn token(tag: &str) -> String {
    format!("/nonexistent/herd-bad-{tag}-{}.js", std::process::id())
}

/// Runs herd, checks the exit code, that stderr is one line containing
/// every `needles`, and that no process of the attempt is left.
fn fails(args: &[&str], code: i32, needles: &[&str]) -> String {
    let (got, err) = run_fails(args, &[]);
    assert_eq!(got, code, "exit code for {args:?}; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("herd: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
    for a in args {
        if a.starts_with("/nonexistent/") {
            // herd's process-tree guard (a fork of herd, with its command
            // line) ends when herd does, a moment later: wait for it.
            wait_until(&format!("nothing left running with {a}"), || {
                processes_with(a).is_empty()
            });
        }
    }
    err
}

#[test]
fn unknown_flag() {
    let t = token("flag");
    fails(
        &["run", "--wrokers", "2", "--", "node", &t],
        2,
        &["unknown option --wrokers", "--workers", "--help"],
    );
}

#[test]
fn malformed_address() {
    let t = token("addr");
    fails(
        &["run", "-l", "127.0.0.1:99999", "--", "node", &t],
        2,
        &["invalid listen address \"127.0.0.1:99999\"", "0 to 65535"],
    );
    fails(
        &["run", "-l", "localhost", "--", "node", &t],
        2,
        &[
            "invalid listen address \"localhost\"",
            "no port",
            "HOST:PORT",
        ],
    );
}

#[test]
fn missing_program() {
    fails(&["run", "-w", "1"], 2, &["no program to run", "after --"]);
    fails(
        &["run", "--", "no-such-program-herd-test"],
        2,
        &["\"no-such-program-herd-test\" not found in PATH"],
    );
    fails(
        &["run", "node", "server.js"],
        2,
        &["unexpected argument \"node\"", "after --"],
    );
}

#[test]
fn round_robin_with_a_foreign_program() {
    let t = token("rr");
    fails(
        &["run", "--sched", "rr", "--", "node", &t],
        2,
        &[
            "--sched rr needs herd-aware workers",
            "--sched shared or --sched reuseport",
        ],
    );
}

#[test]
fn port_in_use() {
    let t = token("inuse");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    for sched in ["shared", "reuseport"] {
        fails(
            &["run", "--sched", sched, "-l", &addr, "--", "node", &t],
            1,
            &[
                &format!("cannot listen on {addr}"),
                "in use",
                "another process holds it",
            ],
        );
    }
}

#[test]
#[cfg_attr(
    not(herd_privileged_port_80),
    ignore = "needs port 80 privileged: net.ipv4.ip_unprivileged_port_start is 80 or less, \
              so anyone may bind it"
)]
fn privileged_port_without_the_right() {
    // build.rs saw port 80 privileged; if that changed since, say so.
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    assert!(
        start > 80,
        "built where port 80 was privileged, now ip_unprivileged_port_start is {start}: \
         rebuild the tests (HERD_TESTS_RECHECK=$(date +%s) makes build.rs look again)"
    );
    let t = token("priv");
    let dir = TempDir::new("priv");
    let rt = dir.path().join("rt");
    std::fs::create_dir(&rt).unwrap();
    // As root the bind would succeed: try it as nobody.
    let as_nobody = nix::unistd::getuid().is_root();
    if as_nobody {
        std::os::unix::fs::chown(&rt, Some(65534), Some(65534)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = std::process::Command::new(herd_bin());
    cmd.args(["run", "-l", "127.0.0.1:80", "--", "node", &t])
        .env("HERD_RUNTIME_DIR", &rt)
        .env_remove("XDG_RUNTIME_DIR");
    if as_nobody {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot listen on 127.0.0.1:80"), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains("CAP_NET_BIND_SERVICE"), "{err}");
    // herd's guard (a fork of herd) ends a moment after herd: wait for it.
    wait_until("nothing left running", || processes_with(&t).is_empty());
}

#[test]
fn bad_values_and_config_files() {
    let t = token("values");
    fails(
        &["run", "--grace", "soon", "--", "node", &t],
        2,
        &["--grace", "invalid duration \"soon\""],
    );
    fails(
        &["run", "--ready", "eventually", "--", "node", &t],
        2,
        &["--ready", "notify, listening or delay:DURATION"],
    );
    fails(
        &["run", "-w", "many", "--", "node", &t],
        2,
        &["invalid value \"many\"", "-w"],
    );
    let dir = TempDir::new("cfg");
    let cfg = dir.path().join("herd.toml");
    std::fs::write(
        &cfg,
        "workers = 2\nlisten = [\"127.0.0.1:0\"]\nwrokers = 3\n",
    )
    .unwrap();
    fails(
        &["run", "--config", cfg.to_str().unwrap(), "--", "node", &t],
        2,
        &["herd.toml (line 3)", "unknown field `wrokers`"],
    );
}

#[test]
fn help_is_complete() {
    let o = std::process::Command::new(herd_bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let top = String::from_utf8_lossy(&o.stdout);
    for s in ["run", "ctl", "--log-format", "Exit codes"] {
        assert!(top.contains(s), "{s} missing from herd --help:\n{top}");
    }
    let o = std::process::Command::new(herd_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let run = String::from_utf8_lossy(&o.stdout);
    for s in [
        "--workers",
        "--listen",
        "--sched",
        "--ready",
        "--grace",
        "--restart",
        "--max-age",
        "--max-requests",
        "--max-memory",
        "--heartbeat-timeout",
        "--silent",
        "--log-format",
        "--config",
        "--output",
        "--name",
        "HERD_WORKERS",
        "LISTEN_FDS",
        "notify",
    ] {
        assert!(run.contains(s), "{s} missing from herd run --help:\n{run}");
    }
}

/// A program that always fails trips every slot's crash-loop breaker:
/// herd says so and exits 1 instead of idling with no workers.
#[test]
fn a_program_that_always_fails() {
    let mut h = start(&["-w", "2", "--backoff", "10ms", "--", "false"], &[]);
    h.expect("every worker slot is down; giving up");
    assert_eq!(h.wait_exit(), 1, "{}", h.dump());
    h.assert_no_workers_left();
}

#[test]
fn unknown_command() {
    fails(
        &["frob"],
        2,
        &["unknown command \"frob\"", "herd run or herd ctl"],
    );
}
