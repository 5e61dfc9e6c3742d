//! An operator's actions on one worker: drain it (out of rotation, kept
//! alive for inspection), put it back, replace it (successor first, as one
//! slot of a rolling reload).
//!
//! The rules: only a ready worker that owns its slot (not booting, not
//! being replaced, not leaving) may be drained or replaced; the last
//! worker in rotation may not be drained (nothing would take new
//! connections). A drained slot still counts as ready (its worker is up,
//! kept out of rotation on purpose) and its worker is not judged by the
//! nanny or the recyclers (a debugger may stop it); a reload replaces it
//! like any other, its successor in rotation.

use std::time::Instant;

use super::{Machine, State, Why};
use crate::supervise::core::Core;
use crate::supervise::events::{RecycleReason, SupervisorEvent};
use crate::supervise::WorkerActionError;

impl<C: Core> Machine<C> {
    /// The slot that `id` serves in, as a ready worker in its own right.
    fn own_ready_slot(&self, id: u32, what: &str) -> Result<usize, WorkerActionError> {
        let conflict = |why: String| {
            Err(WorkerActionError::Conflict(format!(
                "cannot {what} worker {id}: {why}"
            )))
        };
        if self.stopping {
            return conflict("the cluster is shutting down".into());
        }
        for (k, s) in &self.slots {
            match &s.state {
                State::Up(c) if c.id == id && c.ready() => return Ok(*k),
                State::Up(c) if c.id == id => {
                    return conflict("it is still booting (not ready yet)".into())
                }
                State::Queued { old, .. } if old.id == id => {
                    return conflict("it is being replaced already".into())
                }
                State::Replacing { old, successor, .. } if old.id() == id => {
                    return conflict(format!(
                        "it is being replaced already (by worker {successor})"
                    ))
                }
                State::Replacing { old, successor, .. } if *successor == id => {
                    return conflict(format!("it is booting to replace worker {}", old.id()))
                }
                _ => {}
            }
        }
        if self.retiring.contains_key(&id) || self.core.worker(id).is_some() {
            return conflict("it is leaving".into());
        }
        Err(WorkerActionError::NotFound(format!(
            "no worker {id}: it never ran or is gone (herd ctl status lists the live workers)"
        )))
    }

    /// Whether worker `id` is drained, as the core says.
    pub(super) fn is_drained(&self, id: u32) -> bool {
        self.core.worker(id).is_some_and(|w| w.drained)
    }

    /// Takes worker `id` out of rotation. Draining a drained worker is a
    /// no-op.
    pub fn drain(&mut self, id: u32, now: Instant) -> Result<(), WorkerActionError> {
        let slot = self.own_ready_slot(id, "drain")?;
        if self.is_drained(id) {
            return Ok(());
        }
        let others = self
            .slots
            .iter()
            .filter(|(k, _)| **k != slot)
            .filter_map(|(_, s)| s.state.current())
            .filter(|c| c.ready() && !self.is_drained(c.id))
            .count();
        if others == 0 {
            return Err(WorkerActionError::Conflict(format!(
                "cannot drain worker {id}: it is the only worker in rotation, nothing would take \
                 new connections; scale up first (herd ctl scale N)"
            )));
        }
        self.core
            .drain(id, true)
            .map_err(|e| WorkerActionError::Conflict(format!("cannot drain worker {id}: {e}")))?;
        tracing::info!(
            worker = id,
            "worker {id} drained: out of rotation, serving its open connections"
        );
        self.emit(SupervisorEvent::Drain {
            worker: id,
            slot,
            drained: true,
        });
        self.settle(now);
        Ok(())
    }

    /// Puts drained worker `id` back into rotation (a no-op for one that
    /// is not drained).
    pub fn undrain(&mut self, id: u32, now: Instant) -> Result<(), WorkerActionError> {
        let slot = self.own_ready_slot(id, "undrain")?;
        if !self.is_drained(id) {
            return Ok(());
        }
        self.core
            .drain(id, false)
            .map_err(|e| WorkerActionError::Conflict(format!("cannot undrain worker {id}: {e}")))?;
        tracing::info!(worker = id, "worker {id} back in rotation");
        self.emit(SupervisorEvent::Drain {
            worker: id,
            slot,
            drained: false,
        });
        self.settle(now);
        Ok(())
    }

    /// Replaces worker `id`, successor first; returns its slot.
    pub fn replace(&mut self, id: u32, now: Instant) -> Result<usize, WorkerActionError> {
        let slot = self.own_ready_slot(id, "replace")?;
        self.enqueue(slot, Why::Recycle(RecycleReason::Operator { worker: id }));
        self.settle(now);
        Ok(slot)
    }
}
