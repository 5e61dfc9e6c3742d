//! The receiving half of a channel: frames validated header first, with
//! the descriptors that arrived with them.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::wire::{Control, Header, Kind, DEFAULT_MAX_BODY, HEADER_LEN};
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
/// The read buffer's normal size: what it starts with, and what it goes
/// back to once a larger frame is out.
const READ_CHUNK: usize = 256 << 10;
/// Free space a read needs before the buffer is compacted or grown.
const MIN_READ: usize = READ_CHUNK / 4;

/// What a [`Reader`] accepts from its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The largest body a frame may announce (the primary's `max_frame`).
    pub max_body: usize,
    /// How long a frame may take to arrive once it has begun to; `None`
    /// for no limit (a worker reading its primary).
    pub frame_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: DEFAULT_MAX_BODY,
            frame_timeout: None,
        }
    }
}

/// The receiving half of a channel.
///
/// Memory: the buffer is [`READ_CHUNK`] bytes, and grows only with what
/// arrives (by half at a time, never past the frame being read), so a peer
/// that announces a large frame and sends little of it costs little. A
/// frame that needed a larger buffer leaves with that buffer as its body,
/// and the reader goes back to a buffer of the normal size.
pub struct Reader {
    stream: Arc<UnixStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: VecDeque<OwnedFd>,
    limits: Limits,
    /// When the frame arriving now must be complete, once it has begun.
    deadline: Option<Instant>,
    /// The primary's note of each read, for its doorbells' watch.
    mark: Option<super::doorbell::ReadMark>,
}

impl Reader {
    /// A reader with the default limits (the default frame limit, no
    /// timeout).
    #[cfg(test)]
    pub fn new(stream: Arc<UnixStream>) -> Reader {
        Reader::with_limits(stream, Limits::default())
    }

    pub(crate) fn with_limits(stream: Arc<UnixStream>, limits: Limits) -> Reader {
        Reader {
            stream,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            fds: VecDeque::new(),
            limits,
            deadline: None,
            mark: None,
        }
    }

    /// Notes each read of the socket in `mark` (the primary's reader of a
    /// worker with a doorbell).
    pub(crate) fn marking(mut self, mark: super::doorbell::ReadMark) -> Reader {
        self.mark = Some(mark);
        self
    }

    /// The next frame; `Ok(None)` at a clean end of file between frames.
    ///
    /// # Errors
    /// [`Error::Protocol`] for a malformed or oversized header, a frame
    /// that did not arrive whole within the frame timeout, descriptors
    /// that went missing; [`Error::Io`] when the socket fails.
    ///
    /// Cancel safety: not cancel safe only in that a cancelled call may have
    /// buffered bytes; calling again continues where it left off.
    pub async fn next(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            if let Some(frame) = self.parse()? {
                self.deadline = None;
                return Ok(Some(frame));
            }
            let more = match self.frame_deadline() {
                Some(at) => match tokio::time::timeout_at(at, self.fill()).await {
                    Ok(more) => more?,
                    Err(_) => return Err(self.stalled()),
                },
                None => self.fill().await?,
            };
            if !more {
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

    /// The deadline of the frame begun and not yet complete, set when it is
    /// first waited for; none between frames (a quiet peer is no fault).
    fn frame_deadline(&mut self) -> Option<Instant> {
        let timeout = self.limits.frame_timeout?;
        if self.end == self.start {
            return None;
        }
        Some(
            *self
                .deadline
                .get_or_insert_with(|| Instant::now() + timeout),
        )
    }

    /// The error for a frame that stopped arriving.
    fn stalled(&self) -> Error {
        let avail = self.end - self.start;
        let timeout = self.limits.frame_timeout.unwrap_or_default();
        let what = match self.header() {
            Ok(Some(h)) => format!(
                "a frame of {} bytes stopped arriving: {} bytes of it came",
                h.len,
                avail - HEADER_LEN
            ),
            _ => format!("a frame header stopped arriving: {avail} bytes of it came"),
        };
        Error::Protocol(format!(
            "{what}, then nothing for {timeout:?} (the primary's `frame_timeout` setting)"
        ))
    }

    /// The header at the start of the buffer, validated, once all of it is
    /// here.
    fn header(&self) -> Result<Option<Header>, Error> {
        if self.end - self.start < HEADER_LEN {
            return Ok(None);
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        Header::decode(&h, self.limits.max_body)
            .map(Some)
            .map_err(Error::Protocol)
    }

    fn parse(&mut self) -> Result<Option<Frame>, Error> {
        let Some(header) = self.header()? else {
            return Ok(None);
        };
        // Descriptors arrive with a frame's first byte, so they are here now.
        if self.fds.len() < header.nfds {
            return Err(Error::Protocol(format!(
                "frame claims {} descriptors but {} arrived",
                header.nfds,
                self.fds.len()
            )));
        }
        let total = HEADER_LEN + header.len;
        if self.end - self.start < total {
            // `fill` makes room as the rest arrives.
            return Ok(None);
        }
        let frame_end = self.start + total;
        let body = if self.buf.len() > READ_CHUNK {
            // The buffer grew for this frame: it leaves as the body, and
            // what follows the frame moves to a buffer of the normal size.
            let rest = self.end - frame_end;
            let mut body = std::mem::replace(&mut self.buf, vec![0; READ_CHUNK.max(rest)]);
            self.buf[..rest].copy_from_slice(&body[frame_end..self.end]);
            body.truncate(frame_end);
            body.drain(..self.start + HEADER_LEN);
            body.shrink_to_fit();
            self.start = 0;
            self.end = rest;
            body
        } else {
            let body = self.buf[self.start + HEADER_LEN..frame_end].to_vec();
            self.start = frame_end;
            body
        };
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

    /// Makes room for a read: compacts, and grows the buffer only for a
    /// frame that does not fit, by half its size at a time and never past
    /// that frame's end.
    fn make_room(&mut self) {
        if self.buf.len() - self.end >= MIN_READ {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end >= MIN_READ {
            return;
        }
        let frame_end = match self.header() {
            Ok(Some(h)) => HEADER_LEN + h.len,
            _ => self.end + READ_CHUNK,
        };
        let len = self.buf.len();
        let grown = (len + len / 2).min(frame_end).max(self.end + MIN_READ);
        self.buf.resize(grown, 0);
    }

    /// Reads more bytes; false at end of file.
    async fn fill(&mut self) -> Result<bool, Error> {
        self.make_room();
        loop {
            self.stream
                .readable()
                .await
                .map_err(|e| Error::io("channel read", e))?;
            let fd = self.stream.as_raw_fd();
            let (buf, end) = (&mut self.buf, self.end);
            let space = buf.len() - end;
            let mut drained = None;
            if let Some(mark) = &self.mark {
                mark.reading();
            }
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
    // Linux delivers at most one sendmsg's descriptors per recvmsg, and
    // SCM_MAX_FD (253) per sendmsg: room for that many truncates only when
    // this process cannot install them (its open-files limit). Those that
    // were installed close as `got` drops.
    let got = crate::sys::recv_with_fds(fd, buf, 253, 0)?;
    if got.truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message truncated: descriptors were lost (is this process at its \
             open-files limit?)",
        ));
    }
    Ok((got.bytes, got.fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pair() -> (std::os::unix::net::UnixStream, Arc<UnixStream>) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (a, Arc::new(UnixStream::from_std(b).unwrap()))
    }

    fn header(len: usize) -> [u8; HEADER_LEN] {
        Header {
            len,
            kind: Kind::User,
            nfds: 0,
        }
        .encode()
    }

    #[tokio::test]
    async fn a_large_frame_takes_its_buffer_with_it() {
        let (mut tx, rx) = pair();
        let mut reader = Reader::new(rx);
        let body = vec![b'7'; 4 << 20];
        let writer = std::thread::spawn(move || {
            tx.write_all(&header(body.len())).unwrap();
            tx.write_all(&body).unwrap();
            tx.write_all(&header(1)).unwrap();
            tx.write_all(b"8").unwrap();
            tx
        });
        let big = reader.next().await.unwrap().unwrap();
        assert_eq!(big.body.len(), 4 << 20);
        assert!(big.body.iter().all(|b| *b == b'7'));
        assert_eq!(reader.buf.len(), READ_CHUNK, "back to its normal size");
        assert_eq!(reader.next().await.unwrap().unwrap().body, b"8");
        drop(writer.join().unwrap());
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_announced_frame_is_not_allocated_before_it_arrives() {
        let (mut tx, rx) = pair();
        let mut reader = Reader::with_limits(
            rx,
            Limits {
                max_body: 16 << 20,
                frame_timeout: None,
            },
        );
        tx.write_all(&header(16 << 20)).unwrap();
        tx.write_all(&[b'x'; 1000]).unwrap();
        let next = tokio::time::timeout(Duration::from_millis(100), reader.next()).await;
        assert!(next.is_err(), "the frame is not complete");
        assert_eq!(reader.buf.len(), READ_CHUNK);
        assert_eq!(reader.end - reader.start, HEADER_LEN + 1000);
    }

    #[tokio::test]
    async fn a_frame_over_the_limit_is_refused_at_its_header() {
        let (mut tx, rx) = pair();
        let mut reader = Reader::with_limits(
            rx,
            Limits {
                max_body: 1 << 20,
                frame_timeout: None,
            },
        );
        tx.write_all(&header((1 << 20) + 1)).unwrap();
        let e = reader.next().await.unwrap_err().to_string();
        assert!(e.contains("1048577") && e.contains("max_frame"), "{e}");
    }

    #[tokio::test]
    async fn a_frame_that_stops_arriving_times_out_but_a_quiet_peer_does_not() {
        let (mut tx, rx) = pair();
        let timeout = Duration::from_millis(200);
        let limits = Limits {
            max_body: 1 << 20,
            frame_timeout: Some(timeout),
        };
        let mut reader = Reader::with_limits(rx, limits);
        // Between frames, silence is no fault.
        let quiet = tokio::time::timeout(timeout * 2, reader.next()).await;
        assert!(quiet.is_err());
        tx.write_all(&header(100)).unwrap();
        tx.write_all(&[b'x'; 10]).unwrap();
        let started = Instant::now();
        let e = reader.next().await.unwrap_err().to_string();
        assert!(
            e.contains("of 100 bytes") && e.contains("10 bytes") && e.contains("frame_timeout"),
            "{e}"
        );
        let took = started.elapsed();
        assert!(took >= timeout && took < timeout * 5, "{took:?}");
    }
}
