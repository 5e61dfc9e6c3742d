//! herd never changes a directory it was not given to own: a shared
//! runtime directory (mode 1777, as /tmp) keeps its mode, herd works in its
//! own private `herd-UID` inside it; a directory others may write in
//! without the sticky bit is refused with one clear line.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn ctl_status(dir: &std::path::Path) -> std::process::Output {
    Command::new(herd_bin())
        .args(["ctl", "status"])
        .env("HERD_RUNTIME_DIR", dir)
        .output()
        .unwrap()
}

#[test]
fn a_shared_sticky_directory_keeps_its_mode() {
    let base = TempDir::new("rt-sticky");
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();

    // herd ctl with nothing running: exit 3, the directory untouched.
    let o = ctl_status(&shared);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        mode(&shared),
        0o1777,
        "herd ctl changed the shared directory"
    );

    // herd run works in its own private subdirectory.
    let p = program("server.js");
    let mut h = start_in(
        TempDir(shared.clone()),
        &["-w", "1", "-l", "127.0.0.1:0", "--", "node", &p],
        &[],
    );
    h.ready(1);
    let uid = nix::unistd::getuid().as_raw();
    let own = shared.join(format!("herd-{uid}"));
    assert_eq!(
        mode(&shared),
        0o1777,
        "herd run changed the shared directory"
    );
    assert_eq!(mode(&own), 0o700);
    assert_eq!(std::fs::metadata(&own).unwrap().uid(), uid);
    assert!(
        own.join("herd.sock").exists(),
        "no control socket in {own:?}"
    );
    let o = h.ctl(&["status"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    h.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(h.wait_exit(), 0, "{}", h.dump());
    assert_eq!(mode(&shared), 0o1777);
    drop(h);
    drop(base);
}

#[test]
fn a_directory_others_may_write_in_is_refused() {
    let base = TempDir::new("rt-open");
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = ctl_status(&open);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("runtime directory") && err.contains("0777") && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(mode(&open), 0o777, "herd changed the directory");

    let (code, err) = run_fails_in(&open, &["run", "--backoff", "10ms", "--", "false"]);
    assert_ne!(code, 0);
    assert!(err.contains("runtime directory"), "{err}");
    assert_eq!(mode(&open), 0o777, "herd run changed the directory");
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
}

/// Someone else's `herd-UID` in a shared directory is refused, not used.
#[test]
fn a_subdirectory_planted_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to plant a directory owned by another user");
        return;
    }
    let base = TempDir::new("rt-plant");
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.join("herd-0");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let o = ctl_status(&shared);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("owned by uid 65534"), "{err}");
}

fn run_fails_in(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(herd_bin())
        .args(args)
        .env("HERD_RUNTIME_DIR", dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
