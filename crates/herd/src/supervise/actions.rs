//! An operator's actions on one worker, as the [`Supervisor`] offers them:
//! [`drain`](Supervisor::drain), [`undrain`](Supervisor::undrain),
//! [`replace`](Supervisor::replace). The rules are the state machine's
//! (`machine/operator.rs`); the mechanism of a drain is the core's
//! (`Primary::drain`: under `rr` and `lc` only).

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::machine::Machine;
use super::status::SlotState;
use super::{Command, Supervisor};
use crate::primary::Primary;

/// Why an action on one worker was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerActionError {
    /// No live worker has that id.
    #[error("{0}")]
    NotFound(String),
    /// The worker cannot take this now (booting, being replaced, leaving,
    /// the last one in rotation, a policy where the workers accept
    /// themselves, the cluster stopping...): the text says why.
    #[error("{0}")]
    Conflict(String),
}

/// A finished [`Supervisor::replace`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replaced {
    /// The slot.
    pub slot: usize,
    /// The worker replaced (now leaving).
    pub old: u32,
    /// Its successor, ready and in rotation.
    pub new: u32,
}

/// What the handle asks of the running supervisor.
pub(super) enum Action {
    Drain(u32, oneshot::Sender<Result<(), WorkerActionError>>),
    Undrain(u32, oneshot::Sender<Result<(), WorkerActionError>>),
    Replace(u32, oneshot::Sender<Result<usize, WorkerActionError>>),
}

/// Carries out `action` on the running machine.
pub(super) fn apply(machine: &mut Machine<Primary>, action: Action, now: Instant) {
    match action {
        Action::Drain(id, reply) => {
            let _ = reply.send(machine.drain(id, now));
        }
        Action::Undrain(id, reply) => {
            let _ = reply.send(machine.undrain(id, now));
        }
        Action::Replace(id, reply) => {
            let _ = reply.send(machine.replace(id, now));
        }
    }
}

fn stopping() -> WorkerActionError {
    WorkerActionError::Conflict("the cluster is shutting down".into())
}

impl Supervisor {
    /// Takes worker `id` out of rotation and keeps it alive for
    /// inspection: no new connection goes to it, it serves the ones it has
    /// (its keep-alive connections: the way to reach it), the nanny and the
    /// recyclers leave it alone, and its slot counts as ready. A reload
    /// replaces it like any other. Under `rr` and `lc` only.
    ///
    /// # Errors
    /// [`WorkerActionError::NotFound`] for no such worker;
    /// [`WorkerActionError::Conflict`] for one that is not ready, is being
    /// replaced or leaving, is the last in rotation, or accepts itself
    /// (`shared`, `reuseport`, a foreign worker).
    pub async fn drain(&self, id: u32) -> Result<(), WorkerActionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Worker(Action::Drain(id, tx)));
        rx.await.unwrap_or_else(|_| Err(stopping()))
    }

    /// Puts drained worker `id` back into rotation (a no-op for a worker
    /// that is not drained).
    ///
    /// # Errors
    /// As [`drain`](Self::drain), but for the last-in-rotation rule.
    pub async fn undrain(&self, id: u32) -> Result<(), WorkerActionError> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Worker(Action::Undrain(id, tx)));
        rx.await.unwrap_or_else(|_| Err(stopping()))
    }

    /// Replaces worker `id` as one slot of a rolling reload: its successor
    /// starts from the program on disk, and once it is ready the old
    /// worker disconnects gracefully. Resolves when the successor took the
    /// slot (or failed: the old worker keeps serving), within the boot
    /// timeout.
    ///
    /// # Errors
    /// [`WorkerActionError::NotFound`] for no such worker;
    /// [`WorkerActionError::Conflict`] for one that is not ready, is being
    /// replaced or leaving, or whose successor failed.
    pub async fn replace(&self, id: u32) -> Result<Replaced, WorkerActionError> {
        let mut state = self.shared.state.subscribe();
        let (tx, rx) = oneshot::channel();
        self.send(Command::Worker(Action::Replace(id, tx)));
        let slot = rx.await.unwrap_or_else(|_| Err(stopping()))?;
        let within = self
            .shared
            .boot_timeout
            .saturating_add(Duration::from_secs(10));
        let mut successor = None;
        let wait = state.wait_for(|snap| {
            let s = &snap.status;
            let Some(st) = s.slots.iter().find(|x| x.slot == slot) else {
                return true;
            };
            if st.worker == Some(id) {
                successor = successor.or(st.successor);
            }
            s.stopping
                || (st.state == SlotState::Ready && st.worker != Some(id))
                || (successor.is_some() && st.state == SlotState::Ready)
        });
        let snap = match tokio::time::timeout(within, wait).await {
            Ok(Ok(snap)) => snap.clone(),
            Ok(Err(_)) => return Err(stopping()),
            Err(_) => {
                return Err(WorkerActionError::Conflict(format!(
                    "worker {id}'s successor is not ready after {}; the replacement goes on",
                    super::events::human(within)
                )))
            }
        };
        let st = snap.status.slots.iter().find(|x| x.slot == slot);
        match st.and_then(|st| st.worker) {
            Some(new) if new != id && !snap.status.stopping => Ok(Replaced { slot, old: id, new }),
            _ if snap.status.stopping => Err(stopping()),
            Some(_) => Err(WorkerActionError::Conflict(format!(
                "worker {id}'s successor{} failed; worker {id} keeps serving (see the events)",
                successor.map(|n| format!(" {n}")).unwrap_or_default()
            ))),
            None => Err(WorkerActionError::Conflict(format!(
                "slot {slot} was scaled away while worker {id} was being replaced"
            ))),
        }
    }
}
