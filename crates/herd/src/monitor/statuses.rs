//! The status registry's routes (`services::status`):
//!
//! | route | answers |
//! |---|---|
//! | `GET /statuses` | the registered names, who holds each and who can update it (as `/status`'s `statuses`) |
//! | `GET /statuses/NAME?timeout_ms=N` | 200 `{name, primary, answers: {worker: value}, failed: {worker: why}, missing: [worker], timeout_ms}`: every holder's view, collected within N ms (default 1000, 1 to 10000); a worker that does not answer in time is in `missing`, never a reason to fail the call. 404 naming the status when none holds it; 400 for a malformed name or timeout |
//! | `POST /statuses/NAME?timeout_ms=N` | with the token, a JSON body (at most 1 MiB): each holder's update is called with it; 200 `{name, applied, refused, missing}` |
//!
//! NAME is one path segment, percent-encoded (`%2F` for a `/`), of 1 to
//! [`MAX_STATUS_NAME`] bytes. Reading a status asks each worker that holds
//! it, so `/status` lists the names only and the dashboard reads a value
//! when it is asked to (a click), never every tick.

use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::routes::{authorize, json, text, Answer, Ctx};
use crate::services::status::MAX_STATUS_NAME;

/// How long a read waits for the workers unless `timeout_ms=` says.
const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// The longest `timeout_ms=`.
const MAX_TIMEOUT_MS: u64 = 10_000;
/// The largest value a `POST` may carry.
const MAX_BODY: usize = 1 << 20;
/// How long a client may take to send that body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// `/statuses` and `/statuses/...`.
pub(super) async fn handle(ctx: &Ctx, req: Request<Incoming>, path: &str) -> Answer {
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix("/statuses/") else {
        return match method {
            Method::GET | Method::HEAD => match ctx.sup.primary().statuses() {
                Ok(reg) => json(StatusCode::OK, &reg.names()),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "/statuses answers GET"),
        };
    };
    if method != Method::GET && method != Method::HEAD && method != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "/statuses/NAME answers GET (read) and POST (set, with the token)",
        );
    }
    if method == Method::POST {
        if let Err(refused) = authorize(ctx, &req) {
            return *refused;
        }
    }
    let name = match status_name(rest) {
        Ok(n) => n,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let timeout = match timeout_ms(req.uri().query()) {
        Ok(ms) => ms,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let reg = match ctx.sup.primary().statuses() {
        Ok(reg) => reg,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let names = reg.names();
    let Some(held) = names.iter().find(|n| n.name == name) else {
        let known: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no status {name:?} is registered; registered: {}",
                known.join(", ")
            ),
        );
    };
    let wait = Duration::from_millis(timeout);
    if method == Method::POST {
        if held.updatable.is_empty() {
            return text(
                StatusCode::CONFLICT,
                format!("status {name:?} has no update: no worker registered one"),
            );
        }
        let value = match body_value(req).await {
            Ok(v) => v,
            Err(answer) => return *answer,
        };
        return match reg.set_status(&name, &value, wait).await {
            Ok(report) => json(StatusCode::OK, &report),
            Err(e) => text(StatusCode::BAD_REQUEST, e.to_string()),
        };
    }
    let report = reg.get_status(&name, wait).await;
    #[derive(serde::Serialize)]
    struct Read {
        #[serde(flatten)]
        report: crate::services::StatusReport,
        timeout_ms: u64,
    }
    json(
        StatusCode::OK,
        &Read {
            report,
            timeout_ms: timeout,
        },
    )
}

/// The JSON value a `POST` carries, read within [`BODY_TIMEOUT`] and
/// [`MAX_BODY`].
async fn body_value(req: Request<Incoming>) -> Result<serde_json::Value, Box<Answer>> {
    let read = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    );
    let bytes = match read.await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(Box::new(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a status value has at most {MAX_BODY} bytes"),
            )))
        }
        Ok(Err(e)) => {
            return Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )))
        }
        Err(_) => {
            return Err(Box::new(text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not come within {}s", BODY_TIMEOUT.as_secs()),
            )))
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("the body is the value to set, as JSON (e.g. 3 or \"debug\"): {e}"),
        ))
    })
}

/// The status's name from its percent-encoded path segment.
fn status_name(segment: &str) -> Result<String, String> {
    let shown = || segment.chars().take(40).collect::<String>();
    if segment.len() > 3 * MAX_STATUS_NAME {
        return Err(format!(
            "a status name has 1 to {MAX_STATUS_NAME} bytes; {:?}... is longer",
            shown()
        ));
    }
    if segment.contains('/') {
        return Err(format!(
            "a status name is one path segment: write a / in it as %2F ({:?})",
            shown()
        ));
    }
    let name = percent_decode(segment)
        .ok_or_else(|| format!("{:?} is not a percent-encoded UTF-8 status name", shown()))?;
    if name.is_empty() || name.len() > MAX_STATUS_NAME {
        return Err(format!(
            "a status name has 1 to {MAX_STATUS_NAME} bytes; {:?} has {}",
            name.chars().take(40).collect::<String>(),
            name.len()
        ));
    }
    Ok(name)
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are
/// not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `timeout_ms=N` from the query: 1 to [`MAX_TIMEOUT_MS`].
fn timeout_ms(query: Option<&str>) -> Result<u64, String> {
    let given = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout_ms="));
    match given {
        None => Ok(DEFAULT_TIMEOUT_MS),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => Ok(n),
            _ => Err(format!(
                "timeout_ms must be a whole number from 1 to {MAX_TIMEOUT_MS}, not {:?}",
                v.chars().take(40).collect::<String>()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_decoded_segment_within_the_bound() {
        assert_eq!(status_name("heartbeat").unwrap(), "heartbeat");
        assert_eq!(status_name("log%20level").unwrap(), "log level");
        assert_eq!(status_name("a%2Fb").unwrap(), "a/b");
        assert_eq!(
            status_name(&"x".repeat(MAX_STATUS_NAME)).unwrap().len(),
            128
        );
        for bad in ["", "a/b", "%", "%zz", "%ff", "%e2%82"] {
            assert!(status_name(bad).is_err(), "{bad:?}");
        }
        let long = status_name(&"x".repeat(MAX_STATUS_NAME + 1)).unwrap_err();
        assert!(long.contains("1 to 128 bytes"), "{long}");
        let huge = status_name(&"%41".repeat(10_000)).unwrap_err();
        assert!(huge.contains("is longer"), "{huge}");
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(timeout_ms(None), Ok(1000));
        assert_eq!(timeout_ms(Some("a=1&timeout_ms=250")), Ok(250));
        for bad in [
            "timeout_ms=0",
            "timeout_ms=10001",
            "timeout_ms=-1",
            "timeout_ms=x",
            "timeout_ms=",
        ] {
            assert!(
                timeout_ms(Some(bad)).unwrap_err().contains("1 to 10000"),
                "{bad}"
            );
        }
    }
}
