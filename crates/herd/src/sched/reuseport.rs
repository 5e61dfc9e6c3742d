//! `reuseport`: each worker accepts on its own SO_REUSEPORT socket, bound by
//! the primary to the same address; the kernel spreads connections over the
//! sockets by a hash of the connection's addresses.
//!
//! The kernel resets the connections queued on a reuseport socket when its
//! last descriptor closes, and keeps sending new connections to a socket for
//! as long as it is open. So the primary keeps a copy of every socket it
//! gives out, and a departed worker's socket is never closed while other
//! workers remain:
//!
//! - A successor registered for it (`Primary::fork_successor`) is given the
//!   very same socket, so the two share it while they overlap.
//! - Otherwise the socket becomes a spare, given to the next worker that
//!   listens. Until one does, the primary accepts on the spare itself and
//!   hands what it accepts to the workers still here, as `rr` does (each
//!   herd-aware worker's TCP listen comes with a connection queue for that). So whichever order a
//!   replacement comes in (successor first, as a supervisor does, or after
//!   its predecessor left), and when the cluster shrinks, no connection is
//!   reset. After a rolling restart in successor-first order one such socket
//!   remains, served through the primary until the next worker takes it.
//!
//! TCP connections go to the workers' sockets in turn when the primary may
//! load the eBPF program of `reuseport_rr` (root), by the kernel's hash
//! otherwise.
//!
//! UDP sockets cannot be handed off: a spare UDP socket waits
//! [`SPARE_GRACE`] for a successor, then is closed.
//!
//! Nor can connections be handed to a foreign worker (one without a
//! channel, see `crate::foreign`). When one leaves on purpose (scale down,
//! shutdown) without a successor, its socket is closed at once, so the
//! kernel stops sending new connections there (those already queued on it
//! are reset, as when any reuseport server closes a listener); when one
//! crashes, its socket waits [`SPARE_GRACE`] for the respawn, as UDP's do.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::Socket;

use super::handoff::Handoff;
use super::reuseport_rr::{self, RoundRobinPlacement};
use super::rr::RoundRobin;
use super::{bind, Link, ListenAddr, Share};
use crate::addr::ListenOptions;
use crate::channel::wire::ListenMode;

/// How long a departed worker's UDP socket waits for a successor.
pub const SPARE_GRACE: Duration = Duration::from_secs(5);

/// A departed worker's socket, waiting for the next worker.
struct Spare {
    serial: u64,
    fd: OwnedFd,
    /// The primary's accept task on it, while it serves it by hand-off.
    drain: Option<u64>,
}

pub(crate) struct ReusePort {
    addr: ListenAddr,
    opts: ListenOptions,
    /// The first socket, bound before any worker asks (it fixes port 0).
    first: Option<OwnedFd>,
    by_worker: HashMap<u32, OwnedFd>,
    /// predecessor -> successor that took over its socket.
    handed_on: HashMap<u32, u32>,
    spares: Arc<Mutex<Vec<Spare>>>,
    next_serial: u64,
    /// Accepts on spares and hands the connections to the workers.
    drain: Handoff,
    /// Workers that cannot take hand-offs (foreign workers).
    no_handoff: HashSet<u32>,
    /// Workers told to stop (leaving on purpose).
    stopped: HashSet<u32>,
    /// Places TCP connections on the workers' sockets in turn, if loaded.
    placement: Option<RoundRobinPlacement>,
}

impl ReusePort {
    pub fn new(addr: ListenAddr, opts: ListenOptions, first: Socket) -> io::Result<ReusePort> {
        // Later sockets bind the port the first one got (listen(0) shares).
        let addr = match (&addr, first.local_addr()?.as_socket()) {
            (ListenAddr::Tcp(_), Some(sa)) => ListenAddr::Tcp(sa),
            (ListenAddr::Udp(_), Some(sa)) => ListenAddr::Udp(sa),
            _ => addr,
        };
        let placement = match addr {
            ListenAddr::Tcp(_) => reuseport_rr::try_attach(first.as_fd()),
            _ => None,
        };
        Ok(ReusePort {
            addr,
            opts,
            first: Some(first.into()),
            by_worker: HashMap::new(),
            handed_on: HashMap::new(),
            spares: Arc::new(Mutex::new(Vec::new())),
            next_serial: 0,
            drain: Handoff::new(Box::new(RoundRobin::default()), false),
            no_handoff: HashSet::new(),
            stopped: HashSet::new(),
            placement,
        })
    }

    /// Places new connections on the sockets of the workers here that are
    /// not leaving (not on spares: what reaches those waits for the primary
    /// to hand it on). A leaving worker's socket that its successor shares
    /// stays, as the successor's.
    fn place(&mut self) {
        let Some(placement) = &mut self.placement else {
            return;
        };
        let sockets: Vec<BorrowedFd> = self
            .by_worker
            .iter()
            .filter(|(w, _)| !self.stopped.contains(w))
            .map(|(_, s)| s.as_fd())
            .collect();
        if let Err(e) = placement.set(&sockets) {
            tracing::warn!(error = %e, "reuseport: cannot update the round-robin placement");
        }
    }

    fn next_socket(&mut self) -> io::Result<OwnedFd> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        let mut spares = self.spares.lock().unwrap();
        if !spares.is_empty() {
            let spare = spares.remove(0);
            drop(spares);
            if let Some(task) = spare.drain {
                self.drain.stop_socket(task);
            }
            return Ok(spare.fd);
        }
        drop(spares);
        let sock: OwnedFd = bind(&self.addr, &self.opts, true)?.into();
        if self.by_worker.is_empty() && self.placement.is_some() {
            // Every socket of the group had closed (all workers gone, no
            // spare), and the program with it: a new group needs it again.
            self.placement = reuseport_rr::try_attach(sock.as_fd());
        }
        Ok(sock)
    }

    /// The predecessor whose socket `worker` takes over, if it is still here.
    fn predecessor_of(&self, worker: u32) -> Option<u32> {
        self.handed_on
            .iter()
            .find(|(p, s)| **s == worker && self.by_worker.contains_key(p))
            .map(|(p, _)| *p)
    }

    /// Keeps a departed worker's socket for the next worker, serving it
    /// meanwhile (TCP, unless `timed`) or for at most [`SPARE_GRACE`] (UDP,
    /// or `timed`).
    fn keep_spare(&mut self, fd: OwnedFd, timed: bool) {
        self.next_serial += 1;
        let serial = self.next_serial;
        let drain = match self.addr {
            ListenAddr::Tcp(_) if !timed => match fd
                .try_clone()
                .and_then(|copy| self.drain.add_socket(Socket::from(copy)))
            {
                Ok(task) => Some(task),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot serve a departed worker's socket");
                    None
                }
            },
            _ => None,
        };
        self.spares
            .lock()
            .unwrap()
            .push(Spare { serial, fd, drain });
        if drain.is_some() {
            return;
        }
        let spares = Arc::downgrade(&self.spares);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(SPARE_GRACE).await;
                if let Some(spares) = spares.upgrade() {
                    let mut s = spares.lock().unwrap();
                    let before = s.len();
                    s.retain(|sp| sp.serial != serial);
                    if s.len() < before {
                        tracing::info!(
                            "closing a reuseport socket no worker took over in {SPARE_GRACE:?}"
                        );
                    }
                }
            });
        }
    }
}

impl Share for ReusePort {
    fn add(&mut self, worker: &Link) -> io::Result<(ListenMode, Vec<OwnedFd>)> {
        let sock = match self.by_worker.remove(&worker.id) {
            Some(s) => s,
            None => match self.predecessor_of(worker.id) {
                Some(pred) => self.by_worker[&pred].try_clone()?,
                None => self.next_socket()?,
            },
        };
        let mut fds = vec![sock.try_clone()?];
        self.by_worker.insert(worker.id, sock);
        if !worker.handoff {
            self.no_handoff.insert(worker.id);
        } else if matches!(self.addr, ListenAddr::Tcp(_)) {
            fds.push(self.drain.add_queue(worker)?);
        }
        self.place();
        Ok((ListenMode::Socket, fds))
    }

    fn listening(&mut self, worker: &Link) {
        self.drain.listening(worker);
    }

    fn stop(&mut self, worker: u32) {
        self.stopped.insert(worker);
        self.place();
        self.drain.stop(worker);
    }

    fn inherit(&mut self, successor: u32, predecessor: u32) {
        self.handed_on.insert(predecessor, successor);
    }

    fn name(&self) -> &'static str {
        "reuseport"
    }

    fn remove(&mut self, worker: u32) {
        // What was handed to it and not taken goes to another worker.
        self.drain.remove(worker);
        let foreign = self.no_handoff.remove(&worker);
        let stopped = self.stopped.remove(&worker);
        let Some(sock) = self.by_worker.remove(&worker) else {
            return;
        };
        self.place();
        // A socket shared by a predecessor and its successor lives on in
        // whichever of the two is still here.
        let successor = self.handed_on.remove(&worker);
        let predecessor = self
            .handed_on
            .iter()
            .find(|(_, s)| **s == worker)
            .map(|(p, _)| *p);
        if let Some(p) = predecessor {
            self.handed_on.remove(&p);
        }
        let shared = successor
            .into_iter()
            .chain(predecessor)
            .any(|w| self.by_worker.contains_key(&w));
        // With no worker left the listen itself closes.
        if shared || self.by_worker.is_empty() {
            return;
        }
        if foreign && stopped {
            // Left on purpose, nobody to take it: close it now.
            return;
        }
        self.keep_spare(sock, foreign);
    }
}
