//! [`Worker::serve`]: axum on a herd listener, with a graceful disconnect
//! that drops no keep-alive request, and timeouts for clients that are
//! slow to send a request or idle too long, so that none of them can hold
//! a disconnecting worker (and so a reload) until its grace runs out.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{serve_conn, Listener, Worker};

/// How long [`Worker::serve`] lets idle keep-alive connections linger after a
/// disconnect begins, so that clients still using them get one last answer
/// with `Connection: close` instead of a reset.
pub const LINGER: Duration = Duration::from_secs(1);

/// How [`Worker::serve_with`] treats slow and idle clients.
///
/// - **Header timeout** (default 30 s): a client has this long to send a
///   whole request head: from the moment it connects for its first
///   request, from the first byte of each later one on the same
///   connection. Past it the connection is closed. This is what a client
///   holding a partial request (slowloris) gets, and what bounds how long
///   it can keep a disconnecting worker alive.
/// - **Idle timeout** (default 75 s): a keep-alive connection with no
///   request under way is closed after this long.
///
/// A request being handled, and its response being written, are never
/// timed out by either: that is the application's business. The defaults
/// are those of common servers (nginx closes keep-alive connections after
/// 75 s; Go's and hyper's header timeouts are 30 s and less). `None`
/// turns a timeout off.
///
/// ```
/// use std::time::Duration;
/// let o = herd::ServeOptions::new().header_timeout(Duration::from_secs(10)).idle_timeout(None);
/// assert_eq!(o, herd::ServeOptions::new().idle_timeout(None).header_timeout(Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    pub(crate) header_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            header_timeout: Some(ServeOptions::DEFAULT_HEADER_TIMEOUT),
            idle_timeout: Some(ServeOptions::DEFAULT_IDLE_TIMEOUT),
        }
    }
}

impl ServeOptions {
    /// The header timeout unless set: 30 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
    /// The idle timeout unless set: 75 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

    /// The defaults: 30 s to send a request head, 75 s idle.
    pub fn new() -> ServeOptions {
        ServeOptions::default()
    }

    /// How long a client may take to send a request head; `None` for no
    /// limit.
    pub fn header_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.header_timeout = timeout.into();
        self
    }

    /// How long a keep-alive connection may wait for its next request;
    /// `None` for no limit.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }
}

impl Worker {
    /// Serves `app` on `listener` with axum until the worker disconnects,
    /// without the keep-alive race that drops requests on a reload, and
    /// with the default [`ServeOptions`] (30 s to send a request head, 75 s
    /// idle).
    ///
    /// A plain `with_graceful_shutdown` closes idle keep-alive connections
    /// at once, and a client that sent its next request at that moment sees
    /// a reset. Here, once the disconnect begins every response carries
    /// `Connection: close` (so busy clients move to another worker after the
    /// request they are making), and only connections still idle after
    /// [`LINGER`] are closed. A client that holds a partial request is cut
    /// at the header timeout, disconnecting or not. Closing the listener
    /// through its [`ListenerCloser`](crate::ListenerCloser) ends serving
    /// the same way, for this listener only (Node's `server.close()`).
    ///
    /// # Errors
    /// None today: accept errors are retried (with a pause for EMFILE and
    /// the like) and a connection's error ends that connection only.
    pub async fn serve(&self, listener: Listener, app: axum::Router) -> io::Result<()> {
        self.serve_with(listener, app, ServeOptions::default())
            .await
    }

    /// [`serve`](Self::serve) with these timeouts.
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub async fn serve_with(
        &self,
        mut listener: Listener,
        app: axum::Router,
        options: ServeOptions,
    ) -> io::Result<()> {
        let counting = self.inner.counting;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // Each connection's task holds a sender: all are gone when the
        // receiver sees the channel closed.
        let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
        // Serving ends when the worker disconnects, or when this listener
        // is closed through a `ListenerCloser` (Node's `server.close()`).
        let closing = Arc::new(AtomicBool::new(false));
        let (disconnecting, closed) = (self.disconnecting(), listener.closer().closed());
        let ending = closing.clone();
        let linger = async move {
            tokio::select! {
                () = disconnecting => {}
                () = closed => {}
            }
            ending.store(true, Ordering::Relaxed);
            tokio::time::sleep(LINGER).await;
        };
        tokio::pin!(linger);
        loop {
            tokio::select! {
                () = &mut linger => break,
                (conn, _peer) = axum::serve::Listener::accept(&mut listener) => {
                    let (app, stopped, open) = (app.clone(), stopped.clone(), open.clone());
                    let closing = closing.clone();
                    tokio::spawn(async move {
                        serve_conn::serve(conn, app, counting, closing, options, stopped).await;
                        drop(open);
                    });
                }
            }
        }
        // Past the linger: idle connections close, busy ones after their
        // response; partial requests at their header timeout.
        drop(listener);
        let _ = stop.send(true);
        drop(open);
        let _ = all_closed.recv().await;
        // What the program sent meanwhile reaches the primary before `main`
        // can return.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.flush()).await;
        Ok(())
    }
}
