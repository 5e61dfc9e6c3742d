//! Unix domain sockets: served by every policy (`reuseport` shares one
//! socket, as `shared` does), relative paths, permission bits, and the file
//! removed when the last worker leaves.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use common::*;
use serde_json::json;

/// Serves `listen` with two workers, checks that both the shared socket at
/// `path` and keep-alive work, then lets the workers leave one by one.
fn serve_then_leave(c: &mut Cluster, listen: &str, path: &Path) {
    let (ids, address) = c.serve(2, listen);
    assert_eq!(address, format!("unix:{}", path.display()));
    assert!(std::fs::metadata(path).unwrap().file_type().is_socket());
    for _ in 0..6 {
        let body = unix_http_get(path, "/").unwrap();
        assert!(ids.contains(&worker_of(&body)), "{body}");
    }
    let mut conn = KeepAlive::connect_unix(path).unwrap();
    let first = worker_of(&conn.get("/").unwrap());
    for _ in 0..3 {
        assert_eq!(worker_of(&conn.get("/").unwrap()), first);
    }
    drop(conn);

    // One worker leaves: the file stays and the other serves it.
    c.cmd(json!({"cmd": "disconnect", "worker": ids[0]}));
    c.expect_event("exit", ids[0]);
    assert!(path.exists());
    assert_eq!(worker_of(&unix_http_get(path, "/").unwrap()), ids[1]);

    // The last one leaves: the file goes.
    c.cmd(json!({"cmd": "disconnect", "worker": ids[1]}));
    c.expect_event("exit", ids[1]);
    assert!(
        wait_until(TIMEOUT, || !path.exists()),
        "{} is still there",
        path.display()
    );
}

fn a_unix_socket_is_served_and_its_file_removed_when_the_last_worker_leaves(policy: &str) {
    let dir = TempDir::new();
    let path = dir.path().join("app.sock");
    let mut c = Cluster::with_policy(policy);
    serve_then_leave(&mut c, &format!("unix:{}", path.display()), &path);
}
per_policy!(a_unix_socket_is_served_and_its_file_removed_when_the_last_worker_leaves:
    rr, lc, shared, reuseport);

fn a_relative_unix_socket_path_is_taken_from_the_workers_directory(policy: &str) {
    let dir = TempDir::new();
    let mut c = Cluster::start_with(Options::new().env("FIXTURE_POLICY", policy).cwd(dir.path()));
    serve_then_leave(&mut c, "unix:app.sock", &dir.path().join("app.sock"));
}
per_policy!(a_relative_unix_socket_path_is_taken_from_the_workers_directory:
    rr, lc, shared, reuseport);

#[test]
fn a_unix_socket_file_gets_the_permission_bits_asked_for() {
    let dir = TempDir::new();
    let path = dir.path().join("private.sock");
    let mut c = Cluster::start(&[("FIXTURE_LISTEN_OPTIONS", r#"{"mode": 384}"#)]);
    let (id, _) = c.fork_serving(&[("FIXTURE_LISTEN", &format!("unix:{}", path.display()))]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert_eq!(worker_of(&unix_http_get(&path, "/").unwrap()), id);
}
