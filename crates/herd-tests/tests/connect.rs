//! `Worker::connect` takes the inherited channel descriptor once per
//! process: a connect that fails half-way is never retried on a number
//! that may by then name another file.

mod common;

use std::process::Command;

#[test]
fn a_connect_retried_after_failing_half_way_does_not_take_the_descriptor_again() {
    // fd 9 opened on /dev/null by the shell, which then execs the fixture
    // as a would-be worker: /dev/null cannot be registered with tokio, so
    // the first connect fails after taking (and closing) descriptor 9.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 9</dev/null; exec "$0""#)
        .arg(env!("CARGO_BIN_EXE_fixture"))
        .env("HERD_CHANNEL_FD", "9")
        .env("HERD_WORKER_ID", "1")
        .env("FIXTURE_MODE", "connect_twice")
        .output()
        .expect("run the fixture");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(v["first"].is_string(), "the first connect fails: {v}");
    let second = v["second"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(second.contains("already taken"), "{second}");
    assert_eq!(
        v["reopened_still_open"], true,
        "the second connect took and closed the file now at fd 9: {v}"
    );
}
