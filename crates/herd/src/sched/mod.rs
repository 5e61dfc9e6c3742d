//! Sharing listening sockets between workers.
//!
//! The primary keeps one [`Table`] entry per distinct listen (address plus
//! the worker's k-th listen of it, as Node keys its handles). Each entry
//! holds a policy object behind the small [`Share`] trait (add a worker,
//! remove one, and whether the last has left), so the primary never cares
//! which policy it holds:
//!
//! | policy | module | who accepts |
//! |---|---|---|
//! | [`Policy::RoundRobin`] | [`rr`] + [`handoff`] | the primary, handing each connection to the next ready worker |
//! | [`Policy::LeastConnections`] | [`lc`] + [`handoff`] | the primary, to the ready worker with the fewest open connections |
//! | [`Policy::Shared`] | [`shared`] | every worker, on one shared socket |
//! | [`Policy::ReusePort`] | [`reuseport`] + [`reuseport_rr`] | every worker, on its own SO_REUSEPORT socket (placed in turn by eBPF where permitted) |
//!
//! UDP is never handed off: it uses `shared` (or `reuseport`).

pub(crate) mod handoff;
pub(crate) mod lc;
pub(crate) mod reuseport;
pub(crate) mod reuseport_rr;
pub(crate) mod rr;
pub(crate) mod shared;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::str::FromStr;

pub use crate::addr::ListenAddr;
use std::sync::Mutex;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::addr::ListenOptions;
use crate::channel::wire::{Control, ListenMode};

/// How workers share a listening port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// `rr` (default): the primary accepts and hands connections to ready
    /// workers in turn. Even by count; herd-aware workers only.
    RoundRobin,
    /// `lc`: like `rr`, but to the ready worker with the fewest open
    /// connections. For long-lived connections.
    LeastConnections,
    /// `shared`: all workers accept on one socket (Node's SCHED_NONE).
    Shared,
    /// `reuseport`: each worker accepts on its own SO_REUSEPORT socket,
    /// bound by the primary; new TCP connections go to the workers in turn
    /// (an eBPF program, if the primary may load it) or by the kernel's
    /// hash.
    ReusePort,
}

impl Policy {
    /// The policy named by `HERD_SCHED_POLICY`, or round-robin. An invalid
    /// value is logged and ignored.
    pub fn from_env() -> Policy {
        match std::env::var("HERD_SCHED_POLICY") {
            Ok(v) => v.parse().unwrap_or_else(|e| {
                tracing::warn!("{e}; using rr");
                Policy::RoundRobin
            }),
            Err(_) => Policy::RoundRobin,
        }
    }

    /// The short name: `rr`, `lc`, `shared` or `reuseport`.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::RoundRobin => "rr",
            Policy::LeastConnections => "lc",
            Policy::Shared => "shared",
            Policy::ReusePort => "reuseport",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rr" | "round-robin" | "roundrobin" => Ok(Policy::RoundRobin),
            "lc" | "least-connections" | "leastconn" => Ok(Policy::LeastConnections),
            "shared" | "none" => Ok(Policy::Shared),
            "reuseport" | "reuse-port" => Ok(Policy::ReusePort),
            other => Err(format!(
                "unknown scheduling policy {other:?}: use rr, lc, shared or reuseport"
            )),
        }
    }
}

/// A worker, as the policies see it.
#[derive(Clone)]
pub(crate) struct Link {
    pub id: u32,
    /// Whether the worker can take handed-off connections: false for a
    /// foreign worker (no channel), which only accepts on its own sockets.
    pub handoff: bool,
}

/// The small interface every policy implements.
pub(crate) trait Share: Send {
    /// A worker joins; says how it gets connections, with the descriptors
    /// for it: its socket, its connection queue, or both (in that order).
    fn add(&mut self, worker: &Link) -> io::Result<(ListenMode, Vec<OwnedFd>)>;
    /// The worker confirmed that it accepts.
    fn listening(&mut self, _worker: &Link) {}
    /// Route nothing new to the worker (it is leaving).
    fn stop(&mut self, _worker: u32) {}
    /// The worker left this listen (closed it, disconnected or died).
    fn remove(&mut self, worker: u32);
    /// `n` handed-off connections of the worker closed.
    fn closed(&mut self, _worker: u32, _n: u32) {}
    /// Whether workers should report closed connections.
    fn count_closes(&self) -> bool {
        false
    }
    /// `successor` replaces `predecessor` (before `add` of the successor):
    /// policies whose sockets carry queues (reuseport) hand them on.
    fn inherit(&mut self, _successor: u32, _predecessor: u32) {}
}

/// Creates, binds and (for streams) listens on a socket for `addr`.
pub(crate) fn bind(
    addr: &ListenAddr,
    opts: &ListenOptions,
    reuse_port: bool,
) -> io::Result<Socket> {
    let backlog = opts.backlog.unwrap_or(1024) as i32;
    match addr {
        ListenAddr::Tcp(sa) | ListenAddr::Udp(sa) => {
            let udp = matches!(addr, ListenAddr::Udp(_));
            let (ty, proto) = if udp {
                (Type::DGRAM, Protocol::UDP)
            } else {
                (Type::STREAM, Protocol::TCP)
            };
            let sock = Socket::new(
                Domain::for_address(*sa),
                ty.nonblocking().cloexec(),
                Some(proto),
            )?;
            if !udp {
                sock.set_reuse_address(true)?;
            }
            if reuse_port {
                sock.set_reuse_port(true)?;
            }
            if sa.is_ipv6() {
                sock.set_only_v6(opts.ipv6_only.unwrap_or(false))?;
            }
            sock.bind(&SockAddr::from(*sa))?;
            if !udp {
                sock.listen(backlog)?;
            }
            Ok(sock)
        }
        ListenAddr::Unix(path) => {
            let sock = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
            let sa = SockAddr::unix(path)?;
            match sock.bind(&sa) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && is_stale_unix_socket(path) => {
                    tracing::info!(path = %path.display(), "removing stale Unix socket file");
                    std::fs::remove_file(path)?;
                    sock.bind(&sa)?;
                }
                r => r?,
            }
            if let Some(mode) = opts.mode {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            sock.listen(backlog)?;
            Ok(sock)
        }
    }
}

/// A socket file nobody listens on (left by a crash) may be replaced.
fn is_stale_unix_socket(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket
        && matches!(std::os::unix::net::UnixStream::connect(path),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused)
}

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
}

/// The primary's listens, by handle id.
#[derive(Default)]
pub(crate) struct Table {
    inner: Mutex<TableInner>,
}

impl Table {
    /// A worker asks to listen. Returns the reply and the descriptors to
    /// attach to it.
    pub fn listen(
        &self,
        policy: Policy,
        link: &Link,
        seq: u64,
        addr: &ListenAddr,
        index: u32,
        opts: ListenOptions,
    ) -> (Control, Vec<OwnedFd>) {
        let failed = |e: io::Error| {
            let mut message = format!("cannot listen on {addr}: {e}");
            if e.kind() == io::ErrorKind::PermissionDenied {
                message.push_str(" (ports below 1024 need root or CAP_NET_BIND_SERVICE)");
            } else if e.kind() == io::ErrorKind::AddrInUse {
                message.push_str(" (another process holds it: stop it or choose another port)");
            }
            tracing::debug!(worker = link.id, "{message}");
            (
                Control::ListenFailed {
                    seq,
                    errno: e.raw_os_error().unwrap_or(libc_einval()),
                    message,
                },
                Vec::new(),
            )
        };
        let parsed = addr;
        let key = Key::Listen(parsed.clone(), index);
        let mut t = self.inner.lock().unwrap();
        let handle = match t.by_key.get(&key) {
            Some(h) => *h,
            None => {
                t.next_handle += 1;
                let handle = t.next_handle;
                match create(policy, parsed, &opts, None) {
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
                entry.workers.insert(link.id);
                let reply = Control::Listened {
                    seq,
                    handle,
                    mode,
                    address: entry.address.clone(),
                    count_closes: entry.share.count_closes(),
                };
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
        let entry = t.entries.get_mut(&handle)?;
        if !entry.workers.contains(&link.id) {
            return None;
        }
        entry.listening.insert(link.id);
        if ready {
            entry.share.listening(link);
        }
        Some(entry.address.clone())
    }

    /// The worker finished its warm-up: route to it wherever it listens.
    pub fn set_ready(&self, worker: u32) {
        let mut t = self.inner.lock().unwrap();
        if !t.ready.insert(worker) {
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
        let (share, address) = create(policy, addr, &opts, socket)?;
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
        entry.workers.insert(link.id);
        match (mode, fds.into_iter().next()) {
            (ListenMode::Socket, Some(fd)) => Ok(fd),
            _ => Err(io::Error::other(
                "this policy gives workers no socket of their own",
            )),
        }
    }

    pub fn unlisten(&self, worker: u32, handle: u32) {
        let mut t = self.inner.lock().unwrap();
        Self::leave(&mut t, worker, handle);
    }

    pub fn remove_worker(&self, worker: u32) {
        let mut t = self.inner.lock().unwrap();
        t.ready.remove(&worker);
        t.links.remove(&worker);
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
) -> io::Result<(Box<dyn Share>, ListenAddr)> {
    let datagram = matches!(addr, ListenAddr::Udp(_));
    let unix = matches!(addr, ListenAddr::Unix(_));
    let reuse_port = policy == Policy::ReusePort && !unix;
    let sock = match socket {
        Some(s) => s,
        None => bind(addr, opts, reuse_port)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_short_and_long_name() {
        assert_eq!("rr".parse::<Policy>().unwrap(), Policy::RoundRobin);
        assert_eq!(
            "least-connections".parse::<Policy>().unwrap(),
            Policy::LeastConnections
        );
        assert_eq!("NONE".parse::<Policy>().unwrap(), Policy::Shared);
        assert_eq!("reuseport".parse::<Policy>().unwrap(), Policy::ReusePort);
        assert!("fastest"
            .parse::<Policy>()
            .unwrap_err()
            .contains("rr, lc, shared or reuseport"));
    }
}
