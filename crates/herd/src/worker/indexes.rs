//! A worker's listen indexes: which of its listens of an address a
//! `listen` frame asks for (its `index`, docs/protocol.md). The primary
//! keys a socket by address and index, so the k-th listen of every worker
//! shares one socket (the k-th `listen(0)` gets one port).
//!
//! A listen takes the lowest index of its address that this worker does
//! not hold now, and gives it back when the listen fails or its listener
//! closes (and only after the `unlisten` is queued, so the primary reads
//! the two in that order). So a worker that closes a listener and listens
//! again gets the same index, and shares the socket that the other
//! workers still hold, as in Node; a worker that holds several listens of
//! one address and closes one of them gets that one's index back (Node
//! counts on instead, and binds another port).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::addr::ListenAddr;

/// The indexes this worker holds, by address.
#[derive(Default)]
pub(super) struct Indexes {
    held: Mutex<HashMap<ListenAddr, BTreeSet<u32>>>,
}

impl Indexes {
    /// Takes the lowest index of `addr` not held now.
    pub(super) fn take(self: &Arc<Self>, addr: &ListenAddr) -> Index {
        let mut held = self.held.lock().unwrap();
        let set = held.entry(addr.clone()).or_default();
        let index = (0..)
            .find(|i| !set.contains(i))
            .expect("fewer than u32::MAX listens");
        set.insert(index);
        Index {
            indexes: self.clone(),
            addr: addr.clone(),
            index,
            kept: false,
        }
    }

    fn give_back(&self, addr: &ListenAddr, index: u32) {
        let mut held = self.held.lock().unwrap();
        if let Some(set) = held.get_mut(addr) {
            set.remove(&index);
            if set.is_empty() {
                held.remove(addr);
            }
        }
    }
}

/// One index held; given back when dropped.
pub(super) struct Index {
    indexes: Arc<Indexes>,
    addr: ListenAddr,
    index: u32,
    /// Held for the worker's life (a UDP socket, which tells the primary
    /// nothing when it closes).
    kept: bool,
}

impl Index {
    /// The number sent in the `listen` frame.
    pub(super) fn get(&self) -> u32 {
        self.index
    }

    /// Holds the index for the rest of the worker's life.
    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        if !self.kept {
            self.indexes.give_back(&self.addr, self.index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_takes_the_lowest_free_index_and_gives_it_back_on_drop() {
        let indexes = Arc::new(Indexes::default());
        let a: ListenAddr = "127.0.0.1:0".parse().unwrap();
        let b: ListenAddr = "127.0.0.1:1".parse().unwrap();
        let first = indexes.take(&a);
        let second = indexes.take(&a);
        assert_eq!((first.get(), second.get()), (0, 1));
        assert_eq!(indexes.take(&b).get(), 0, "each address counts on its own");
        drop(first);
        let again = indexes.take(&a);
        assert_eq!(again.get(), 0, "a closed listen's index is free again");
        let kept = indexes.take(&a);
        assert_eq!(kept.get(), 2);
        kept.keep();
        drop(second);
        drop(again);
        let (x, y, z) = (indexes.take(&a), indexes.take(&a), indexes.take(&a));
        assert_eq!(
            (x.get(), y.get(), z.get()),
            (0, 1, 3),
            "a kept index is never given back"
        );
    }
}
