//! A worker's connection queue for one hand-off listen (`rr`, `lc`, and
//! `reuseport`'s departed sockets): a `SOCK_SEQPACKET` socketpair beside
//! the channel.
//!
//! The primary sends each connection it accepted as one message (one byte,
//! one descriptor) and closes its own descriptor at once. The worker's
//! listener takes one message per `accept`. Taking a connection off the
//! queue is what makes it the worker's, so no acknowledgement travels back:
//! the primary keeps a descriptor of the worker's end too, and whatever is
//! still queued when the worker closes its listener, disconnects or dies,
//! the primary takes back ([`take`] on its copy) and gives to another
//! worker. Messages are atomic, so each connection is taken exactly once,
//! by the worker or by the primary. The primary reads the queue's length
//! ([`queued`], one byte per connection) to keep each worker's window.
//!
//! A socketpair's sender is never limited by the receiver's queue length
//! (`net.unix.max_dgram_qlen` applies to unconnected senders only), only by
//! its send buffer, which holds far more than a window.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

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

/// Queues one connection. `WouldBlock` when the send buffer is full.
pub(crate) fn send(tx: BorrowedFd<'_>, conn: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [conn.as_raw_fd()];
    sendmsg::<()>(
        tx.as_raw_fd(),
        &[IoSlice::new(&[0])],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// Takes the next connection off the queue: `Ok(None)` once the sending end
/// is closed and the queue empty, `WouldBlock` while it is empty.
pub(crate) fn take(rx: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        let mut byte = [0u8; 1];
        let mut iov = [IoSliceMut::new(&mut byte)];
        // One descriptor per message; room for a few more costs nothing and
        // keeps a malformed message from truncating (and leaking) any.
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            rx.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(crate::sys::own_received_fds(&raw));
            }
        }
        if msg.bytes == 0 && fds.is_empty() {
            return Ok(None);
        }
        let mut fds = fds.into_iter();
        match fds.next() {
            // Extra descriptors (not sent by herd) are closed as they drop.
            Some(conn) => return Ok(Some(conn)),
            None => tracing::warn!("connection queue: a message without a descriptor"),
        }
    }
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
        for c in &conns {
            send(tx.as_fd(), c.as_fd()).unwrap();
        }
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
}
