//! The primary's dispatch thread (`herd-primary`: channels and accept
//! loops) runs in the SCHED_BATCH class, so that a new connection does not
//! preempt a busy worker; the workers keep the normal class.

mod common;

use common::*;

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// `(name, scheduling policy)` of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, u32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let dir = task.unwrap().path();
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            // After the command name (which may hold spaces), `policy` is
            // the 41st field of the line, the 39th after `) `.
            let rest = &stat[stat.rfind(") ").unwrap() + 2..];
            let policy = rest.split_whitespace().nth(38).unwrap().parse().unwrap();
            (comm.trim().to_string(), policy)
        })
        .collect()
}

/// The scheduling policy of each thread of `pid` named `name`.
fn thread_policies(pid: u32, name: &str) -> Vec<u32> {
    threads(pid)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, p)| p)
        .collect()
}

#[test]
fn the_dispatch_thread_runs_sched_batch_and_workers_the_normal_class() {
    let mut c = Cluster::with_policy("rr");
    let (id, _) = c.fork_serving(&[("FIXTURE_LISTEN", "127.0.0.1:0")]);
    assert_eq!(thread_policies(c.pid, "herd-primary"), [SCHED_BATCH]);
    let worker = threads(c.worker_pid(id));
    assert!(
        worker.iter().all(|(_, p)| *p == SCHED_OTHER),
        "worker threads' policies: {worker:?}"
    );
}

#[test]
fn herd_primary_sched_normal_keeps_the_dispatch_thread_in_the_normal_class() {
    let c = Cluster::start(&[("HERD_PRIMARY_SCHED", "normal")]);
    assert_eq!(thread_policies(c.pid, "herd-primary"), [SCHED_OTHER]);
}
