//! `reuseport`: each worker accepts on its own SO_REUSEPORT socket, bound by
//! the primary to the same address; the kernel spreads connections over the
//! sockets by a hash of the connection's addresses.
//!
//! The kernel resets the connections queued on a reuseport socket when its
//! last descriptor closes. So the primary keeps a copy of every socket it
//! gives out: when a worker leaves, its socket (and the connections queued on
//! it) is kept as a spare and given to the next worker that listens, so a
//! replaced worker's queue is served by its successor. A spare that no worker
//! takes within [`SPARE_GRACE`] is closed, so that a cluster that shrank does
//! not leave a socket taking connections that nobody accepts.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::{bind, Link, ListenAddr, Share};
use crate::channel::wire::{ListenMode, ListenOptions};

/// How long a departed worker's socket waits for a successor.
pub const SPARE_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct ReusePort {
    addr: ListenAddr,
    opts: ListenOptions,
    /// The first socket, bound before any worker asks (it fixes port 0).
    first: Option<OwnedFd>,
    by_worker: HashMap<u32, OwnedFd>,
    /// predecessor -> successor that took over its socket.
    handed_on: HashMap<u32, u32>,
    spares: Arc<Mutex<Vec<(Instant, OwnedFd)>>>,
}

impl ReusePort {
    pub fn new(addr: ListenAddr, opts: ListenOptions, first: Socket) -> io::Result<ReusePort> {
        // Later sockets bind the port the first one got (listen(0) shares).
        let addr = match (&addr, first.local_addr()?.as_socket()) {
            (ListenAddr::Tcp(_), Some(sa)) => ListenAddr::Tcp(sa),
            (ListenAddr::Udp(_), Some(sa)) => ListenAddr::Udp(sa),
            _ => addr,
        };
        Ok(ReusePort {
            addr,
            opts,
            first: Some(first.into()),
            by_worker: HashMap::new(),
            handed_on: HashMap::new(),
            spares: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn next_socket(&mut self) -> io::Result<OwnedFd> {
        if let Some(first) = self.first.take() {
            return Ok(first);
        }
        let mut spares = self.spares.lock().unwrap();
        if !spares.is_empty() {
            return Ok(spares.remove(0).1);
        }
        drop(spares);
        Ok(bind(&self.addr, &self.opts, true)?.into())
    }
}

impl Share for ReusePort {
    fn add(&mut self, worker: &Link) -> io::Result<(ListenMode, Option<OwnedFd>)> {
        let sock = match self.by_worker.remove(&worker.id) {
            Some(s) => s,
            None => self.next_socket()?,
        };
        let copy = sock.try_clone()?;
        self.by_worker.insert(worker.id, sock);
        Ok((ListenMode::Socket, Some(copy)))
    }

    fn remove(&mut self, worker: u32) {
        let Some(sock) = self.by_worker.remove(&worker) else {
            return;
        };
        let left = Instant::now();
        self.spares.lock().unwrap().push((left, sock));
        let spares = Arc::downgrade(&self.spares);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(SPARE_GRACE).await;
                if let Some(spares) = spares.upgrade() {
                    let mut s = spares.lock().unwrap();
                    let before = s.len();
                    s.retain(|(t, _)| *t != left);
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
