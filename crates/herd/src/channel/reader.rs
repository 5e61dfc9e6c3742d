//! The receiving half of a channel: frames validated header first, with
//! the descriptors that arrived with them.

use std::collections::VecDeque;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::wire::{Control, Header, Kind, HEADER_LEN};
use super::UnixStream;
use crate::error::Error;

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
