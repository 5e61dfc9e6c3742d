//! A worker's connection queue for one hand-off listen (`rr`, `lc`, and
//! `reuseport`'s departed sockets): a `SOCK_SEQPACKET` socketpair beside
//! the channel.
//!
//! The primary sends each connection it accepted as one message (one byte,
//! one descriptor), a burst's worth in one `sendmmsg` call, and closes its
//! own descriptors at once. The worker's
//! listener takes one message per `accept`. Taking a connection off the
//! queue is what makes it the worker's, so no acknowledgement travels back:
//! the primary keeps a descriptor of the worker's end too, and whatever is
//! still queued when the worker closes its listener, disconnects or dies,
//! the primary takes back ([`take`] on its copy) and gives to another
//! worker. Messages are atomic, so each connection is taken exactly once,
//! by the worker or by the primary. The primary reads the queue's length
//! ([`queued`], one byte per connection) to keep each worker's window.
//!
//! A socketpair's sender is not limited by the receiver's queue length
//! (`net.unix.max_dgram_qlen` applies to unconnected senders only), but by
//! its send buffer, which holds far more than a window, and by the kernel's
//! count of descriptors in flight, which must stay under the sending
//! user's `RLIMIT_NOFILE` (the primary raises its soft limit to the hard
//! one at start). A worker at its own open-files limit cannot take a
//! connection: [`take`] says `EMFILE` and leaves it queued.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

/// A new queue: `(sending end, receiving end)`, both non-blocking and
/// close-on-exec.
pub(crate) fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io::Error::from)
}

/// Queues connections, one message each, in one system call (`sendmmsg`).
/// Returns how many were queued: the first ones, at least one; the error
/// (`WouldBlock` when the send buffer is full) if none was.
pub(crate) fn send(tx: BorrowedFd<'_>, conns: &[BorrowedFd<'_>]) -> io::Result<usize> {
    crate::sys::send_fd_messages(tx, conns)
}

/// Takes the next connection off the queue: `Ok(None)` once the sending end
/// is closed and the queue empty, `WouldBlock` while it is empty, `EMFILE`
/// (or `ENFILE`) while this process has no descriptor free for it.
///
/// The message is looked at first (`MSG_PEEK`), which installs a
/// descriptor of the connection here but leaves the message queued, and is
/// taken off the queue only once that worked (a plain read, which asks for
/// no descriptor: the kernel drops its own copy). A process at its
/// open-files limit therefore loses nothing: the kernel cannot install the
/// descriptor (MSG_CTRUNC), the connection stays queued, and is taken when
/// a descriptor is free, or by the primary if this worker goes. Taking in
/// one read instead would have the kernel close a connection it cannot
/// install, unseen by the client and by us.
///
/// Only one reader may take from a queue at a time (between the look and
/// the read, another reader would take the message this one holds a copy
/// of): the worker takes under its listener's lock, and the primary takes
/// back only after the worker said it stopped taking, or is gone.
pub(crate) fn take(rx: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        let mut byte = [0u8; 1];
        // One descriptor per message; room for a few more keeps a
        // malformed message from truncating.
        let got = crate::sys::recv_with_fds(
            rx.as_raw_fd(),
            &mut byte,
            4,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )?;
        let mut fds = got.fds.into_iter();
        match fds.next() {
            Some(conn) => {
                // Extra descriptors (not sent by herd) close as they drop.
                discard(rx)?;
                return Ok(Some(conn));
            }
            // Still queued: nothing is lost.
            None if got.truncated => return Err(io::Error::from_raw_os_error(libc::EMFILE)),
            None if got.bytes == 0 => return Ok(None),
            None => {
                discard(rx)?;
                tracing::warn!("connection queue: a message without a descriptor");
            }
        }
    }
}

/// Removes the message at the head of the queue, dropping its descriptors.
fn discard(rx: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = [0u8; 1];
    nix::sys::socket::recv(rx.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT)
        .map(drop)
        .map_err(io::Error::from)
}

/// How many connections are queued (not yet taken).
pub(crate) fn queued(rx: BorrowedFd<'_>) -> io::Result<usize> {
    crate::sys::bytes_queued(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn connections_are_taken_once_in_order_by_whichever_end_reads() {
        let (tx, rx) = pair().unwrap();
        let copy = rx.try_clone().unwrap();
        let conns: Vec<OwnedFd> = (0..3).map(|_| pair().unwrap().0).collect();
        let fds: Vec<BorrowedFd> = conns.iter().map(|c| c.as_fd()).collect();
        assert_eq!(send(tx.as_fd(), &fds[..2]).unwrap(), 2, "two in one call");
        assert_eq!(send(tx.as_fd(), &fds[2..]).unwrap(), 1);
        assert_eq!(queued(rx.as_fd()).unwrap(), 3);
        assert!(take(rx.as_fd()).unwrap().is_some());
        // The other descriptor of the receiving end sees what is left.
        assert_eq!(queued(copy.as_fd()).unwrap(), 2);
        drop(rx);
        assert!(take(copy.as_fd()).unwrap().is_some());
        assert!(take(copy.as_fd()).unwrap().is_some());
        assert_eq!(
            take(copy.as_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(tx);
        assert!(
            take(copy.as_fd()).unwrap().is_none(),
            "EOF after the sender"
        );
    }

    #[test]
    fn each_queued_descriptor_is_the_connection_that_was_sent() {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixStream;
        let (tx, rx) = pair().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let (mut c, d) = UnixStream::pair().unwrap();
        assert_eq!(send(tx.as_fd(), &[b.as_fd(), d.as_fd()]).unwrap(), 2);
        drop((b, d));
        let mut first = UnixStream::from(take(rx.as_fd()).unwrap().unwrap());
        let mut second = UnixStream::from(take(rx.as_fd()).unwrap().unwrap());
        a.write_all(b"1").unwrap();
        c.write_all(b"2").unwrap();
        let mut got = [0u8; 1];
        first.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"1");
        second.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"2");
    }
}
