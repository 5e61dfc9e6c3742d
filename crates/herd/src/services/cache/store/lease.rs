//! A key's single-flight lease: who loads it, until when, and who waits.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Owner, Value, Waited};

struct Waiter {
    owner: Owner,
    deadline: u64,
    wait: Duration,
    /// It keeps a local copy of the value it is given.
    track: bool,
    tx: oneshot::Sender<Waited>,
}

pub(super) struct Lease {
    pub token: u64,
    pub owner: Owner,
    pub deadline: u64,
    waiters: VecDeque<Waiter>,
}

impl Lease {
    pub fn new(token: u64, owner: Owner, deadline: u64) -> Lease {
        Lease {
            token,
            owner,
            deadline,
            waiters: VecDeque::new(),
        }
    }

    /// A new waiter, until `deadline`.
    pub fn wait(
        &mut self,
        owner: Owner,
        now: u64,
        wait: Duration,
        track: bool,
    ) -> oneshot::Receiver<Waited> {
        let (tx, rx) = oneshot::channel();
        // A waiter that gave up (its receiver dropped) goes now, so that a
        // caller retrying a short wait does not grow the queue.
        self.waiters.retain(|w| !w.tx.is_closed());
        self.waiters.push_back(Waiter {
            owner,
            deadline: now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX / 4)),
            wait,
            track,
            tx,
        });
        rx
    }

    /// Gives every waiter the value; returns the workers among them that
    /// keep a local copy of it (to be told when it changes).
    pub fn fulfil(self, value: &Value) -> Vec<u32> {
        let mut readers = Vec::new();
        for w in self.waiters {
            let given = w.tx.send(Waited::Hit(value.clone())).is_ok();
            if let (true, true, Owner::Worker(id)) = (given, w.track, w.owner) {
                if !readers.contains(&id) {
                    readers.push(id);
                }
            }
        }
        readers
    }

    pub fn fail(self, why: &str) {
        for w in self.waiters {
            let _ = w.tx.send(Waited::Failed(why.to_string()));
        }
    }

    /// Passes the lease to the first waiter still waiting, as `token`
    /// until `deadline`; `false` when none waits (the lease ends).
    pub fn pass(&mut self, token: u64, deadline: u64) -> bool {
        while let Some(w) = self.waiters.pop_front() {
            if w.tx.send(Waited::Load(token)).is_ok() {
                self.token = token;
                self.owner = w.owner;
                self.deadline = deadline;
                return true;
            }
        }
        false
    }

    pub fn drop_waiters_of(&mut self, owner: Owner) {
        self.waiters.retain(|w| w.owner != owner);
    }

    /// Tells waiters whose wait ended at `now` so, and forgets them.
    pub fn time_out_waiters(&mut self, now: u64) {
        let (due, keep): (VecDeque<Waiter>, VecDeque<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| w.deadline <= now);
        self.waiters = keep.into_iter().filter(|w| !w.tx.is_closed()).collect();
        for w in due {
            let _ = w.tx.send(Waited::TimedOut(w.wait));
        }
    }

    pub fn next_deadline(&self) -> u64 {
        self.waiters
            .iter()
            .map(|w| w.deadline)
            .min()
            .map_or(self.deadline, |d| d.min(self.deadline))
    }
}
