//! Least recently used order of one cache's keys: a doubly linked list
//! threaded through a slab, so that a touch (the hot path: every hit), an
//! insert and a removal are O(1) and allocate nothing once the slab has
//! grown. The slab holds as many nodes as the cache once held entries at
//! most, which its entry bound limits; freed nodes are reused.

/// No node.
const NIL: u32 = u32::MAX;

struct Node {
    key: String,
    /// Toward the most recently used end.
    newer: u32,
    /// Toward the least recently used end.
    older: u32,
}

/// A place in the order, given by [`Lru::push`].
pub(crate) type Slot = u32;

pub(crate) struct Lru {
    nodes: Vec<Node>,
    free: Vec<Slot>,
    newest: Slot,
    oldest: Slot,
}

impl Default for Lru {
    fn default() -> Lru {
        Lru {
            nodes: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
        }
    }
}

impl Lru {
    /// Adds `key` as the most recently used; its slot.
    pub fn push(&mut self, key: String) -> Slot {
        let node = Node {
            key,
            newer: NIL,
            older: NIL,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.nodes[s as usize] = node;
                s
            }
            None => {
                self.nodes.push(node);
                u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 entries")
            }
        };
        self.link_newest(slot);
        slot
    }

    /// Makes `slot` the most recently used.
    pub fn bump(&mut self, slot: Slot) {
        if self.newest != slot {
            self.unlink(slot);
            self.link_newest(slot);
        }
    }

    /// Takes `slot` out of the order; its key.
    pub fn remove(&mut self, slot: Slot) -> String {
        self.unlink(slot);
        self.free.push(slot);
        std::mem::take(&mut self.nodes[slot as usize].key)
    }

    /// The least recently used key other than `keep`.
    pub fn oldest_except(&self, keep: &str) -> Option<&str> {
        let mut at = self.oldest;
        while at != NIL {
            let node = &self.nodes[at as usize];
            if node.key != keep {
                return Some(&node.key);
            }
            at = node.newer;
        }
        None
    }

    fn link_newest(&mut self, slot: Slot) {
        let old_newest = self.newest;
        {
            let node = &mut self.nodes[slot as usize];
            node.older = old_newest;
            node.newer = NIL;
        }
        if old_newest == NIL {
            self.oldest = slot;
        } else {
            self.nodes[old_newest as usize].newer = slot;
        }
        self.newest = slot;
    }

    fn unlink(&mut self, slot: Slot) {
        let (newer, older) = {
            let node = &self.nodes[slot as usize];
            (node.newer, node.older)
        };
        if newer == NIL {
            self.newest = older;
        } else {
            self.nodes[newer as usize].older = older;
        }
        if older == NIL {
            self.oldest = newer;
        } else {
            self.nodes[older as usize].newer = newer;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys from the least recently used to the most.
    fn order(lru: &Lru) -> Vec<String> {
        let mut keys = Vec::new();
        let mut at = lru.oldest;
        while at != NIL {
            keys.push(lru.nodes[at as usize].key.clone());
            at = lru.nodes[at as usize].newer;
        }
        // And the same backwards.
        let mut back = Vec::new();
        let mut at = lru.newest;
        while at != NIL {
            back.push(lru.nodes[at as usize].key.clone());
            at = lru.nodes[at as usize].older;
        }
        back.reverse();
        assert_eq!(keys, back, "the links agree both ways");
        keys
    }

    #[test]
    fn pushes_bumps_and_removals_keep_the_order() {
        let mut lru = Lru::default();
        let a = lru.push("a".into());
        let b = lru.push("b".into());
        let c = lru.push("c".into());
        assert_eq!(order(&lru), ["a", "b", "c"]);
        lru.bump(a);
        assert_eq!(order(&lru), ["b", "c", "a"]);
        lru.bump(a);
        assert_eq!(order(&lru), ["b", "c", "a"], "the newest stays");
        assert_eq!(lru.oldest_except("x"), Some("b"));
        assert_eq!(lru.oldest_except("b"), Some("c"));
        assert_eq!(lru.remove(c), "c");
        assert_eq!(order(&lru), ["b", "a"]);
        // The freed slot is reused.
        let d = lru.push("d".into());
        assert_eq!(d, c);
        assert_eq!(order(&lru), ["b", "a", "d"]);
        assert_eq!(lru.remove(b), "b");
        assert_eq!(lru.remove(d), "d");
        assert_eq!(order(&lru), ["a"]);
        assert_eq!(lru.oldest_except("a"), None);
        assert_eq!(lru.remove(a), "a");
        assert_eq!(order(&lru), Vec::<String>::new());
        assert_eq!(lru.oldest_except(""), None);
        lru.push("e".into());
        assert_eq!(order(&lru), ["e"]);
        assert_eq!(
            lru.nodes.len(),
            3,
            "no slot more than the most held at once"
        );
    }

    #[test]
    fn it_agrees_with_a_plain_list_over_many_operations() {
        let mut lru = Lru::default();
        let mut model: Vec<(String, Slot)> = Vec::new();
        let mut x: u64 = 1;
        for i in 0..5000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pick = (x >> 33) as usize;
            match pick % 3 {
                0 => {
                    let key = format!("k{i}");
                    let slot = lru.push(key.clone());
                    model.push((key, slot));
                }
                1 if !model.is_empty() => {
                    let (key, slot) = model.remove(pick % model.len());
                    lru.bump(slot);
                    model.push((key, slot));
                }
                _ if !model.is_empty() => {
                    let (key, slot) = model.remove(pick % model.len());
                    assert_eq!(lru.remove(slot), key);
                }
                _ => {}
            }
            if i % 97 == 0 {
                let keys: Vec<String> = model.iter().map(|(k, _)| k.clone()).collect();
                assert_eq!(order(&lru), keys);
            }
        }
    }
}
