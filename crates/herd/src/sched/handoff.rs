//! The primary-accepts half of `rr` and `lc`: one accept task per listen
//! hands connections to workers over their channels, and a [`Pick`] (the
//! policy proper) chooses the worker.
//!
//! - Each worker has a window of [`WINDOW`] connections in flight (sent, not
//!   yet taken by its application). The primary keeps its own descriptor of
//!   each until the worker acknowledges it, so when a worker closes its
//!   listener, disconnects or dies, whatever it had not taken goes to another
//!   worker. No connection is dropped while any worker is alive.
//! - Under a burst, the task accepts until the kernel queue is empty and
//!   sends each worker its share in one frame (up to 64 descriptors).
//! - While no worker has room (none ready yet, or all saturated), the task
//!   stops accepting and connections wait in the kernel's queue.
//! - EMFILE/ENFILE back off instead of spinning.
//! - One hand-off may accept on several sockets (each with its own accept
//!   task, added and stopped one by one): `reuseport` uses that to serve
//!   departed workers' sockets through the workers still here.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Link, Share};
use crate::channel::wire::{Control, ListenMode, MAX_FDS};
use crate::channel::SendFd;

/// Connections a worker may have in flight before it acknowledges some.
pub const WINDOW: usize = 64;
/// Connections accepted in one go before distributing them.
const BATCH: usize = 256;

/// One worker of a hand-off listen.
pub(crate) struct Slot {
    pub id: u32,
    link: Link,
    /// Accepting new connections (listening, not leaving).
    routing: bool,
    /// Sent, not yet acknowledged; the primary's copies, oldest first.
    inflight: VecDeque<Arc<OwnedFd>>,
    /// Acknowledged and not yet reported closed.
    open: u64,
}

impl Slot {
    pub fn has_room(&self) -> bool {
        self.routing && self.inflight.len() < WINDOW
    }

    /// Open plus in-flight connections.
    pub fn load(&self) -> u64 {
        self.open + self.inflight.len() as u64
    }
}

/// A policy: which worker gets the next connection. Only slots with
/// [`Slot::has_room`] may be picked.
pub(crate) trait Pick: Send {
    fn pick(&mut self, slots: &[Slot]) -> Option<usize>;
}

struct State {
    handle: u32,
    pick: Box<dyn Pick>,
    slots: Vec<Slot>,
    pending: VecDeque<OwnedFd>,
}

impl State {
    fn has_room(&self) -> bool {
        self.slots.iter().any(Slot::has_room)
    }

    fn slot(&mut self, id: u32) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    /// Sends pending connections to workers with room, one frame per worker
    /// per 64 descriptors.
    fn distribute(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut batches: Vec<Vec<SendFd>> = (0..self.slots.len()).map(|_| Vec::new()).collect();
        while let Some(fd) = self.pending.pop_front() {
            let Some(i) = self.pick.pick(&self.slots) else {
                self.pending.push_front(fd);
                break;
            };
            let fd = Arc::new(fd);
            self.slots[i].inflight.push_back(fd.clone());
            batches[i].push(SendFd::Shared(fd));
        }
        let msg = Control::Conns {
            handle: self.handle,
        };
        for (slot, mut fds) in self.slots.iter().zip(batches) {
            while !fds.is_empty() {
                let rest = fds.split_off(fds.len().min(MAX_FDS));
                // A closed channel means the worker is going: its in-flight
                // connections are re-queued when it is removed.
                let _ = slot.link.outbox.control(&msg, fds);
                fds = rest;
            }
        }
    }
}

pub(crate) struct Handoff {
    state: Arc<Mutex<State>>,
    room: Arc<Notify>,
    /// One accept task per socket, by the id `add_socket` gave.
    tasks: HashMap<u64, JoinHandle<()>>,
    next_task: u64,
    count_closes: bool,
}

impl Handoff {
    /// A hand-off accepting on `socket`.
    pub fn start(
        handle: u32,
        socket: Socket,
        pick: Box<dyn Pick>,
        count_closes: bool,
    ) -> io::Result<Handoff> {
        let mut h = Handoff::new(handle, pick, count_closes);
        h.add_socket(socket)?;
        Ok(h)
    }

    /// A hand-off with no socket yet (see [`add_socket`](Self::add_socket)).
    pub fn new(handle: u32, pick: Box<dyn Pick>, count_closes: bool) -> Handoff {
        Handoff {
            state: Arc::new(Mutex::new(State {
                handle,
                pick,
                slots: Vec::new(),
                pending: VecDeque::new(),
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
        let listener = crate::sys::async_fd(OwnedFd::from(socket))?;
        let task = tokio::spawn(accept_loop(listener, self.state.clone(), self.room.clone()));
        self.next_task += 1;
        self.tasks.insert(self.next_task, task);
        Ok(self.next_task)
    }

    /// Stops accepting on a socket and closes this hand-off's copy of it.
    /// Connections already accepted from it are still delivered: the task
    /// only stops at an await point, where it holds none of them.
    pub fn stop_socket(&mut self, id: u64) {
        if let Some(task) = self.tasks.remove(&id) {
            task.abort();
        }
    }

    fn changed(&self, mut st: std::sync::MutexGuard<'_, State>) {
        st.distribute();
        let room = st.has_room();
        drop(st);
        if room {
            // Every accept task waits on this (each enables its `Notified`
            // before checking for room, so none misses a wake-up).
            self.room.notify_waiters();
        }
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

impl Share for Handoff {
    fn add(&mut self, worker: &Link) -> io::Result<(ListenMode, Option<OwnedFd>)> {
        let mut st = self.state.lock().unwrap();
        if st.slot(worker.id).is_none() {
            st.slots.push(Slot {
                id: worker.id,
                link: worker.clone(),
                routing: false,
                inflight: VecDeque::new(),
                open: 0,
            });
        }
        Ok((ListenMode::Handoff, None))
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

    fn remove(&mut self, worker: u32) {
        let mut st = self.state.lock().unwrap();
        let Some(i) = st.slots.iter().position(|s| s.id == worker) else {
            return;
        };
        let slot = st.slots.remove(i);
        // What the worker did not take goes first, in the order it came.
        let n = slot.inflight.len();
        for fd in slot.inflight.into_iter().rev() {
            // The channel's copy (if still queued) is dropped with the closed
            // outbox; ours is then the only one.
            match Arc::try_unwrap(fd) {
                Ok(fd) => st.pending.push_front(fd),
                Err(shared) => match shared.try_clone() {
                    Ok(fd) => st.pending.push_front(fd),
                    Err(e) => tracing::warn!(error = %e, "cannot keep a handed-off connection"),
                },
            }
        }
        if n > 0 {
            tracing::debug!(worker, n, "re-routing connections the worker did not take");
        }
        self.changed(st);
    }

    fn accepted(&mut self, worker: u32, n: u32) {
        let mut st = self.state.lock().unwrap();
        if let Some(s) = st.slot(worker) {
            let n = (n as usize).min(s.inflight.len());
            s.inflight.drain(..n);
            s.open += n as u64;
        }
        self.changed(st);
    }

    fn closed(&mut self, worker: u32, n: u32) {
        if let Some(s) = self.state.lock().unwrap().slot(worker) {
            s.open = s.open.saturating_sub(n as u64);
        }
    }

    fn count_closes(&self) -> bool {
        self.count_closes
    }
}

async fn accept_loop(listener: AsyncFd<OwnedFd>, state: Arc<Mutex<State>>, room: Arc<Notify>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        // Accept only while some worker can take connections.
        loop {
            let notified = room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if state.lock().unwrap().has_room() {
                break;
            }
            notified.await;
        }
        let mut guard = match listener.readable().await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "listener failed; no more connections on it");
                return;
            }
        };
        let mut batch = Vec::new();
        let mut pause = None;
        while batch.len() < BATCH {
            match guard.try_io(|fd| crate::sys::accept(fd.as_raw_fd())) {
                Ok(Ok(conn)) => batch.push(conn),
                Ok(Err(e)) => match e.raw_os_error().map(nix::errno::Errno::from_raw) {
                    Some(
                        nix::errno::Errno::ECONNABORTED
                        | nix::errno::Errno::EINTR
                        | nix::errno::Errno::EPROTO,
                    ) => continue,
                    _ => {
                        // EMFILE, ENFILE, ENOBUFS...: retrying at once spins.
                        tracing::warn!(error = %e, "accept failed; backing off {backoff:?}");
                        pause = Some(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        break;
                    }
                },
                Err(_would_block) => break,
            }
        }
        if !batch.is_empty() {
            backoff = Duration::from_millis(5);
            let mut st = state.lock().unwrap();
            st.pending.extend(batch);
            st.distribute();
        }
        if let Some(d) = pause {
            tokio::time::sleep(d).await;
        }
    }
}
