//! The primary-accepts half of `rr` and `lc`: one accept task per listen
//! hands connections to workers through their connection queues (see
//! `channel::conns`), and a [`Pick`] (the policy proper) chooses the worker.
//!
//! - Each worker has a window of [`WINDOW`] connections queued and not yet
//!   taken. The primary sends each connection once and closes its own
//!   descriptor; it keeps a descriptor of each worker's queue instead, so
//!   when a worker closes its listener, disconnects or dies, whatever it had
//!   not taken is taken back and goes to another worker. No connection is
//!   dropped while any worker is alive, and none is acknowledged.
//! - Under a burst, the task accepts until the kernel queue is empty, then
//!   queues each worker's share with one system call (`sendmmsg`: several
//!   descriptors, one message each, so that each is taken on its own).
//! - While no worker has room (none ready yet, or all saturated), or some
//!   connection accepted earlier still waits for one, the task stops
//!   accepting and connections wait in the kernel's queue. Room comes back
//!   when a worker joins, or (since workers do not report what they take)
//!   when a look at the saturated queues, every [`SATURATED_POLL`], finds
//!   one shorter; waiting connections are handed out then, by the accept
//!   task or, for connections taken back from a worker that left, by a
//!   retry task.
//! - EMFILE/ENFILE back off instead of spinning.
//! - One hand-off may accept on several sockets (each with its own accept
//!   task, added and stopped one by one): `reuseport` uses that to serve
//!   departed workers' sockets through the workers still here.
//! - The hand-off owns its listening sockets, not the accept tasks (which
//!   hold them only while they are polled): stopping a socket, or dropping
//!   the hand-off when its last worker leaves, closes the socket at once,
//!   so the next listen of that address (in the same pass of the primary's
//!   runtime, before an aborted task would be dropped) can bind it again.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Link, Share};
use crate::channel::conns;

mod accept;
use crate::channel::wire::ListenMode;
use accept::accept_loop;

/// Connections a worker may have queued and not taken.
pub const WINDOW: usize = 64;
/// Connections accepted in one go before distributing them.
const BATCH: usize = 256;
/// How often the queues are looked at while every worker's is full.
pub const SATURATED_POLL: Duration = Duration::from_millis(2);

/// One worker of a hand-off listen.
pub(crate) struct Slot {
    pub id: u32,
    /// The sending end of its connection queue.
    tx: OwnedFd,
    /// Our descriptor of the receiving end: to count what is queued, and to
    /// take it back.
    queue: OwnedFd,
    /// Accepting new connections (listening, not leaving).
    routing: bool,
    /// Its queue refused connections in the current distribution.
    refused: bool,
    /// At least as many as are queued: exact after [`Slot::recount`], then
    /// plus one per connection sent.
    queued: usize,
    /// Sent in all.
    handed: u64,
    /// Reported closed.
    closed: u64,
}

impl Slot {
    pub fn has_room(&self) -> bool {
        self.routing && !self.refused && self.queued < WINDOW
    }

    /// Open plus queued connections.
    pub fn load(&self) -> u64 {
        self.handed.saturating_sub(self.closed)
    }

    /// Counts the queue again if the estimate says it is full; `unsent`
    /// of the estimate are picked for it but not sent yet.
    fn recount(&mut self, unsent: usize) {
        if self.queued >= WINDOW {
            match conns::queued(self.queue.as_fd()) {
                Ok(n) => self.queued = n + unsent,
                Err(e) => {
                    tracing::warn!(worker = self.id, error = %e, "cannot count a connection queue")
                }
            }
        }
    }

    /// Takes back everything still queued, oldest first.
    fn take_back(&self) -> Vec<OwnedFd> {
        let mut back = Vec::new();
        loop {
            match conns::take(self.queue.as_fd()) {
                Ok(Some(fd)) => back.push(fd),
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // Left in the queue, they close with it.
                    let left = conns::queued(self.queue.as_fd()).unwrap_or(0);
                    crate::logging::warn_always(format_args!(
                        "cannot take back {left} connection(s) queued for worker {} ({e}): \
                         they are closed unanswered{}",
                        self.id,
                        if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                            "; the primary is at its open-files limit: raise `ulimit -n`"
                        } else {
                            ""
                        }
                    ));
                    break;
                }
            }
        }
        back
    }
}

/// A policy: which worker gets the next connection. Only slots with
/// [`Slot::has_room`] may be picked.
pub(crate) trait Pick: Send {
    fn pick(&mut self, slots: &[Slot]) -> Option<usize>;
    /// The policy's short name (`rr`, `lc`).
    fn name(&self) -> &'static str;
}

struct State {
    pick: Box<dyn Pick>,
    slots: Vec<Slot>,
    /// Accepted (or taken back), waiting for a worker with room.
    pending: VecDeque<OwnedFd>,
    /// A [`retry_pending`] task is running.
    retrying: bool,
    /// Connections handed to any worker since the start.
    handed_total: u64,
}

impl State {
    /// Whether some worker can take a connection (counting again the queues
    /// that looked full).
    fn has_room(&mut self) -> bool {
        self.slots.iter_mut().for_each(|s| s.recount(0));
        self.slots.iter().any(Slot::has_room)
    }

    fn slot(&mut self, id: u32) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    /// Whether some worker is routed to (so room will come back by itself
    /// as it takes from its queue).
    fn routing(&self) -> bool {
        self.slots.iter().any(|s| s.routing)
    }

    /// Connections are left waiting while workers are routed to but full:
    /// starts a task that hands them out as room comes back (workers do not
    /// say when they take from their queues). With no worker routed to,
    /// the next `listening` hands them out.
    fn retry_later(&mut self, state: &Arc<Mutex<State>>, room: &Arc<Notify>) {
        if self.pending.is_empty() || self.retrying || !self.routing() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.retrying = true;
            rt.spawn(retry_pending(Arc::downgrade(state), room.clone()));
        }
    }

    /// Sends pending connections to workers with room: each worker's share
    /// in one system call. A worker whose queue refuses (full, or broken)
    /// gets no more in this call; what it refused goes to the others.
    fn distribute(&mut self) {
        while !self.pending.is_empty() && self.has_room() {
            let refused = self.distribute_once();
            if refused.is_empty() {
                break;
            }
            for fd in refused.into_iter().rev() {
                self.pending.push_front(fd);
            }
        }
        // A queue that refused is tried again at the next distribution.
        self.slots.iter_mut().for_each(|s| s.refused = false);
    }

    /// One round of [`distribute`](Self::distribute); returns what was
    /// refused.
    fn distribute_once(&mut self) -> Vec<OwnedFd> {
        let mut shares: Vec<Vec<OwnedFd>> = self.slots.iter().map(|_| Vec::new()).collect();
        while let Some(fd) = self.pending.pop_front() {
            let Some(i) = self.pick.pick(&self.slots) else {
                self.pending.push_front(fd);
                break;
            };
            let slot = &mut self.slots[i];
            shares[i].push(fd);
            slot.queued += 1;
            // Count again now rather than skip it on the estimate: `rr`
            // stays exact.
            slot.recount(shares[i].len());
        }
        let mut refused = Vec::new();
        for (slot, share) in self.slots.iter_mut().zip(shares) {
            let mut sent = 0;
            while sent < share.len() {
                let fds: Vec<BorrowedFd> = share[sent..].iter().map(|f| f.as_fd()).collect();
                match conns::send(slot.tx.as_fd(), &fds) {
                    Ok(n) => sent += n,
                    Err(e) => {
                        warn_send_failed(slot.id, &e);
                        break;
                    }
                }
            }
            slot.handed += sent as u64;
            self.handed_total += sent as u64;
            if sent < share.len() {
                slot.refused = true;
                slot.queued = WINDOW;
                refused.extend(share.into_iter().skip(sent));
            }
            // Ours close here; the queues hold what was sent.
        }
        refused
    }
}

/// A socket a hand-off accepts on, and its accept task.
struct Accepting {
    /// The only lasting owner of the socket: its task holds a `Weak`.
    _socket: Arc<AsyncFd<OwnedFd>>,
    task: JoinHandle<()>,
}

impl Drop for Accepting {
    /// Stops the task; the socket closes with `_socket`, now.
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) struct Handoff {
    state: Arc<Mutex<State>>,
    room: Arc<Notify>,
    /// One socket and accept task each, by the id `add_socket` gave.
    tasks: HashMap<u64, Accepting>,
    next_task: u64,
    count_closes: bool,
}

impl Handoff {
    /// A hand-off accepting on `socket`.
    pub fn start(socket: Socket, pick: Box<dyn Pick>, count_closes: bool) -> io::Result<Handoff> {
        let mut h = Handoff::new(pick, count_closes);
        h.add_socket(socket)?;
        Ok(h)
    }

    /// A hand-off with no socket yet (see [`add_socket`](Self::add_socket)).
    pub fn new(pick: Box<dyn Pick>, count_closes: bool) -> Handoff {
        Handoff {
            state: Arc::new(Mutex::new(State {
                pick,
                slots: Vec::new(),
                pending: VecDeque::new(),
                retrying: false,
                handed_total: 0,
            })),
            room: Arc::new(Notify::new()),
            tasks: HashMap::new(),
            next_task: 0,
            count_closes,
        }
    }

    /// Accepts on `socket` too; returns an id for
    /// [`stop_socket`](Self::stop_socket).
    pub fn add_socket(&mut self, socket: Socket) -> io::Result<u64> {
        let socket = Arc::new(crate::sys::async_fd(OwnedFd::from(socket))?);
        let task = tokio::spawn(accept_loop(
            Arc::downgrade(&socket),
            self.state.clone(),
            self.room.clone(),
        ));
        self.next_task += 1;
        self.tasks.insert(
            self.next_task,
            Accepting {
                _socket: socket,
                task,
            },
        );
        Ok(self.next_task)
    }

    /// Stops accepting on a socket and closes this hand-off's copy of it,
    /// before returning. Connections already accepted from it are still
    /// delivered: the task only stops at an await point, where it holds
    /// none of them.
    pub fn stop_socket(&mut self, id: u64) {
        self.tasks.remove(&id);
    }

    /// Gives `worker` a connection queue (or its existing one again) and
    /// returns the worker's end of it.
    pub fn add_queue(&mut self, worker: &Link) -> io::Result<OwnedFd> {
        let mut st = self.state.lock().unwrap();
        if let Some(s) = st.slot(worker.id) {
            return s.queue.try_clone();
        }
        let (tx, queue) = conns::pair()?;
        let theirs = queue.try_clone()?;
        st.slots.push(Slot {
            id: worker.id,
            tx,
            queue,
            routing: false,
            refused: false,
            queued: 0,
            handed: 0,
            closed: 0,
        });
        Ok(theirs)
    }

    fn changed(&self, mut st: std::sync::MutexGuard<'_, State>) {
        st.distribute();
        st.retry_later(&self.state, &self.room);
        let room = st.pending.is_empty() && st.has_room();
        drop(st);
        if room {
            // Every accept task waits on this (each enables its `Notified`
            // before checking for room, so none misses a wake-up).
            self.room.notify_waiters();
        }
    }
}

impl Share for Handoff {
    fn add(&mut self, worker: &Link) -> io::Result<(ListenMode, Vec<OwnedFd>)> {
        Ok((ListenMode::Handoff, vec![self.add_queue(worker)?]))
    }

    fn listening(&mut self, worker: &Link) {
        let mut st = self.state.lock().unwrap();
        if let Some(s) = st.slot(worker.id) {
            s.routing = true;
        }
        self.changed(st);
    }

    fn stop(&mut self, worker: u32) {
        if let Some(s) = self.state.lock().unwrap().slot(worker) {
            s.routing = false;
        }
    }

    fn can_drain(&self) -> bool {
        true
    }

    /// Not routed to; what its queue holds goes to the others now (it
    /// stays connected, and its queue with it, for `listening` to route
    /// to it again).
    fn drain(&mut self, worker: u32) {
        let mut st = self.state.lock().unwrap();
        let Some(s) = st.slot(worker) else {
            return;
        };
        s.routing = false;
        let back = s.take_back();
        s.queued = 0;
        for fd in back.into_iter().rev() {
            st.pending.push_front(fd);
        }
        self.changed(st);
    }

    fn name(&self) -> &'static str {
        self.state.lock().unwrap().pick.name()
    }

    fn remove(&mut self, worker: u32) {
        let mut st = self.state.lock().unwrap();
        let Some(i) = st.slots.iter().position(|s| s.id == worker) else {
            return;
        };
        let slot = st.slots.remove(i);
        // What the worker did not take goes first, in the order it came.
        let back = slot.take_back();
        if !back.is_empty() {
            tracing::debug!(
                worker,
                n = back.len(),
                "re-routing connections the worker did not take"
            );
        }
        for fd in back.into_iter().rev() {
            st.pending.push_front(fd);
        }
        self.changed(st);
    }

    fn closed(&mut self, worker: u32, n: u32) {
        if let Some(s) = self.state.lock().unwrap().slot(worker) {
            s.closed += u64::from(n);
        }
    }

    fn stats(&self) -> super::ShareStats {
        let st = self.state.lock().unwrap();
        super::ShareStats {
            handed_off: st.handed_total,
            waiting: st.pending.len() as u64,
            queued: st
                .slots
                .iter()
                .map(|s| conns::queued(s.queue.as_fd()).unwrap_or(0) as u64)
                .sum(),
        }
    }

    fn count_closes(&self) -> bool {
        self.count_closes
    }
}

/// Logs why a queue refused connections: at once for the first failure of
/// each kind, at debug level after (a full buffer is only debug).
fn warn_send_failed(worker: u32, e: &io::Error) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TOO_MANY_REFS: AtomicBool = AtomicBool::new(false);
    static OTHER: AtomicBool = AtomicBool::new(false);
    if e.kind() == io::ErrorKind::WouldBlock {
        tracing::debug!(worker, "connection queue full");
    } else if e.raw_os_error() == Some(libc::ETOOMANYREFS) {
        if !TOO_MANY_REFS.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                worker,
                "cannot queue connections: too many descriptors in flight for this user \
                 (raise the hard open-files limit, `ulimit -Hn`); they wait in the primary"
            );
        }
    } else if !OTHER.swap(true, Ordering::Relaxed) {
        tracing::warn!(worker, error = %e, "cannot queue connections");
    } else {
        tracing::debug!(worker, error = %e, "cannot queue connections");
    }
}

/// Hands out waiting connections every [`SATURATED_POLL`] until none is
/// left (or no worker is routed to).
async fn retry_pending(state: Weak<Mutex<State>>, room: Arc<Notify>) {
    loop {
        tokio::time::sleep(SATURATED_POLL).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut st = state.lock().unwrap();
        st.distribute();
        if st.pending.is_empty() || !st.routing() {
            st.retrying = false;
            drop(st);
            room.notify_waiters();
            return;
        }
    }
}
