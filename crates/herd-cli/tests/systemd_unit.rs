//! `herd systemd-unit`: the units it prints run the same `herd run`
//! command line, with what herd needs of systemd, and pass
//! `systemd-analyze verify` where it is installed.

mod common;

use std::process::Command;

use common::*;

/// Runs `herd ARGS`, returning (exit code, stdout, stderr).
fn herd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(herd_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The units in the output, by the `# --- NAME ---` lines that head them.
fn units(out: &str) -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(name) = line
            .strip_prefix("# --- ")
            .and_then(|l| l.strip_suffix(" ---"))
        {
            units.push((name.to_string(), String::new()));
        }
        let (_, text) = units.last_mut().expect("output starts with a unit header");
        text.push_str(line);
        text.push('\n');
    }
    units
}

fn value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

const RUN: [&str; 9] = [
    "--name",
    "web",
    "-w",
    "2",
    "-l",
    "127.0.0.1:8080",
    "--grace",
    "10s",
    "--",
];

#[test]
fn systemd_unit_prints_a_notify_service_running_the_same_command_line() {
    let mut args = vec!["systemd-unit"];
    args.extend(RUN);
    args.extend(["/usr/bin/python3", "/srv/my app.py", "50%"]);
    let (code, out, err) = herd(&args);
    assert_eq!(code, 0, "{err}");
    let units = units(&out);
    assert_eq!(units.len(), 1, "{out}");
    let (name, unit) = &units[0];
    assert_eq!(name, "web.service");
    assert_eq!(value(unit, "Type"), ["notify"]);
    assert_eq!(value(unit, "NotifyAccess"), ["main"]);
    assert_eq!(value(unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(value(unit, "KillMode"), ["mixed"]);
    assert_eq!(value(unit, "TimeoutStopSec"), ["25"], "grace 10s + 15s");
    let exec = format!(
        "{} run {} /usr/bin/python3 \"/srv/my app.py\" 50%%",
        herd_bin(),
        RUN.join(" ")
    );
    assert_eq!(value(unit, "ExecStart"), [exec.as_str()]);
}

#[test]
fn systemd_unit_refuses_what_a_socket_unit_cannot_express() {
    for (args, says) in [
        (
            vec!["systemd-unit", "--socket-unit", "--", "/bin/true"],
            "give -l",
        ),
        (
            vec![
                "systemd-unit",
                "--socket-unit",
                "-l",
                "127.0.0.1:0",
                "--",
                "/bin/true",
            ],
            "port 0",
        ),
        (vec!["systemd-unit", "-l", "127.0.0.1:80"], "no program"),
    ] {
        let (code, _, err) = herd(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
#[cfg_attr(
    not(herd_systemd_analyze),
    ignore = "needs systemd-analyze (Debian's systemd package; scripts/test.sh installs it)"
)]
fn systemd_unit_and_socket_unit_pass_systemd_analyze_verify() {
    let mut args = vec!["systemd-unit", "--socket-unit"];
    args.extend(RUN);
    args.extend(["/usr/bin/python3", "/srv/app.py"]);
    let (code, out, err) = herd(&args);
    assert_eq!(code, 0, "{err}");
    let units = units(&out);
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["web.service", "web.socket"], "{out}");
    let socket = &units[1].1;
    assert_eq!(value(socket, "ListenStream"), ["127.0.0.1:8080"]);
    assert_eq!(value(socket, "ReusePort"), ["yes"]);
    assert_eq!(value(&units[0].1, "Requires"), ["web.socket"]);
    let dir = TempDir::new("unit");
    let mut files = Vec::new();
    for (name, text) in &units {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        files.push(f);
    }
    let out = Command::new(option_env!("HERD_TEST_SYSTEMD_ANALYZE").unwrap_or("systemd-analyze"))
        .arg("verify")
        .args(&files)
        .output()
        .expect("run systemd-analyze");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // It reports a bad key or value as a warning, and exits 0.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}\n{out:?}"
    );
}
