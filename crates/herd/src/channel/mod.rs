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
//! hop is a thread wake-up, most of a round trip's cost. Senders wait only
//! when more than [`HIGH_WATER`] bytes are queued (backpressure).
//!
//! Receiving ([`Reader`]) validates every header and keeps received
//! descriptors in arrival order; a frame that claims descriptors that did not
//! arrive, an oversized frame, or a truncated control message is a protocol
//! error that ends this channel and nothing else.

pub(crate) mod conns;
pub mod wire;

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::error::Error;
use wire::{Control, Header, Kind, HEADER_LEN, MAX_BODY, MAX_FDS};

/// The channel's socket, registered with the runtime for reading only.
///
/// A socket registered for writing too (as tokio's `UnixStream` is) wakes
/// the runtime each time the peer reads, since every read frees buffer space
/// and raises a new edge: one spurious wake-up of a runtime thread per
/// message. Here writes go straight to the socket, and only a writer that
/// finds it full registers for writability, for as long as it waits.
pub struct UnixStream {
    fd: AsyncFd<std::os::unix::net::UnixStream>,
}

impl UnixStream {
    pub fn from_std(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        s.set_nonblocking(true)?;
        let fd = crate::sys::async_fd_with_interest(s, Interest::READABLE)?;
        Ok(UnixStream { fd })
    }

    async fn readable(&self) -> io::Result<()> {
        self.fd.readable().await.map(drop)
    }

    /// Runs a read; a WouldBlock from `f` clears the read readiness.
    fn try_read_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        self.fd.try_io(Interest::READABLE, |_| f())
    }

    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        nix::sys::socket::send(
            self.as_raw_fd(),
            bytes,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)
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

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Wraps one end of a socketpair as a channel socket.
pub(crate) fn unix_stream(fd: OwnedFd) -> io::Result<Arc<UnixStream>> {
    Ok(Arc::new(UnixStream::from_std(
        std::os::unix::net::UnixStream::from(fd),
    )?))
}

/// Senders wait while more than this many bytes are queued.
pub const HIGH_WATER: usize = 8 << 20;

#[derive(Default)]
struct OutState {
    buf: Vec<u8>,
    /// Descriptors to attach at a byte offset of `buf` (a frame's start).
    fds: Vec<(usize, Vec<OwnedFd>)>,
    closed: bool,
    /// The writer task holds bytes it has not finished writing.
    writing: bool,
}

/// The sending half of a channel; cheap to share.
pub struct Outbox {
    state: Mutex<OutState>,
    stream: Arc<UnixStream>,
    wake_writer: Notify,
    drained: Notify,
}

impl Outbox {
    /// Starts the writer task for `stream` and returns the outbox feeding it.
    pub fn start(stream: Arc<UnixStream>) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(OutState::default()),
            stream: stream.clone(),
            wake_writer: Notify::new(),
            drained: Notify::new(),
        });
        tokio::spawn(writer(stream, outbox.clone()));
        outbox
    }

    /// Queues a control frame. Control frames skip backpressure: they are
    /// small and must not wait behind the application's messages.
    pub fn control(&self, msg: &Control, fds: Vec<OwnedFd>) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        if st.closed {
            return Err(Error::ChannelClosed);
        }
        push_frame(&mut st, Kind::Control, msg, fds)?;
        self.write_or_wake(st);
        Ok(())
    }

    /// Queues a user message, waiting while the queue is over [`HIGH_WATER`].
    pub async fn user<T: Serialize + ?Sized>(&self, msg: &T) -> Result<(), Error> {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap();
                if st.closed {
                    return Err(Error::ChannelClosed);
                }
                if st.buf.len() < HIGH_WATER {
                    push_frame(&mut st, Kind::User, msg, Vec::new())?;
                    self.write_or_wake(st);
                    return Ok(());
                }
            }
            drained.await;
        }
    }

    /// Called with a frame just queued: when the writer is idle (it has
    /// written everything it took, so no byte can overtake another) and no
    /// queued frame carries descriptors, writes the queue now; otherwise, or
    /// for what the socket does not take at once, wakes the writer.
    fn write_or_wake(&self, mut st: MutexGuard<'_, OutState>) {
        if !st.writing && st.fds.is_empty() {
            match self.stream.try_write(&st.buf) {
                Ok(n) if n == st.buf.len() => {
                    st.buf.clear();
                    return;
                }
                Ok(n) => {
                    st.buf.drain(..n);
                }
                // WouldBlock, or an error that the writer meets again and
                // handles (closing the channel).
                Err(_) => {}
            }
        }
        drop(st);
        self.wake_writer.notify_one();
    }

    /// Stops accepting frames; the writer flushes what is queued, then shuts
    /// the socket's write side so the peer reads end-of-file.
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.wake_writer.notify_one();
        self.drained.notify_waiters();
    }

    /// Waits until everything queued has been written (or the channel failed).
    pub async fn flushed(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.state.lock().unwrap();
                if st.buf.is_empty() {
                    return;
                }
            }
            drained.await;
        }
    }
}

fn push_frame<T: Serialize + ?Sized>(
    st: &mut OutState,
    kind: Kind,
    msg: &T,
    fds: Vec<OwnedFd>,
) -> Result<(), Error> {
    debug_assert!(fds.len() <= MAX_FDS);
    let start = st.buf.len();
    st.buf.extend_from_slice(&[0u8; HEADER_LEN]);
    if let Err(e) = serde_json::to_writer(&mut st.buf, msg) {
        st.buf.truncate(start);
        return Err(Error::Codec(e));
    }
    let len = st.buf.len() - start - HEADER_LEN;
    if len > MAX_BODY {
        st.buf.truncate(start);
        return Err(Error::TooLarge {
            size: len,
            max: MAX_BODY,
        });
    }
    let header = Header {
        len,
        kind,
        nfds: fds.len(),
    };
    st.buf[start..start + HEADER_LEN].copy_from_slice(&header.encode());
    if !fds.is_empty() {
        st.fds.push((start, fds));
    }
    Ok(())
}

async fn writer(stream: Arc<UnixStream>, outbox: Arc<Outbox>) {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    loop {
        let closing = {
            let mut st = outbox.state.lock().unwrap();
            std::mem::swap(&mut buf, &mut st.buf);
            std::mem::swap(&mut fds, &mut st.fds);
            st.writing = !buf.is_empty();
            st.closed
        };
        if buf.is_empty() {
            outbox.drained.notify_waiters();
            if closing {
                break;
            }
            outbox.wake_writer.notified().await;
            continue;
        }
        if let Err(e) = write_all(&stream, &buf, &mut fds).await {
            tracing::debug!(error = %e, "channel write failed; closing the channel");
            let mut st = outbox.state.lock().unwrap();
            st.closed = true;
            st.buf.clear();
            st.fds.clear();
            drop(st);
            outbox.drained.notify_waiters();
            return;
        }
        buf.clear();
        fds.clear();
        outbox.drained.notify_waiters();
    }
    let _ = nix::sys::socket::shutdown(stream.as_raw_fd(), nix::sys::socket::Shutdown::Write);
}

/// Writes `buf`, attaching each descriptor set to the byte at its offset.
async fn write_all(
    stream: &UnixStream,
    buf: &[u8],
    fds: &mut [(usize, Vec<OwnedFd>)],
) -> io::Result<()> {
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
                let n = send_with_fds(stream, &buf[pos..end], &raw).await?;
                next_fd += 1;
                n
            }
            None => write_some(stream, &buf[pos..end]).await?,
        };
        pos += n;
        // The rest of a partially sent range goes as plain bytes.
        while pos < end {
            pos += write_some(stream, &buf[pos..end]).await?;
        }
    }
    Ok(())
}

async fn write_some(stream: &UnixStream, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

async fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        let res = sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from);
        match res {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
}

/// One received frame.
#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    pub body: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

impl Frame {
    /// Decodes a control frame's body.
    pub fn control(&self) -> Result<Control, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::Protocol(format!(
                "malformed control frame ({e}): {:?}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(120)])
            ))
        })
    }
}

/// Received descriptors that no frame claimed yet; more than this is abuse.
const MAX_UNCLAIMED_FDS: usize = 1024;
const READ_CHUNK: usize = 256 << 10;

/// The receiving half of a channel.
pub struct Reader {
    stream: Arc<UnixStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
}

impl Reader {
    pub fn new(stream: Arc<UnixStream>) -> Reader {
        Reader {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            fds: VecDeque::new(),
        }
    }

    /// The next frame; `Ok(None)` at a clean end of file between frames.
    ///
    /// Cancel safety: not cancel safe only in that a cancelled call may have
    /// buffered bytes; calling again continues where it left off.
    pub async fn next(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(Some(frame));
            }
            if !self.fill().await? {
                return if self.end == self.start && self.fds.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::Protocol(format!(
                        "channel closed in the middle of a frame ({} bytes pending)",
                        self.end - self.start
                    )))
                };
            }
        }
    }

    fn parse(&mut self) -> Result<Option<Frame>, Error> {
        let avail = self.end - self.start;
        if avail < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let header = Header::decode(&h).map_err(Error::Protocol)?;
        // Descriptors arrive with a frame's first byte, so they are here now.
        if self.fds.len() < header.nfds {
            return Err(Error::Protocol(format!(
                "frame claims {} descriptors but {} arrived",
                header.nfds,
                self.fds.len()
            )));
        }
        let total = HEADER_LEN + header.len;
        if avail < total {
            if self.buf.len() - self.start < total {
                // Make room for the whole frame (bounded by MAX_BODY).
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < total {
                    self.buf.resize(total, 0);
                }
            }
            return Ok(None);
        }
        let body = self.buf[self.start + HEADER_LEN..self.start + total].to_vec();
        self.start += total;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let fds = self.fds.drain(..header.nfds).collect();
        Ok(Some(Frame {
            kind: header.kind,
            body,
            fds,
        }))
    }

    /// Reads more bytes; false at end of file.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.buf.len() - self.end < READ_CHUNK / 4 {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < READ_CHUNK / 4 {
                let len = self.buf.len();
                self.buf.resize(len + READ_CHUNK, 0);
            }
        }
        loop {
            self.stream
                .readable()
                .await
                .map_err(|e| Error::io("channel read", e))?;
            let fd = self.stream.as_raw_fd();
            let (buf, end) = (&mut self.buf, self.end);
            let space = buf.len() - end;
            let mut drained = None;
            let res = self.stream.try_read_io(|| {
                let (n, fds) = recv_with_fds(fd, &mut buf[end..])?;
                if 0 < n && n < space && fds.is_empty() {
                    // A short read that brought no descriptors emptied the
                    // socket (the kernel stops early only after a frame's
                    // descriptors). Answer WouldBlock so that tokio clears
                    // the readiness, as its own `poll_read` does after a
                    // short read: the next call then waits for epoll
                    // instead of paying a `recvmsg` that finds nothing.
                    drained = Some(n);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok((n, fds))
            });
            let res = match (res, drained) {
                (Err(_), Some(n)) => Ok((n, Vec::new())),
                (res, _) => res,
            };
            match res {
                Ok((0, fds)) if fds.is_empty() => return Ok(false),
                Ok((n, fds)) => {
                    self.end += n;
                    self.fds.extend(fds);
                    if self.fds.len() > MAX_UNCLAIMED_FDS {
                        return Err(Error::Protocol(format!(
                            "peer sent {} descriptors that no frame claims",
                            self.fds.len()
                        )));
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
                Err(e) => return Err(Error::io("channel read", e)),
            }
        }
    }
}

fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = [IoSliceMut::new(buf)];
    // Linux delivers at most one sendmsg's descriptors per recvmsg, and
    // SCM_MAX_FD (253) per sendmsg: room for that many never truncates.
    let mut space = nix::cmsg_space!([RawFd; 253]);
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            fds.extend(crate::sys::own_received_fds(&raw));
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message truncated: descriptors were lost",
        ));
    }
    Ok((msg.bytes, fds))
}

#[cfg(test)]
mod tests {
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
        let outbox = Outbox::start(a);
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
            }
        }
        assert_eq!(next, N);
        sender.await.unwrap();
    }
}
