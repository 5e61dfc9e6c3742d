//! The Rust recipe (docs/recipes.md): an axum server on the socket herd
//! passes (fd 3, taken with `herd::systemd::listen_fds()`), stopping
//! without dropping a keep-alive request. axum's graceful shutdown closes
//! idle keep-alive connections at once; this stops accepting, answers with
//! `Connection: close` for a linger, then shuts down gracefully.
//! (Built as herd-tests' `recipe_axum` binary.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

const LINGER: Duration = Duration::from_secs(1);
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Once stopping, every answer says `Connection: close`.
async fn close_when_stopping(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if STOPPING.load(Ordering::Relaxed) {
        let close = HeaderValue::from_static("close");
        response.headers_mut().insert(header::CONNECTION, close);
    }
    response
}

/// herd's socket, accepted on until the stop begins.
struct Accepting {
    listener: Option<TcpListener>,
    stop: watch::Receiver<bool>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Accepting {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Some(listener) = &self.listener else {
                return std::future::pending().await;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => Some(accepted),
                _ = self.stop.changed() => None, // the stop began
            };
            match accepted {
                Some(Ok(conn)) => return conn,
                // Out of descriptors, say: try again shortly.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                // Closes this process's descriptor of the socket.
                None => self.listener = None,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let socket = herd::systemd::listen_fds()?
        .into_iter()
        .next()
        .ok_or("no socket passed: run it with `herd run -l ADDRESS -- ...`")?;
    let socket = std::net::TcpListener::from(socket.fd);
    socket.set_nonblocking(true)?;
    let listener = TcpListener::from_std(socket)?;
    let addr = listener.local_addr()?;

    let app = Router::new()
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route(
            "/",
            get(|| async { format!("hello from {}\n", std::process::id()) }),
        )
        .layer(middleware::from_fn(close_when_stopping));

    let (stop, stopped) = watch::channel(false);
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        term.recv().await;
        STOPPING.store(true, Ordering::Relaxed);
        stop.send_replace(true);
        tokio::time::sleep(LINGER).await;
    };
    let listener = Accepting {
        listener: Some(listener),
        stop: stopped,
        addr,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
