//! Successor first: a queued replacement starts its successor when the
//! queue has room; the successor, once ready, takes the slot and its
//! predecessor is retired (disconnected, or killed if it hung). A successor
//! that fails leaves the old worker serving, and aborts a reload.

use std::time::Instant;

use super::{Boot, Current, Machine, Old, State, Why};
use crate::supervise::core::{Core, Kill};
use crate::supervise::events::{ReloadPhase, SupervisorEvent};
use crate::supervise::{ReloadDone, ReloadError};

impl<C: Core> Machine<C> {
    /// After every step: start what the queue has room for, end (and
    /// begin) reloads, give up if nothing can run, say when the cluster is
    /// ready.
    pub(super) fn settle(&mut self, now: Instant) {
        loop {
            self.next_jobs(now);
            if self.reload.is_some() {
                if self.reload_jobs_left() {
                    break;
                }
                self.finish_reload(now);
            }
            match self.next_reload.take() {
                // A reload through health drains first, queued or not.
                Some(id) if !self.stopping && self.cfg.reload_via_health => {
                    self.drain_reload = Some(super::DrainReload {
                        id,
                        at: super::later(now, self.cfg.drain_delay),
                        begun: false,
                    });
                    break;
                }
                Some(id) if !self.stopping => self.begin_reload(id, now),
                _ => break,
            }
        }
        self.check_give_up(now);
        self.check_all_exited(now);
        self.say_fork_failures(now);
        let (ready, wanted) = (self.ready_count(), self.cfg.workers);
        let full = ready >= wanted;
        if full && !self.full && !self.stopping {
            self.emit(SupervisorEvent::ClusterReady { ready, wanted });
        }
        self.full = full;
        self.note_health();
    }

    /// Says when the health verdict changed.
    pub(super) fn note_health(&mut self) {
        let health = self.health();
        if health != self.health {
            self.health = health;
            self.emit(SupervisorEvent::Health { health });
        }
    }

    /// Starts successors while the queue has room.
    fn next_jobs(&mut self, now: Instant) {
        while !self.stopping {
            let Some(slot) = self.queue.start_next() else {
                break;
            };
            let Some(State::Queued { old, why }) = self.slots.get(&slot).map(|s| s.state.clone())
            else {
                self.queue.finished(slot);
                continue;
            };
            if let Why::Recycle(reason) = &why {
                self.emit(SupervisorEvent::Recycle {
                    worker: old.id,
                    slot,
                    reason: reason.clone(),
                });
            }
            let state = match self.core.fork_successor(old.id) {
                Ok(successor) => State::Replacing {
                    old: Old::Running(old),
                    why,
                    successor,
                    since: now,
                },
                Err(e) => {
                    tracing::warn!("cannot start a successor for worker {}: {e}", old.id);
                    self.queue.finished(slot);
                    if why.is_reload() {
                        self.slots.get_mut(&slot).unwrap().state = State::Up(old);
                        self.abort_reload(format!("cannot start a new worker: {e}"), now);
                        continue;
                    }
                    State::Up(old)
                }
            };
            self.slots.get_mut(&slot).unwrap().state = state;
        }
    }

    /// The successor of `slot` is ready: it takes the slot, the
    /// predecessor leaves.
    pub(super) fn promote(&mut self, slot: usize, now: Instant) {
        let s = self.slots.get_mut(&slot).unwrap();
        let State::Replacing {
            old,
            why,
            successor,
            ..
        } = s.state.clone()
        else {
            return;
        };
        self.queue.finished(slot);
        s.state = State::Up(Current {
            id: successor,
            boot: Boot::Ready,
            recycle_after: self.jitter.recycle_point(&self.cfg),
        });
        s.breaker.ready();
        let kind = match &why {
            Why::Reload => {
                s.reloads += 1;
                "reload"
            }
            Why::Recycle(r) => {
                s.restarts += 1;
                r.kind()
            }
        };
        *self.replacements.entry(kind).or_default() += 1;
        let old_id = old.id();
        tracing::info!(
            worker = old_id,
            "worker {old_id} replaced by worker {successor} ({why})"
        );
        if let Old::Running(_) = old {
            self.retire(
                old_id,
                slot,
                format!("replaced by worker {successor} ({why})"),
                now,
            );
            if why.is_hung() {
                self.core.kill(old_id, Kill::Deliberate);
            } else {
                self.core.disconnect(old_id);
            }
        }
        if why.is_reload() {
            if let Some(run) = &mut self.reload {
                run.replaced += 1;
            }
            self.emit(SupervisorEvent::Reload(ReloadPhase::Replaced {
                old: old_id,
                new: successor,
            }));
        }
    }

    /// The successor of `slot` failed (exited, or not ready in time; it is
    /// gone or being killed).
    pub(super) fn failed_replacement(&mut self, slot: usize, reason: String, now: Instant) {
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        let State::Replacing { old, why, .. } = s.state.clone() else {
            return;
        };
        self.queue.finished(slot);
        match old {
            Old::Running(c) => {
                tracing::warn!("{reason}; the old worker keeps serving");
                s.state = State::Up(c);
                if why.is_hung() {
                    // No successor: a hung worker is still killed, and
                    // respawned.
                    self.core.kill(c.id, Kill::AsCrash);
                }
            }
            Old::Died(_) => {
                // The slot is empty: start it afresh.
                tracing::warn!("{reason}; starting slot {slot} afresh");
                s.state = State::Backoff {
                    at: super::later(now, s.breaker.current_backoff(&self.cfg)),
                };
            }
        }
        if why.is_reload() {
            self.abort_reload(reason, now);
        }
    }

    pub(super) fn begin_reload(&mut self, id: u64, now: Instant) {
        let slots: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| matches!(s.state, State::Up(_)))
            .map(|(k, _)| *k)
            .collect();
        self.reload = Some(super::ReloadRun {
            id,
            started: now,
            total: slots.len(),
            replaced: 0,
        });
        self.emit(SupervisorEvent::Reload(ReloadPhase::Started {
            workers: slots.len(),
        }));
        for slot in slots {
            self.enqueue(slot, Why::Reload);
        }
    }

    fn reload_jobs_left(&self) -> bool {
        self.slots
            .values()
            .any(|s| s.state.why().is_some_and(Why::is_reload))
    }

    fn finish_reload(&mut self, now: Instant) {
        let Some(run) = self.reload.take() else {
            return;
        };
        let took = now.saturating_duration_since(run.started);
        let replaced = run.replaced;
        tracing::info!(
            "reload finished: {replaced} workers replaced in {}",
            crate::supervise::events::human(took)
        );
        self.emit(SupervisorEvent::Reload(ReloadPhase::Finished {
            replaced,
            took,
        }));
        self.reloads.finished += 1;
        self.reloads.seconds += took.as_secs_f64();
        self.reloads.last_seconds = Some(took.as_secs_f64());
        self.outcomes
            .push((run.id, Ok(ReloadDone { replaced, took })));
        self.reload_ended(run.id);
    }

    /// Stops the reload: queued replacements are dropped, booting
    /// successors killed; the old workers keep serving.
    fn abort_reload(&mut self, reason: String, now: Instant) {
        let mut kill = Vec::new();
        for (slot, s) in &mut self.slots {
            let next = match &s.state {
                State::Queued { old, why } if why.is_reload() => State::Up(*old),
                State::Replacing {
                    old,
                    why,
                    successor,
                    ..
                } if why.is_reload() => {
                    kill.push(*successor);
                    match old {
                        Old::Running(c) => State::Up(*c),
                        Old::Died(_) => State::Backoff {
                            at: super::later(now, s.breaker.current_backoff(&self.cfg)),
                        },
                    }
                }
                _ => continue,
            };
            s.state = next;
            self.queue.finished(*slot);
        }
        for id in kill {
            self.core.kill(id, Kill::Deliberate);
        }
        if let Some(run) = self.reload.take() {
            self.reload_aborted(run.id, reason);
        }
    }

    pub(super) fn reload_aborted(&mut self, id: u64, reason: String) {
        self.reloads.aborted += 1;
        tracing::warn!("reload aborted: {reason}");
        self.emit(SupervisorEvent::Reload(ReloadPhase::Aborted {
            reason: reason.clone(),
        }));
        self.outcomes
            .push((id, Err(ReloadError::Aborted { reason })));
        self.reload_ended(id);
    }

    /// Every slot down and no worker ready: nothing will come back.
    fn check_give_up(&mut self, now: Instant) {
        if self.stopping
            || self.slots.is_empty()
            || !self
                .slots
                .values()
                .all(|s| matches!(s.state, State::Broken))
        {
            return;
        }
        let serving = self
            .retiring
            .keys()
            .any(|id| self.core.worker(*id).is_some_and(|w| w.ready));
        if serving {
            return;
        }
        tracing::error!("every worker slot is down; giving up");
        self.gave_up = true;
        self.emit(SupervisorEvent::GaveUp {
            reason: "every worker slot is down".into(),
        });
        self.stop(now);
    }

    /// Every worker exited and the restart policy keeps every slot down
    /// (`on-failure` after exits 0, `never`): nothing will come back, so
    /// the cluster ends, `run` returning 0 when each exited 0 and 1 when
    /// one failed or a slot was left broken.
    fn check_all_exited(&mut self, now: Instant) {
        if self.stopping
            || !self.retiring.is_empty()
            || !self
                .slots
                .values()
                .any(|s| matches!(s.state, State::Stopped))
            || !self
                .slots
                .values()
                .all(|s| matches!(s.state, State::Stopped | State::Broken))
        {
            return;
        }
        let failed = self.slots.values().any(|s| {
            matches!(s.state, State::Broken) || s.last_exit.as_ref().is_some_and(|e| !e.1.success())
        });
        if failed {
            self.gave_up = true;
            self.emit(SupervisorEvent::GaveUp {
                reason: format!(
                    "every worker exited, some failing, and the restart policy ({}) starts none again",
                    self.cfg.restart
                ),
            });
        } else {
            tracing::info!(
                "every worker exited 0 and the restart policy ({}) starts none again: stopping",
                self.cfg.restart
            );
        }
        self.stop(now);
    }
}
