//! An accepted [`Connection`] and its peer's address.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::listener::ListenerShared;
use super::Hold;

/// The remote address of a [`Connection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix domain socket peer (usually unnamed).
    Unix,
    /// The peer had already gone when the connection was taken.
    Unknown,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => write!(f, "{a}"),
            PeerAddr::Unix => f.write_str("unix"),
            PeerAddr::Unknown => f.write_str("unknown"),
        }
    }
}

pub(super) enum Io {
    Tcp(TcpStream),
    Unix(UnixStream),
}

pub(super) struct ConnGuard {
    pub(super) _hold: Hold,
    pub(super) closes: Option<Arc<ListenerShared>>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(s) = &self.closes {
            s.report_closed();
        }
    }
}

/// An accepted connection: a TCP or Unix stream that keeps a disconnecting
/// worker alive until it is dropped.
pub struct Connection {
    pub(super) io: Io,
    pub(super) _guard: ConnGuard,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.io {
            Io::Tcp(s) => f.debug_tuple("Connection").field(s).finish(),
            Io::Unix(s) => f.debug_tuple("Connection").field(s).finish(),
        }
    }
}

impl Connection {
    /// The TCP stream, if this is one.
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Tcp(s) => Some(s),
            Io::Unix(_) => None,
        }
    }

    /// The Unix stream, if this is one.
    pub fn as_unix(&self) -> Option<&UnixStream> {
        match &self.io {
            Io::Unix(s) => Some(s),
            Io::Tcp(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().io {
            Io::Tcp($s) => $e,
            Io::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
}
