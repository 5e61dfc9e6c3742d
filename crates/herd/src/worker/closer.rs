//! [`ListenerCloser`]: closing one listener while something else owns it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::listener::ListenerShared;
use crate::sched::ListenAddr;

/// Closes one [`Listener`](crate::Listener) from anywhere, as Node's
/// `server.close()`, while `axum::serve` (or any task) owns it. Made by
/// [`Listener::closer`](crate::Listener::closer); cheap to clone, and every
/// clone closes the same listener.
///
/// Closing stops this listener only: the worker's other listeners, and the
/// other workers on this address, go on. Connections queued for this worker
/// on it and not taken yet go to another worker listening there (as when a
/// worker disconnects), or are closed if none is; connections already
/// accepted are the program's, and go on until they end. The listener's
/// `accept` never returns again, so a server on it stops taking
/// connections; to have `axum::serve` return once its connections are
/// done, give it [`closed`](Self::closed) as its graceful shutdown:
///
/// ```no_run
/// # async fn demo(worker: herd::Worker) -> std::io::Result<()> {
/// let listener = worker.listen("127.0.0.1:8080").await?;
/// let closer = listener.closer();
/// # #[cfg(feature = "axum")]
/// let server = tokio::spawn({
///     let closed = closer.closed();
///     async move {
///         axum::serve(listener, axum::Router::new())
///             .with_graceful_shutdown(closed)
///             .await
///     }
/// });
/// // ... later, from anywhere:
/// closer.close();
/// # #[cfg(feature = "axum")]
/// server.await.expect("the server task")?;
/// # Ok(()) }
/// ```
///
/// Once `close` returns, the primary has been told (it routes nothing new
/// here), this worker's copy of a shared socket is closed, and a `listen`
/// of the same address shares the socket of the workers still on it, or
/// binds it again if there are none.
#[derive(Clone)]
pub struct ListenerCloser {
    shared: Arc<ListenerShared>,
    address: ListenAddr,
}

impl fmt::Debug for ListenerCloser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerCloser")
            .field("address", &self.address)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ListenerCloser {
    pub(super) fn new(shared: Arc<ListenerShared>, address: ListenAddr) -> ListenerCloser {
        ListenerCloser { shared, address }
    }

    /// Closes the listener (see the [type docs](Self)). Repeated calls, and
    /// calls after the listener was closed otherwise (dropped, or the worker
    /// disconnecting), do nothing.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Whether the listener is closed, by any means.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Resolves once the listener is closed, by any means (for
    /// `with_graceful_shutdown`). Holds no borrow of `self`.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.wait_closed().await }
    }

    /// The address of the listener this closes.
    pub fn address(&self) -> &ListenAddr {
        &self.address
    }
}
