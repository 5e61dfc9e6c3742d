//! What the supervisor needs of the core, as a small trait: the state
//! machine decides, a [`Core`] acts. The real one is the [`Primary`]; the
//! unit tests use a fake.

use std::time::Instant;

use crate::Signal;

use crate::primary::{Primary, WorkerHandle};
use crate::Error;

/// What the supervisor reads of a live worker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WorkerFacts {
    /// Past its warm-up.
    pub ready: bool,
    /// When it was forked.
    pub started: Instant,
    /// Asked to go (disconnect or kill, from either side).
    pub leaving: bool,
    /// Its last heartbeat: when, and the connections it had handled.
    pub heartbeat: Option<(Instant, u64)>,
    /// How it is doing, from its last heartbeat.
    pub health: Option<super::judge::WorkerHealth>,
    /// While not ready: what its readiness rule has seen, and what to try.
    pub unready: Option<String>,
    /// Taken out of rotation (drained).
    pub drained: bool,
}

/// How a kill counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Asked for: the exit is no crash (a hung worker whose successor is
    /// ready, a successor that is not wanted any more).
    Deliberate,
    /// A failure: the exit counts as a crash (a worker that never became
    /// ready, a hung worker with no successor), so it is respawned.
    AsCrash,
}

/// The core's calls the supervisor makes. Workers are named by id.
pub(crate) trait Core {
    /// Starts a worker.
    fn fork(&self) -> Result<u32, Error>;
    /// Starts a worker that will replace `old` (it takes over `old`'s
    /// sockets under `reuseport`).
    fn fork_successor(&self, old: u32) -> Result<u32, Error>;
    /// Asks a worker to disconnect gracefully.
    fn disconnect(&self, id: u32);
    /// Kills a worker with SIGKILL.
    fn kill(&self, id: u32, how: Kill);
    /// What a live worker is like; `None` once it is gone.
    fn worker(&self, id: u32) -> Option<WorkerFacts>;
    /// A live worker's resident memory in bytes.
    fn rss(&self, id: u32) -> Option<u64>;
    /// Takes a worker out of rotation (`true`) or puts it back.
    fn drain(&self, id: u32, on: bool) -> Result<(), Error>;
}

impl Core for Primary {
    fn fork(&self) -> Result<u32, Error> {
        Primary::fork(self).map(|w| w.id())
    }

    fn fork_successor(&self, old: u32) -> Result<u32, Error> {
        match Primary::worker(self, old) {
            Some(old) => Primary::fork_successor(self, &old).map(|w| w.id()),
            // It exited a moment ago (its exit is on its way to the
            // supervisor): its slot needs a worker all the same.
            None => Primary::fork(self).map(|w| w.id()),
        }
    }

    fn disconnect(&self, id: u32) {
        if let Some(w) = Primary::worker(self, id) {
            w.disconnect();
        }
    }

    fn kill(&self, id: u32, how: Kill) {
        if let Some(w) = Primary::worker(self, id) {
            match how {
                Kill::Deliberate => w.kill_with(Signal::SIGKILL),
                Kill::AsCrash => w.signal(Signal::SIGKILL),
            }
        }
    }

    fn worker(&self, id: u32) -> Option<WorkerFacts> {
        Primary::worker(self, id).map(|w| facts(self, &w))
    }

    fn rss(&self, id: u32) -> Option<u64> {
        let w = Primary::worker(self, id)?;
        crate::procfs::rss_bytes(crate::procfs::Proc::Pid(w.pid()))
    }

    fn drain(&self, id: u32, on: bool) -> Result<(), Error> {
        if on {
            Primary::drain(self, id)
        } else {
            Primary::undrain(self, id).map(|_| ())
        }
    }
}

fn facts(p: &Primary, w: &WorkerHandle) -> WorkerFacts {
    WorkerFacts {
        drained: p.is_drained(w.id()),
        ready: w.is_ready(),
        unready: w.unready_hint(),
        started: w.started(),
        leaving: w.exited_after_disconnect(),
        heartbeat: w.last_heartbeat().map(|(at, beat)| (at, beat.handled)),
        health: w.last_heartbeat().map(|(_, b)| super::judge::WorkerHealth {
            worker: w.id(),
            uptime: w.started().elapsed(),
            rss_bytes: b.rss,
            cpu_per_sec: b.cpu_per_sec,
            requests: b.requests,
            requests_per_sec: b.requests_per_sec,
            in_flight: b.in_flight,
            latency_p50_ms: b.latency_p50_ms,
            latency_p99_ms: b.latency_p99_ms,
            app: b.app,
        }),
    }
}
