//! The systemd conventions, both ways: what a service speaks to its manager
//! (sd_notify: `READY=1`, `STATUS=...`, `WATCHDOG=1` on `NOTIFY_SOCKET`) and
//! how a manager hands a service its sockets (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`, descriptors from 3).
//!
//! herd plays both roles: under systemd the primary is the service
//! ([`Notifier`], [`listen_fds`]); for [foreign workers](crate::foreign) it is
//! the manager (it binds the sockets, passes them the same way, and reads
//! each worker's notifications with [`parse_notify`]).
//!
//! ```
//! let fields = herd::systemd::parse_notify("READY=1\nSTATUS=warming up\n");
//! assert_eq!(fields, vec![("READY", "1"), ("STATUS", "warming up")]);
//! ```

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Error;

/// The variables a service manager gives the process it starts: taken by
/// the primary (and removed while it is single-threaded), never passed on
/// to a worker, which gets its own values of some.
pub const MANAGER_VARIABLES: [&str; 6] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// The first descriptor number of passed sockets (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: i32 = 3;

/// A socket that the service manager passed to this process.
#[derive(Debug)]
#[non_exhaustive]
pub struct ListenFd {
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`),
    /// if one was given.
    pub name: Option<String>,
    /// The descriptor (still at its number, 3 and up).
    pub fd: OwnedFd,
}

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the sockets the service manager passed to this process: none
/// unless `LISTEN_FDS` is set and `LISTEN_PID` is this process's pid. Each
/// descriptor is taken once per process: later calls return nothing.
///
/// The variables stay in the environment; a program that starts children
/// should remove them (before it starts threads) so that no child believes
/// the sockets are its own.
///
/// # Errors
/// [`Error::Io`] when `LISTEN_FDS` is not a number or names a descriptor
/// that is not open.
pub fn listen_fds() -> Result<Vec<ListenFd>, Error> {
    let Ok(n) = std::env::var("LISTEN_FDS") else {
        return Ok(Vec::new());
    };
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us {
        return Ok(Vec::new());
    }
    let n: i32 = n.trim().parse().map_err(|_| {
        Error::io(
            format!("LISTEN_FDS={n:?}"),
            io::Error::new(io::ErrorKind::InvalidInput, "not a number"),
        )
    })?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..n.max(0) {
        let fd = crate::sys::take_inherited_fd(LISTEN_FDS_START + i).map_err(|e| {
            Error::io(
                format!("LISTEN_FDS={n}: descriptor {}", LISTEN_FDS_START + i),
                e,
            )
        })?;
        // Ours now: not to be inherited by whatever we start.
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(|e| Error::io("LISTEN_FDS: set close-on-exec", e))?;
        let name = names
            .get(i as usize)
            .filter(|s| !s.is_empty() && s.as_str() != "unknown")
            .cloned();
        out.push(ListenFd { name, fd });
    }
    Ok(out)
}

/// Splits a notification datagram into its `KEY=VALUE` fields (one per
/// line; lines without `=` are skipped).
pub fn parse_notify(msg: &str) -> Vec<(&str, &str)> {
    msg.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v))
        .collect()
}

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it.
pub fn monotonic_usec() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// The sd_notify sender of this process, when its manager gave it a
/// `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
///
/// ```no_run
/// if let Some(n) = herd::systemd::Notifier::from_env() {
///     n.notify("READY=1\nSTATUS=serving").ok();
/// }
/// ```
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, if set (and usable).
    pub fn from_env() -> Option<Notifier> {
        let v = std::env::var_os("NOTIFY_SOCKET")?;
        Notifier::new(&v.to_string_lossy()).ok()
    }

    /// A notifier sending to `address` (a path, or `@name`).
    ///
    /// # Errors
    /// When no datagram socket can be created.
    pub fn new(address: &str) -> io::Result<Notifier> {
        let target = match address.strip_prefix('@') {
            Some(name) => Target::Abstract(name.as_bytes().to_vec()),
            None => Target::Path(PathBuf::from(address)),
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            target,
        })
    }

    /// Sends one notification (fields separated by newlines).
    ///
    /// # Errors
    /// When the datagram cannot be sent (the manager is gone).
    pub fn notify(&self, msg: &str) -> io::Result<()> {
        match &self.target {
            Target::Path(p) => self.socket.send_to(msg.as_bytes(), p).map(|_| ()),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
            }
        }
    }
}

/// How often this process should send `WATCHDOG=1`: half of `WATCHDOG_USEC`
/// when it is set (and `WATCHDOG_PID`, if set, is this process).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The service manager of this process, as it told it in its environment:
/// where to send notifications and how often to send `WATCHDOG=1`.
///
/// ```no_run
/// if let Some(manager) = herd::systemd::ServiceManager::from_env() {
///     manager.notify("READY=1").ok();
///     println!("watchdog every {:?}", manager.watchdog());
/// }
/// ```
#[derive(Debug)]
pub struct ServiceManager {
    notifier: Notifier,
    watchdog: Option<Duration>,
}

impl ServiceManager {
    /// The manager of `NOTIFY_SOCKET` (none when it is not set), with the
    /// watchdog interval of [`watchdog_interval`].
    ///
    /// The variables stay in the environment: a program that starts
    /// children which must not see them should take the manager and remove
    /// them before it starts threads (as `herd run` does).
    pub fn from_env() -> Option<ServiceManager> {
        Some(ServiceManager::new(
            Notifier::from_env()?,
            watchdog_interval(),
        ))
    }

    /// A manager reached by `notifier`, expecting `WATCHDOG=1` every
    /// `watchdog` (if given).
    pub fn new(notifier: Notifier, watchdog: Option<Duration>) -> ServiceManager {
        ServiceManager { notifier, watchdog }
    }

    /// Sends one notification (fields separated by newlines).
    ///
    /// # Errors
    /// When the datagram cannot be sent (the manager is gone).
    pub fn notify(&self, msg: &str) -> io::Result<()> {
        self.notifier.notify(msg)
    }

    /// How often to send `WATCHDOG=1`, if the manager watches.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_split_into_fields() {
        assert_eq!(
            parse_notify("WATCHDOG=1\nbogus\nSTATUS=a=b"),
            vec![("WATCHDOG", "1"), ("STATUS", "a=b")]
        );
    }

    #[test]
    fn notifier_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("herd-sd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        Notifier::new(path.to_str().unwrap())
            .unwrap()
            .notify("READY=1")
            .unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
