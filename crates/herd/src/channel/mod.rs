//! The channel between the primary and one worker: a Unix stream socketpair
//! carrying length-prefixed frames (see [`wire`] and docs/protocol.md), with
//! file descriptors attached by SCM_RIGHTS.
//!
//! Sending never blocks on the socket: a frame is appended to an [`Outbox`]
//! under a short lock, and one writer task per channel flushes everything
//! queued with as few system calls as possible, so a burst of small messages
//! costs one `write` instead of one each. A frame sent while nothing is queued
//! and the writer is idle is written at once by the sender (a non-blocking
//! `write`; whatever does not fit is left to the writer), which spares a
//! lone message the hop to the writer task: on a multi-threaded runtime that
//! hop is a thread wake-up, most of a round trip's cost. On a one-thread
//! runtime whose thread also runs the writer (the primary's dispatch
//! thread, a worker on tokio's `current_thread`), the hop costs nothing and
//! the sender leaves up to eight frames to the writer, which runs as soon
//! as the sender yields: the replies to one read's requests, or the
//! requests of many callers, then go in one `write` and wake the peer once
//! (`Outbox::batching`). Senders wait only when more than [`HIGH_WATER`]
//! bytes are queued (backpressure).
//!
//! Receiving ([`Reader`]) validates every header and keeps received
//! descriptors in arrival order; a frame that claims descriptors that did not
//! arrive, an oversized frame, or a truncated control message is a protocol
//! error that ends this channel and nothing else.

pub(crate) mod conns;
pub(crate) mod doorbell;
mod outbox;
mod reader;
pub mod wire;

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub(crate) use outbox::Outbox;
pub(crate) use reader::{Frame, Limits, Reader};

/// The channel's socket, registered with the runtime for reading only.
///
/// A socket registered for writing too (as tokio's `UnixStream` is) wakes
/// the runtime each time the peer reads, since every read frees buffer space
/// and raises a new edge: one spurious wake-up of a runtime thread per
/// message. Here writes go straight to the socket, and only a writer that
/// finds it full registers for writability, for as long as it waits.
pub struct UnixStream {
    fd: AsyncFd<std::os::unix::net::UnixStream>,
    /// A worker's doorbell, rung after each write that sent bytes
    /// (`doorbell`).
    bell: Option<doorbell::Doorbell>,
}

impl UnixStream {
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        s.set_nonblocking(true)?;
        let fd = crate::sys::async_fd_with_interest(s, Interest::READABLE)?;
        Ok(UnixStream { fd, bell: None })
    }

    /// Rings the doorbell, if this socket has one, once `sent` says bytes
    /// went out.
    fn rang<T>(&self, sent: io::Result<T>) -> io::Result<T> {
        if let (Ok(_), Some(bell)) = (&sent, &self.bell) {
            bell.ring();
        }
        sent
    }

    async fn readable(&self) -> io::Result<()> {
        self.fd.readable().await.map(drop)
    }

    /// Runs a read; a WouldBlock from `f` clears the read readiness.
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.fd.try_io(Interest::READABLE, |_| f())
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        self.rang(
            nix::sys::socket::send(
                self.as_raw_fd(),
                bytes,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from),
        )
    }

    /// Waits until the socket can take more bytes (through a registration
    /// of a duplicate descriptor that lasts only as long as the wait).
    async fn writable(&self) -> io::Result<()> {
        let dup = self.fd.get_ref().try_clone()?;
        let w = crate::sys::async_fd_with_interest(dup, Interest::WRITABLE)?;
        w.writable().await?.retain_ready();
        Ok(())
    }
}

impl UnixStream {
    /// Writes `buf`, attaching each descriptor set to the byte at its offset.
    async fn write_all(&self, buf: &[u8], fds: &mut [(usize, Vec<OwnedFd>)]) -> io::Result<()> {
        let mut pos = 0;
        let mut next_fd = 0;
        while pos < buf.len() {
            // Bytes up to the next descriptor boundary go without ancillary data.
            let (end, attach) = match fds.get(next_fd) {
                Some((off, _)) if *off == pos => {
                    let end = fds.get(next_fd + 1).map_or(buf.len(), |(o, _)| *o);
                    (end, Some(next_fd))
                }
                Some((off, _)) => (*off, None),
                None => (buf.len(), None),
            };
            let n = match attach {
                Some(i) => {
                    let raw: Vec<RawFd> = fds[i].1.iter().map(|f| f.as_raw_fd()).collect();
                    let n = self.send_with_fds(&buf[pos..end], &raw).await?;
                    next_fd += 1;
                    n
                }
                None => self.write_some(&buf[pos..end]).await?,
            };
            pos += n;
            // The rest of a partially sent range goes as plain bytes.
            while pos < end {
                pos += self.write_some(&buf[pos..end]).await?;
            }
        }
        Ok(())
    }

    async fn write_some(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match self.try_write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_with_fds(&self, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
        let iov = [IoSlice::new(bytes)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        loop {
            let res = sendmsg::<()>(
                self.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from);
            match self.rang(res) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Wraps one end of a socketpair as a channel socket.
pub(crate) fn unix_stream(fd: OwnedFd) -> io::Result<Arc<UnixStream>> {
    ringing(fd, None)
}

/// As [`unix_stream`], ringing `bell` after each write (a worker's end).
pub(crate) fn ringing(
    fd: OwnedFd,
    bell: Option<doorbell::Doorbell>,
) -> io::Result<Arc<UnixStream>> {
    let mut stream = UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))?;
    stream.bell = bell;
    Ok(Arc::new(stream))
}

#[cfg(test)]
mod tests {
    use super::wire::{Control, Kind};
    use super::*;
    use std::time::Duration;

    /// A connected pair whose sending side has a small buffer, so that a
    /// stream of frames takes both ways out: written by its sender while the
    /// writer is idle, and queued for the writer while the socket is full.
    fn pair() -> (Arc<UnixStream>, Arc<UnixStream>) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        socket2::SockRef::from(&a)
            .set_send_buffer_size(4096)
            .unwrap();
        let wrap = |s: std::os::unix::net::UnixStream| Arc::new(UnixStream::from_std(s).unwrap());
        (wrap(a), wrap(b))
    }

    /// Frame sizes from a few bytes to far past the socket's buffer.
    fn pad_len(i: u64) -> usize {
        if i % 1000 == 999 {
            100_000
        } else {
            (i % 50) as usize
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_keep_their_order_whoever_writes_them() {
        const N: u64 = 20_000;
        let (a, b) = pair();
        let outbox = Outbox::start(a, wire::DEFAULT_MAX_BODY);
        let sender = tokio::spawn(async move {
            for i in 0..N {
                let pad = "x".repeat(pad_len(i));
                outbox.user(&(i, pad)).await.unwrap();
                if i % 7 == 0 {
                    // Every 70th control frame carries a descriptor.
                    let fds = if i % 70 == 0 {
                        let (x, _) = std::os::unix::net::UnixStream::pair().unwrap();
                        vec![x.into()]
                    } else {
                        Vec::new()
                    };
                    outbox.control(&Control::Disconnecting, fds).unwrap();
                }
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            outbox.close();
            outbox.flushed().await;
        });
        let mut reader = Reader::new(b);
        let (mut next, mut control_after) = (0u64, None);
        while let Some(frame) = reader.next().await.unwrap() {
            match frame.kind {
                Kind::User => {
                    assert_eq!(control_after, None, "a control frame went missing");
                    let (i, pad): (u64, String) = serde_json::from_slice(&frame.body).unwrap();
                    assert_eq!(i, next, "user frames out of order");
                    assert_eq!(pad.len(), pad_len(i));
                    if i % 7 == 0 {
                        control_after = Some(i);
                    }
                    next += 1;
                    if i % 3000 == 0 {
                        // A slow reader now and then: the socket fills up.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                Kind::Control => {
                    let i = control_after.take().expect("a control frame out of place");
                    assert_eq!(frame.control().unwrap(), Control::Disconnecting);
                    assert_eq!(frame.fds.len(), usize::from(i % 70 == 0));
                }
                k => panic!("a {k:?} frame was never sent"),
            }
        }
        assert_eq!(next, N);
        sender.await.unwrap();
    }
}
