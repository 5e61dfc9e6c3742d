//! Every `herd run` value has a bounded meaning: fed each flag's extremes
//! and random values, by flag, by `HERD_*` variable and by config file,
//! herd exits 2 with one line saying what is wrong, never a panic, a
//! wrapped number or a running cluster. The program is one that does not
//! exist, so a value that is valid ends in that one line ("does not
//! exist") instead.

mod common;
use common::*;

use proptest::prelude::*;

/// How a value reaches herd.
#[derive(Debug, Clone, Copy)]
enum Via {
    Flag,
    Env,
    File,
}

/// A `herd run` option: its long flag, its variable, its config key and
/// whether the config file holds it as a number.
struct Opt {
    flag: &'static str,
    env: &'static str,
    key: &'static str,
    number: bool,
}

const OPTS: &[Opt] = &[
    opt("workers", "HERD_WORKERS", true),
    opt("grace", "HERD_GRACE", false),
    opt("boot-timeout", "HERD_BOOT_TIMEOUT", false),
    opt("max-age", "HERD_MAX_AGE", false),
    opt("backoff", "HERD_BACKOFF", false),
    opt("heartbeat-timeout", "HERD_HEARTBEAT_TIMEOUT", false),
    opt("max-memory", "HERD_MAX_MEMORY", false),
    opt("max-requests", "HERD_MAX_REQUESTS", true),
    opt("crash-limit", "HERD_CRASH_LIMIT", true),
    opt("ready", "HERD_READY", false),
    opt("restart", "HERD_RESTART", false),
    opt("sched", "HERD_SCHED_POLICY", false),
    opt("name", "HERD_NAME", false),
    opt("monitor", "HERD_MONITOR", false),
    opt("agent-check", "HERD_AGENT_CHECK", false),
    opt("drain-delay", "HERD_DRAIN_DELAY", false),
    opt("ecv-root", "HERD_ECV_ROOT", false),
    opt("monitor-probe", "HERD_MONITOR_PROBE", false),
];

const fn opt(flag: &'static str, env: &'static str, number: bool) -> Opt {
    // The config key is the flag with underscores.
    let key = match flag.as_bytes() {
        b"boot-timeout" => "boot_timeout",
        b"max-age" => "max_age",
        b"heartbeat-timeout" => "heartbeat_timeout",
        b"max-memory" => "max_memory",
        b"max-requests" => "max_requests",
        b"crash-limit" => "crash_limit",
        b"sched" => "sched",
        _ => flag,
    };
    Opt {
        flag,
        env,
        key,
        number,
    }
}

/// Values at and past every edge: zero, negative, the largest integers
/// and durations, overflowing units, empty, junk, escapes, huge.
fn extremes() -> Vec<String> {
    let mut v: Vec<String> = [
        "0",
        "-1",
        "",
        " ",
        "18446744073709551615",
        "18446744073709551616",
        "18446744073709551615s",
        "18446744073709551615ms",
        "9999999999999999999999h",
        "584942417355y",
        "1e400",
        "NaN",
        "inf",
        "0s",
        "0ms",
        "1ns",
        "100000",
        "17179869184G",
        "18446744073709551615T",
        "0.0000001K",
        "delay:18446744073709551615s",
        "delay:0",
        "delay:-1s",
        "\u{1b}[31mred",
        "é",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("9".repeat(5000));
    v.push("x".repeat(100_000));
    v
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs herd with `value` for `o` by `via`; checks exit 2 and one line.
fn check(o: &Opt, via: Via, value: &str) -> Result<(), String> {
    let dir = TempDir::new("range");
    let mut cmd = std::process::Command::new(herd_bin());
    cmd.arg("run")
        .env("HERD_RUNTIME_DIR", dir.path())
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .stdin(std::process::Stdio::null());
    for other in OPTS {
        cmd.env_remove(other.env);
    }
    match via {
        Via::Flag => {
            cmd.arg(format!("--{}={value}", o.flag));
        }
        Via::Env => {
            cmd.env(o.env, value);
        }
        Via::File => {
            let literal = if o.number && value.trim().parse::<i64>().is_ok() {
                value.trim().to_string()
            } else {
                toml_string(value)
            };
            let path = dir.path().join("herd.toml");
            std::fs::write(&path, format!("{} = {literal}\n", o.key)).unwrap();
            cmd.arg("--config").arg(&path);
        }
    }
    cmd.args(["--", "/nonexistent/herd-range-test"]);
    let out = cmd.output().map_err(|e| format!("cannot run herd: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let what = format!("{via:?} {}={value:.60?}", o.flag);
    if out.status.code() != Some(2) {
        return Err(format!("{what}: exit {:?}, stderr: {err}", out.status));
    }
    if err.trim_end().lines().count() != 1 || !err.starts_with("herd: ") {
        return Err(format!("{what}: not one line: {err}"));
    }
    if err.contains("panicked") {
        return Err(format!("{what}: {err}"));
    }
    Ok(())
}

#[test]
fn every_extreme_of_every_value_is_one_line_and_exit_2() {
    let mut cases = Vec::new();
    for i in 0..OPTS.len() {
        for v in extremes() {
            // Every value by flag; by variable and file for every other
            // option in turn, to keep the run short.
            cases.push((i, Via::Flag, v.clone()));
            if v.len() < 1000 {
                cases.push((i, if i % 2 == 0 { Via::Env } else { Via::File }, v));
            }
        }
    }
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((i, via, v)) = cases.get(n) else {
                    return;
                };
                if let Err(e) = check(&OPTS[*i], *via, v) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The values that were wrong before, each with the line it gets now.
#[test]
fn values_that_panicked_wrapped_or_stormed_are_refused() {
    for (flag, value, needle) in [
        (
            "grace",
            "18446744073709551615s",
            "--grace: \"18446744073709551615s\" is out of range",
        ),
        ("boot-timeout", "18446744073709551615s", "--boot-timeout"),
        ("max-age", "18446744073709551615s", "--max-age"),
        ("max-memory", "17179869184G", "--max-memory: invalid size"),
        ("max-memory", "0", "--max-memory: \"0\" is out of range"),
        ("max-requests", "0", "--max-requests: 0 is out of range"),
        ("max-age", "0", "--max-age: \"0\" is out of range"),
        (
            "heartbeat-timeout",
            "0",
            "--heartbeat-timeout: \"0\" is out of range",
        ),
        (
            "workers",
            "100000",
            "--workers: 100000 is out of range: use 1 to 1024",
        ),
        (
            "grace",
            "2d",
            "--grace: \"2d\" is out of range: use 0s to 1d",
        ),
    ] {
        let (code, err) = run_fails(
            &[
                "run",
                &format!("--{flag}={value}"),
                "--",
                "node",
                "/nonexistent/x.js",
            ],
            &[],
        );
        assert_eq!(code, 2, "--{flag}={value}: {err}");
        assert!(
            err.contains(needle),
            "--{flag}={value}: {needle:?} not in {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let (code, err) = run_fails(&["ctl", "scale", "100000"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("out of range"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any text, by any way in.
    #[test]
    fn random_text(i in 0..OPTS.len(), via in 0..3u8, value in "[^\u{0}]{0,40}") {
        let via = [Via::Flag, Via::Env, Via::File][via as usize];
        check(&OPTS[i], via, &value).map_err(TestCaseError::fail)?;
    }

    /// Numbers of any size with any unit.
    #[test]
    fn random_numbers_with_units(
        i in 0..OPTS.len(),
        via in 0..3u8,
        value in "-?[0-9]{1,25}(\\.[0-9]{1,5})?(ns|us|ms|s|m|h|d|w|y|K|M|G|T|KiB|B|x)?",
    ) {
        let via = [Via::Flag, Via::Env, Via::File][via as usize];
        check(&OPTS[i], via, &value).map_err(TestCaseError::fail)?;
    }
}
