//! The cache's traffic between the workers and the primary, on the
//! services transport (a service named [`SERVICE`]).

use std::sync::{Arc, OnceLock};

use super::answer::{answer, answer_get, waited, write_hit, Answer, Pusher};
use super::store::{Owner, Store};
use super::wire::{read_req, write_compact_hit, Get, Push, Rep, COMPACT_GET, COMPACT_MISS};
use super::CacheError;
use crate::services::{PrimaryService, ServiceEvent, ServiceRequest};

/// The cache service's name on the transport.
pub(crate) const SERVICE: &str = "herd.cache";

/// Serves the workers' cache requests from `store`, on the primary's
/// dispatch thread: a hit is answered as its request is read, with no
/// queue or thread hop; a get that waits for another's load is answered
/// by a task when the load is done.
pub(crate) fn serve(primary: &crate::Primary, store: &Arc<Store>) -> Result<(), crate::Error> {
    let cell: Arc<OnceLock<PrimaryService>> = Arc::default();
    let sender = cell.clone();
    let push: Pusher = Arc::new(move |to, push: Push| {
        // Every owner here is a worker: the primary's own handles reach the
        // store in this process directly, and are pushed nothing.
        let Owner::Worker(worker) = to else { return };
        if let Some(service) = sender.get() {
            // A worker that is gone is told nothing; one that reads nothing
            // while 32 MiB wait for it has lost its copy's notices: it is
            // about to be held back or dropped by the primary anyway.
            if let Err(e) = service.send_now(worker, &push) {
                tracing::debug!(worker, error = %e, "a cache notice was not sent");
            }
        }
    });
    let invalidate = push.clone();
    store.on_invalidate(Box::new(move |worker, cache, key| {
        invalidate(
            Owner::Worker(worker),
            Push::Invalidate {
                cache: cache.to_string(),
                key: key.to_string(),
            },
        )
    }));
    let store = store.clone();
    // The credit of each delivery is dropped at once: what waits here is
    // bounded by the transport's unanswered requests per worker (1024).
    let service = primary.service_with(SERVICE, move |event, _credit| match event {
        ServiceEvent::Request { worker, request } => {
            let from = Owner::Worker(worker);
            let value = request.message().as_json();
            if value.first() == Some(&COMPACT_GET) {
                let answer = match Get::parse(value) {
                    Ok(get) => answer_get(&store, from, get),
                    Err(why) => Answer::Now(Rep::Error {
                        error: CacheError::Invalid(why),
                    }),
                };
                return respond(request, answer, true);
            }
            let answer = match read_req(value) {
                Ok(req) => answer(&store, &push, from, req),
                Err(error) => Answer::Now(Rep::Error { error }),
            };
            respond(request, answer, false);
        }
        ServiceEvent::WorkerGone { worker } => store.owner_gone(Owner::Worker(worker)),
        _ => {}
    })?;
    let _ = cell.set(service);
    Ok(())
}

/// Sends `answer` to `request` (one that waits, when it comes): in the
/// compact form for a compact get's hit or miss, else as JSON.
fn respond(request: ServiceRequest, answer: Answer, compact: bool) {
    let sent = match answer {
        Answer::Later(rx) => {
            tokio::spawn(async move { respond(request, waited(rx.await), compact) });
            return;
        }
        Answer::Hit(v) if compact => {
            request.reply_json(|buf| write_compact_hit(buf, &v.json, v.ttl_ms))
        }
        Answer::Hit(v) => request.reply_json(|buf| write_hit(buf, &v)),
        Answer::Now(Rep::Miss) if compact => request.reply_json(|buf| buf.push(COMPACT_MISS)),
        Answer::Now(rep) => request.reply(&rep),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "a cache reply was not sent");
    }
}
