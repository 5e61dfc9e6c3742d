//! For the integration tests only: sets the cfg `herd_privileged_port_80`
//! when port 80 is privileged here (net.ipv4.ip_unprivileged_port_start
//! above 80; kernels before 4.11 have no such setting: ports below 1024 are
//! privileged). The test that needs a refused bind carries
//! `#[cfg_attr(not(herd_privileged_port_80), ignore = "...")]`, so where
//! anyone may bind port 80 the runner reports it as skipped, with the
//! reason, instead of passing it untested. The herd binary ignores the cfg.
//!
//! Why at build time: CI (scripts/test.sh) builds and runs the tests on
//! the same machine, so what holds when this script runs holds when the
//! tests run; the test checks again and fails, not passes, if not. After
//! changing the setting, set HERD_TESTS_RECHECK to anything new (e.g.
//! `HERD_TESTS_RECHECK=$(date +%s)`) for Cargo to run this script again.
//! HERD_TESTS_ASSUME_PORT_80_FREE (any non-empty value but `0`) makes it act
//! as if anyone may bind port 80, to see the skipping.
//!
//! The same detection, with more conditions, is in crates/herd-tests/build.rs.
//!
//! Programs some tests drive, each a cfg when found (on PATH, or in
//! /usr/sbin and /sbin, where Debian puts haproxy), its path in a
//! `HERD_TEST_<NAME>` variable for the test: `herd_haproxy` (haproxy and
//! wrk, for tests/haproxy.rs), `herd_promtool` and `herd_systemd_analyze`
//! (to check the README's Prometheus configuration and systemd unit).
//! `herd_chromium` (the dashboard's browser test) and `herd_redis`
//! (redis-server). scripts/test.sh installs them when missing; set
//! HERD_TESTS_RECHECK to something new after installing one by hand.
//! `herd_go` (go, for the Go recipe of tests/recipes.rs) it does not
//! install: Debian's golang-go is large, and the test is skipped without.
//!
//! `herd_root`: the build (so, in CI, the tests) runs as root, which
//! `herd run --user` needs.
//!
//! `herd_test_deps`: the pinned PyPI and npm packages of scripts/deps.sh
//! (see `test_deps` below).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    build_info();
    println!("cargo:rerun-if-env-changed=HERD_TESTS_RECHECK");
    println!("cargo:rerun-if-env-changed=HERD_TESTS_ASSUME_PORT_80_FREE");
    println!("cargo:rustc-check-cfg=cfg(herd_privileged_port_80)");
    let assume_free = std::env::var_os("HERD_TESTS_ASSUME_PORT_80_FREE")
        .is_some_and(|v| !v.is_empty() && v != "0");
    let start: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if !assume_free && start > 80 {
        println!("cargo:rustc-cfg=herd_privileged_port_80");
    }
    let haproxy = find_program("haproxy");
    let wrk = find_program("wrk");
    cfg("herd_haproxy", haproxy.is_some() && wrk.is_some());
    cfg("herd_promtool", find_program("promtool").is_some());
    cfg(
        "herd_systemd_analyze",
        find_program("systemd-analyze").is_some(),
    );
    cfg("herd_chromium", find_program("chromium").is_some());
    cfg("herd_redis", find_program("redis-server").is_some());
    cfg("herd_go", find_program("go").is_some());
    // Root: `herd run --user` needs it (tests/user_notify.rs).
    cfg(
        "herd_root",
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0,
    );
    test_deps();
}

/// The pinned third-party packages scripts/deps.sh installs into .deps/
/// (uvicorn, gunicorn, aiohttp and redis-py in .deps/python; express,
/// fastify, ioredis, node-redis and playwright-core in
/// .deps/node/node_modules): cfg `herd_test_deps` when its stamp is there,
/// with HERD_TEST_PYTHONPATH and HERD_TEST_NODE_PATH for the tests.
fn test_deps() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps");
    println!("cargo:rerun-if-changed={}", root.join("stamp").display());
    let there = root.join("stamp").is_file();
    cfg("herd_test_deps", there);
    if there {
        let root = root.canonicalize().unwrap_or(root);
        println!(
            "cargo:rustc-env=HERD_TEST_PYTHONPATH={}",
            root.join("python").display()
        );
        println!(
            "cargo:rustc-env=HERD_TEST_NODE_PATH={}",
            root.join("node/node_modules").display()
        );
    }
}

/// Declares `name` (so the unexpected-cfg lint knows it) and sets it when
/// `holds`.
fn cfg(name: &str, holds: bool) {
    println!("cargo:rustc-check-cfg=cfg({name})");
    if holds {
        println!("cargo:rustc-cfg={name}");
    }
}

/// The program's path (on PATH, else in /usr/sbin or /sbin), also given to
/// the tests as HERD_TEST_<NAME> (`systemd-analyze`: HERD_TEST_SYSTEMD_ANALYZE).
fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())?;
    let var = name.to_ascii_uppercase().replace('-', "_");
    println!("cargo:rustc-env=HERD_TEST_{var}={}", found.display());
    Some(found)
}

/// For the monitor's /deps: the git commit and the compiler, as
/// HERD_GIT_COMMIT and HERD_RUSTC (left unset where they cannot be found).
fn build_info() {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    if let Some(v) = run(&rustc, &["--version"]) {
        println!("cargo:rustc-env=HERD_RUSTC={v}");
    }
    if let Some(commit) = run("git", &["rev-parse", "HEAD"]) {
        println!("cargo:rustc-env=HERD_GIT_COMMIT={commit}");
    }
    // Again when the checked-out commit changes.
    let git = std::path::Path::new("../../.git");
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    if let Some(r) = std::fs::read_to_string(git.join("HEAD"))
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
    {
        println!("cargo:rerun-if-changed=../../.git/{r}");
    }
}
