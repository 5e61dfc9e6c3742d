//! A slot's life: its worker started, ready, dead; respawned after a
//! backoff or left down by the breaker; killed when it does not boot in
//! time; queued for replacement when it hangs or is due for recycling.

use std::time::Instant;

use super::{Boot, Current, Machine, Old, Retiring, State, Why};
use crate::primary::ExitStatus;
use crate::supervise::breaker::Verdict;
use crate::supervise::config::{Restart, EXIT_CANNOT_BOOT};
use crate::supervise::core::{Core, Kill};
use crate::supervise::events::SupervisorEvent;
use crate::supervise::health;

/// Whether a failed fork is for want of resources (and may work later):
/// EAGAIN (a process limit), ENOMEM, EMFILE, ENFILE, ENOBUFS.
fn wants_resources(e: &crate::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.raw_os_error(),
                Some(libc::EAGAIN | libc::ENOMEM | libc::EMFILE | libc::ENFILE | libc::ENOBUFS)
            );
        }
        source = s.source();
    }
    false
}

impl<C: Core> Machine<C> {
    pub(super) fn spawn(&mut self, slot: usize, respawn: bool) {
        if self.stopping {
            return;
        }
        match self.core.fork() {
            Ok(id) => {
                let recycle_after = self.jitter.recycle_point(&self.cfg);
                let Some(s) = self.slots.get_mut(&slot) else {
                    return;
                };
                if s.fork_backoff.take().is_some() {
                    tracing::info!("slot {slot}: a worker started again");
                }
                s.restarts += u32::from(respawn);
                if respawn {
                    *self.replacements.entry("crash").or_default() += 1;
                }
                s.state = State::Up(Current {
                    id,
                    boot: Boot::Booting,
                    recycle_after,
                });
            }
            Err(e) if wants_resources(&e) => self.fork_failed(slot, e),
            Err(e) => {
                self.trip(slot, format!("slot {slot}: cannot start a worker: {e}"));
            }
        }
    }

    /// A fork failed for want of resources (processes, memory,
    /// descriptors): the slot tries again after a backoff that doubles up
    /// to the cap. Said in one line for all slots, at most once a second.
    fn fork_failed(&mut self, slot: usize, e: crate::Error) {
        let cfg = &self.cfg;
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        let after = s
            .fork_backoff
            .map_or(cfg.backoff, |b| b.saturating_mul(2))
            .min(cfg.backoff_max);
        s.fork_backoff = Some(after);
        s.state = State::Backoff {
            at: super::later(Instant::now(), after),
        };
        let f = &mut self.fork_failures;
        f.slots += 1;
        f.last_error = e.to_string();
        f.retry_in = Some(f.retry_in.map_or(after, |r| r.min(after)));
    }

    /// The line about failed forks, if one is due.
    pub(super) fn say_fork_failures(&mut self, now: Instant) {
        let f = &mut self.fork_failures;
        if f.slots == 0
            || f.logged_at
                .is_some_and(|t| now.duration_since(t).as_secs() < 1)
        {
            return;
        }
        tracing::warn!(
            "cannot start workers for {} slot{} ({}); each tries again after a backoff (now {}), doubling up to {}",
            f.slots,
            if f.slots == 1 { "" } else { "s" },
            f.last_error,
            crate::supervise::events::when(f.retry_in.unwrap_or_default()),
            crate::supervise::events::human(self.cfg.backoff_max)
        );
        f.slots = 0;
        f.retry_in = None;
        f.logged_at = Some(now);
    }

    pub(super) fn trip(&mut self, slot: usize, reason: String) {
        if let Some(s) = self.slots.get_mut(&slot) {
            s.state = State::Broken;
        }
        tracing::error!("{reason}");
        self.emit(SupervisorEvent::BreakerTripped { slot, reason });
    }

    pub(super) fn slot_where(&self, pred: impl Fn(&State) -> bool) -> Option<usize> {
        self.slots
            .iter()
            .find(|(_, s)| pred(&s.state))
            .map(|(k, _)| *k)
    }

    pub(super) fn on_ready(&mut self, id: u32, now: Instant) {
        let successor_of = self
            .slot_where(|st| matches!(st, State::Replacing { successor, .. } if *successor == id));
        if let Some(slot) = successor_of {
            if !self.stopping {
                self.promote(slot, now);
            }
            return;
        }
        for s in self.slots.values_mut() {
            if let Some(c) = s.state.current_mut().filter(|c| c.id == id) {
                c.boot = Boot::Ready;
                s.breaker.ready();
                return;
            }
        }
    }

    pub(super) fn on_exit(&mut self, id: u32, status: ExitStatus, deliberate: bool, now: Instant) {
        if let Some(r) = self.retiring.remove(&id) {
            if let Some(s) = self.slots.get_mut(&r.slot) {
                s.last_exit = Some((id, status, r.why, now));
            }
            return;
        }
        let successor_of = self
            .slot_where(|st| matches!(st, State::Replacing { successor, .. } if *successor == id));
        if let Some(slot) = successor_of {
            let reason = format!("new worker {id} exited ({status}) before it was ready");
            return self.failed_replacement(slot, reason, now);
        }
        if let Some(slot) = self.slot_where(|st| st.current().is_some_and(|c| c.id == id)) {
            self.on_slot_exit(slot, id, status, deliberate, now);
        }
    }

    pub(super) fn on_slot_exit(
        &mut self,
        slot: usize,
        id: u32,
        status: ExitStatus,
        deliberate: bool,
        now: Instant,
    ) {
        let (cfg, stopping) = (&self.cfg, self.stopping);
        let s = self.slots.get_mut(&slot).unwrap();
        let (cur, successor) = match std::mem::replace(&mut s.state, State::Stopped) {
            State::Up(c) => (c, None),
            State::Queued { old, .. } => {
                // Nothing left to replace.
                self.queue.finished(slot);
                (old, None)
            }
            State::Replacing {
                old: Old::Running(c),
                why,
                successor,
                since,
            } => {
                s.state = State::Replacing {
                    old: Old::Died(c.id),
                    why,
                    successor,
                    since,
                };
                (c, Some(successor))
            }
            other => {
                s.state = other;
                return;
            }
        };
        let overdue = format!(
            "not ready within {}",
            crate::supervise::events::human(cfg.boot_timeout)
        );
        let words = match (deliberate, cur.boot) {
            (true, _) => "asked to leave".to_string(),
            (false, Boot::Overdue) => overdue.clone(),
            (false, _) if status.success() => "exited".into(),
            (false, Boot::Ready) => "crashed".into(),
            (false, Boot::Booting) => "crashed before it was ready".into(),
        };
        s.last_exit = Some((id, status, words, now));
        if let Some(successor) = successor {
            // Its successor takes the slot once ready (or the slot starts
            // afresh if it fails): respawning now as well would leave one
            // worker outside every slot, never stopped.
            tracing::info!(
                worker = id,
                "worker {id} died ({status}) while being replaced; slot {slot} waits for worker {successor}"
            );
            return;
        }
        if stopping {
            return;
        }
        let respawn = match cfg.restart {
            Restart::Never => false,
            Restart::Always => !deliberate,
            Restart::OnFailure => !deliberate && !status.success(),
        };
        if !respawn {
            tracing::info!(
                worker = id,
                "worker {id} exited ({status}); not respawning (restart policy {})",
                cfg.restart
            );
            return;
        }
        if status.code == Some(EXIT_CANNOT_BOOT) {
            let reason = format!(
                "worker {id} exited with code {EXIT_CANNOT_BOOT} (cannot boot): slot {slot} stays down"
            );
            return self.trip(slot, reason);
        }
        let how = if cur.boot == Boot::Overdue {
            overdue
        } else {
            status.to_string()
        };
        match s.breaker.death(cfg, slot, cur.ready(), how, now) {
            Verdict::Trip(reason) => self.trip(slot, reason),
            Verdict::Respawn(after) => {
                tracing::warn!(
                    worker = id,
                    "worker {id} died ({status}); a new one starts {}",
                    crate::supervise::events::when(after)
                );
                s.state = State::Backoff {
                    at: super::later(now, after),
                };
                self.emit(SupervisorEvent::Respawn {
                    slot,
                    previous: id,
                    after,
                });
            }
        }
    }

    /// Workers (and successors) not ready within the boot timeout.
    pub(super) fn check_boots(&mut self, now: Instant) {
        let late: Vec<(usize, u32)> = self
            .slots
            .iter()
            .filter_map(|(k, s)| match s.state {
                State::Replacing {
                    successor, since, ..
                } if health::boot_overdue(&self.cfg, since, now) => Some((*k, successor)),
                _ => None,
            })
            .collect();
        for (slot, successor) in late {
            let hint = self.core.worker(successor).and_then(|w| w.unready);
            self.core.kill(successor, Kill::Deliberate);
            let reason = format!(
                "new worker {successor} was not ready within {}{}",
                crate::supervise::events::human(self.cfg.boot_timeout),
                because(hint.as_deref())
            );
            self.failed_replacement(slot, reason, now);
        }
        for s in self.slots.values_mut() {
            let Some(c) = s.state.current_mut().filter(|c| c.boot == Boot::Booting) else {
                continue;
            };
            let Some(w) = self.core.worker(c.id) else {
                continue;
            };
            if !w.ready && health::boot_overdue(&self.cfg, w.started, now) {
                tracing::warn!(
                    worker = c.id,
                    "worker {} was not ready within {}; killing it{}",
                    c.id,
                    crate::supervise::events::human(self.cfg.boot_timeout),
                    because(w.unready.as_deref())
                );
                c.boot = Boot::Overdue;
                self.core.kill(c.id, Kill::AsCrash);
            }
        }
    }

    /// The nanny and the recyclers queue replacements.
    pub(super) fn check_health(&mut self, now: Instant) {
        let mut wanted = Vec::new();
        for (slot, s) in &self.slots {
            let State::Up(c) = &s.state else { continue };
            if !c.ready() {
                continue;
            }
            // A drained worker is left alone: it may be stopped in a
            // debugger, and the operator decides what becomes of it.
            let Some(w) = self.core.worker(c.id).filter(|w| !w.leaving && !w.drained) else {
                continue;
            };
            let rss = || self.core.rss(c.id);
            if let Some(reason) = health::check(&self.cfg, c.id, &w, c.recycle_after, rss, now) {
                wanted.push((*slot, reason));
                continue;
            }
            if let (Some(rule), Some(h), Some((at, _))) =
                (&self.cfg.degraded, &w.health, w.heartbeat)
            {
                let decline = self.declines.entry(c.id).or_default();
                if let Some(reason) = decline.observe(rule, at, h) {
                    wanted.push((*slot, reason));
                }
            }
        }
        // Forget the course of workers that are gone.
        let core = &self.core;
        self.declines.retain(|id, _| core.worker(*id).is_some());
        for (slot, reason) in wanted {
            self.enqueue(slot, Why::Recycle(reason));
        }
    }

    pub(super) fn enqueue(&mut self, slot: usize, why: Why) {
        let Some(s) = self.slots.get_mut(&slot) else {
            return;
        };
        let State::Up(old) = s.state else { return };
        tracing::info!(worker = old.id, "replacing worker {}: {why}", old.id);
        // A hung worker goes first.
        self.queue.push(slot, why.is_hung());
        s.state = State::Queued { old, why };
    }

    pub(super) fn retire(&mut self, id: u32, slot: usize, why: String, now: Instant) {
        let kill_at = Some(super::later(now, self.cfg.grace));
        self.retiring.insert(id, Retiring { slot, kill_at, why });
    }
}

/// `: HINT` after "not ready within ...", when the readiness rule has one.
fn because(hint: Option<&str>) -> String {
    hint.map(|h| format!(": {h}")).unwrap_or_default()
}
