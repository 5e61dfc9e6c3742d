//! The health verdict a load balancer is told, the operator's mark-down,
//! and the mark a reload through health holds while it runs.

use std::time::Instant;

use super::Machine;
use crate::supervise::core::Core;
use crate::supervise::status::Health;

impl<C: Core> Machine<C> {
    /// Marks the host down (health answers "draining", the workers keep
    /// serving) or up again.
    pub fn mark_down(&mut self, down: bool, now: Instant) {
        if self.marked_down != down {
            tracing::info!("marked {}", if down { "down" } else { "up" });
        }
        self.marked_down = down;
        self.settle(now);
    }

    /// What a load balancer should be told now.
    pub fn health(&self) -> Health {
        if self.stopping || self.marked_down || self.drain_reload.is_some() {
            Health::Draining
        } else if self.ready_count() >= self.cfg.workers {
            Health::Up
        } else {
            Health::Down
        }
    }

    /// A reload ended: a reload through health lifts its mark.
    pub(super) fn reload_ended(&mut self, id: u64) {
        if self.drain_reload.as_ref().is_some_and(|d| d.id == id) {
            self.drain_reload = None;
        }
    }
}
