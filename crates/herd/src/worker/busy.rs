//! What keeps a disconnecting worker alive: open connections, accepts under
//! way and [`Hold`]s.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Counts what keeps a disconnecting worker alive: open connections and
/// [`Hold`]s.
#[derive(Default)]
pub(crate) struct Busy {
    /// Open connections and holds.
    pub(crate) count: AtomicUsize,
    /// Accepts under way (see [`Accepting`]).
    accepting: AtomicUsize,
    /// Connections accepted since start.
    pub(crate) handled: AtomicU64,
    idle: Notify,
}

impl Busy {
    /// Resolves once nothing is open and no accept is under way.
    pub(crate) async fn idle(&self) {
        loop {
            let n = self.idle.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.count.load(Ordering::SeqCst) == 0 && self.accepting.load(Ordering::SeqCst) == 0
            {
                return;
            }
            n.await;
        }
    }
}

/// An accept under way: from before a connection can come out of the
/// socket (or the hand-off queue) until it is wrapped in a `Connection`
/// with its [`Hold`]. A disconnect waits for it as for a connection; it is
/// not counted as one (the heartbeat's `open`).
pub(crate) struct Accepting {
    busy: Arc<Busy>,
}

impl Accepting {
    pub(crate) fn new(busy: Arc<Busy>) -> Accepting {
        busy.accepting.fetch_add(1, Ordering::SeqCst);
        Accepting { busy }
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        if self.busy.accepting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.busy.idle.notify_waiters();
        }
    }
}

/// Keeps a disconnecting worker alive until dropped; see [`Worker::hold`].
pub struct Hold {
    busy: Arc<Busy>,
}

impl Hold {
    pub(crate) fn new(busy: Arc<Busy>) -> Hold {
        busy.count.fetch_add(1, Ordering::SeqCst);
        Hold { busy }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.busy.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.busy.idle.notify_waiters();
        }
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hold")
    }
}
