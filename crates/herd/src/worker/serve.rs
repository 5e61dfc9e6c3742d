//! [`Worker::serve`]: axum on a herd listener, with a graceful disconnect
//! that drops no keep-alive request.

use std::io;
use std::time::Duration;

use super::{Listener, Worker};

/// How long [`Worker::serve`] lets idle keep-alive connections linger after a
/// disconnect begins, so that clients still using them get one last answer
/// with `Connection: close` instead of a reset.
pub const LINGER: Duration = Duration::from_secs(1);
impl Worker {
    /// Serves `app` on `listener` with axum until the worker disconnects,
    /// without the keep-alive race that drops requests on a reload.
    ///
    /// A plain `with_graceful_shutdown` closes idle keep-alive connections
    /// at once, and a client that sent its next request at that moment sees
    /// a reset. Here, once the disconnect begins every response carries
    /// `Connection: close` (so busy clients move to another worker after the
    /// request they are making), and only connections still idle after
    /// [`LINGER`] are closed.
    #[cfg(feature = "axum")]
    pub async fn serve(&self, listener: Listener, app: axum::Router) -> io::Result<()> {
        use axum::http::{header, HeaderValue};
        let w = self.clone();
        // One layer: counts each request and its duration (for heartbeats)
        // and, once the disconnect begins, says `Connection: close`.
        let app = app.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counted = w.inner.requests.begin();
                let w = w.clone();
                async move {
                    let mut res = next.run(req).await;
                    drop(counted);
                    if w.is_disconnecting() {
                        res.headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    res
                }
            },
        ));
        let disconnecting = self.disconnecting();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                disconnecting.await;
                tokio::time::sleep(LINGER).await;
            })
            .await
    }
}
