//! The monitor's routes on one worker, all behind the token:
//!
//! | route | answers |
//! |---|---|
//! | `POST /workers/{id}/drain` | 200 when it is out of rotation (keeps serving its open connections); 404 no such worker; 409 why not (booting, leaving, the last in rotation, a policy where workers accept themselves) |
//! | `POST /workers/{id}/undrain` | 200 when it is back in rotation; 404; 409 |
//! | `POST /workers/{id}/replace` | 200 once its successor took the slot (successor first); 404; 409 |
//! | `GET /workers/{id}/profile?seconds=N` | 200 `image/svg+xml`, a flamegraph of N seconds (1 to 60, default 10); 400 for N out of bounds; 409 while one runs; 501 saying why none can be made |
//! | `GET /workers/{id}/dump` | 200 `text/plain`, every thread's backtrace; 501 saying why not |

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::routes::{answer, authorize, text, Answer, Ctx};
use crate::debug::MAX_PROFILE_SECONDS;
use crate::supervise::WorkerActionError;
use crate::Error;

/// The profile's length unless `seconds=` says.
const DEFAULT_SECONDS: u32 = 10;

/// `/workers/...`.
pub(super) async fn handle(ctx: &Ctx, req: &Request<Incoming>, path: &str) -> Answer {
    let rest = path.trim_start_matches("/workers/");
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let method = req.method().clone();
    let allowed = match action {
        "drain" | "undrain" | "replace" => Method::POST,
        "profile" | "dump" => Method::GET,
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                format!(
                    "no route {path}: a worker's routes are POST /workers/ID/drain, /undrain, \
                     /replace and GET /workers/ID/profile?seconds=N, /workers/ID/dump"
                ),
            )
        }
    };
    if method != allowed {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("/workers/ID/{action} answers {allowed}"),
        );
    }
    if let Err(refused) = authorize(ctx, req) {
        return *refused;
    }
    let Ok(id) = id.parse::<u32>() else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a worker id: use the number herd ctl status or /status shows"),
        );
    };
    let sup = &ctx.sup;
    match action {
        "drain" => action_answer(sup.drain(id).await.map(|()| {
            format!("worker {id} drained: out of rotation, serving its open connections")
        })),
        "undrain" => action_answer(
            sup.undrain(id)
                .await
                .map(|()| format!("worker {id} back in rotation")),
        ),
        "replace" => action_answer(sup.replace(id).await.map(|r| {
            format!(
                "worker {} replaced by worker {} (slot {})",
                r.old, r.new, r.slot
            )
        })),
        "profile" => {
            let seconds = match seconds(req.uri().query()) {
                Ok(n) => n,
                Err(why) => return text(StatusCode::BAD_REQUEST, why),
            };
            match sup.primary().profile(id, seconds).await {
                Ok(svg) => answer(StatusCode::OK, "image/svg+xml", svg),
                Err(e) => debug_error(e),
            }
        }
        _ => match sup.primary().dump(id).await {
            Ok(dump) => text(StatusCode::OK, dump),
            Err(e) => debug_error(e),
        },
    }
}

fn action_answer(r: Result<String, WorkerActionError>) -> Answer {
    match r {
        Ok(said) => text(StatusCode::OK, said),
        Err(WorkerActionError::NotFound(why)) => text(StatusCode::NOT_FOUND, why),
        Err(e) => text(StatusCode::CONFLICT, e.to_string()),
    }
}

fn debug_error(e: Error) -> Answer {
    let code = match &e {
        Error::NoSuchWorker { .. } | Error::WorkerGone { .. } => StatusCode::NOT_FOUND,
        Error::Busy(_) => StatusCode::CONFLICT,
        Error::Unsupported(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::NOT_IMPLEMENTED,
    };
    text(code, e.to_string())
}

/// `seconds=N` from the query: 1 to [`MAX_PROFILE_SECONDS`].
fn seconds(query: Option<&str>) -> Result<u32, String> {
    let given = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("seconds="));
    match given {
        None => Ok(DEFAULT_SECONDS),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_PROFILE_SECONDS).contains(&n) => Ok(n),
            _ => Err(format!(
                "seconds must be a whole number from 1 to {MAX_PROFILE_SECONDS}, not {:?}",
                v.chars().take(40).collect::<String>()
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_are_bounded() {
        assert_eq!(super::seconds(None), Ok(10));
        assert_eq!(super::seconds(Some("a=1&seconds=3")), Ok(3));
        for bad in [
            "seconds=0",
            "seconds=61",
            "seconds=-1",
            "seconds=x",
            "seconds=",
        ] {
            assert!(
                super::seconds(Some(bad)).unwrap_err().contains("1 to 60"),
                "{bad}"
            );
        }
    }
}
