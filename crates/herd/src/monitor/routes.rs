//! The monitor's routes: every request answered, a bad one with a 4xx and
//! a message; nothing a client sends reaches past this file.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::ecv::{Probe, Verdict};
use super::status::Document;
use super::token::Token;
use super::Deps;
use crate::Supervisor;

/// What every request is answered from.
pub(crate) struct Ctx {
    pub sup: Supervisor,
    pub ecv_root: String,
    pub probe: Option<Probe>,
    pub token: Option<Token>,
    pub deps: Deps,
    #[allow(dead_code)]
    pub started: std::time::SystemTime,
}

pub(super) type Answer = Response<Full<Bytes>>;

pub(super) fn answer(code: StatusCode, kind: &str, body: impl Into<Bytes>) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(hyper::header::CONTENT_TYPE, kind.parse().unwrap());
    h.insert(hyper::header::CACHE_CONTROL, "no-cache".parse().unwrap());
    r
}

pub(super) fn text(code: StatusCode, body: impl Into<String>) -> Answer {
    let mut body = body.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    answer(code, "text/plain; charset=utf-8", body)
}

pub(super) fn json(code: StatusCode, v: &impl serde::Serialize) -> Answer {
    match serde_json::to_vec_pretty(v) {
        Ok(mut b) => {
            b.push(b'\n');
            answer(code, "application/json", b)
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}"),
        ),
    }
}

pub(crate) async fn handle(ctx: &Ctx, req: Request<Incoming>, local: Option<SocketAddr>) -> Answer {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let control = |route: &str| path == route;
    let root = ctx.ecv_root.as_str();
    match (method, path.as_str()) {
        (Method::GET | Method::HEAD, p) if p == root => ecv(ctx, local).await,
        (Method::GET | Method::HEAD, "/livez") => {
            if ctx.sup.primary().responsive(Duration::from_secs(1)).await {
                text(StatusCode::OK, "alive")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "the primary's dispatch thread does not answer")
            }
        }
        (Method::GET | Method::HEAD, "/readyz") => {
            let v = verdict(ctx).await;
            let code = if v.serve { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            text(code, v.why.unwrap_or_else(|| v.status.to_lowercase()))
        }
        (Method::GET | Method::HEAD, "/status") => json(StatusCode::OK, &document(ctx).await),
        (Method::GET | Method::HEAD, "/metrics") => {
            let body = super::metrics::encode(document(ctx).await);
            answer(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", body)
        }
        (Method::GET | Method::HEAD, "/deps") => json(StatusCode::OK, &ctx.deps),
        (Method::POST, _)
            if control(&format!("{root}/markDown"))
                || control(&format!("{root}/markUp"))
                || control("/reload")
                || control("/scale") =>
        {
            if let Err(refused) = authorize(ctx, &req) {
                return *refused;
            }
            if path.ends_with("/markDown") {
                ctx.sup.mark_down();
                ctx.sup.marked(true).await;
                text(StatusCode::OK, "marked down: health answers 503 while the workers keep serving")
            } else if path.ends_with("/markUp") {
                ctx.sup.mark_up();
                ctx.sup.marked(false).await;
                text(StatusCode::OK, "marked up")
            } else if path == "/reload" {
                match ctx.sup.reload().await {
                    Ok(done) => text(
                        StatusCode::OK,
                        format!("reloaded: {} workers replaced in {:.1}s", done.replaced, done.took.as_secs_f64()),
                    ),
                    Err(e) => text(StatusCode::CONFLICT, e.to_string()),
                }
            } else {
                scale(ctx, req.uri().query())
            }
        }
        (_, p) if p.starts_with("/workers/") => super::workers::handle(ctx, &req, p).await,
        (_, p) if p == "/statuses" || p.starts_with("/statuses/") => {
            super::statuses::handle(ctx, req, p).await
        }
        (_, p) if p == root || ["/livez", "/readyz", "/status", "/metrics", "/deps"].contains(&p) => {
            text(StatusCode::METHOD_NOT_ALLOWED, format!("{p} answers GET"))
        }
        (_, p) => text(
            StatusCode::NOT_FOUND,
            format!(
                "no route {p}: the monitor answers GET {root}, /livez, /readyz, /status, /metrics, /deps, /statuses, /statuses/NAME{}",
                if ctx.token.is_some() {
                    format!(", and with the token POST {root}/markDown, {root}/markUp, /reload, /scale?workers=N, /statuses/NAME")
                } else {
                    String::new()
                }
            ),
        ),
    }
}

/// Control routes need the token; without one configured they do not
/// exist.
pub(super) fn authorize(ctx: &Ctx, req: &Request<Incoming>) -> Result<(), Box<Answer>> {
    let Some(token) = &ctx.token else {
        return Err(Box::new(text(
            StatusCode::NOT_FOUND,
            "control routes are off: give the monitor a token to turn them on",
        )));
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if token.matches(g) => Ok(()),
        Some(_) => Err(Box::new(unauthorized("the token is wrong"))),
        None => Err(Box::new(unauthorized(
            "this route needs the monitor's token: Authorization: Bearer TOKEN",
        ))),
    }
}

fn unauthorized(why: &str) -> Answer {
    let mut r = text(StatusCode::UNAUTHORIZED, why);
    r.headers_mut()
        .insert(hyper::header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
    r
}

fn scale(ctx: &Ctx, query: Option<&str>) -> Answer {
    let n = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("workers="))
        .map(|v| v.parse::<usize>());
    match n {
        Some(Ok(n)) if (1..=4096).contains(&n) => {
            ctx.sup.scale(n);
            text(StatusCode::ACCEPTED, format!("scaling to {n} workers"))
        }
        Some(_) => text(
            StatusCode::BAD_REQUEST,
            "workers must be a number from 1 to 4096",
        ),
        None => text(
            StatusCode::BAD_REQUEST,
            "say how many: POST /scale?workers=N",
        ),
    }
}

/// The health verdict now, probing the application in monitor mode.
async fn verdict(ctx: &Ctx) -> Verdict {
    let state = ctx.sup.state();
    let probe = match (&ctx.probe, state.health) {
        (Some(p), crate::supervise::Health::Up) => Some(match first_tcp(ctx) {
            Some(target) => p.check(target).await,
            None => Err("the cluster has no TCP listener to probe".into()),
        }),
        _ => None,
    };
    Verdict::of(state.health, probe)
}

/// The cluster's first TCP listener, as a loopback target for probes.
fn first_tcp(ctx: &Ctx) -> Option<SocketAddr> {
    ctx.sup
        .primary()
        .listens()
        .into_iter()
        .find_map(|l| match l.address {
            crate::ListenAddr::Tcp(mut a) => {
                if a.ip().is_unspecified() {
                    a.set_ip(if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                Some(a)
            }
            _ => None,
        })
}

async fn ecv(ctx: &Ctx, local: Option<SocketAddr>) -> Answer {
    let v = verdict(ctx).await;
    let port = first_tcp(ctx).map(|a| a.port());
    let code = if v.serve {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    answer(code, "text/plain; charset=utf-8", v.body(local, port))
}

/// The status document, read from /proc off the runtime's threads.
async fn document(ctx: &Ctx) -> Document {
    let sup = ctx.sup.clone();
    let policy = sup.primary().policy().to_string();
    let read = tokio::task::spawn_blocking(move || (sup.status(), sup.primary().listens()));
    let doc = match read.await {
        Ok((status, listens)) => Document::new(status, listens, policy),
        Err(_) => Document::new(ctx.sup.state(), Vec::new(), policy),
    };
    doc.with_primary(ctx.sup.primary())
}
