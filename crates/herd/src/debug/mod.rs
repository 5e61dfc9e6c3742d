//! Debugging one live worker: a CPU profile as a flamegraph, and every
//! thread's backtrace. What `herd ctl profile`, `herd ctl dump` and the
//! monitor's `/workers/{id}/profile` and `/workers/{id}/dump` call.
//!
//! | what | a herd-aware worker | a foreign worker (any program) |
//! |---|---|---|
//! | [`Primary::profile`] | samples itself in-process (herd's cargo feature `profile`, the `pprof` crate), asked over the channel (`profile` / `profiled` frames); built without it, it is profiled as a foreign one | `perf record -g` of its whole process tree, folded and drawn by the `inferno` crate (herd's feature `perf`), where `perf` is installed and permitted |
//! | [`Primary::dump`] | `gdb -batch -ex 'thread apply all bt'` on each process of its tree, bounded in time | the same |
//!
//! Each is bounded: a profile lasts 1 to [`MAX_PROFILE_SECONDS`] seconds
//! and its SVG at most [`MAX_SVG`] bytes; a dump takes at most
//! [`DUMP_TIMEOUT`] per process (a hung gdb is killed) and at most
//! [`MAX_DUMP`] bytes of text. Where a tool is missing or refused, the
//! call answers [`Error::NotAvailable`] saying which and what to do.
//! tokio's task dump needs a runtime built with `tokio_unstable`: a dump
//! says it is not available.
//!
//! A debugger stops the worker while it reads it, and a profile costs it
//! CPU: drain the worker first ([`Supervisor::drain`](crate::Supervisor::drain)),
//! then reach it through its open keep-alive connections.
//!
//! ```no_run
//! # async fn demo(primary: herd::Primary) -> Result<(), Box<dyn std::error::Error>> {
//! let svg = primary.profile(1, 5).await?;
//! std::fs::write("flame.svg", svg)?;
//! print!("{}", primary.dump(1).await?);
//! # Ok(()) }
//! ```

mod dump;
#[cfg(feature = "profile")]
mod inproc;
mod perf;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::channel::wire::Control;
use crate::{Error, Primary, Worker};

/// The longest profile asked at once, in seconds.
pub const MAX_PROFILE_SECONDS: u32 = 60;
/// The largest flamegraph SVG returned, in bytes.
pub const MAX_SVG: usize = 8 << 20;
/// How long one process's backtraces may take (gdb reading a large debug
/// build's symbols on a loaded machine takes tens of seconds).
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest dump returned, in bytes (the rest is cut, and says so).
pub const MAX_DUMP: usize = 4 << 20;

/// Processes of a worker's tree that are profiled or dumped at most.
const MAX_PROCESSES: usize = 32;

/// Why a worker built without the `profile` feature cannot sample itself
/// (the primary then profiles it from outside).
const NO_INPROC: &str = "this worker was built without herd's `profile` feature";

/// The profiles asked of one worker, waiting for its answers.
#[derive(Default)]
pub(crate) struct Asked {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Result<String, String>>>>,
}

impl Asked {
    fn ask(&self) -> Result<(u64, oneshot::Receiver<Result<String, String>>), Error> {
        let mut w = self.waiting.lock().unwrap();
        if !w.is_empty() {
            return Err(Error::Busy(
                "a profile of this worker is under way already; ask again when it ends".into(),
            ));
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        w.insert(seq, tx);
        Ok((seq, rx))
    }

    fn forget(&self, seq: u64) {
        self.waiting.lock().unwrap().remove(&seq);
    }

    /// The worker's `profiled`; one nobody waits for is dropped.
    pub(crate) fn answer(&self, seq: u64, svg: Option<String>, error: Option<String>) {
        if let Some(tx) = self.waiting.lock().unwrap().remove(&seq) {
            let answer = match (svg, error) {
                (Some(svg), None) => Ok(svg),
                (_, Some(e)) => Err(e),
                (None, None) => Err("the worker answered with neither SVG nor error".into()),
            };
            let _ = tx.send(answer);
        }
    }
}

/// Checks a profile's length.
fn seconds_ok(seconds: u32) -> Result<Duration, Error> {
    if (1..=MAX_PROFILE_SECONDS).contains(&seconds) {
        Ok(Duration::from_secs(seconds.into()))
    } else {
        Err(Error::Unsupported(format!(
            "a profile lasts 1 to {MAX_PROFILE_SECONDS} seconds, not {seconds}"
        )))
    }
}

impl Primary {
    /// Records a CPU profile of worker `id` for `seconds` (1 to
    /// [`MAX_PROFILE_SECONDS`]) and returns it as a flamegraph SVG (see the
    /// [module docs](self) for how).
    ///
    /// # Errors
    /// [`Error::NoSuchWorker`]; [`Error::Unsupported`] for a length out of
    /// bounds; [`Error::Busy`] while another profile of it runs;
    /// [`Error::NotAvailable`] where neither way works (the text says
    /// why).
    pub async fn profile(&self, id: u32, seconds: u32) -> Result<String, Error> {
        let length = seconds_ok(seconds)?;
        let w = self.worker(id).ok_or(Error::NoSuchWorker { id })?;
        let inproc = if w.is_foreign() {
            None
        } else {
            let asked = &w.shared.profiles;
            let (seq, rx) = asked.ask()?;
            w.control(&Control::Profile { seq, seconds }, Vec::new());
            let answer = tokio::time::timeout(length + Duration::from_secs(15), rx).await;
            asked.forget(seq);
            match answer {
                Ok(Ok(Ok(svg))) => return Ok(svg),
                Ok(Ok(Err(e))) if e.contains(NO_INPROC) => Some(e),
                Ok(Ok(Err(e))) => return Err(Error::NotAvailable(format!("worker {id}: {e}"))),
                Ok(Err(_)) => return Err(Error::WorkerGone { id }),
                Err(_) => {
                    return Err(Error::NotAvailable(format!(
                        "worker {id} did not answer its profile within {}s",
                        length.as_secs() + 15
                    )))
                }
            }
        };
        let pids = tree(w.pid());
        perf::profile(&pids, length)
            .await
            .map_err(|e| match (e, inproc) {
                (Error::NotAvailable(why), Some(inproc)) => {
                    Error::NotAvailable(format!("{inproc}, and from outside: {why}"))
                }
                (e, _) => e,
            })
    }

    /// Every thread's backtrace in worker `id`'s process tree, as text
    /// (see the [module docs](self)).
    ///
    /// # Errors
    /// [`Error::NoSuchWorker`]; [`Error::NotAvailable`] when gdb is
    /// missing or may not attach.
    pub async fn dump(&self, id: u32) -> Result<String, Error> {
        let w = self.worker(id).ok_or(Error::NoSuchWorker { id })?;
        let pids = tree(w.pid());
        dump::dump(id, &pids).await
    }
}

/// `pid` and its descendants (at most [`MAX_PROCESSES`]).
fn tree(pid: u32) -> Vec<u32> {
    let below = crate::procfs::trees(&[pid])
        .remove(&pid)
        .unwrap_or_default();
    std::iter::once(pid)
        .chain(below)
        .take(MAX_PROCESSES)
        .collect()
}

/// In a worker: the primary's `profile`, answered with `profiled` once
/// the profile is done (on the worker's runtime; the read loop goes on).
pub(crate) fn answer_profile(worker: &Worker, seq: u64, seconds: u32) {
    let worker = worker.clone();
    tokio::spawn(async move {
        let result = match seconds_ok(seconds) {
            Ok(length) => self_profile(length).await,
            Err(e) => Err(e.to_string()),
        };
        let (svg, error) = match result {
            Ok(svg) if svg.len() > MAX_SVG => (
                None,
                Some(format!(
                    "the flamegraph is {} bytes, over the {MAX_SVG}-byte bound: profile for fewer seconds",
                    svg.len()
                )),
            ),
            Ok(svg) => (Some(svg), None),
            Err(e) => (None, Some(e)),
        };
        if let Err(e) = worker.control(&Control::Profiled { seq, svg, error }) {
            let _ = worker.control(&Control::Profiled {
                seq,
                svg: None,
                error: Some(format!("cannot send the flamegraph: {e}")),
            });
        }
    });
}

#[cfg(feature = "profile")]
async fn self_profile(length: Duration) -> Result<String, String> {
    inproc::profile(length).await
}

#[cfg(not(feature = "profile"))]
async fn self_profile(_length: Duration) -> Result<String, String> {
    Err(NO_INPROC.to_string())
}
