//! A hand-off listener's connection queue (see `channel::conns`), and what
//! a worker says when it cannot take from it for want of a descriptor.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::listener::ListenerShared;
use crate::channel::conns;

/// Our connection queue for this listen (see `channel::conns`): what the
/// primary accepted and handed to us.
pub(super) struct Queue(AsyncFd<OwnedFd>);

impl Queue {
    pub(super) fn new(fd: OwnedFd) -> io::Result<Queue> {
        crate::sys::async_fd(fd).map(Queue)
    }

    /// Takes the next connection; `None` once the primary closed the queue,
    /// or our listener was closed. Cancel safe: a connection is taken only
    /// in the poll that returns it.
    ///
    /// # Errors
    /// EMFILE (or ENFILE) while this process has no descriptor free: the
    /// connection stays queued, for a later call (or another worker).
    pub(super) async fn take(&self, shared: &ListenerShared) -> io::Result<Option<OwnedFd>> {
        loop {
            let mut guard = self.0.readable().await?;
            let got = guard.try_io(|fd| {
                // Under the lock that `close` holds to tell the primary we
                // stopped: after that the primary takes back what is queued,
                // and one reader at a time may take (see `conns::take`).
                let closed = shared.closed.lock().unwrap();
                if *closed {
                    return Ok(None);
                }
                conns::take(fd.as_fd())
            });
            match got {
                Ok(Err(e)) if at_fd_limit(&e) => {
                    warn_at_fd_limit("waits in this worker's connection queue");
                    return Err(e);
                }
                Ok(got) => return got,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Whether an error says this process has no descriptor free.
pub(super) fn at_fd_limit(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Counts a connection this worker could not take for want of a
/// descriptor, and says so (at most every 10 s, even without HERD_LOG):
/// nothing is lost, but the connection waits.
pub(super) fn warn_at_fd_limit(where_it_waits: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static TOTAL: AtomicU64 = AtomicU64::new(0);
    static EVERY: crate::logging::Every = crate::logging::Every::new(Duration::from_secs(10));
    let total = TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(n) = EVERY.tick() {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or_else(|_| "unknown".to_string(), |(soft, _)| soft.to_string());
        crate::logging::warn_always(format_args!(
            "this worker is at its open-files limit ({limit}): a connection could not be \
             taken {n} time(s) since the last warning ({total} in all); it {where_it_waits} \
             until a descriptor is free, and is not lost. Raise the limit (`ulimit -n`, \
             systemd's LimitNOFILE=) or hold fewer connections per worker"
        ));
    }
}

/// Counts and reports a connection that was taken but cannot be served.
pub(super) fn warn_lost(e: &io::Error) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LOST: AtomicU64 = AtomicU64::new(0);
    let lost = LOST.fetch_add(1, Ordering::Relaxed) + 1;
    crate::logging::warn_always(format_args!(
        "a connection handed to this worker was closed unanswered: it cannot be \
         used ({e}); {lost} lost in all"
    ));
}
