//! The replace queue: which slots' workers are to be replaced, in what
//! order, and how many replacements run at once. Pure bookkeeping of slot
//! numbers; the state machine starts each successor and, once it is ready,
//! retires its predecessor (successor first).
//!
//! Replacements run in the order asked, except that a hung worker's goes to
//! the front; at most `surge` run at once.

use std::collections::{BTreeSet, VecDeque};

#[derive(Debug, Clone)]
pub(crate) struct ReplaceQueue {
    waiting: VecDeque<usize>,
    running: BTreeSet<usize>,
    surge: usize,
}

impl ReplaceQueue {
    pub fn new(surge: usize) -> ReplaceQueue {
        ReplaceQueue {
            waiting: VecDeque::new(),
            running: BTreeSet::new(),
            surge: surge.max(1),
        }
    }

    /// Queues `slot` (once): at the back, or at the front when `urgent`.
    pub fn push(&mut self, slot: usize, urgent: bool) {
        if self.contains(slot) {
            return;
        }
        if urgent {
            self.waiting.push_front(slot);
        } else {
            self.waiting.push_back(slot);
        }
    }

    /// The next slot whose replacement may start now, if there is room;
    /// it counts as running until [`finished`](Self::finished).
    pub fn start_next(&mut self) -> Option<usize> {
        if self.running.len() >= self.surge {
            return None;
        }
        let slot = self.waiting.pop_front()?;
        self.running.insert(slot);
        Some(slot)
    }

    /// `slot`'s replacement is over (done or failed), or was cancelled
    /// before it started.
    pub fn finished(&mut self, slot: usize) {
        self.running.remove(&slot);
        self.waiting.retain(|s| *s != slot);
    }

    /// Whether `slot` is waiting or running.
    pub fn contains(&self, slot: usize) -> bool {
        self.running.contains(&slot) || self.waiting.contains(&slot)
    }

    /// Replacements running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_surge_run_at_once_in_the_order_asked() {
        let mut q = ReplaceQueue::new(2);
        for slot in [3, 1, 2, 0] {
            q.push(slot, false);
        }
        q.push(1, false); // once only
        assert_eq!(
            (q.start_next(), q.start_next(), q.start_next()),
            (Some(3), Some(1), None)
        );
        assert_eq!(q.running(), 2);
        q.finished(3);
        assert_eq!((q.start_next(), q.start_next()), (Some(2), None));
        q.finished(1);
        q.finished(2);
        assert_eq!((q.start_next(), q.start_next()), (Some(0), None));
        q.finished(0);
        assert!(!q.contains(0) && q.running() == 0);
    }

    #[test]
    fn an_urgent_slot_goes_first_and_a_cancelled_one_never_starts() {
        let mut q = ReplaceQueue::new(1);
        q.push(0, false);
        q.push(1, false);
        q.push(2, true);
        q.finished(0);
        assert_eq!(q.start_next(), Some(2));
        q.finished(2);
        assert_eq!(q.start_next(), Some(1));
        q.finished(1);
        assert_eq!(q.start_next(), None);
    }
}
