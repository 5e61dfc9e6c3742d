//! `rr`: round-robin. Each new connection goes to the next ready worker in
//! turn that has room in its hand-off window, so counts stay even.

use super::handoff::{Pick, Slot};

#[derive(Default)]
pub(crate) struct RoundRobin {
    next: usize,
}

impl Pick for RoundRobin {
    fn pick(&mut self, slots: &[Slot]) -> Option<usize> {
        let n = slots.len();
        (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| slots[i].has_room())
            .inspect(|&i| {
                self.next = i + 1;
            })
    }

    fn name(&self) -> &'static str {
        "rr"
    }
}
