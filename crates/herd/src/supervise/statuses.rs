//! The supervisor's statuses in the status registry
//! (`crate::services::status`): its replace queue.

use std::sync::Arc;

use tokio::sync::watch;

use super::status::{SlotState, Snapshot};
use crate::Primary;

/// The supervisor's replace queue as a status of the primary's side in
/// the status registry (`services::status::REPLACE_QUEUE`): the reload
/// under way, and the slots being replaced, from the latest snapshot.
pub(super) fn register_replace_queue(primary: &Primary, state: &watch::Sender<Arc<Snapshot>>) {
    let rx = state.subscribe();
    let view = move || {
        let s = &rx.borrow().status;
        let replacing: Vec<_> = s
            .slots
            .iter()
            .filter(|slot| slot.state == SlotState::Replacing)
            .map(|slot| {
                serde_json::json!({
                    "slot": slot.slot, "worker": slot.worker, "successor": slot.successor,
                })
            })
            .collect();
        serde_json::json!({"reload": s.reload, "replacing": replacing})
    };
    let registered = primary
        .statuses()
        .and_then(|reg| reg.register_primary(crate::services::status::REPLACE_QUEUE, view));
    if let Err(e) = registered {
        tracing::warn!(error = %e, "the replace queue is not in the status registry");
    }
}
