//! Taking one worker out of rotation while it stays connected (the
//! mechanism; whom to drain and what it means for health is the
//! supervisor's).
//!
//! | policy | what a drain does |
//! |---|---|
//! | `rr`, `lc` | the primary routes the worker no new connection; what its queue holds and it has not taken goes to the others |
//! | `shared`, `reuseport`, a foreign worker | refused: the worker accepts on its own socket, the primary routes nothing there to stop |
//!
//! A drained worker keeps every connection it has: its keep-alive
//! connections go on being served, which is how an operator reaches a
//! drained worker (to profile it under a load of their choosing).

use super::Primary;
use crate::Error;

impl Primary {
    /// Routes worker `id` no new connection, wherever it listens now or
    /// later, until [`undrain`](Self::undrain); it stays connected and
    /// serves the connections it has. Draining a drained worker is a
    /// no-op.
    ///
    /// # Errors
    /// [`Error::NoSuchWorker`] when no live worker has this id;
    /// [`Error::Unsupported`] for a worker that is leaving, a foreign
    /// worker, or one that accepts itself (`shared`, `reuseport`).
    pub fn drain(&self, id: u32) -> Result<(), Error> {
        let w = self.worker(id).ok_or(Error::NoSuchWorker { id })?;
        if w.is_foreign() {
            return Err(Error::Unsupported(format!(
                "worker {id} is a foreign program accepting on its own socket: the primary \
                 routes nothing to it that it could stop"
            )));
        }
        if w.exited_after_disconnect() || !w.is_connected() {
            return Err(Error::Unsupported(format!(
                "worker {id} is leaving already"
            )));
        }
        self.inner.table.drain(id).map_err(Error::Unsupported)
    }

    /// Puts a drained worker back into rotation. Returns false when it was
    /// not drained.
    ///
    /// # Errors
    /// [`Error::NoSuchWorker`] when no live worker has this id.
    pub fn undrain(&self, id: u32) -> Result<bool, Error> {
        self.worker(id).ok_or(Error::NoSuchWorker { id })?;
        Ok(self.inner.table.undrain(id))
    }

    /// Whether worker `id` is drained.
    pub fn is_drained(&self, id: u32) -> bool {
        self.inner.table.is_drained(id)
    }
}
