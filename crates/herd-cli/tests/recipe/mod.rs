//! For tests/recipes.rs: a herd whose process tree is followed (every
//! process below it, by start time, so a reused pid does not count) and
//! killed on drop, and HTTP load from keep-alive and new-connection
//! clients that counts failures.

use super::common::*;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A herd and every process seen below it; on drop every worker's process
/// group (each worker leads one) and every process seen is killed, so a
/// failing test leaves nothing behind.
pub struct Tree {
    pub herd: Herd,
    /// Every process seen below herd or answering, with its start time
    /// (so that a pid reused by another process does not count).
    seen: BTreeMap<u32, u64>,
}

impl Tree {
    pub fn new(herd: Herd) -> Tree {
        Tree {
            herd,
            seen: BTreeMap::new(),
        }
    }

    /// Records every process now below herd.
    pub fn snapshot(&mut self) {
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if ancestors(pid).contains(&self.herd.pid) {
                self.record(pid);
            }
        }
    }

    pub fn record(&mut self, pid: u32) {
        if let Some(start) = started(pid) {
            self.seen.insert(pid, start);
        }
    }

    /// The herd worker `pid` is, or runs below.
    pub fn worker_of(&self, pid: u32) -> Option<u32> {
        let workers = self.herd.worker_pids();
        std::iter::once(pid)
            .chain(ancestors(pid))
            .find(|p| workers.contains(p))
    }

    /// The processes seen that still run (the same process: same start
    /// time), with their command lines.
    fn running(&self) -> Vec<(u32, String)> {
        self.seen
            .iter()
            .filter(|(pid, start)| alive(**pid) && started(**pid) == Some(**start))
            .map(|(pid, _)| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                (*pid, String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect()
    }

    /// SIGTERM to herd: it exits 0 and nothing it ran is left. Two kinds
    /// get a moment more: herd's guard (a forked herd that kills the
    /// workers if herd dies), which ends when it sees herd gone, and a
    /// process already exiting (its command line is gone) but not yet a
    /// zombie.
    pub fn stop(mut self) {
        self.snapshot();
        for pid in self.herd.worker_pids() {
            self.record(pid);
        }
        self.herd.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(self.herd.wait_exit(), 0, "{}", self.herd.dump());
        let herd = std::fs::canonicalize(herd_bin()).unwrap();
        let is_guard =
            |pid: u32| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == herd);
        let left: Vec<_> = self
            .running()
            .into_iter()
            .filter(|(pid, cmd)| !is_guard(*pid) && !cmd.is_empty())
            .collect();
        assert!(
            left.is_empty(),
            "still running after herd exited: {left:?}\n{}",
            self.herd.dump()
        );
        wait_until("herd's guard and exiting processes are gone", || {
            self.running().is_empty()
        });
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        for pid in self.herd.worker_pids() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for (pid, _) in self.running() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// The parent chain of `pid` (its parent first), from /proc.
fn ancestors(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut p = pid;
    while let Some(pp) = stat_field(p, 1) {
        let pp = pp as u32;
        if pp <= 1 || out.contains(&pp) {
            break;
        }
        out.push(pp);
        p = pp;
    }
    out
}

/// When the process started (clock ticks after boot).
fn started(pid: u32) -> Option<u64> {
    stat_field(pid, 19)
}

/// Field `n` of /proc/PID/stat after the command (0 is the state).
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

/// Clients that keep requesting until told to stop: three keep-alive
/// (reconnecting when told `Connection: close`), three opening a new
/// connection per request.
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<std::thread::JoinHandle<ClientReport>>,
}

/// One client's: keep-alive or not, served, failures, answering pids.
type ClientReport = (bool, u64, Vec<String>, BTreeSet<u32>);

pub struct LoadReport {
    /// Served, and the failures.
    pub keep_alive: (u64, Vec<String>),
    pub new_conn: (u64, Vec<String>),
    pub pids: BTreeSet<u32>,
}

impl Load {
    pub fn start(addr: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let clients = (0..6)
            .map(|i| {
                let keep_alive = i % 2 == 0;
                let (addr, stop, served) = (addr.to_string(), stop.clone(), served.clone());
                std::thread::spawn(move || {
                    let mut c = Client::new(&addr, keep_alive);
                    let (mut n, mut failed, mut pids) = (0u64, Vec::new(), BTreeSet::new());
                    while !stop.load(Ordering::Relaxed) {
                        match c.get("/pid") {
                            Ok(body) => {
                                n += 1;
                                served.fetch_add(1, Ordering::Relaxed);
                                if let Ok(pid) = body.trim().parse() {
                                    pids.insert(pid);
                                }
                            }
                            Err(e) => {
                                if std::env::var_os("HERD_TEST_VERBOSE").is_some() {
                                    eprintln!("| client failed: {e}");
                                }
                                failed.push(e)
                            }
                        }
                    }
                    (keep_alive, n, failed, pids)
                })
            })
            .collect();
        // Every client under way before the first reload.
        wait_until("100 requests are served", || {
            served.load(Ordering::Relaxed) >= 100
        });
        Load { stop, clients }
    }

    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut r = LoadReport {
            keep_alive: (0, Vec::new()),
            new_conn: (0, Vec::new()),
            pids: BTreeSet::new(),
        };
        for c in self.clients {
            let (keep_alive, n, failed, pids) = c.join().unwrap();
            let kind = if keep_alive {
                &mut r.keep_alive
            } else {
                &mut r.new_conn
            };
            kind.0 += n;
            kind.1.extend(failed);
            r.pids.extend(pids);
        }
        r
    }
}
