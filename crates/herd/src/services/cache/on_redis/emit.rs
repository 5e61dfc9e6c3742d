//! The emitter across hosts: this host's emits to every worker are
//! published on `herd:{cluster}:emit`, in order, by one task; those of the
//! other hosts are delivered here, in order, by another, to the primary's
//! subscriptions and every worker, as from the primary.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::Engine;
use crate::services::Emitter;

/// Emits waiting to be published, or delivered; past it the newest are
/// dropped (a warning): Redis or the workers are too slow for them.
const QUEUE: usize = 4096;

#[derive(Serialize, Deserialize)]
struct Emit<'a> {
    /// The host that emitted.
    h: std::borrow::Cow<'a, str>,
    e: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    p: &'a RawValue,
}

impl Engine {
    pub(super) fn emit_channel(&self) -> String {
        format!("{}emit", self.prefix)
    }

    /// Bridges `emitter` (the primary's) to the other hosts.
    pub fn share_emitter(self: &Arc<Self>, emitter: Emitter) -> Result<(), String> {
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(QUEUE);
        let host = self.host.clone();
        let hook: crate::services::emitter::Elsewhere = Box::new(move |event, payload| {
            let Ok(p) = std::str::from_utf8(payload) else {
                return;
            };
            let Ok(p) = RawValue::from_string(p.to_string()) else {
                return;
            };
            let text = serde_json::to_vec(&Emit {
                h: host.as_str().into(),
                e: event.into(),
                p: &p,
            });
            if let Ok(text) = text {
                if out_tx.try_send(text).is_err() {
                    tracing::warn!(
                        event,
                        "an emit for the other hosts was dropped: Redis is too slow or away"
                    );
                }
            }
        });
        crate::services::emitter::ELSEWHERE
            .set(hook)
            .map_err(|_| "the emitter is shared already".to_string())?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                let Some(engine) = weak.upgrade() else { return };
                let mut conn = engine.link.conn();
                let sent = redis::cmd("PUBLISH")
                    .arg(engine.emit_channel())
                    .arg(text)
                    .query_async::<i64>(&mut conn)
                    .await;
                if let Err(e) = sent {
                    engine.link.failed(&e);
                    tracing::warn!(error = %e, "an emit for the other hosts was not published");
                }
            }
        });
        let (in_tx, mut in_rx) = mpsc::channel::<(String, Vec<u8>)>(QUEUE);
        let _ = self.emits_in.set(in_tx);
        tokio::spawn(async move {
            while let Some((event, payload)) = in_rx.recv().await {
                emitter.deliver_from_elsewhere(&event, &payload).await;
            }
        });
        Ok(())
    }

    /// An emit heard on the channel: another host's goes to this host.
    pub(super) fn on_emit(&self, payload: &[u8]) {
        let Some(tx) = self.emits_in.get() else {
            return;
        };
        let Ok(emit) = serde_json::from_slice::<Emit<'_>>(payload) else {
            tracing::debug!("an emit from another host that does not decode; dropped");
            return;
        };
        if emit.h == self.host {
            return;
        }
        let item = (emit.e.into_owned(), emit.p.get().as_bytes().to_vec());
        if tx.try_send(item).is_err() {
            tracing::warn!(
                "an emit from another host was dropped: this host's workers are too slow for them"
            );
        }
    }
}
