//! The dedup window: event-id hashes of recently applied events, persisted with the batch that
//! applied them so that dedup holds across restarts.
//!
//! The window is bounded (by hash count); an event replayed after its id left the window is not
//! reported as a duplicate, but last-writer-wins versioning still makes it a no-op ("stale"), so
//! the final state is unaffected either way.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Event-id hashes are already uniformly distributed (xxh3): hash them as themselves.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Recently applied event ids, grouped by the commit that recorded them.
pub struct DedupWindow {
    counts: HashMap<u64, u32, BuildHasherDefault<Identity>>,
    entries: VecDeque<(u64, Vec<u64>)>,
    total: usize,
    max: usize,
    next_id: u64,
    expired: Vec<u64>,
}

impl DedupWindow {
    /// A window restored from the store: entries newest first, and the next free entry id.
    pub fn restore(newest_first: Vec<(u64, Vec<u64>)>, next_id: u64, max: usize) -> Self {
        let mut w = Self {
            counts: HashMap::default(),
            entries: VecDeque::new(),
            total: 0,
            max,
            next_id,
            expired: Vec::new(),
        };
        for (id, hashes) in newest_first.into_iter().rev() {
            w.insert(id, hashes);
        }
        w
    }

    /// Whether an event hash was applied within the window.
    pub fn contains(&self, hash: u64) -> bool {
        self.counts.contains_key(&hash)
    }

    /// The id the next recorded entry will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Entry ids that fell out of the window and should be deleted with the next commit.
    pub fn take_expired(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.expired)
    }

    /// Records the hashes of a committed batch under `next_id()`.
    pub fn record(&mut self, hashes: Vec<u64>) {
        let id = self.next_id;
        self.next_id += 1;
        self.insert(id, hashes);
    }

    /// Hashes held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn insert(&mut self, id: u64, hashes: Vec<u64>) {
        for h in &hashes {
            *self.counts.entry(*h).or_default() += 1;
        }
        self.total += hashes.len();
        self.entries.push_back((id, hashes));
        while self.total > self.max && self.entries.len() > 1 {
            let Some((old_id, old)) = self.entries.pop_front() else {
                break;
            };
            for h in &old {
                if let Some(c) = self.counts.get_mut(h) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(h);
                    }
                }
            }
            self.total -= old.len();
            self.expired.push(old_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_beyond() {
        let mut w = DedupWindow::restore(vec![], 1, 4);
        w.record(vec![1, 2]);
        w.record(vec![3, 4]);
        assert!(w.contains(1) && w.contains(4));
        w.record(vec![5]);
        assert!(!w.contains(1), "oldest entry leaves the window");
        assert!(w.contains(5));
        assert_eq!(w.take_expired(), vec![1]);
        assert!(w.take_expired().is_empty());
    }

    #[test]
    fn restores_in_order() {
        let w = DedupWindow::restore(vec![(7, vec![70]), (6, vec![60])], 8, 10);
        assert!(w.contains(60) && w.contains(70));
        assert_eq!(w.next_id(), 8);
        assert_eq!(w.len(), 2);
    }
}
