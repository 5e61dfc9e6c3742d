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
mod table;
mod unix;

use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::str::FromStr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

pub use crate::addr::ListenAddr;
use crate::addr::ListenOptions;
use crate::channel::wire::ListenMode;
pub(crate) use table::Table;

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
    /// Whether [`drain`](Self::drain) can take a worker out of rotation:
    /// only where the primary routes connections.
    fn can_drain(&self) -> bool {
        false
    }
    /// Route nothing new to the worker, which stays (it is drained); what
    /// is queued for it and not taken goes to the others. `listening`
    /// puts it back.
    fn drain(&mut self, worker: u32) {
        self.stop(worker);
    }
    /// The policy's short name, for messages.
    fn name(&self) -> &'static str;
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
    /// What the primary has handed off so far and holds now (nothing for
    /// policies where the workers accept).
    fn stats(&self) -> ShareStats {
        ShareStats::default()
    }
}

/// A policy's hand-off counts, for [`ListenStatus`](crate::primary::ListenStatus).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShareStats {
    /// Connections handed to workers since the listen began.
    pub handed_off: u64,
    /// Accepted by the primary, waiting for a worker with room.
    pub waiting: u64,
    /// In workers' connection queues, not yet taken.
    pub queued: u64,
}

/// Mode bits a worker may ask for on its Unix socket: permissions only
/// (no setuid, setgid or sticky bit).
const MODE_BITS: u32 = 0o777;

/// The capability that lets a process bind ports below
/// net.ipv4.ip_unprivileged_port_start.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// Binds `addr` for a worker whose credentials are `who`, doing nothing
/// the worker could not do itself: a port below
/// `net.ipv4.ip_unprivileged_port_start` needs CAP_NET_BIND_SERVICE in the
/// worker, and a Unix socket's path is created, replaced (when stale) and
/// chmod'ed with the worker's file-system credentials, so the file is the
/// worker's and the directory's permissions apply to the worker. `None`
/// (the worker is gone, or unknown) is refused.
pub(crate) fn bind_for(
    addr: &ListenAddr,
    opts: &ListenOptions,
    reuse_port: bool,
    who: Option<&crate::procfs::Creds>,
) -> io::Result<Socket> {
    let refuse = |why: &str| io::Error::new(io::ErrorKind::PermissionDenied, why.to_string());
    let Some(who) = who else {
        return Err(refuse("the worker's credentials cannot be read"));
    };
    if opts.mode.is_some_and(|m| m & !MODE_BITS != 0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a socket's mode holds permission bits only (at most 0o777)",
        ));
    }
    match addr {
        ListenAddr::Tcp(sa) | ListenAddr::Udp(sa) => {
            let port = u32::from(sa.port());
            if port != 0
                && port < unprivileged_port_start()
                && who.cap_eff & (1 << CAP_NET_BIND_SERVICE) == 0
            {
                return Err(refuse(
                    "the worker lacks CAP_NET_BIND_SERVICE, which this port needs",
                ));
            }
            bind(addr, opts, reuse_port)
        }
        ListenAddr::Unix(_) if who.fs == own_fs_creds() => bind(addr, opts, reuse_port),
        ListenAddr::Unix(_) => crate::sys::with_fs_creds(&who.fs, || bind(addr, opts, reuse_port)),
    }
}

/// This thread's file-system credentials, as the kernel checks them.
fn own_fs_creds() -> crate::sys::FsCreds {
    crate::sys::FsCreds {
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
        groups: nix::unistd::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default(),
    }
}

/// net.ipv4.ip_unprivileged_port_start (1024 if unreadable).
fn unprivileged_port_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// Creates, binds and (for streams) listens on a socket for `addr`.
pub(crate) fn bind(
    addr: &ListenAddr,
    opts: &ListenOptions,
    reuse_port: bool,
) -> io::Result<Socket> {
    let backlog = opts.backlog_or_default() as i32;
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
                // Inherited by every accepted connection (Linux).
                if opts.nodelay_or_default() {
                    sock.set_tcp_nodelay(true)?;
                }
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
            // Through its directory when the path is too long to name.
            let name = unix::UnixName::of(path)?;
            match sock.bind(name.addr()) {
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && is_stale_unix_socket(path, &name) =>
                {
                    tracing::info!(path = %path.display(), "removing stale Unix socket file");
                    std::fs::remove_file(path)?;
                    sock.bind(name.addr())?;
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
fn is_stale_unix_socket(path: &std::path::Path, name: &unix::UnixName) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    is_socket && !name.is_listened_on()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a worker's accepted connection has, herd-aware (rr: the primary
    /// accepts) or foreign: the listening socket's TCP_NODELAY.
    #[test]
    fn accepted_connections_inherit_tcp_nodelay_unless_turned_off() {
        let addr: ListenAddr = "127.0.0.1:0".parse().unwrap();
        for (opts, want) in [
            (ListenOptions::new(), true),
            (ListenOptions::new().nodelay(false), false),
        ] {
            let l = std::net::TcpListener::from(bind(&addr, &opts, false).unwrap());
            l.set_nonblocking(false).unwrap();
            let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            assert_eq!(s.nodelay().unwrap(), want, "{opts:?}");
        }
    }

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
