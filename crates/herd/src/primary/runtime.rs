//! The primary's own threads: the one-thread runtime that runs its side of
//! every channel and socket, and the forker thread that every worker is
//! forked from.

use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use crate::channel::doorbell::{self, Doorbells, Spinner};
use crate::Error;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, as Go's
/// runtime does: connections waiting in workers' queues count against it
/// (the kernel's limit on descriptors in flight), and workers inherit it.
pub(super) fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => tracing::debug!(error = %e, "cannot raise the open-files limit"),
        },
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the open-files limit"),
    }
}

/// Starts the primary's own runtime: one thread, current-thread flavour,
/// that runs everything on the primary's side of the channels (readers,
/// writers, accept loops, process reaping), as Node's primary runs on one
/// event loop. Whatever runtime the application chose, a connection handed
/// to a worker then costs no wake-up of a second runtime thread; measured by
/// `bench/run.sh connrate`, that is a fifth of the primary's CPU per
/// connection. The application's own tasks (and the supervisor) stay on its
/// runtime: they talk to this one through thread-safe queues.
///
/// The thread runs in the `SCHED_BATCH` class (unless `HERD_PRIMARY_SCHED`
/// is `normal`): woken by a new connection while every CPU is busy, it does
/// not preempt a worker (or the client); it waits for its turn (a CPU that
/// frees, or the end of the running task's slice), and by then accepts and
/// hands off several connections for one wake-up. On an
/// idle CPU it runs at once, as before. Measured by `bench/run.sh connrate`
/// (docs/benchmarks.md): a third less CPU per connection, and more
/// requests per second with lower latency, as the workers are interrupted
/// less. Workers are forked from another thread and do not inherit it.
///
/// Before it sleeps, the thread watches its workers' doorbells for a few
/// microseconds (`crate::channel::doorbell`), so that a busy worker's next
/// frame finds it awake; the page is returned, to be handed to the workers.
pub(super) fn start_runtime() -> Result<(tokio::runtime::Handle, Option<Arc<Doorbells>>), Error> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    let batch = std::env::var("HERD_PRIMARY_SCHED").map_or(true, |v| v.trim() != "normal");
    let limit = doorbell::spin_limit();
    let bells = if limit.is_zero() {
        None
    } else {
        match Doorbells::new(limit) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                tracing::debug!(error = %e, "no page of doorbells: the primary's thread sleeps at once");
                None
            }
        }
    };
    let spinner = bells.clone().map(Spinner::new);
    std::thread::Builder::new()
        .name("herd-primary".into())
        .spawn(move || {
            if batch {
                if let Err(e) = crate::sys::set_thread_batch_scheduling() {
                    tracing::debug!(error = %e, "cannot put the herd-primary thread in SCHED_BATCH");
                }
            }
            let mut builder = tokio::runtime::Builder::new_current_thread();
            builder.enable_all();
            if let Some(spinner) = spinner {
                builder.on_thread_park(move || spinner.before_park());
            }
            let rt = match builder.build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(std::future::pending::<()>());
        })
        .map_err(|e| Error::io("cannot start the herd-primary thread", e))?;
    rx.recv()
        .map_err(|_| {
            Error::io(
                "the herd-primary thread died at start",
                std::io::Error::other("thread exited"),
            )
        })?
        .map_err(|e| Error::io("cannot build the primary's runtime", e))
        .map(|rt| (rt, bells))
}

type SpawnReply = std_mpsc::SyncSender<std::io::Result<tokio::process::Child>>;

/// Forks from one dedicated thread that lives as long as the process, so
/// that the children's parent-death signal (which fires when the forking
/// *thread* exits) only fires when the primary itself dies.
pub(super) struct Forker {
    tx: Mutex<std_mpsc::Sender<(std::process::Command, SpawnReply)>>,
}

impl Forker {
    pub(super) fn start(runtime: tokio::runtime::Handle) -> Result<Forker, Error> {
        let (tx, rx) = std_mpsc::channel::<(std::process::Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("herd-forker".into())
            .spawn(move || {
                let _guard = runtime.enter();
                for (cmd, reply) in rx {
                    let spawned =
                        super::tree::spawn_tracked(|| tokio::process::Command::from(cmd).spawn());
                    let _ = reply.send(spawned);
                }
                // The primary is gone but the process lives on: park forever,
                // keeping this thread (the children's parent) alive with it.
                loop {
                    std::thread::park();
                }
            })
            .map_err(|e| Error::io("cannot start the herd-forker thread", e))?;
        Ok(Forker { tx: Mutex::new(tx) })
    }

    /// Spawns `cmd` on the forker thread. Blocks the caller for the time of
    /// fork and exec (well under a millisecond), as Node's `fork` does.
    pub(super) fn spawn(
        &self,
        cmd: std::process::Command,
    ) -> std::io::Result<tokio::process::Child> {
        let gone = || std::io::Error::other("the herd-forker thread is gone");
        let (reply, rx) = std_mpsc::sync_channel(1);
        self.tx
            .lock()
            .unwrap()
            .send((cmd, reply))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }
}
