//! A worker's whole process tree belongs to its worker.
//!
//! - Each worker runs in its own process group (its pid is the group's
//!   id): stop and kill signals go to the group, so a wrapper
//!   (`sh -c 'node server.js; true'`) and what it started get them alike,
//!   and Ctrl-C in a terminal reaches the primary only (which then stops
//!   the workers as it would for SIGINT).
//! - The primary is a child subreaper: a worker's descendant whose parent
//!   dies is adopted by the primary, not by init, and is reaped here (only
//!   processes that are not a worker tokio waits for, and not in the
//!   primary's own group, where the application's own children live).
//! - A worker is gone when its whole group is: after the worker's process
//!   exits, the rest of its group is killed at once if the exit was a crash
//!   or a kill, and waited for (until whoever asked the worker to stop
//!   kills it past its grace) if the worker was leaving.
//! - The guard (`sys::spawn_guard`), a forked child that outlives the
//!   primary, kills every worker's group when the primary dies, even by
//!   SIGKILL.
//!
//! A descendant that leaves its worker's group (setsid, setpgid) is out of
//! the group's signals; once adopted by the primary it is still killed when
//! its worker ends, if its environment names that worker
//! (`HERD_WORKER_ID`), and not if the primary is killed first.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::procfs;
use crate::Signal;

/// What the process does for every primary in it.
struct Tree {
    /// Pids of live workers' own processes: tokio reaps those, never the
    /// orphan reaper.
    leaders: Mutex<BTreeSet<u32>>,
    /// The guard's pid and the write end of its pipe.
    guard: Option<(u32, Mutex<std::fs::File>)>,
    /// The primary's own process group (the application's children).
    own_pgid: u32,
}

static TREE: OnceLock<Tree> = OnceLock::new();

/// Makes this process a subreaper with a guard and an orphan reaper (once
/// per process; the reaper runs on `rt`).
pub(super) fn init(rt: &tokio::runtime::Handle) {
    TREE.get_or_init(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!(error = %e, "cannot become a child subreaper: a worker's orphaned descendants go to init");
        }
        let guard = match crate::sys::spawn_guard() {
            Ok((pid, fd)) => Some((pid, Mutex::new(std::fs::File::from(fd)))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the process-tree guard: if the primary is killed, workers' descendants may outlive it");
                None
            }
        };
        rt.spawn(reap_orphans());
        Tree {
            leaders: Mutex::new(BTreeSet::new()),
            guard,
            own_pgid: nix::unistd::getpgrp().as_raw() as u32,
        }
    });
}

impl Tree {
    fn tell_guard(&self, v: i32) {
        if let Some((_, pipe)) = &self.guard {
            if let Err(e) = pipe.lock().unwrap().write_all(&v.to_le_bytes()) {
                tracing::warn!(error = %e, "the process-tree guard is gone");
            }
        }
    }

    fn guard_pid(&self) -> Option<u32> {
        self.guard.as_ref().map(|(p, _)| *p)
    }
}

/// Starts a worker with `spawn` and records its group, so that the reaper
/// leaves its process to tokio and the guard knows its group.
pub(super) fn spawn_tracked(
    spawn: impl FnOnce() -> std::io::Result<tokio::process::Child>,
) -> std::io::Result<tokio::process::Child> {
    let Some(t) = TREE.get() else {
        return spawn();
    };
    let mut leaders = t.leaders.lock().unwrap();
    let child = spawn()?;
    if let Some(pid) = child.id() {
        leaders.insert(pid);
        t.tell_guard(pid as i32);
    }
    Ok(child)
}

/// Sends `signal` to the process group of the worker whose process is
/// `pid` (to the process alone if it left its group and is still this
/// primary's child, so never to a process that took a reaped pid).
pub(crate) fn signal_group(pid: u32, signal: Signal) {
    let sig = signal.to_nix();
    if killpg(Pid::from_raw(pid as i32), sig) == Err(Errno::ESRCH)
        && procfs::place(pid).is_some_and(|p| p.ppid == std::process::id())
    {
        let _ = kill(Pid::from_raw(pid as i32), sig);
    }
}

/// What happens to the rest of a worker's group once its process exited.
pub(super) enum Rest {
    /// A crash or a kill: SIGKILL now.
    Kill,
    /// It was asked to stop and its group was signalled: wait (whoever
    /// asked kills it past the grace).
    Wait,
    /// It left by itself, or by a message: this signal, and SIGKILL after
    /// `bound` if given.
    Stop(Signal, Option<Duration>),
}

/// How long the group of a worker that left by itself may take.
pub(super) const LEFT_BY_ITSELF: Duration = Duration::from_secs(30);

/// The worker `id`, whose process `pid` was reaped: returns once nothing of
/// its group is left (and its adopted descendants that left the group
/// are killed).
pub(super) async fn end_group(pid: u32, id: u32, rest: Rest) {
    let Some(t) = TREE.get() else { return };
    t.leaders.lock().unwrap().remove(&pid);
    let group = Pid::from_raw(pid as i32);
    let mut kill_at = match rest {
        Rest::Kill => Some(Instant::now()),
        Rest::Wait => None,
        Rest::Stop(sig, bound) => {
            let _ = killpg(group, sig.to_nix());
            bound.map(|b| Instant::now() + b)
        }
    };
    let start = Instant::now();
    let mut killed: Option<Instant> = None;
    let mut polls = 0u32;
    while killpg(group, None) != Err(Errno::ESRCH) {
        if kill_at.is_some_and(|at| at <= Instant::now()) {
            if killed.is_none() {
                tracing::debug!(
                    worker = id,
                    "killing what is left of the worker's process group"
                );
            }
            let _ = killpg(group, nix::sys::signal::Signal::SIGKILL);
            killed.get_or_insert_with(Instant::now);
            kill_at = None;
        }
        if killed.is_some_and(|k| k.elapsed() > Duration::from_secs(5)) {
            tracing::warn!(worker = id, "processes of the worker's group survive SIGKILL (uninterruptible?); not waiting for them");
            break;
        }
        // Zombies in the group are ours once adopted: the reaper takes
        // them on SIGCHLD; now and then a look takes what a missed one left.
        polls += 1;
        if polls % 10 == 0 {
            reap_once(t);
        }
        let every = if start.elapsed() < Duration::from_secs(1) {
            20
        } else {
            100
        };
        tokio::time::sleep(Duration::from_millis(every)).await;
    }
    sweep_escaped(t, id);
    t.tell_guard(-(pid as i32));
}

/// Kills adopted descendants of worker `id` that left its group.
fn sweep_escaped(t: &Tree, id: u32) {
    let leaders = t.leaders.lock().unwrap();
    let id = id.to_string();
    for (pid, place) in procfs::children(std::process::id()) {
        if place.state == 'Z'
            || leaders.contains(&pid)
            || leaders.contains(&place.pgid)
            || t.guard_pid() == Some(pid)
            || place.pgid == t.own_pgid
        {
            continue;
        }
        if procfs::env_var(pid, crate::ENV_WORKER_ID).as_deref() == Some(id.as_str()) {
            tracing::debug!(worker = %id, pid, "killing a descendant that left the worker's group");
            let _ = kill(Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Reaps adopted processes that ended, on every SIGCHLD.
async fn reap_orphans() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut chld = match signal(SignalKind::child()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGCHLD: adopted processes are reaped only when a worker ends");
            return;
        }
    };
    while chld.recv().await.is_some() {
        if let Some(t) = TREE.get() {
            reap_once(t);
        }
    }
}

/// Reaps every zombie child that is neither a worker tokio waits for nor
/// in the primary's own group.
fn reap_once(t: &Tree) {
    let leaders = t.leaders.lock().unwrap();
    for (pid, place) in procfs::children(std::process::id()) {
        if place.state != 'Z' || leaders.contains(&pid) || place.pgid == t.own_pgid {
            continue;
        }
        if t.guard_pid() == Some(pid) {
            tracing::warn!("the process-tree guard died: if the primary is killed, workers' descendants may outlive it");
        }
        if waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)).is_ok() {
            tracing::debug!(pid, "reaped an adopted process");
        }
    }
}
