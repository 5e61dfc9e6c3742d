//! The receiving end of a foreign worker's `NOTIFY_SOCKET`: one datagram
//! socket per worker, mode 0600 and herd's user's (or, for a worker that
//! runs as another user, that user's), whose sd_notify datagrams become
//! typed [`Notice`]s for the primary to act on.
//!
//! The socket speaks only for its worker, as systemd's `NotifyAccess=all`
//! within the service's cgroup: each datagram carries its sender's pid
//! (SCM_CREDENTIALS, with SO_PASSCRED on), and only one from the worker's
//! process or a descendant of it (its process group, or its parent chain)
//! is read; any other process of the same user is ignored. A sender that
//! exited before herd read its datagram cannot be told apart from an
//! outsider and is ignored too. `STATUS=` loses its control characters
//! (terminal escapes) before anyone shows it.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// The longest `STATUS=` kept, in characters.
const STATUS_MAX: usize = 256;

/// `STATUS=` text as it may be shown: no control characters (C0, C1: no
/// terminal escape), no bidirectional overrides, at most [`STATUS_MAX`]
/// characters.
pub(crate) fn clean_status(s: &str) -> String {
    s.chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(*c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .take(STATUS_MAX)
        .collect()
}

/// Whether `sender` is the worker whose process is `worker`, or one of its
/// descendants: in its process group (each worker leads its own), or below
/// it in the parent chain (one that left the group).
fn of_worker_tree(sender: u32, worker: u32) -> bool {
    sender == worker
        || crate::procfs::place(sender).is_some_and(|p| p.pgid == worker)
        || crate::procfs::descends_from(sender, worker)
}

/// What a foreign worker said, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `READY=1`: its warm-up is done.
    Ready,
    /// `STATUS=...`: what it says of itself.
    Status(String),
    /// `WATCHDOG=1`: it is alive.
    Watchdog,
    /// `WATCHDOG=trigger`: it asks to be killed (SIGABRT, as systemd).
    WatchdogTrigger,
    /// `STOPPING=1`: its exit is deliberate.
    Stopping,
    /// `HERD_HANDLED=N` (herd's own field): connections handled so far.
    Handled(u64),
}

/// The notices in one datagram; unknown fields are logged and skipped.
pub(crate) fn parse(worker: u32, datagram: &[u8]) -> Vec<Notice> {
    let text = String::from_utf8_lossy(datagram);
    crate::systemd::parse_notify(&text)
        .into_iter()
        .filter_map(|(key, value)| match (key, value) {
            ("READY", "1") => Some(Notice::Ready),
            ("STATUS", s) => Some(Notice::Status(clean_status(s))),
            ("WATCHDOG", "1") => Some(Notice::Watchdog),
            ("WATCHDOG", "trigger") => Some(Notice::WatchdogTrigger),
            ("STOPPING", "1") => Some(Notice::Stopping),
            ("HERD_HANDLED", n) => n.trim().parse().ok().map(Notice::Handled),
            (k, v) => {
                tracing::debug!(worker, "notification {k}={v} ignored");
                None
            }
        })
        .collect()
}

/// One worker's notification socket; its file is removed on drop.
pub(crate) struct Receiver {
    socket: UnixDatagram,
    path: PathBuf,
    buf: Vec<u8>,
    /// Datagrams refused so far (the first is logged as a warning).
    refused: u64,
}

impl Receiver {
    /// Binds `path` (replacing a file left there), mode 0600: writable by
    /// herd's user only, or, with `owner`, by that user (a worker's that
    /// runs as another user) and root only.
    pub fn bind(path: &Path, owner: Option<u32>) -> io::Result<Receiver> {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        if let Some(uid) = owner {
            // Not following a link: `path` is the socket herd just bound, in
            // a directory only herd's user may write in.
            std::os::unix::fs::lchown(path, Some(uid), None)?;
        }
        nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::PassCred, &true)
            .map_err(io::Error::from)?;
        Ok(Receiver {
            socket,
            path: path.to_path_buf(),
            buf: vec![0; 4096],
            refused: 0,
        })
    }

    /// The next datagram's notices from worker `worker` (whose process is
    /// `pid`) or its descendants; others' are dropped. Cancel safe.
    pub async fn recv(&mut self, worker: u32, pid: u32) -> io::Result<Vec<Notice>> {
        loop {
            let fd = self.socket.as_raw_fd();
            let buf = &mut self.buf;
            let (n, sender) = self
                .socket
                .async_io(Interest::READABLE, || recv_with_pid(fd, buf))
                .await?;
            if let Some(notices) = self.accept(worker, pid, n, sender) {
                return Ok(notices);
            }
        }
    }

    /// The notices of every datagram already queued (what a worker said
    /// just before it exited).
    pub fn drain(&mut self, worker: u32, pid: u32) -> Vec<Notice> {
        let mut out = Vec::new();
        loop {
            let fd = self.socket.as_raw_fd();
            let buf = &mut self.buf;
            let Ok((n, sender)) = self
                .socket
                .try_io(Interest::READABLE, || recv_with_pid(fd, buf))
            else {
                return out;
            };
            out.extend(self.accept(worker, pid, n, sender).unwrap_or_default());
        }
    }

    /// The notices of a datagram of `n` bytes from `sender`, if it may
    /// speak for the worker.
    fn accept(
        &mut self,
        worker: u32,
        pid: u32,
        n: usize,
        sender: Option<u32>,
    ) -> Option<Vec<Notice>> {
        match sender {
            Some(s) if of_worker_tree(s, pid) => Some(parse(worker, &self.buf[..n])),
            _ => {
                self.refused += 1;
                let who = sender.map_or("an unknown process".to_string(), |s| format!("pid {s}"));
                if self.refused == 1 {
                    tracing::warn!(
                        worker,
                        "notification from {who}, not of worker {worker}'s process tree: ignored"
                    );
                } else {
                    tracing::debug!(worker, "notification from {who} ignored");
                }
                None
            }
        }
    }
}

/// One datagram into `buf`: its length and its sender's pid.
fn recv_with_pid(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<u32>)> {
    let mut space = nix::cmsg_space!(UnixCredentials);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT)
        .map_err(io::Error::from)?;
    let sender = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
            _ => None,
        })
    });
    Ok((msg.bytes, sender))
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_notices() {
        assert_eq!(
            parse(
                1,
                b"READY=1\nSTATUS=warm\nHERD_HANDLED= 12\nWATCHDOG=trigger\nX=1"
            ),
            vec![
                Notice::Ready,
                Notice::Status("warm".into()),
                Notice::Handled(12),
                Notice::WatchdogTrigger
            ]
        );
    }

    #[test]
    fn status_loses_its_escapes() {
        assert_eq!(
            clean_status("\u{1b}[31mred\u{1b}[0m \u{7}bell"),
            "[31mred[0m bell"
        );
        assert_eq!(clean_status("a\u{202e}b\tc\u{9b}d"), "abcd");
        assert_eq!(clean_status(&"x".repeat(1000)).len(), STATUS_MAX);
    }
}
