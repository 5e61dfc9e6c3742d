//! One connection of [`Worker::serve`](crate::Worker::serve): hyper's
//! HTTP/1 on it, watched by a [`Clock`] that knows whether a request is
//! under way, and closes the connection when a request head takes longer
//! than the header timeout or the connection sits idle past the idle
//! timeout (see [`ServeOptions`]).
//!
//! hyper's own `header_read_timeout` starts when it begins to wait for a
//! head, idle time included, so it cannot tell a client idle between
//! requests (75 s allowed) from one slow to send a request (30 s): the
//! clock tells them apart by the first byte that arrives after a
//! response, as Go's net/http does.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::requests::Counting;
use super::serve::ServeOptions;
use super::Connection;

/// Serves one connection until it ends, times out, or (once `stop` says
/// so) finishes its request under way. Every request is counted in
/// `counting` (for the heartbeats), and once its disconnect flag (or
/// `closing`, this listener's) is set every response says
/// `Connection: close`.
pub(super) async fn serve(
    conn: Connection,
    app: axum::Router,
    counting: &'static Counting,
    closing: Arc<AtomicBool>,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::new(Clock::new(options));
    let io = TokioIo::new(Timed {
        inner: conn,
        clock: clock.clone(),
    });
    let service = Service {
        inner: TowerToHyperService::new(app),
        clock: clock.clone(),
        counting,
        closing,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The clock keeps time instead (see the module docs).
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let wake = clock.next_look();
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if let Some(why) = clock.expired() {
                    tracing::debug!("closing a connection: {why}");
                    return;
                }
            }
            stopped = stop.wait_for(|s| *s), if !stopping => {
                drop(stopped);
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection is between requests, for its timeouts.
enum Phase {
    /// No request under way since `since` (the accept, or the end of the
    /// last response); `first_byte` of the next request, once it came.
    Waiting {
        since: Instant,
        served: bool,
        first_byte: Option<Instant>,
    },
    /// Requests under way (handled, or their responses being written).
    Busy(usize),
}

/// A connection's clock: what it is doing, and until when it may.
struct Clock {
    header: Option<Duration>,
    idle: Option<Duration>,
    phase: Mutex<Phase>,
}

impl Clock {
    fn new(options: ServeOptions) -> Clock {
        Clock {
            header: options.header_timeout,
            idle: options.idle_timeout,
            phase: Mutex::new(Phase::Waiting {
                since: Instant::now(),
                served: false,
                first_byte: None,
            }),
        }
    }

    /// When the connection must have moved on, and what it waits for.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        match *self.phase.lock().unwrap() {
            Phase::Busy(_) => None,
            // The first request's head, from the accept.
            Phase::Waiting {
                since,
                served: false,
                ..
            } => self
                .header
                .map(|h| (since + h, "no request head within the header timeout")),
            // A later request's head, from its first byte.
            Phase::Waiting {
                first_byte: Some(t),
                ..
            } => self
                .header
                .map(|h| (t + h, "no request head within the header timeout")),
            Phase::Waiting { since, .. } => {
                self.idle.map(|i| (since + i, "idle past the idle timeout"))
            }
        }
    }

    /// Why the connection is to be closed now, if it is.
    fn expired(&self) -> Option<&'static str> {
        self.deadline()
            .filter(|(at, _)| *at <= Instant::now())
            .map(|(_, why)| why)
    }

    /// When to look again: at the deadline, and at least every shorter
    /// timeout. The phase changes without telling the watcher, but a
    /// deadline set by a change is at least that timeout after it, so a
    /// look that often never misses one.
    fn next_look(&self) -> Instant {
        let every = match (self.header, self.idle) {
            (Some(h), Some(i)) => h.min(i),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => Duration::from_secs(3600),
        };
        let soon = Instant::now() + every;
        self.deadline().map_or(soon, |(at, _)| at.min(soon))
    }

    /// Bytes came from the client.
    fn read(&self) {
        if let Phase::Waiting {
            first_byte: first @ None,
            ..
        } = &mut *self.phase.lock().unwrap()
        {
            *first = Some(Instant::now());
        }
    }

    /// A request begins; it is under way until the guard drops (with its
    /// response's body, or with the request if that is given up).
    fn begin(self: &Arc<Self>) -> Busy {
        let mut phase = self.phase.lock().unwrap();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Waiting { .. } => Phase::Busy(1),
        };
        Busy(self.clone())
    }
}

/// A request under way; see [`Clock::begin`].
struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut phase = self.0.phase.lock().unwrap();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Waiting {
                since: Instant::now(),
                served: true,
                first_byte: None,
            },
        };
    }
}

/// The connection, telling the clock when bytes arrive.
struct Timed {
    inner: Connection,
    clock: Arc<Clock>,
}

impl AsyncRead for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.read();
        }
        r
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The application, telling the clock when requests begin and end, and
/// counting them. The counting is here, in the one boxed future hyper
/// needs anyway, rather than in an axum layer around the router: a
/// `middleware::from_fn` boxes another future and clones the route on
/// every request (see docs/benchmarks.md, monitor).
#[derive(Clone)]
struct Service {
    inner: TowerToHyperService<axum::Router>,
    clock: Arc<Clock>,
    counting: &'static Counting,
    /// Set once the listener this connection came from is closing.
    closing: Arc<AtomicBool>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<Incoming>) -> ResponseFuture {
        let busy = self.clock.begin();
        let counted = self.counting.requests.begin();
        let disconnecting = &self.counting.disconnecting;
        // Read now, not with the response: no reference count touched per
        // request (one that began before the close ends within the linger).
        let closing = self.closing.load(Ordering::Relaxed);
        let response = self.inner.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            // Counted with the handler's time: the head is ready.
            drop(counted);
            if closing || disconnecting.load(Ordering::Relaxed) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response.map(|body| Body {
                inner: body,
                _busy: busy,
            }))
        })
    }
}

/// A response body that keeps its request under way until written.
struct Body {
    inner: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
