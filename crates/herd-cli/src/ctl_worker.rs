//! `herd ctl drain|undrain|replace|profile|dump ID`: the control socket's
//! server end for one worker. Each is one library call (the supervisor's
//! `drain`, `undrain`, `replace`, the primary's `profile` and `dump`);
//! what it answers is the library's text.
//!
//! Under `herd run` every worker is a foreign program accepting on its own
//! socket, so `drain` is refused with the reason (the primary routes
//! nothing to it to stop); `replace`, `profile` (with perf) and `dump`
//! (with gdb) work for any program.

use crate::ctl::{done, fail, Reply};
use crate::run::Shared;

pub async fn drain(shared: &Shared, worker: u32) -> Reply {
    match shared.sup.drain(worker).await {
        Ok(()) => done(format!(
            "worker {worker} drained: out of rotation, serving its open connections (herd ctl undrain {worker} puts it back)"
        )),
        Err(e) => fail(e.to_string()),
    }
}

pub async fn undrain(shared: &Shared, worker: u32) -> Reply {
    match shared.sup.undrain(worker).await {
        Ok(()) => done(format!("worker {worker} back in rotation")),
        Err(e) => fail(e.to_string()),
    }
}

pub async fn replace(shared: &Shared, worker: u32) -> Reply {
    match shared.sup.replace(worker).await {
        Ok(r) => done(format!(
            "worker {} replaced by worker {} (slot {})",
            r.old, r.new, r.slot
        )),
        Err(e) => fail(e.to_string()),
    }
}

pub async fn profile(shared: &Shared, worker: u32, seconds: u32) -> Reply {
    tracing::info!(
        worker,
        "herd ctl profile: recording worker {worker} for {seconds}s"
    );
    match shared.sup.primary().profile(worker, seconds).await {
        Ok(svg) => done(svg),
        Err(e) => fail(format!("cannot profile worker {worker}: {e}")),
    }
}

pub async fn dump(shared: &Shared, worker: u32) -> Reply {
    tracing::info!(worker, "herd ctl dump: backtraces of worker {worker}");
    match shared.sup.primary().dump(worker).await {
        Ok(text) => done(text),
        Err(e) => fail(format!("cannot dump worker {worker}: {e}")),
    }
}
