//! The primary's routing of a standalone cache: the workers' calls (the
//! `herd.cache` service, as in-primary) forwarded to the store worker, its
//! replies and notices (`herd.cache.store`) passed back, and the link of
//! the primary's own handles. Both handlers run on the primary's dispatch
//! thread and never wait, so each caller's calls reach the store worker in
//! the order it sent them, and a worker's death after them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::wire::{FromStoreRaw, ToStore, STORE_SERVICE};
use super::{transport, Forwarded, Phase, Standalone, Waiting};
use crate::services::cache::backend::BoxFut;
use crate::services::cache::remote::Ask;
use crate::services::cache::service_wire::SERVICE;
use crate::services::cache::wire::{read_req, Push, Rep, Req};
use crate::services::ServiceEvent;

/// Registers both services.
pub(super) fn register(this: &Arc<Standalone>) -> Result<(), crate::Error> {
    let me = this.clone();
    let to_workers = this.primary.service_with(SERVICE, move |event, _credit| {
        // The credit goes at once: what waits is bounded by the transport's
        // unanswered requests per worker (1024), as in-primary.
        match event {
            ServiceEvent::Request { worker, request } => {
                if Standalone::is_store(&me.lock(), worker) {
                    let error = transport("the cache's store worker cannot use the cache");
                    let _ = request.reply(&Rep::Error { error });
                    return;
                }
                match read_req(request.message().as_json()) {
                    Ok(req) => me.forward(Some(worker), req, Waiting::Worker(request)),
                    Err(error) => {
                        let _ = request.reply(&Rep::Error { error });
                    }
                }
            }
            ServiceEvent::WorkerGone { worker } => {
                let mut state = me.lock();
                if !Standalone::is_store(&state, worker) {
                    // A store that is down holds nothing of it.
                    let _ = me.send(&mut state, ToStore::Gone { worker });
                }
            }
            _ => {}
        }
    })?;
    let me = this.clone();
    let to_store = this
        .primary
        .service_with(STORE_SERVICE, move |event, _credit| match event {
            ServiceEvent::Message { worker, message } => match message.decode::<FromStoreRaw>() {
                Ok(msg) => me.on_store_message(worker, msg),
                Err(e) => {
                    tracing::warn!(worker, error = %e, "a store message that does not decode")
                }
            },
            ServiceEvent::Request { request, .. } => {
                let _ = request.reply_error("herd.cache.store takes no requests in the primary");
            }
            ServiceEvent::WorkerGone { worker } => {
                me.lost(worker, "its channel closed".into());
            }
        })?;
    let _ = this.to_workers.set(to_workers);
    let _ = this.to_store.set(to_store);
    Ok(())
}

impl Standalone {
    /// What store worker `worker` sent.
    fn on_store_message(&self, worker: u32, msg: FromStoreRaw) {
        match msg {
            FromStoreRaw::Hello => self.hello(worker),
            FromStoreRaw::Reply { seq, rep } => {
                let mut state = self.lock();
                if !Self::is_store(&state, worker) {
                    return;
                }
                let Some(Forwarded { waiting, opens }) = state.pending.remove(&seq) else {
                    return;
                };
                if let Some((name, options)) = opens {
                    let done = matches!(
                        serde_json::from_str::<Rep>(rep.get()),
                        Ok(Rep::Done { yes: true })
                    );
                    if done && !state.opened.iter().any(|(n, _)| *n == name) {
                        state.opened.push((name, options));
                    }
                }
                drop(state);
                match waiting {
                    Waiting::Worker(request) => {
                        if let Err(e) = request.reply(&rep) {
                            tracing::debug!(error = %e, "a cache reply was not sent");
                        }
                    }
                    Waiting::Own(tx) => {
                        let _ = tx.send(Ok(rep));
                    }
                    Waiting::Reopen => {
                        if let Ok(Rep::Error { error }) = serde_json::from_str(rep.get()) {
                            Waiting::Reopen.fail(error);
                        }
                    }
                    Waiting::Stats(_) => {}
                }
            }
            FromStoreRaw::Push { to: Some(to), push } => {
                if let Some(to_workers) = self.to_workers.get() {
                    // As in-primary: a worker gone, or one that reads nothing
                    // while 32 MiB wait for it, is told nothing.
                    if let Err(e) = to_workers.send_now(to, &push) {
                        tracing::debug!(worker = to, error = %e, "a cache notice was not sent");
                    }
                }
            }
            FromStoreRaw::Push { to: None, push } => {
                let own = self.own.get().and_then(std::sync::Weak::upgrade);
                match (own, serde_json::from_str::<Push>(push.get())) {
                    (Some(own), Ok(push)) => own.on_push(push),
                    (_, Err(e)) => {
                        tracing::warn!(error = %e, "a cache notice that does not decode")
                    }
                    (None, _) => {}
                }
            }
            FromStoreRaw::Stats { seq, stats } => {
                *self.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats.clone();
                if seq != 0 {
                    if let Some(Forwarded {
                        waiting: Waiting::Stats(tx),
                        ..
                    }) = self.lock().pending.remove(&seq)
                    {
                        let _ = tx.send(stats);
                    }
                }
            }
        }
    }

    /// The store worker `worker` is up: every cache opened before is opened
    /// again in it, then what waited for it goes, in order.
    pub(super) fn hello(&self, worker: u32) {
        let mut state = self.lock();
        let queue = match &mut state.phase {
            Phase::Starting {
                id: Some(id),
                queue,
                ..
            } if *id == worker => std::mem::take(queue),
            Phase::Starting {
                id: None,
                early_hello,
                ..
            } => {
                *early_hello = Some(worker);
                return;
            }
            _ => return,
        };
        state.phase = Phase::Up { id: worker };
        tracing::info!(worker, "the cache's store worker is up");
        let reopen = state.opened.clone();
        for (cache, options) in reopen {
            let seq = state.next_seq;
            state.next_seq += 1;
            state.pending.insert(
                seq,
                Forwarded {
                    waiting: Waiting::Reopen,
                    opens: None,
                },
            );
            let req = Req::Open { cache, options };
            let _ = self.send(
                &mut state,
                ToStore::Call {
                    seq,
                    from: None,
                    req,
                },
            );
        }
        for msg in queue {
            if let Err(error) = self.send(&mut state, msg) {
                // The store worker went meanwhile: its channel's close
                // fails what is pending.
                tracing::debug!(error = %error, "a queued store call was not sent");
            }
        }
    }
}

/// The primary's own handles' way to the store worker.
pub(super) struct OwnLink(pub Arc<Standalone>);

impl Ask for OwnLink {
    fn ask<'a>(&'a self, req: &'a Req, timeout: Duration) -> BoxFut<'a, Rep> {
        Box::pin(async move {
            // A request is cheap to copy through its JSON, and the primary's
            // own handles are not its hot path.
            let req: Req = serde_json::from_str(&serde_json::to_string(req)?)?;
            let (tx, rx) = oneshot::channel();
            self.0.forward(None, req, Waiting::Own(tx));
            let raw = match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(r)) => r?,
                Ok(Err(_)) => return Err(transport("the cache's store worker went")),
                Err(_) => {
                    return Err(transport(format!(
                        "the cache's store worker did not answer within {timeout:?}"
                    )))
                }
            };
            Ok(serde_json::from_str(raw.get())?)
        })
    }
}
