//! Detects what some integration tests need and says so in a cfg, so the
//! tests that cannot run here carry `#[cfg_attr(not(herd_...), ignore =
//! "...")]` and the runner (cargo-nextest, `cargo test`) reports them as
//! skipped, with the reason, instead of passing them untested:
//!
//! - `herd_root`: the effective uid is 0 (read from /proc/self/status).
//!   Loading the eBPF placement program of `reuseport` needs it.
//! - `herd_ipv6`: a TCP socket binds the IPv6 loopback, `[::1]:0`.
//! - `herd_privileged_port_80`: port 80 is privileged, that is
//!   net.ipv4.ip_unprivileged_port_start is above 80 (kernels before 4.11
//!   have no such setting: ports below 1024 are privileged).
//!
//! Why at build time: CI (scripts/test.sh) builds and runs the tests on
//! the same machine as the same user, so what holds when this script runs
//! holds when the tests run. A test that finds its condition gone at run
//! time (tests built as root, run as another user) fails saying so; it does
//! not pass. Cargo runs this script again when USER changes (su, sudo and
//! runuser set it) or when HERD_TESTS_RECHECK does: set it to anything new,
//! e.g. `HERD_TESTS_RECHECK=$(date +%s)`, after changing the machine (an
//! IPv6 loopback added, the sysctl changed).
//!
//! To see the skipping without another user or machine, make this script
//! act as if a condition did not hold (any non-empty value but `0`):
//! HERD_TESTS_ASSUME_NOT_ROOT, HERD_TESTS_ASSUME_NO_IPV6,
//! HERD_TESTS_ASSUME_PORT_80_FREE. E.g.
//! `HERD_TESTS_ASSUME_NOT_ROOT=1 cargo nextest run -p herd-tests`.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "USER",
        "HERD_TESTS_RECHECK",
        "HERD_TESTS_ASSUME_NOT_ROOT",
        "HERD_TESTS_ASSUME_NO_IPV6",
        "HERD_TESTS_ASSUME_PORT_80_FREE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    cfg(
        "herd_root",
        !assumed("HERD_TESTS_ASSUME_NOT_ROOT") && is_root(),
    );
    cfg(
        "herd_ipv6",
        !assumed("HERD_TESTS_ASSUME_NO_IPV6") && have_ipv6(),
    );
    // promtool (Debian's prometheus package) checks /metrics.
    cfg("herd_promtool", on_path("promtool"));
    // gdb reads a worker's backtraces (herd ctl dump, /workers/ID/dump).
    cfg("herd_gdb", on_path("gdb"));
    // redis-server (Debian's package) for the cache on Redis (tests/cache_redis.rs).
    cfg("herd_redis", on_path("redis-server"));
    cfg(
        "herd_privileged_port_80",
        !assumed("HERD_TESTS_ASSUME_PORT_80_FREE") && unprivileged_port_start() > 80,
    );
}

/// Declares `name` (so the unexpected-cfg lint knows it) and sets it when
/// `holds`.
fn cfg(name: &str, holds: bool) {
    println!("cargo:rustc-check-cfg=cfg({name})");
    if holds {
        println!("cargo:rustc-cfg={name}");
    }
}

/// Whether the test-only variable `var` asks to act as if a condition did
/// not hold.
fn assumed(var: &str) -> bool {
    env::var_os(var).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether the effective uid is 0: the `Uid:` line of /proc/self/status
/// holds the real, effective, saved and filesystem uids.
fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

fn have_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

/// The lowest port anyone may bind.
fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Whether `program` is on PATH.
fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
