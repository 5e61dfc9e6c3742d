//! A worker's listener: connections handed over by the primary (`rr`,
//! `lc`) or accepted on a socket the primary bound (`shared`, `reuseport`),
//! behind one type that works with `axum::serve`.
//!
//! Closing one (its [`Listener::close`], its drop, its
//! [`ListenerCloser`](super::ListenerCloser), or the worker's disconnect)
//! does it all before it returns: no connection is taken from it after,
//! the primary is told (what is queued for it goes to another worker), its
//! socket is closed (the worker's copy: so a listen of the same port right
//! after binds), and its listen index is given back (`super::indexes`).

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
#[cfg(feature = "axum")]
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Notify;

use super::connection::{ConnGuard, Io};
use super::indexes::Index;
use super::queue::{at_fd_limit, warn_at_fd_limit, warn_lost, Queue};
use super::{Accepting, Busy, Connection, Hold, PeerAddr};
use crate::channel::wire::Control;
use crate::channel::Outbox;
use crate::sched::ListenAddr;

/// State shared between a listener, its closers and the worker (which
/// closes it on disconnect).
pub(crate) struct ListenerShared {
    handle: u32,
    outbox: Arc<Outbox>,
    count_closes: bool,
    /// Held by [`Queue::take`] while it takes, and by `close` while it
    /// tells the primary.
    pub(super) closed: Mutex<bool>,
    closed_notify: Notify,
    /// The socket this worker accepts on (`shared`, `reuseport`): owned
    /// here, and only borrowed by the listener while it polls, so that
    /// `close` closes it whoever holds the listener.
    socket: Mutex<Option<Arc<OwnSocket>>>,
    /// This listen's index of its address, given back by `close`.
    index: Mutex<Option<Index>>,
}

impl ListenerShared {
    pub(super) fn new(
        handle: u32,
        outbox: Arc<Outbox>,
        count_closes: bool,
        index: Index,
    ) -> ListenerShared {
        ListenerShared {
            handle,
            outbox,
            count_closes,
            closed: Mutex::new(false),
            closed_notify: Notify::new(),
            socket: Mutex::new(None),
            index: Mutex::new(Some(index)),
        }
    }

    /// Stops accepting and tells the primary, so that connections queued for
    /// us but not taken go to another worker; closes our socket, and gives
    /// the listen index back.
    pub(super) fn close(&self) {
        let mut closed = self.closed.lock().unwrap();
        if *closed {
            return;
        }
        *closed = true;
        // Our copy of the socket first, so that it is closed before the
        // primary can answer a listen that follows the `unlisten`.
        drop(self.socket.lock().unwrap().take());
        let _ = self.outbox.control(
            &Control::Unlisten {
                handle: self.handle,
            },
            Vec::new(),
        );
        // Only now: a listen that takes the index again goes out after the
        // `unlisten`, so the primary has let this one go when it reads it.
        drop(self.index.lock().unwrap().take());
        drop(closed);
        self.closed_notify.notify_waiters();
    }

    pub(super) fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap()
    }

    /// Resolves once closed. Cancel safe.
    pub(super) async fn wait_closed(&self) {
        loop {
            let n = self.closed_notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.is_closed() {
                return;
            }
            n.await;
        }
    }

    /// A handed-off connection of ours closed (least-connections counts).
    pub(super) fn report_closed(&self) {
        let _ = self.outbox.control(
            &Control::Closed {
                handle: self.handle,
                n: 1,
            },
            Vec::new(),
        );
    }

    /// Keeps `socket` as this listener's (unless closed already, when it
    /// is closed at once); returns what the listener polls.
    fn own(&self, socket: OwnSocket) -> Weak<OwnSocket> {
        let socket = Arc::new(socket);
        let weak = Arc::downgrade(&socket);
        let closed = self.closed.lock().unwrap();
        if !*closed {
            *self.socket.lock().unwrap() = Some(socket);
        }
        drop(closed);
        weak
    }
}

/// A socket of this worker's own to accept on.
enum OwnSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Source {
    Handoff {
        queue: Queue,
        unix: bool,
    },
    /// A socket (held by [`ListenerShared`]), plus (TCP under `reuseport`)
    /// a queue for what the primary accepts on a departed worker's socket.
    Socket(Weak<OwnSocket>, Option<Queue>),
    Closed,
}

/// A listening socket shared with the other workers of the cluster.
///
/// Yields [`Connection`]s. Works with `axum::serve(listener, app)` as is
/// (feature `axum`, on by default; give it
/// `.with_graceful_shutdown(worker.disconnecting())`, as axum's serve loop
/// cannot end by its listener); with hyper, accept and serve each
/// connection yourself, until `accept` says the listener is closed:
///
/// ```no_run
/// # async fn demo(worker: herd::Worker) -> std::io::Result<()> {
/// let mut listener = worker.listen("127.0.0.1:0").await?;
/// while let Ok((conn, peer)) = listener.accept().await {
///     tokio::spawn(async move {
///         // hyper::server::conn::http1::Builder::new()
///         //     .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
///         let _ = (conn, peer);
///     });
/// }
/// // Closed (a disconnect, or its closer): the open connections go on.
/// # Ok(()) }
/// ```
///
/// To close it while something else owns it (`axum::serve`), take a
/// [`closer`](Self::closer) first. Once it is closed, or the worker begins
/// to disconnect, `accept` fails with `NotConnected` (in axum's serve
/// loop, it waits for ever).
pub struct Listener {
    shared: Arc<ListenerShared>,
    source: Source,
    address: ListenAddr,
    busy: Arc<Busy>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .finish()
    }
}

impl Listener {
    pub(crate) fn handoff(
        shared: Arc<ListenerShared>,
        queue: OwnedFd,
        addr: &ListenAddr,
        address: ListenAddr,
        busy: Arc<Busy>,
    ) -> io::Result<Listener> {
        let unix = matches!(addr, ListenAddr::Unix(_));
        Ok(Listener {
            shared,
            source: Source::Handoff {
                queue: Queue::new(queue)?,
                unix,
            },
            address,
            busy,
        })
    }

    pub(crate) fn socket(
        shared: Arc<ListenerShared>,
        fd: OwnedFd,
        queue: Option<OwnedFd>,
        addr: &ListenAddr,
        address: ListenAddr,
        busy: Arc<Busy>,
    ) -> io::Result<Listener> {
        let socket = match addr {
            ListenAddr::Unix(_) => {
                let l = std::os::unix::net::UnixListener::from(fd);
                l.set_nonblocking(true)?;
                OwnSocket::Unix(UnixListener::from_std(l)?)
            }
            _ => {
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true)?;
                OwnSocket::Tcp(TcpListener::from_std(l)?)
            }
        };
        let queue = queue.map(Queue::new).transpose()?;
        let source = Source::Socket(shared.own(socket), queue);
        Ok(Listener {
            shared,
            source,
            address,
            busy,
        })
    }

    /// The address every worker shares: `127.0.0.1:8080`, `[::]:80`,
    /// `unix:/run/app.sock`. With port 0, the port the primary got.
    pub fn address(&self) -> &ListenAddr {
        &self.address
    }

    /// The address as bound (with the real port where 0 was asked), as
    /// `TcpListener::local_addr`; [`ListenAddr::socket_addr`] gives the IP
    /// and port.
    pub fn local_addr(&self) -> ListenAddr {
        self.address.clone()
    }

    /// Stops accepting (as the worker's disconnect does): connections
    /// queued for this worker and not taken go to the others, and a listen
    /// of the same address after this shares their socket (or binds anew
    /// if no other worker listens).
    pub fn close(&mut self) {
        self.shared.close();
        self.source = Source::Closed;
    }

    /// A handle that closes this listener from anywhere, while something
    /// else owns it (Node's `server.close()`); see [`ListenerCloser`].
    ///
    /// [`ListenerCloser`]: crate::ListenerCloser
    pub fn closer(&self) -> super::ListenerCloser {
        super::ListenerCloser::new(self.shared.clone(), self.address.clone())
    }

    /// The next connection. Cancel safe.
    ///
    /// # Errors
    /// [`io::ErrorKind::NotConnected`] once the listener is closed (by a
    /// disconnect, [`close`](Self::close) or its
    /// [`ListenerCloser`](crate::ListenerCloser)), so that an accept loop
    /// ends: `while let Ok((conn, _)) = listener.accept().await`. What
    /// `accept(2)` says on a shared socket (EMFILE...). A hand-off
    /// listener fails with EMFILE when this worker is at its open-files
    /// limit: the connection stays queued (it is not lost), so retry after
    /// a pause, as `axum::serve` and [`Worker::serve`](crate::Worker::serve)
    /// do. Either is counted and reported at warning level (even without
    /// HERD_LOG), at most every 10 s.
    pub async fn accept(&mut self) -> io::Result<(Connection, PeerAddr)> {
        if self.shared.is_closed() {
            self.source = Source::Closed;
        }
        let shared = self.shared.clone();
        // A connection the kernel (or the primary) just gave us is not yet
        // a `Connection` keeping the worker alive: a disconnect on another
        // thread must wait for it, or the exit resets it.
        let accepting = Accepting::new(self.busy.clone());
        let got = tokio::select! {
            biased;
            _ = shared.wait_closed() => None,
            got = accept_from(&mut self.source, &shared) => Some(got),
        };
        match got {
            None | Some(Ok(None)) => {
                self.source = Source::Closed;
                Err(closed_error())
            }
            Some(Ok(Some((io, peer)))) => {
                self.busy
                    .handled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let conn = Connection {
                    io,
                    _guard: ConnGuard {
                        _hold: Hold::new(self.busy.clone()),
                        closes: self.shared.count_closes.then(|| self.shared.clone()),
                    },
                };
                drop(accepting);
                Ok((conn, peer))
            }
            Some(Err(e)) => Err(e),
        }
    }
}

impl Drop for Listener {
    /// A dropped listener is closed: the primary routes nothing more to it.
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// One accept; `Ok(None)` when the listener is closed for good.
async fn accept_from(
    source: &mut Source,
    shared: &ListenerShared,
) -> io::Result<Option<(Io, PeerAddr)>> {
    // A socket's accept at the open-files limit leaves the connection in
    // the kernel's queue.
    let in_backlog = |e: io::Error| {
        if at_fd_limit(&e) {
            warn_at_fd_limit("waits in the kernel's queue of the shared socket");
        }
        e
    };
    match source {
        Source::Closed => Ok(None),
        // A queue the primary closed is dropped: the socket goes on.
        Source::Socket(socket, queue) => loop {
            tokio::select! {
                r = accept_own(socket) => return r.map_err(in_backlog),
                r = next_handed(queue.as_ref(), shared, false), if queue.is_some() => match r {
                    Ok(Some(pair)) => return Ok(Some(pair)),
                    Ok(None) => *queue = None,
                    Err(e) => return Err(e),
                },
            }
        },
        Source::Handoff { queue, unix } => next_handed(Some(queue), shared, *unix).await,
    }
}

/// One accept on our own socket; `Ok(None)` once it is closed. The socket
/// is held only within a poll (see [`ListenerShared::own`]). Cancel safe.
async fn accept_own(socket: &Weak<OwnSocket>) -> io::Result<Option<(Io, PeerAddr)>> {
    poll_fn(|cx| {
        let Some(socket) = socket.upgrade() else {
            return Poll::Ready(Ok(None));
        };
        match &*socket {
            OwnSocket::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, a)| Some((Io::Tcp(s), PeerAddr::Tcp(a)))),
            OwnSocket::Unix(l) => l
                .poll_accept(cx)
                .map_ok(|(s, _)| Some((Io::Unix(s), PeerAddr::Unix))),
        }
    })
    .await
}

/// The next connection from our queue, taken (and so ours); `Ok(None)`
/// when there is no queue or the primary closed it. Cancel safe.
async fn next_handed(
    queue: Option<&Queue>,
    shared: &ListenerShared,
    unix: bool,
) -> io::Result<Option<(Io, PeerAddr)>> {
    let Some(queue) = queue else {
        return Ok(None);
    };
    loop {
        let Some(fd) = queue.take(shared).await? else {
            return Ok(None);
        };
        let made = if unix {
            let s = std::os::unix::net::UnixStream::from(fd);
            UnixStream::from_std(s).map(|s| (Io::Unix(s), PeerAddr::Unix))
        } else {
            let s = std::net::TcpStream::from(fd);
            let peer = s.peer_addr();
            TcpStream::from_std(s).map(|s| {
                let peer = peer.map_or(PeerAddr::Unknown, PeerAddr::Tcp);
                (Io::Tcp(s), peer)
            })
        };
        match made {
            Ok(pair) => return Ok(Some(pair)),
            Err(e) => warn_lost(&e),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::serve::Listener for Listener {
    type Io = Connection;
    type Addr = PeerAddr;

    /// Once the listener is closed, waits for ever (axum's serve loop has
    /// no way to end by its listener): end it with its graceful shutdown,
    /// `worker.disconnecting()` or the closer's `closed()`.
    async fn accept(&mut self) -> (Connection, PeerAddr) {
        let mut backoff = Duration::from_millis(5);
        loop {
            match Listener::accept(self).await {
                Ok(pair) => return pair,
                Err(_) if self.shared.is_closed() => std::future::pending::<()>().await,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // EMFILE and friends: retrying at once would spin (the
                    // open-files limit is reported where it is met).
                    if at_fd_limit(&e) {
                        tracing::debug!(error = %e, "accept failed; retrying in {backoff:?}");
                    } else {
                        tracing::warn!(error = %e, "accept failed; retrying in {backoff:?}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<PeerAddr> {
        Ok(self
            .address
            .socket_addr()
            .map_or(PeerAddr::Unix, PeerAddr::Tcp))
    }
}

/// What `accept` says once the listener is closed.
fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the listener is closed (the worker is disconnecting, or it was closed)",
    )
}

#[cfg(feature = "axum")]
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
