//! A worker cannot make its primary do what the worker could not: a
//! worker that dropped from root to `nobody` asks its root primary to
//! listen. A Unix socket is created (and a stale one replaced, and its
//! mode set) with the worker's credentials, so a private root directory
//! stays closed to it; a mode beyond permission bits is refused; a port
//! below the unprivileged start needs the worker's own
//! CAP_NET_BIND_SERVICE. Runs as root (it must drop privileges).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;
use serde_json::Value;

const NOBODY: &str = "65534:65534";

/// Forks a `nobody` worker listening on `addr` with `options`; returns
/// its id and either its address or its listen error (message, kind).
fn listen_as_nobody(
    c: &mut Cluster,
    addr: &str,
    options: &str,
) -> (u32, Result<String, (String, String)>) {
    let id = c.fork(&[
        ("FIXTURE_SETUID", NOBODY),
        ("FIXTURE_LISTEN", addr),
        ("FIXTURE_LISTEN_OPTIONS", options),
    ]);
    let v = c.expect(|v: &Value| {
        v["worker"] == id
            && (v["event"] == "listening"
                || (v["event"] == "message" && v["message"].get("listen_error").is_some()))
    });
    if v["event"] == "listening" {
        return (id, Ok(v["address"].as_str().unwrap().to_string()));
    }
    let m = &v["message"];
    (
        id,
        Err((
            m["listen_error"].as_str().unwrap().to_string(),
            m["kind"].as_str().unwrap().to_string(),
        )),
    )
}

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipped: needs root, to drop a worker's privileges");
        return true;
    }
    false
}

#[test]
fn a_unix_socket_in_a_directory_closed_to_the_worker_is_refused() {
    if skip_unless_root() {
        return;
    }
    let dir = TempDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A stale socket file of root's, nobody listening on it.
    let stale = private.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());

    let mut c = Cluster::with_policy("rr");
    let wanted = private.join("app.sock");
    let (_, r) = listen_as_nobody(
        &mut c,
        &format!("unix:{}", wanted.display()),
        r#"{"mode":511}"#,
    );
    let (message, kind) = r.expect_err("nobody got a socket in root's 0700 directory");
    assert_eq!(kind, "PermissionDenied", "{message}");
    assert!(!wanted.exists(), "the socket was created");

    let (_, r) = listen_as_nobody(&mut c, &format!("unix:{}", stale.display()), "{}");
    let (message, kind) = r.expect_err("nobody replaced root's stale socket");
    assert_eq!(kind, "PermissionDenied", "{message}");
    let meta = std::fs::symlink_metadata(&stale).expect("the stale socket was removed");
    assert_eq!(meta.uid(), 0, "the stale socket changed hands");
}

#[test]
fn a_unix_socket_where_the_worker_may_write_is_the_workers() {
    if skip_unless_root() {
        return;
    }
    let dir = TempDir::new();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::os::unix::fs::chown(&open, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = open.join("app.sock");

    let mut c = Cluster::with_policy("rr");
    let (id, r) = listen_as_nobody(
        &mut c,
        &format!("unix:{}", path.display()),
        r#"{"mode":438}"#,
    );
    r.unwrap_or_else(|e| panic!("nobody's own directory: {e:?}"));
    c.expect_event("ready", id);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "not the worker's file"
    );
    assert_eq!(meta.mode() & 0o7777, 0o666);
    assert_eq!(worker_of(&unix_http_get(&path, "/").unwrap()), id);

    // Bits beyond permissions are refused.
    let (_, r) = listen_as_nobody(
        &mut c,
        &format!("unix:{}", open.join("suid.sock").display()),
        r#"{"mode":2559}"#,
    );
    let (message, kind) = r.expect_err("a mode of 0o4777 was accepted");
    assert_eq!(kind, "InvalidInput", "{message}");
}

#[test]
fn a_privileged_port_needs_the_workers_own_capability() {
    if skip_unless_root() {
        return;
    }
    if unprivileged_port_start() <= 80 {
        eprintln!("skipped: port 80 is not privileged here");
        return;
    }
    let mut c = Cluster::with_policy("rr");
    let (_, r) = listen_as_nobody(&mut c, "127.0.0.1:80", "{}");
    let (message, kind) = r.expect_err("nobody got port 80 through its root primary");
    assert_eq!(kind, "PermissionDenied", "{message}");
    assert!(message.contains("CAP_NET_BIND_SERVICE"), "{message}");
}
