//! The receiving end of a foreign worker's `NOTIFY_SOCKET`: one datagram
//! socket per worker, private to herd's user, whose sd_notify datagrams
//! become typed [`Notice`]s for the primary to act on.

use std::io;
use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;

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
            ("STATUS", s) => Some(Notice::Status(s.to_string())),
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
}

impl Receiver {
    /// Binds `path` (replacing a file left there), readable and writable
    /// by herd's user only.
    pub fn bind(path: &Path) -> io::Result<Receiver> {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(path);
        let socket = UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        Ok(Receiver {
            socket,
            path: path.to_path_buf(),
            buf: vec![0; 4096],
        })
    }

    /// The next datagram's notices. Cancel safe.
    pub async fn recv(&mut self, worker: u32) -> io::Result<Vec<Notice>> {
        let n = self.socket.recv(&mut self.buf).await?;
        Ok(parse(worker, &self.buf[..n]))
    }

    /// The notices of every datagram already queued (what a worker said
    /// just before it exited).
    pub fn drain(&mut self, worker: u32) -> Vec<Notice> {
        let mut out = Vec::new();
        while let Ok(n) = self.socket.try_recv(&mut self.buf) {
            out.extend(parse(worker, &self.buf[..n]));
        }
        out
    }
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
}
