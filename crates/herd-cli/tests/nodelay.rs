//! TCP_NODELAY on the sockets herd binds (issue 13): Linux passes it from
//! a listening socket to the connections accepted on it, so a program that
//! never sets it (uvicorn given a descriptor, Python's socketserver) does
//! not wait on Nagle's algorithm for its small keep-alive responses.
//! programs/server.py reports its accepted connection's TCP_NODELAY at
//! /nodelay; `--no-tcp-nodelay` (or `no_tcp_nodelay = true` in the config
//! file) leaves it off.

mod common;
use common::*;

fn nodelay_seen(extra: &[&str], env: &[(&str, &str)]) -> String {
    let p = program("server.py");
    let mut args = vec!["-w", "1", "-l", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "python3", &p]);
    let mut h = start(&args, env);
    let addr = h.address();
    h.ready(1);
    curl(&addr, "/nodelay").trim().to_string()
}

#[test]
fn accepted_connections_have_tcp_nodelay_under_reuseport() {
    assert_ne!(nodelay_seen(&["--sched", "reuseport"], &[]), "0");
}

#[test]
fn accepted_connections_have_tcp_nodelay_under_shared() {
    assert_ne!(nodelay_seen(&["--sched", "shared"], &[]), "0");
}

#[test]
fn no_tcp_nodelay_leaves_it_off() {
    assert_eq!(nodelay_seen(&["--no-tcp-nodelay"], &[]), "0");
    assert_eq!(nodelay_seen(&[], &[("HERD_NO_TCP_NODELAY", "true")]), "0");
}

#[test]
fn the_config_file_can_leave_tcp_nodelay_off() {
    let dir = TempDir::new("nodelay-cfg");
    let file = dir.path().join("herd.toml");
    std::fs::write(&file, "no_tcp_nodelay = true\n").unwrap();
    assert_eq!(
        nodelay_seen(&["--config", file.to_str().unwrap()], &[]),
        "0"
    );
}
