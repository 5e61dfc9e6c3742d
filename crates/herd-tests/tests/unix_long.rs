//! Unix socket paths longer than a socket address holds (107 bytes): a
//! short relative path in a deep directory is bound (through its
//! directory), served and removed like any other; a file name that cannot
//! fit either way is refused with a message saying so.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

/// A directory under `base` in which `app.sock` has an absolute path of
/// exactly `len` bytes.
fn deep_dir(base: &Path, len: usize) -> PathBuf {
    let fixed = base.as_os_str().len() + "/".len() + "/app.sock".len();
    assert!(
        fixed < len && len - fixed <= 255,
        "{} is too long",
        base.display()
    );
    let dir = base.join("d".repeat(len - fixed));
    std::fs::create_dir_all(&dir).unwrap();
    assert_eq!(dir.join("app.sock").as_os_str().len(), len);
    dir
}

/// A GET over the socket `name` in `dir`, which the test too can only
/// reach through the directory: the path is too long to connect to.
fn get_through(dir: &Path, name: &str) -> std::io::Result<String> {
    let d = std::fs::File::open(dir)?;
    let through = PathBuf::from(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()));
    unix_http_get(&through, "/")
}

fn a_long_unix_path_is_bound_through_its_short_relative_form_and_served(policy: &str) {
    let top = TempDir::new();
    let dir = deep_dir(top.path(), 120);
    let path = dir.join("app.sock");
    assert!(
        std::os::unix::net::UnixListener::bind(&path).is_err(),
        "the test needs a path too long to bind by name"
    );
    let mut c = Cluster::start_with(Options::new().env("FIXTURE_POLICY", policy).cwd(&dir));
    let (ids, address) = c.serve(2, "unix:app.sock");
    assert_eq!(address, format!("unix:{}", path.display()));
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    for _ in 0..6 {
        let body = get_through(&dir, "app.sock").unwrap();
        assert!(ids.contains(&worker_of(&body)), "{body}");
    }

    // One worker leaves: the file stays and the other serves it.
    c.cmd(json!({"cmd": "disconnect", "worker": ids[0]}));
    c.expect_event("exit", ids[0]);
    assert!(path.exists());
    assert_eq!(worker_of(&get_through(&dir, "app.sock").unwrap()), ids[1]);

    // The last one leaves: the file goes, as for a short path.
    c.cmd(json!({"cmd": "disconnect", "worker": ids[1]}));
    c.expect_event("exit", ids[1]);
    assert!(
        wait_until(TIMEOUT, || !path.exists()),
        "{} is still there",
        path.display()
    );
}
per_policy!(a_long_unix_path_is_bound_through_its_short_relative_form_and_served:
    rr, lc, shared, reuseport);

#[test]
fn a_stale_socket_file_at_a_long_path_is_replaced() {
    let top = TempDir::new();
    let dir = deep_dir(top.path(), 150);
    let path = dir.join("app.sock");
    // A socket file nobody listens on, as a crashed server leaves.
    let d = std::fs::File::open(&dir).unwrap();
    let through = format!("/proc/self/fd/{}/app.sock", d.as_raw_fd());
    drop(std::os::unix::net::UnixListener::bind(&through).unwrap());
    assert!(std::fs::symlink_metadata(&path).is_ok());

    let mut c = Cluster::start(&[]);
    let (id, address) = c.fork_serving(&[("FIXTURE_LISTEN", &format!("unix:{}", path.display()))]);
    assert_eq!(address, format!("unix:{}", path.display()));
    assert_eq!(worker_of(&get_through(&dir, "app.sock").unwrap()), id);
}

#[test]
fn a_unix_socket_file_name_too_long_for_any_form_is_refused_clearly() {
    let top = TempDir::new();
    let name = "n".repeat(100);
    let path = top.path().join(&name);
    let listen = format!("unix:{}", path.display());
    let mut c = Cluster::start(&[]);
    let id = c.fork(&[("FIXTURE_LISTEN", &listen)]);
    let v = c.expect(|v| v["event"] == "message" && v["worker"] == id);
    let m = &v["message"];
    assert_eq!(m["addr"], listen.as_str(), "{v}");
    let error = m["listen_error"].as_str().unwrap();
    for part in [
        listen.as_str(),
        "file name is 100 bytes",
        "choose a shorter file name",
    ] {
        assert!(error.contains(part), "{part:?} not in {error}");
    }
    assert!(!path.exists());
}

/// Forks a worker that drops to `nobody` and listens on `path`; returns its
/// id and its address, or its listen error's kind.
fn listen_as_nobody(c: &mut Cluster, path: &Path) -> (u32, Result<String, String>) {
    let id = c.fork(&[
        ("FIXTURE_SETUID", "65534:65534"),
        ("FIXTURE_LISTEN", &format!("unix:{}", path.display())),
    ]);
    let v = c.expect(|v: &Value| {
        v["worker"] == id
            && (v["event"] == "listening"
                || (v["event"] == "message" && v["message"].get("listen_error").is_some()))
    });
    match v["address"].as_str() {
        Some(a) => (id, Ok(a.to_string())),
        None => (id, Err(v["message"]["kind"].as_str().unwrap().to_string())),
    }
}

#[test]
fn a_long_unix_path_is_bound_with_the_workers_credentials() {
    if !is_root() {
        eprintln!("skipped: needs root, to drop a worker's privileges");
        return;
    }
    let top = TempDir::new();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = deep_dir(top.path(), 130);
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut c = Cluster::with_policy("rr");

    // Root's 0700 directory stays closed to a `nobody` worker.
    let (_, r) = listen_as_nobody(&mut c, &private.join("app.sock"));
    assert_eq!(r.unwrap_err(), "PermissionDenied");
    assert!(!private.join("app.sock").exists(), "the socket was created");

    // In nobody's own directory, the file is nobody's.
    let open = top
        .path()
        .join("o".repeat(130 - top.path().as_os_str().len() - 10));
    std::fs::create_dir(&open).unwrap();
    std::os::unix::fs::chown(&open, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = open.join("app.sock");
    assert!(path.as_os_str().len() > 107);
    let (id, r) = listen_as_nobody(&mut c, &path);
    assert_eq!(r.unwrap(), format!("unix:{}", path.display()));
    c.expect_event("ready", id);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "not the worker's file"
    );
    assert_eq!(worker_of(&get_through(&open, "app.sock").unwrap()), id);
}
