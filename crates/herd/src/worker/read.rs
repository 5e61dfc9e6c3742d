//! The worker's read loop: what the primary sends, delivered where it goes
//! (messages to `recv`, requests to `recv_request`, replies to the waiting
//! request, answers to `listen`, `disconnect`).

use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::Worker;
use crate::channel::wire::{Control, Kind};
use crate::channel::{Frame, Reader};
use crate::message::Message;
use crate::request::Request;
use crate::Error;

/// Where the read loop delivers what the primary sends.
pub(super) struct Inbox {
    pub messages: mpsc::UnboundedSender<Message>,
    pub requests: mpsc::UnboundedSender<Request>,
}

pub(super) async fn read_loop(worker: Worker, mut reader: Reader, inbox: Inbox) {
    loop {
        match reader.next().await {
            Ok(Some(frame)) if frame.kind == Kind::Service => {
                let inner = &worker.inner;
                if let Err(e) = inner.services.on_frame(&inner.outbox, frame.body).await {
                    tracing::error!(error = %e, "bad service frame from the primary; exiting");
                    std::process::exit(1);
                }
            }
            Ok(Some(frame)) => {
                if let Err(e) = on_frame(&worker, &inbox, frame) {
                    tracing::error!(error = %e, "bad frame from the primary; exiting");
                    std::process::exit(1);
                }
            }
            Ok(None) | Err(_) if worker.inner.left.load(Ordering::SeqCst) => {
                // Our disconnect is done and the primary closed its end in
                // turn: `recv` ends, and the program with it; requests still
                // waiting for the primary's answer fail now.
                tracing::debug!(worker = worker.id(), "channel closed after the disconnect");
                worker
                    .inner
                    .calls
                    .close("the channel to the primary closed after this worker's disconnect");
                worker.inner.pending.lock().unwrap().clear();
                worker
                    .inner
                    .services
                    .close("the channel to the primary closed after this worker's disconnect");
                return;
            }
            Ok(None) | Err(_) => {
                // The primary is gone (or broke the channel): a worker never
                // outlives its primary.
                tracing::debug!(
                    worker = worker.id(),
                    "channel to the primary closed; exiting"
                );
                std::process::exit(0);
            }
        }
    }
}

fn on_frame(worker: &Worker, inbox: &Inbox, frame: Frame) -> Result<(), Error> {
    let inner = &worker.inner;
    match frame.kind {
        Kind::User => {
            let _ = inbox.messages.send(Message::new(frame.body));
            return Ok(());
        }
        Kind::Request | Kind::Reply => {
            let (id, msg) = crate::request::open_envelope(frame.kind, frame.body)?;
            if frame.kind == Kind::Reply {
                inner.calls.answer(id, msg);
            } else if let Ok(msg) = msg {
                let (outbox, open) = (inner.outbox.clone(), inner.open.clone());
                if let Some(request) = Request::arrived(id, msg, None, outbox, open) {
                    let _ = inbox.requests.send(request);
                }
            }
            return Ok(());
        }
        Kind::Control => {}
        Kind::Service => unreachable!("read_loop gives service frames to the services"),
    }
    let control = frame.control()?;
    match control {
        Control::Listened { seq, .. } | Control::ListenFailed { seq, .. } => {
            if let Some(tx) = worker.inner.pending.lock().unwrap().remove(&seq) {
                let _ = tx.send((control, frame.fds));
            }
        }
        Control::Disconnect => worker.begin_disconnect(false),
        other => {
            return Err(Error::Protocol(format!(
                "primary sent a worker-only message: {other:?}"
            )))
        }
    }
    Ok(())
}
