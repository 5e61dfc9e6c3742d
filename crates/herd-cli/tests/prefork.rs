//! Pre-fork servers under the default `--ready listening` (issue 13): a
//! master that holds the socket while the child it forked accepts (as
//! gunicorn does) is ready once the child accepts; a master that accepts
//! nothing but sends READY=1 is ready then; one that does neither fails its
//! boot timeout with a message that says what was seen and what to try.
//! The program is programs/prefork.py.

mod common;
use common::*;

/// A herd whose workers fork: on drop, every worker's process group (each
/// worker leads its own) is killed too, so no forked child outlives a
/// failing test.
struct Prefork(Herd);

impl Drop for Prefork {
    fn drop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        for pid in self.0.worker_pids() {
            let _ = killpg(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

fn start_prefork(mode: &str, extra: &[&str]) -> Prefork {
    let p = program("prefork.py");
    let mut args = vec!["-w", "1", "-l", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "python3", &p]);
    Prefork(start(&args, &[("PREFORK_MODE", mode)]))
}

#[test]
fn a_pre_fork_server_is_ready_under_listening_and_reloads() {
    let mut h = start_prefork("fork", &[]);
    let addr = h.0.address();
    h.0.ready(1);
    let master = h.0.worker_pids()[0];
    let served: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    assert_ne!(served, master, "the child serves, not the master");

    let out = h.0.ctl(&["reload"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "reload: {said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        h.0.dump()
    );
    assert!(said.contains("reloaded: 1 worker replaced"), "{said}");
    wait_until("the old master exits", || !alive(master));
    wait_until("the old child exits", || !alive(served));
    let now: u32 = curl(&addr, "/pid").trim().parse().unwrap();
    assert_ne!(now, served);
}

#[test]
fn a_ready_notice_counts_under_listening() {
    let mut h = start_prefork("notify", &[]);
    h.0.ready(1);
    let s: serde_json::Value =
        serde_json::from_slice(&h.0.ctl(&["status", "--json"]).stdout).unwrap();
    assert_eq!(s["ready_rule"], "listening", "{s}");
    assert_eq!(s["workers"][0]["state"], "ready", "{s}");
}

#[test]
fn a_program_that_never_accepts_fails_its_boot_timeout_saying_why() {
    let mut h = start_prefork("idle", &["--boot-timeout", "500ms"]);
    let line = h.0.expect("worker 1 was not ready within 500ms");
    assert!(
        line.contains("never accepted on its socket")
            && line.contains("it holds it")
            && line.contains("sent no READY=1")
            && line.contains("--ready notify"),
        "{line}"
    );
    assert!(!h.0.said("worker 1 ready"));
}
