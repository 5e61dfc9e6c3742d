//! Logs an operator can use: one line per happening, in words (no Debug
//! text, no internal names), durations as people write them, timestamps
//! with --log-timestamps, the worker's id as a field in JSON; log files
//! (combined or per worker) reopened on SIGUSR1 and rotated by size.

mod common;
use common::*;

use nix::sys::signal::Signal;
use std::path::Path;

/// `2026-12-02T00:14:42.165036Z ` at the start of `line`.
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 28
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b[27] == b' '
        && line[..4].bytes().all(|c| c.is_ascii_digit())
}

fn touch(dir: &Path, name: &str) {
    std::fs::write(dir.join(name), b"").unwrap();
}

/// `herd run OPTIONS -l 127.0.0.1:0 -- python3 life.py`, the life steered
/// through the files in `life` (see programs/life.py).
fn start_life(life: &TempDir, options: &[&str]) -> Herd {
    let p = program("life.py");
    let dir = life.path().to_string_lossy().into_owned();
    let mut args = options.to_vec();
    args.extend(["-l", "127.0.0.1:0", "--", "python3", &p]);
    start(&args, &[("LIFE_DIR", &dir)])
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Start two workers, a crash and its respawn, a reload, a crash loop that
/// trips the breaker, a stop: every line says one thing once, in words.
#[test]
fn a_whole_life_reads_cleanly_with_timestamps() {
    let life = TempDir::new("life");
    let mut h = start_life(
        &life,
        &["-w", "2", "--crash-limit", "2", "--log-timestamps"],
    );
    h.expect("cluster ready: 2 of 2");
    touch(life.path(), "crash-1");
    h.expect("worker 3 ready");
    h.expect("cluster ready: 2 of 2");
    h.signal(Signal::SIGHUP);
    h.expect("reload finished");
    h.wait_said("worker 5 ready");
    touch(life.path(), "loop");
    touch(life.path(), "crash-4");
    h.expect("not respawning");
    h.signal(Signal::SIGTERM);
    h.wait_exit();
    let dump = h.dump();
    let lines: Vec<&str> = dump.lines().collect();
    for l in &lines {
        assert!(has_timestamp(l), "no timestamp: {l}\n{dump}");
        let text = &l[28..];
        assert!(
            !text.contains('{') && !text.contains('}'),
            "Debug text: {l}"
        );
        for word in [
            "OnFailure",
            "0ns",
            "ready when notify",
            "ready when listening",
            "name unknown",
            "Started",
            "Replaced",
        ] {
            assert!(!text.contains(word), "{word:?} in {l}");
        }
        // 206.58432ms, 1.000123s: not how people write durations.
        let digits_after_point = text
            .split('.')
            .skip(1)
            .map(|rest| rest.bytes().take_while(|b| b.is_ascii_digit()).count())
            .max()
            .unwrap_or(0);
        if text.contains("ms") || text.contains("in ") {
            assert!(digits_after_point <= 1, "duration not in human form: {l}");
        }
    }
    // One line per death, per replacement, per breaker trip.
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    for w in [1, 4, 6] {
        assert_eq!(count(&format!("worker {w} died")), 1, "worker {w}:\n{dump}");
    }
    assert_eq!(count("replaced by worker 4"), 1, "{dump}");
    assert_eq!(count("replaced by worker 5"), 1, "{dump}");
    assert_eq!(count("reload finished"), 1, "{dump}");
    assert_eq!(count("without becoming ready"), 1, "{dump}");
    assert!(count("[w1] worker 1 serving") == 1, "{dump}");
}

/// In JSON, each of herd's lines about a worker has `"worker": N`.
#[test]
fn json_lines_about_a_worker_carry_its_id() {
    let life = TempDir::new("life");
    let mut h = start_life(&life, &["--log-format", "json", "-w", "1"]);
    h.expect("cluster ready");
    touch(life.path(), "crash-1");
    h.expect("worker 2 ready");
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    let dump = h.dump();
    let mut about = 0;
    for line in dump.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect(line);
        let Some(msg) = v["message"].as_str() else {
            continue;
        };
        if let Some(rest) = msg.strip_prefix("worker ") {
            let id: u64 = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(v["worker"], id, "{line}");
            about += 1;
        }
    }
    // started, ready, died, started, ready: all before the line waited
    // for (what follows may still be in the pipe).
    assert!(about >= 5, "{dump}");
}

/// logrotate's `create` mode: rename the file, SIGUSR1, and the next lines
/// go to a new file at PATH; the old one is whole.
#[test]
fn sigusr1_reopens_the_log_file() {
    let life = TempDir::new("life");
    let log = life.path().join("herd.log");
    let mut h = start_life(&life, &["--log-file", &log.to_string_lossy(), "-w", "1"]);
    wait_until("the log file says the cluster is ready", || {
        read(&log).contains("cluster ready") && read(&log).contains("[w1] worker 1 serving")
    });
    let old = life.path().join("herd.log.old");
    std::fs::rename(&log, &old).unwrap();
    h.signal(Signal::SIGUSR1);
    wait_until("herd reopened its log", || {
        read(&old).contains("reopening the log files")
    });
    touch(life.path(), "crash-1");
    wait_until("the new file has the respawn", || {
        read(&log).contains("worker 2 ready") && read(&log).contains("[w2] worker 2 serving")
    });
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    let old_text = read(&old);
    assert!(old_text.ends_with('\n'), "{old_text}");
    assert!(!old_text.contains("worker 2"), "{old_text}");
    assert!(read(&log).contains("stopped (exit code 0)"));
    // Nothing on stderr or stdout: the file has it all.
    assert!(!h.said("cluster ready"), "{}", h.dump());
}

/// `{worker}` in the path: a file per worker, herd's own lines in the one
/// for `herd`.
#[test]
fn a_log_file_per_worker() {
    let life = TempDir::new("life");
    let pattern = life.path().join("w-{worker}.log");
    let mut h = start_life(
        &life,
        &["--log-file", &pattern.to_string_lossy(), "-w", "2"],
    );
    let file = |w: &str| life.path().join(format!("w-{w}.log"));
    wait_until("every file has its lines", || {
        read(&file("1")).contains("[w1] worker 1 serving")
            && read(&file("2")).contains("[w2] worker 2 serving")
            && read(&file("herd")).contains("cluster ready: 2 of 2")
    });
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    assert!(
        !read(&file("herd")).contains("[w"),
        "{}",
        read(&file("herd"))
    );
    assert!(!read(&file("1")).contains("[w2]"));
}

/// Files stay under --log-max-size, and --log-keep of them are kept.
#[test]
fn log_files_rotate_by_size_and_keep_a_count() {
    let d = TempDir::new("rot");
    let log = d.path().join("herd.log");
    let writer = "import sys, time, signal\n\
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n\
for i in range(400): print('line %04d ' % i + 'x' * 90, flush=True)\n\
print('done', flush=True)\n\
time.sleep(600)\n";
    let mut h = start(
        &[
            "--log-file",
            &log.to_string_lossy(),
            "--log-max-size",
            "4K",
            "--log-keep",
            "3",
            "-w",
            "1",
            "--ready",
            "delay:0s",
            "--",
            "python3",
            "-c",
            writer,
        ],
        &[],
    );
    wait_until("the writer is done", || read(&log).contains("[w1] done"));
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    let mut names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("herd.log"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["herd.log", "herd.log.1", "herd.log.2", "herd.log.3"]
    );
    for n in &names {
        let text = read(&d.path().join(n));
        assert!(text.len() <= 4096, "{n}: {} bytes", text.len());
        assert!(text.ends_with('\n'), "{n} ends mid-line");
    }
    // The newest rotated file holds the lines just before the current one.
    assert!(read(&d.path().join("herd.log.1")).contains("line 03"));
}

#[test]
fn bad_log_options_are_one_clear_line() {
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["--log-file", "x.log", "--log-max-size", "lots"],
            2,
            "--log-max-size",
        ),
        (
            &["--log-file", "x.log", "--log-max-size", "1"],
            2,
            "use 4K to 1T",
        ),
        (
            &[
                "--log-file",
                "x.log",
                "--log-max-size",
                "4K",
                "--log-keep",
                "0",
            ],
            2,
            "--log-keep: 0 is out of range",
        ),
        (&["--log-max-size", "4K"], 2, "give --log-file"),
        (
            &["--log-file", "/nonexistent-herd-dir/h.log"],
            1,
            "cannot open log file /nonexistent-herd-dir/h.log",
        ),
    ];
    for (args, code, needle) in cases {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "true"]);
        let (got, err) = run_fails(&all, &[]);
        assert_eq!(got, code, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// A reopen that fails (PATH is now a directory) is a warning in the old
/// file, which herd keeps writing; the next SIGUSR1 that can open PATH
/// moves to it.
#[test]
fn a_failed_reopen_keeps_the_old_file() {
    let life = TempDir::new("life");
    let log = life.path().join("herd.log");
    let mut h = start_life(&life, &["--log-file", &log.to_string_lossy(), "-w", "1"]);
    wait_until("the cluster is ready", || {
        read(&log).contains("cluster ready")
    });
    let old = life.path().join("herd.log.old");
    std::fs::rename(&log, &old).unwrap();
    std::fs::create_dir(&log).unwrap();
    h.signal(Signal::SIGUSR1);
    wait_until("a warning naming the path", || {
        read(&old).contains(&format!(
            "warning: cannot reopen log file {}",
            log.display()
        ))
    });
    touch(life.path(), "crash-1");
    wait_until("the old file still gets lines", || {
        read(&old).contains("worker 2 ready")
    });
    std::fs::remove_dir(&log).unwrap();
    h.signal(Signal::SIGUSR1);
    wait_until("herd reopened", || {
        read(&old).matches("reopening the log files").count() == 2
    });
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
    assert!(
        read(&log).contains("stopped (exit code 0)"),
        "{}",
        read(&log)
    );
}

/// Without --log-file, SIGUSR1 (a logrotate rule left behind) does not
/// kill herd.
#[test]
fn sigusr1_without_a_log_file_is_harmless() {
    let p = program("server.py");
    let mut h = start(&["-w", "1", "-l", "127.0.0.1:0", "--", "python3", &p], &[]);
    h.expect("cluster ready");
    h.signal(Signal::SIGUSR1);
    h.expect("SIGUSR1: no --log-file to reopen");
    h.signal(Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0);
}
