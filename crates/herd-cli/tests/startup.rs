//! What PM2 and gunicorn users expect at start-up: `--env-file`,
//! `--chdir`, `--user`/`--group` and `--pid-file`, with real `herd run`
//! processes serving tests/programs/whoami.py.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::*;

/// `herd run OPTIONS -- python3 whoami.py` with `env`.
fn start_whoami(options: &[&str], env: &[(&str, &str)]) -> Herd {
    let py = whoami();
    let mut args = options.to_vec();
    args.extend(["--", "python3", &py]);
    start(&args, env)
}

fn whoami() -> String {
    program("whoami.py")
}

#[test]
fn env_file_values_reach_the_workers_over_config_env_and_herds_environment() {
    let dir = TempDir::new("envfile");
    let env_file = dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "# the app's settings\n\nBOTH=from-file\nexport QUOTED=\"two words\"\nSINGLE='a # b'\nPLAIN=x # a comment\n",
    )
    .unwrap();
    let config = dir.path().join("herd.toml");
    std::fs::write(
        &config,
        "[env]\nBOTH = \"from-config\"\nSHARED = \"from-config\"\nCFG = \"from-config\"\n",
    )
    .unwrap();
    let (env_file, config) = (env_file.to_str().unwrap(), config.to_str().unwrap());
    let mut h = start_whoami(
        &[
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--config",
            config,
            "--env-file",
            env_file,
        ],
        &[("SHARED", "from-herd"), ("PROC", "from-herd")],
    );
    let addr = h.address();
    h.ready(1);
    for (name, want) in [
        ("BOTH", "from-file"),
        ("QUOTED", "two words"),
        ("SINGLE", "a # b"),
        ("PLAIN", "x"),
        ("SHARED", "from-config"),
        ("CFG", "from-config"),
        ("PROC", "from-herd"),
    ] {
        assert_eq!(curl(&addr, &format!("/env/{name}")), want, "{name}");
    }
}

#[test]
fn a_bad_env_file_line_is_one_error_naming_the_file_and_line() {
    let dir = TempDir::new("badenv");
    let f = dir.path().join("bad.env");
    std::fs::write(&f, "A=1\n# fine\nnot a setting\n").unwrap();
    let f = f.to_str().unwrap();
    let (code, err) = run_fails(&["run", "--env-file", f, "--", "true"], &[]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(f) && err.contains("line 3"), "{err}");

    std::fs::write(dir.path().join("big.env"), "A=1\n".repeat(300_000)).unwrap();
    let big = dir.path().join("big.env");
    let (code, err) = run_fails(
        &["run", "--env-file", big.to_str().unwrap(), "--", "true"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("too large"), "{err}");

    let (code, err) = run_fails(
        &["run", "--env-file", "/nonexistent/x.env", "--", "true"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("/nonexistent/x.env"), "{err}");
}

#[test]
fn chdir_runs_the_workers_in_that_directory() {
    let dir = TempDir::new("chdir");
    let work = dir.path().join("app");
    std::fs::create_dir(&work).unwrap();
    let mut h = start_whoami(
        &[
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--chdir",
            work.to_str().unwrap(),
        ],
        &[],
    );
    let addr = h.address();
    h.ready(1);
    assert_eq!(
        curl(&addr, "/cwd"),
        work.canonicalize().unwrap().to_str().unwrap()
    );
    // herd itself moved there too.
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", h.pid)).unwrap(),
        work.canonicalize().unwrap()
    );
}

#[test]
fn a_missing_chdir_is_an_error_at_start() {
    let (code, err) = run_fails(&["run", "--chdir", "/nonexistent/app", "--", "true"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--chdir /nonexistent/app") && err.contains("no such directory"),
        "{err}"
    );
}

fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a user nobody")
}

#[test]
#[cfg_attr(
    not(herd_privileged_port_80),
    ignore = "needs port 80 privileged: net.ipv4.ip_unprivileged_port_start is 80 or less"
)]
fn user_nobody_on_port_80_is_served_by_a_worker_running_as_nobody() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs root (herd run --user needs it)");
        return;
    }
    let mut h = start_whoami(&["-w", "1", "-l", "127.0.0.1:80", "--user", "nobody"], &[]);
    let addr = h.address();
    assert_eq!(addr, "127.0.0.1:80");
    h.ready(1);
    let uid = nobody().uid.as_raw();
    assert_eq!(curl(&addr, "/uid"), uid.to_string());
    for pid in h.worker_pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            line.split_whitespace()
                .skip(1)
                .all(|u| u == uid.to_string()),
            "worker {pid}: {line}"
        );
    }
}

#[test]
fn user_needs_root_and_an_unknown_user_is_a_clear_error() {
    if !nix::unistd::getuid().is_root() {
        let (code, err) = run_fails(&["run", "--user", "nobody", "--", "true"], &[]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--user needs root"), "{err}");
        eprintln!("unknown user: skipped, needs root");
        return;
    }
    let (code, err) = run_fails(&["run", "--user", "no-such-user-herd", "--", "true"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--user \"no-such-user-herd\": no such user"),
        "{err}"
    );
    let (code, err) = run_fails(
        &[
            "run",
            "--user",
            "nobody",
            "--group",
            "no-such-group-herd",
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no such group"), "{err}");
    // As nobody: refused.
    let nb = nobody();
    let out = Command::new(herd_bin())
        .args(["run", "--user", "nobody", "--", "true"])
        .env("HERD_RUNTIME_DIR", "/nonexistent")
        .uid(nb.uid.as_raw())
        .gid(nb.gid.as_raw())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--user needs root"), "{err}");
}

#[test]
fn pid_file_is_written_at_start_and_removed_at_a_clean_stop() {
    let dir = TempDir::new("pidfile");
    let pid_file = dir.path().join("herd.pid");
    let mut h = start_whoami(
        &[
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        &[],
    );
    h.ready(1);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        h.pid.to_string()
    );
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    assert!(!pid_file.exists(), "removed at a clean stop");
}

#[test]
fn a_pid_file_naming_a_live_process_refuses_to_start_and_a_stale_one_is_replaced() {
    let dir = TempDir::new("pidlive");
    let pid_file = dir.path().join("herd.pid");
    let me = std::process::id().to_string();
    std::fs::write(&pid_file, format!("{me}\n")).unwrap();
    let (code, err) = run_fails(
        &[
            "run",
            "--pid-file",
            pid_file.to_str().unwrap(),
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("process {me} is running")), "{err}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        me,
        "left alone"
    );

    // A process that has exited and been reaped.
    let mut gone = Command::new("true").spawn().unwrap();
    let stale = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pid_file, format!("{stale}\n")).unwrap();
    let mut h = start_whoami(
        &[
            "-w",
            "1",
            "-l",
            "127.0.0.1:0",
            "--pid-file",
            pid_file.to_str().unwrap(),
        ],
        &[],
    );
    h.ready(1);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        h.pid.to_string()
    );
}
