//! `lc`: least connections. Each new connection goes to the ready worker
//! with the fewest open connections (handed off and not yet closed); ties go
//! round-robin so that idle workers share evenly.

use super::handoff::{Pick, Slot};

#[derive(Default)]
pub(crate) struct LeastConnections {
    next: usize,
}

impl Pick for LeastConnections {
    fn pick(&mut self, slots: &[Slot]) -> Option<usize> {
        let n = slots.len();
        let best = (0..n)
            .map(|k| (self.next + k) % n)
            .filter(|&i| slots[i].has_room())
            .min_by_key(|&i| slots[i].load())?;
        self.next = best + 1;
        Some(best)
    }

    fn name(&self) -> &'static str {
        "lc"
    }
}
