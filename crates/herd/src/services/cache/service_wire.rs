//! The cache's traffic between the workers and the primary, on the
//! services transport (a service named [`SERVICE`]).

use std::sync::{Arc, OnceLock};

use super::answer::{answer, waited, write_hit, Answer, Pusher};
use super::store::{Owner, Store};
use super::wire::{Push, Rep, Req};
use super::CacheError;
use crate::services::{PrimaryService, ServiceEvent};

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
            let req: Req = match request.decode() {
                Ok(r) => r,
                Err(e) => {
                    let error = CacheError::Invalid(format!("malformed cache request: {e}"));
                    let _ = request.reply(&Rep::Error { error });
                    return;
                }
            };
            match answer(&store, &push, Owner::Worker(worker), req) {
                Answer::Now(rep) => reply(&request, &rep),
                Answer::Hit(v) => {
                    if let Err(e) = request.reply_json(|buf| write_hit(buf, &v)) {
                        tracing::debug!(error = %e, "a cache reply was not sent");
                    }
                }
                Answer::Later(rx) => {
                    tokio::spawn(async move {
                        let rep = waited(rx.await);
                        reply(&request, &rep);
                    });
                }
            }
        }
        ServiceEvent::WorkerGone { worker } => store.owner_gone(Owner::Worker(worker)),
        _ => {}
    })?;
    let _ = cell.set(service);
    Ok(())
}

fn reply(request: &crate::services::ServiceRequest, rep: &Rep) {
    if let Err(e) = request.reply(rep) {
        tracing::debug!(error = %e, "a cache reply was not sent");
    }
}
