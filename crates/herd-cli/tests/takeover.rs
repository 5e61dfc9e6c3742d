//! Never take over a port silently (issue 13): a second `herd run` on an
//! address a first one serves would share it through SO_REUSEPORT and get
//! new connections meant for the first. It is refused at once, exit code 1,
//! with one line naming the address and who holds it (a herd by its name
//! and pid, another process by its pid), and the first keeps all its
//! traffic; `--takeover` asks for the sharing explicitly.

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn first_herd(name: &str) -> (Herd, String) {
    let p = program("server.py");
    let mut h = start(
        &[
            "--name",
            name,
            "-w",
            "2",
            "-l",
            "127.0.0.1:0",
            "--",
            "python3",
            &p,
        ],
        &[],
    );
    h.name = name.to_string();
    let addr = h.address();
    h.ready(2);
    (h, addr)
}

/// `herd run ARGS` in the runtime directory `dir`, expected to exit by
/// itself: (exit code, stdout, stderr). Killed if it does not.
fn run_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(herd_bin())
        .arg("run")
        .args(args)
        .env("HERD_RUNTIME_DIR", dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "herd run {args:?} did not exit: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_second_herd_on_a_served_address_is_refused_naming_the_first() {
    let (h, addr) = first_herd("first");
    let p = program("server.py");
    let (code, _, err) = run_in(
        h.dir.path(),
        &["--name", "second", "-l", &addr, "--", "python3", &p],
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    let line = lines[0];
    assert!(
        line.contains(&addr)
            && line.contains("already in use")
            && line.contains(&format!("herd \"first\" (pid {}) holds it", h.pid))
            && line.contains("--takeover"),
        "{line}"
    );
    // The first herd keeps all its traffic.
    let workers = h.worker_pids();
    for _ in 0..20 {
        let pid: u32 = curl(&addr, "/pid").trim().parse().unwrap();
        assert!(workers.contains(&pid), "{pid} is not one of {workers:?}");
    }
    assert!(alive(h.pid));
}

#[test]
fn an_address_held_by_another_process_is_refused_naming_it() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let dir = TempDir::new("held");
    let p = program("server.py");
    let (code, _, err) = run_in(dir.path(), &["-l", &addr, "--", "python3", &p]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&addr)
            && err.contains("already in use")
            && err.contains(&format!(
                "another process holds it (pid {}",
                std::process::id()
            )),
        "{err}"
    );
}

#[test]
fn takeover_lets_a_second_herd_start_on_a_served_address() {
    let (_h, addr) = first_herd("first");
    let p = program("server.py");
    let mut second = start(
        &[
            "--takeover",
            "--name",
            "second",
            "-w",
            "1",
            "-l",
            &addr,
            "--",
            "python3",
            &p,
        ],
        &[],
    );
    assert_eq!(second.address(), addr);
    second.ready(1);
}
