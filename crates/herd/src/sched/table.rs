//! The primary's table of listens: one entry per distinct listen, each
//! holding its policy object (see [`super::Share`]), and which workers are
//! in it, listening and ready.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;

use socket2::Socket;

use super::{bind, bind_for, handoff, lc, reuseport, rr, shared, Link, ListenAddr, Policy, Share};
use crate::addr::ListenOptions;
use crate::channel::wire::{Control, ListenMode};

/// The address a bound socket ended up with (the real port where 0 was
/// asked).
fn bound_address(addr: &ListenAddr, sock: &Socket) -> ListenAddr {
    let local = sock.local_addr().ok().and_then(|a| a.as_socket());
    match (addr, local) {
        (ListenAddr::Tcp(_), Some(a)) => ListenAddr::Tcp(a),
        (ListenAddr::Udp(_), Some(a)) => ListenAddr::Udp(a),
        (other, _) => other.clone(),
    }
}

/// What identifies a listen: the address and the worker's k-th listen of
/// it (as Node keys its handles), or a socket bound for foreign workers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Listen(ListenAddr, u32),
    Preset(u32),
}

struct Entry {
    key: Key,
    address: ListenAddr,
    share: Box<dyn Share>,
    workers: BTreeSet<u32>,
    /// Workers that confirmed they accept (routed to once also ready).
    listening: BTreeSet<u32>,
    unix_path: Option<PathBuf>,
    /// Made by [`Table::preset`]: stays open when its last worker leaves.
    pinned: bool,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
        tracing::debug!(key = ?self.key, "last worker left; listener closed");
    }
}

#[derive(Default)]
struct TableInner {
    next_handle: u32,
    by_key: HashMap<Key, u32>,
    entries: HashMap<u32, Entry>,
    /// Workers past their warm-up: only they are routed to.
    ready: BTreeSet<u32>,
    links: HashMap<u32, Link>,
    /// successor -> predecessor, for replacements in progress.
    successor_of: HashMap<u32, u32>,
    /// How many entries each worker is in (held against `max_listens`).
    held: HashMap<u32, usize>,
    /// Workers taken out of rotation by [`Table::drain`]: kept in their
    /// entries, routed nothing new until [`Table::undrain`].
    drained: BTreeSet<u32>,
}

impl TableInner {
    /// Enters `worker` in the entry `handle`; false if it was in already.
    fn join(&mut self, handle: u32, worker: u32) -> bool {
        let joined = self
            .entries
            .get_mut(&handle)
            .is_some_and(|e| e.workers.insert(worker));
        if joined {
            *self.held.entry(worker).or_insert(0) += 1;
        }
        joined
    }
}

/// The primary's listens, by handle id.
#[derive(Default)]
pub(crate) struct Table {
    inner: Mutex<TableInner>,
}

impl Table {
    /// A worker, whose credentials are `who`, asks to listen. Returns the
    /// reply and the descriptors to attach to it. A new socket is bound as
    /// the worker could bind it ([`bind_for`]). A worker that holds
    /// `max_listens` listens already is refused a new one (EMFILE), before
    /// anything is bound for it.
    #[allow(clippy::too_many_arguments)]
    pub fn listen(
        &self,
        policy: Policy,
        link: &Link,
        seq: u64,
        addr: &ListenAddr,
        index: u32,
        opts: ListenOptions,
        who: Option<&crate::procfs::Creds>,
        max_listens: usize,
    ) -> (Control, Vec<OwnedFd>) {
        let failed = |e: io::Error| {
            let mut message = format!("cannot listen on {addr}: {e}");
            let unix = matches!(addr, ListenAddr::Unix(_));
            if e.kind() == io::ErrorKind::PermissionDenied && !unix && e.raw_os_error().is_some() {
                message.push_str(" (ports below 1024 need root or CAP_NET_BIND_SERVICE)");
            } else if e.kind() == io::ErrorKind::AddrInUse {
                message.push_str(" (another process holds it: stop it or choose another port)");
            }
            tracing::debug!(worker = link.id, "{message}");
            (
                Control::ListenFailed {
                    seq,
                    errno: e.raw_os_error().unwrap_or(match e.kind() {
                        _ if super::unix::NameTooLong::is(&e) => nix::libc::ENAMETOOLONG,
                        io::ErrorKind::PermissionDenied => nix::libc::EACCES,
                        _ => libc_einval(),
                    }),
                    message,
                },
                Vec::new(),
            )
        };
        let parsed = addr;
        let key = Key::Listen(parsed.clone(), index);
        let mut t = self.inner.lock().unwrap();
        let held = t.held.get(&link.id).copied().unwrap_or(0);
        let joined = t
            .by_key
            .get(&key)
            .and_then(|h| t.entries.get(h))
            .is_some_and(|e| e.workers.contains(&link.id));
        if held >= max_listens && !joined {
            let message = format!(
                "cannot listen on {addr}: worker {} holds {held} listens already, the most one \
                 worker may (the primary's `max_listens` setting, {max_listens})",
                link.id
            );
            tracing::warn!(worker = link.id, "{message}");
            let errno = nix::errno::Errno::EMFILE as i32;
            return (
                Control::ListenFailed {
                    seq,
                    errno,
                    message,
                },
                Vec::new(),
            );
        }
        let handle = match t.by_key.get(&key) {
            Some(h) => *h,
            None => {
                t.next_handle += 1;
                let handle = t.next_handle;
                match create(policy, parsed, &opts, None, Some(who)) {
                    Ok((share, address)) => {
                        let unix_path = parsed.path().map(PathBuf::from);
                        t.by_key.insert(key.clone(), handle);
                        t.entries.insert(
                            handle,
                            Entry {
                                key,
                                address,
                                share,
                                workers: BTreeSet::new(),
                                listening: BTreeSet::new(),
                                unix_path,
                                pinned: false,
                            },
                        );
                        handle
                    }
                    Err(e) => return failed(e),
                }
            }
        };
        let predecessor = t.successor_of.get(&link.id).copied();
        t.links.insert(link.id, link.clone());
        let entry = t.entries.get_mut(&handle).expect("entry exists");
        if let Some(pred) = predecessor.filter(|p| entry.workers.contains(p)) {
            entry.share.inherit(link.id, pred);
        }
        match entry.share.add(link) {
            Ok((mode, fds)) => {
                let reply = Control::Listened {
                    seq,
                    handle,
                    mode,
                    address: entry.address.clone(),
                    count_closes: entry.share.count_closes(),
                };
                t.join(handle, link.id);
                (reply, fds)
            }
            Err(e) => {
                if entry.workers.is_empty() {
                    let key = entry.key.clone();
                    t.entries.remove(&handle);
                    t.by_key.remove(&key);
                }
                failed(e)
            }
        }
    }

    /// The worker accepts on `handle`; returns the address for the event.
    /// Connections are routed to it once it is also ready.
    pub fn listening(&self, link: &Link, handle: u32) -> Option<ListenAddr> {
        let mut t = self.inner.lock().unwrap();
        let ready = t.ready.contains(&link.id);
        let drained = t.drained.contains(&link.id);
        let entry = t.entries.get_mut(&handle)?;
        // Only the first `listening` counts: a worker repeating it gets
        // no more events (each would wait in every subscriber's queue).
        if !entry.workers.contains(&link.id) || !entry.listening.insert(link.id) {
            return None;
        }
        if ready && !drained {
            entry.share.listening(link);
        }
        Some(entry.address.clone())
    }

    /// The worker finished its warm-up: route to it wherever it listens.
    pub fn set_ready(&self, worker: u32) {
        let mut t = self.inner.lock().unwrap();
        if !t.ready.insert(worker) || t.drained.contains(&worker) {
            return;
        }
        let Some(link) = t.links.get(&worker).cloned() else {
            return;
        };
        for e in t.entries.values_mut() {
            if e.listening.contains(&worker) {
                e.share.listening(&link);
            }
        }
    }

    /// The next worker forked with `successor` replaces `predecessor`.
    pub fn set_successor(&self, successor: u32, predecessor: u32) {
        self.inner
            .lock()
            .unwrap()
            .successor_of
            .insert(successor, predecessor);
    }

    /// Binds `addr` now (or adopts `socket`, already bound and listening)
    /// for workers that are handed their sockets at start (foreign
    /// workers). The entry stays open for the primary's life, so a port
    /// chosen by the kernel (port 0) stays the same through respawns.
    /// Returns the handle and the address as bound.
    pub fn preset(
        &self,
        policy: Policy,
        addr: &ListenAddr,
        opts: ListenOptions,
        socket: Option<Socket>,
    ) -> io::Result<(u32, ListenAddr)> {
        let mut t = self.inner.lock().unwrap();
        t.next_handle += 1;
        let handle = t.next_handle;
        let (share, address) = create(policy, addr, &opts, socket, None)?;
        let key = Key::Preset(handle);
        t.by_key.insert(key.clone(), handle);
        t.entries.insert(
            handle,
            Entry {
                key,
                address: address.clone(),
                share,
                workers: BTreeSet::new(),
                listening: BTreeSet::new(),
                unix_path: None,
                pinned: true,
            },
        );
        Ok((handle, address))
    }

    /// Adds a worker that cannot take hand-offs to a preset entry and
    /// returns the socket it accepts on (a successor gets its predecessor's
    /// under `reuseport`).
    pub fn attach(&self, handle: u32, link: &Link) -> io::Result<OwnedFd> {
        let mut t = self.inner.lock().unwrap();
        let predecessor = t.successor_of.get(&link.id).copied();
        let entry = t
            .entries
            .get_mut(&handle)
            .ok_or_else(|| io::Error::other(format!("no listen with handle {handle}")))?;
        if let Some(pred) = predecessor.filter(|p| entry.workers.contains(p)) {
            entry.share.inherit(link.id, pred);
        }
        let (mode, fds) = entry.share.add(link)?;
        t.join(handle, link.id);
        match (mode, fds.into_iter().next()) {
            (ListenMode::Socket, Some(fd)) => Ok(fd),
            _ => Err(io::Error::other(
                "this policy gives workers no socket of their own",
            )),
        }
    }

    /// Every listen now: its address, workers, and hand-off counts.
    pub fn listens(&self) -> Vec<crate::primary::ListenStatus> {
        let t = self.inner.lock().unwrap();
        let mut out: Vec<_> = t
            .entries
            .iter()
            .map(|(handle, e)| {
                let stats = e.share.stats();
                crate::primary::ListenStatus {
                    handle: *handle,
                    address: e.address.clone(),
                    workers: e.workers.len(),
                    handed_off: stats.handed_off,
                    waiting: stats.waiting,
                    queued: stats.queued,
                }
            })
            .collect();
        out.sort_by_key(|l| l.handle);
        out
    }

    pub fn unlisten(&self, worker: u32, handle: u32) {
        let mut t = self.inner.lock().unwrap();
        Self::leave(&mut t, worker, handle);
    }

    pub fn remove_worker(&self, worker: u32) {
        let mut t = self.inner.lock().unwrap();
        t.ready.remove(&worker);
        t.links.remove(&worker);
        t.held.remove(&worker);
        t.drained.remove(&worker);
        t.successor_of.remove(&worker);
        t.successor_of.retain(|_, p| *p != worker);
        let handles: Vec<u32> = t
            .entries
            .iter()
            .filter(|(_, e)| e.workers.contains(&worker))
            .map(|(h, _)| *h)
            .collect();
        for h in handles {
            Self::leave(&mut t, worker, h);
        }
    }

    fn leave(t: &mut TableInner, worker: u32, handle: u32) {
        let Some(entry) = t.entries.get_mut(&handle) else {
            return;
        };
        if !entry.workers.remove(&worker) {
            return;
        }
        if let Some(n) = t.held.get_mut(&worker) {
            *n = n.saturating_sub(1);
        }
        let Some(entry) = t.entries.get_mut(&handle) else {
            return;
        };
        entry.listening.remove(&worker);
        entry.share.remove(worker);
        if entry.workers.is_empty() && !entry.pinned {
            if let Some(e) = t.entries.remove(&handle) {
                t.by_key.remove(&e.key);
            }
        }
    }

    pub fn stop_routing(&self, worker: u32) {
        let mut t = self.inner.lock().unwrap();
        for e in t.entries.values_mut() {
            if e.workers.contains(&worker) {
                e.share.stop(worker);
            }
        }
    }

    /// Takes `worker` out of rotation wherever it listens (and in listens
    /// it joins later) while it stays connected: no new connection is
    /// routed to it, what is queued and not yet taken goes to the others,
    /// and its open connections are its own to finish. Refused, changing
    /// nothing, when one of its listens is one where the workers accept
    /// themselves (`shared`, `reuseport`, a foreign worker's socket): the
    /// primary routes nothing there to stop.
    pub fn drain(&self, worker: u32) -> Result<(), String> {
        let mut t = self.inner.lock().unwrap();
        let theirs: Vec<u32> = t
            .entries
            .iter()
            .filter(|(_, e)| e.workers.contains(&worker))
            .map(|(h, _)| *h)
            .collect();
        if let Some(e) = theirs
            .iter()
            .filter_map(|h| t.entries.get(h))
            .find(|e| !e.share.can_drain())
        {
            return Err(format!(
                "worker {worker} accepts its connections itself on {} (policy {}): only \
                 rr and lc, where the primary hands connections out, can take a worker \
                 out of rotation",
                e.address,
                e.share.name()
            ));
        }
        t.drained.insert(worker);
        for h in theirs {
            if let Some(e) = t.entries.get_mut(&h) {
                e.share.drain(worker);
            }
        }
        Ok(())
    }

    /// Puts a drained worker back into rotation where it listens and is
    /// ready. False when it was not drained.
    pub fn undrain(&self, worker: u32) -> bool {
        let mut t = self.inner.lock().unwrap();
        if !t.drained.remove(&worker) {
            return false;
        }
        if !t.ready.contains(&worker) {
            return true;
        }
        let Some(link) = t.links.get(&worker).cloned() else {
            return true;
        };
        for e in t.entries.values_mut() {
            if e.listening.contains(&worker) {
                e.share.listening(&link);
            }
        }
        true
    }

    /// Whether `worker` is drained.
    pub fn is_drained(&self, worker: u32) -> bool {
        self.inner.lock().unwrap().drained.contains(&worker)
    }

    pub fn closed(&self, worker: u32, handle: u32, n: u32) {
        if let Some(e) = self.inner.lock().unwrap().entries.get_mut(&handle) {
            e.share.closed(worker, n);
        }
    }
}

fn libc_einval() -> i32 {
    nix::errno::Errno::EINVAL as i32
}

fn create(
    policy: Policy,
    addr: &ListenAddr,
    opts: &ListenOptions,
    socket: Option<Socket>,
    for_worker: Option<Option<&crate::procfs::Creds>>,
) -> io::Result<(Box<dyn Share>, ListenAddr)> {
    let datagram = matches!(addr, ListenAddr::Udp(_));
    let unix = matches!(addr, ListenAddr::Unix(_));
    let reuse_port = policy == Policy::ReusePort && !unix;
    let sock = match socket {
        Some(s) => s,
        None => match for_worker {
            Some(who) => bind_for(addr, opts, reuse_port, who)?,
            None => bind(addr, opts, reuse_port)?,
        },
    };
    let address = bound_address(addr, &sock);
    let share: Box<dyn Share> = match policy {
        _ if reuse_port => Box::new(reuseport::ReusePort::new(addr.clone(), *opts, sock)?),
        Policy::Shared | Policy::ReusePort => Box::new(shared::SharedSocket::new(sock)),
        _ if datagram => Box::new(shared::SharedSocket::new(sock)),
        Policy::RoundRobin => Box::new(handoff::Handoff::start(
            sock,
            Box::new(rr::RoundRobin::default()),
            false,
        )?),
        Policy::LeastConnections => Box::new(handoff::Handoff::start(
            sock,
            Box::new(lc::LeastConnections::default()),
            true,
        )?),
    };
    Ok((share, address))
}
