//! What the machine shows of itself: the supervisor's part of the
//! [`ClusterStatus`].

use std::time::Instant;

use super::{Current, Machine, Old, Slot, State};
use crate::supervise::core::Core;
use crate::supervise::status::{
    ClusterStatus, LastExit, ReloadStatus, SlotState, SlotStatus, Snapshot,
};

impl Slot {
    fn status(&self, slot: usize, now: Instant) -> SlotStatus {
        let (state, worker, successor) = match &self.state {
            State::Pending => (SlotState::Starting, None, None),
            State::Stopped => (SlotState::Stopped, None, None),
            State::Backoff { .. } => (SlotState::Backoff, None, None),
            State::Broken => (SlotState::Broken, None, None),
            State::Up(c) if c.ready() => (SlotState::Ready, Some(c.id), None),
            State::Up(c) => (SlotState::Starting, Some(c.id), None),
            State::Queued { old, .. } => (SlotState::Replacing, Some(old.id), None),
            State::Replacing { old, successor, .. } => {
                let old = match old {
                    Old::Running(c) => Some(c.id),
                    Old::Died(_) => None,
                };
                (SlotState::Replacing, old, Some(*successor))
            }
        };
        SlotStatus {
            slot,
            state,
            worker,
            successor,
            restarts: self.restarts,
            reloads: self.reloads,
            last_exit: self
                .last_exit
                .as_ref()
                .map(|(worker, status, reason, at)| LastExit {
                    worker: *worker,
                    status: *status,
                    reason: reason.clone(),
                    ago_secs: now.saturating_duration_since(*at).as_secs_f64(),
                }),
        }
    }
}

impl<C: Core> Machine<C> {
    /// The supervisor's part of the status, at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let status = ClusterStatus {
            wanted: self.cfg.workers,
            ready: self.ready_count(),
            reload: self.reload.as_ref().map(|r| ReloadStatus {
                replaced: r.replaced,
                total: r.total,
                running_secs: now.saturating_duration_since(r.started).as_secs_f64(),
            }),
            stopping: self.stopping,
            health: self.health(),
            replacements: self
                .replacements
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            reloads: self.reloads.clone(),
            marked_down: self.marked_down,
            slots: self.slots.iter().map(|(k, s)| s.status(*k, now)).collect(),
            workers: Vec::new(),
            uptime_secs: now.saturating_duration_since(self.born).as_secs_f64(),
        };
        Snapshot { status, at: now }
    }

    pub(super) fn ready_count(&self) -> usize {
        self.slots
            .values()
            .filter(|s| s.state.current().is_some_and(Current::ready))
            .count()
    }
}
