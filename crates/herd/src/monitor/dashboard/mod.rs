//! `/debug`: the live dashboard, a page served from the binary (its HTML,
//! CSS and JavaScript are in `page/`, embedded; it loads nothing from
//! anywhere else), and `/debug/events`, the server-sent events that feed
//! it: a `snapshot` event every tick (one second by default, see
//! [`Monitor::dashboard_interval`](crate::Monitor::dashboard_interval)) and
//! soon after each lifecycle event, the same bytes for every open page
//! (see `hub.rs`). Its actions are the monitor's control routes, called by
//! the page with the token the operator types in.

mod events;
pub(crate) mod hub;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Method, Response, StatusCode};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};

pub(crate) use hub::Hub;

/// The monitor's answers: a whole body, or a stream of events.
pub(crate) type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

const INDEX: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/style.css");
const APP: &str = include_str!("page/app.js");
const RENDER: &str = include_str!("page/render.js");
const SERVICES: &str = include_str!("page/services.js");

/// What the page may load and connect to: this monitor, nothing else (a
/// flamegraph opens as a `blob:` image).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The dashboard's answer to `method path`, if the path is its own.
pub(crate) fn handle(
    hub: &Hub,
    method: &Method,
    path: &str,
    kill: &Arc<Notify>,
) -> Option<Response<Body>> {
    let asset = match path {
        "/debug" | "/debug/" => Some((INDEX, "text/html; charset=utf-8")),
        "/debug/style.css" => Some((STYLE, "text/css; charset=utf-8")),
        "/debug/app.js" => Some((APP, "text/javascript; charset=utf-8")),
        "/debug/render.js" => Some((RENDER, "text/javascript; charset=utf-8")),
        "/debug/services.js" => Some((SERVICES, "text/javascript; charset=utf-8")),
        "/debug/events" => None,
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} answers GET"),
        ));
    }
    Some(match asset {
        Some((body, kind)) => {
            let mut r = full(StatusCode::OK, kind, Bytes::from_static(body.as_bytes()));
            r.headers_mut()
                .insert("content-security-policy", CSP.parse().unwrap());
            r
        }
        None => events(hub, kill.clone()),
    })
}

fn events(hub: &Hub, kill: Arc<Notify>) -> Response<Body> {
    let Some(opened) = hub.open(kill) else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} dashboard pages are open already: close one and try again",
                hub::MAX_CLIENTS
            ),
        );
    };
    let body = Events {
        // Reconnect after a second when the stream breaks.
        hello: Some(Bytes::from_static(b"retry: 1000\n\n")),
        rx: opened.rx,
        _permit: opened.permit,
    };
    let mut r = Response::new(BodyExt::boxed_unsync(body));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        "text/event-stream".parse().unwrap(),
    );
    h.insert(hyper::header::CACHE_CONTROL, "no-cache".parse().unwrap());
    r
}

/// A page's stream: its frames as they are queued; it holds the page's
/// place among the [`hub::MAX_CLIENTS`] until the connection ends.
struct Events {
    hello: Option<Bytes>,
    rx: mpsc::Receiver<Bytes>,
    _permit: OwnedSemaphorePermit,
}

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(hello) = self.hello.take() {
            return Poll::Ready(Some(Ok(Frame::data(hello))));
        }
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A whole body, as a [`Body`].
pub(crate) fn full(code: StatusCode, kind: &str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(BodyExt::boxed_unsync(http_body_util::Full::new(body)));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, kind.parse().unwrap());
    h.insert(hyper::header::CACHE_CONTROL, "no-cache".parse().unwrap());
    r
}

fn plain(code: StatusCode, mut text: String) -> Response<Body> {
    text.push('\n');
    full(code, "text/plain; charset=utf-8", Bytes::from(text))
}
