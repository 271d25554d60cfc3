//! The dedup window: event-id hashes of recently applied events, persisted with the batch that
//! applied them so that dedup holds across restarts.
//!
//! The window is bounded (by hash count); an event replayed after its id left the window is not
//! reported as a duplicate, but last-writer-wins versioning still makes it a no-op ("stale"), so
//! the final state is unaffected either way.
//!
//! Partitioned writers share one window ([`SharedDedup`]): an event id is claimed while the
//! commit that applies it is in flight, so that it is applied at most once even when it arrives
//! at two writers (the same id reused for keys of different writer partitions).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use parking_lot::Mutex;
use rustc_hash::FxHashSet;

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

    /// A fresh entry id, for a commit that will record its hashes under it.
    pub fn allocate_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    /// Entry ids that fell out of the window and should be deleted with the next commit.
    pub fn take_expired(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.expired)
    }

    /// Records the hashes of a committed batch under `id` (from [`Self::allocate_id`]).
    pub fn record(&mut self, id: u64, hashes: Vec<u64>) {
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

/// Event ids claimed by one commit: recorded under `id` once it is durable, released otherwise.
#[derive(Debug)]
pub struct Claim {
    /// The dedup-window entry the commit writes (allocated only when `hashes` is not empty).
    pub id: Option<u64>,
    /// The claimed hashes, in the order asked.
    pub hashes: Vec<u64>,
    /// Entries that fell out of the window, for the commit to delete.
    pub expired: Vec<u64>,
}

/// The window of every writer thread, and the event ids whose commit is still in flight.
pub struct SharedDedup {
    state: Mutex<(DedupWindow, FxHashSet<u64>)>,
}

impl SharedDedup {
    /// Wraps a restored window.
    pub fn new(window: DedupWindow) -> Self {
        Self {
            state: Mutex::new((window, FxHashSet::default())),
        }
    }

    /// Claims every hash that is neither in the window, nor claimed by a commit in flight, nor
    /// earlier in `hashes`; says per hash whether it was claimed. The claim must be settled.
    pub fn claim(&self, hashes: impl IntoIterator<Item = u64>) -> (Vec<bool>, Claim) {
        let mut state = self.state.lock();
        let (window, in_flight) = &mut *state;
        let mut claimed = Vec::new();
        let fresh = hashes
            .into_iter()
            .map(|h| {
                let fresh = !window.contains(h) && in_flight.insert(h);
                if fresh {
                    claimed.push(h);
                }
                fresh
            })
            .collect();
        let claim = Claim {
            id: (!claimed.is_empty()).then(|| window.allocate_id()),
            hashes: claimed,
            expired: window.take_expired(),
        };
        (fresh, claim)
    }

    /// Ends a claim: a durable commit records its hashes in the window; a failed one releases
    /// them, so that a retry is applied rather than reported as a duplicate.
    pub fn settle(&self, claim: Claim, committed: bool) {
        let mut state = self.state.lock();
        let (window, in_flight) = &mut *state;
        for h in &claim.hashes {
            in_flight.remove(h);
        }
        if let (true, Some(id)) = (committed, claim.id) {
            window.record(id, claim.hashes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_window_and_forgets_beyond() {
        let mut w = DedupWindow::restore(vec![], 1, 4);
        let id = w.allocate_id();
        w.record(id, vec![1, 2]);
        let id = w.allocate_id();
        w.record(id, vec![3, 4]);
        assert!(w.contains(1) && w.contains(4));
        let id = w.allocate_id();
        w.record(id, vec![5]);
        assert!(!w.contains(1), "oldest entry leaves the window");
        assert!(w.contains(5));
        assert_eq!(w.take_expired(), vec![1]);
        assert!(w.take_expired().is_empty());
    }

    #[test]
    fn restores_in_order() {
        let mut w = DedupWindow::restore(vec![(7, vec![70]), (6, vec![60])], 8, 10);
        assert!(w.contains(60) && w.contains(70));
        assert_eq!(w.allocate_id(), 8);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn an_id_in_flight_is_claimed_once_and_released_by_a_failed_commit() {
        let shared = SharedDedup::new(DedupWindow::restore(vec![], 1, 100));
        let (fresh, first) = shared.claim([1, 2, 1]);
        assert_eq!(fresh, vec![true, true, false], "a repeat within the claim");
        let (fresh, second) = shared.claim([2, 3]);
        assert_eq!(fresh, vec![false, true], "2 is in flight elsewhere");
        shared.settle(first, false);
        shared.settle(second, true);
        let (fresh, third) = shared.claim([1, 2, 3]);
        assert_eq!(
            fresh,
            vec![true, true, false],
            "released, released, recorded"
        );
        assert_eq!((third.id, third.hashes), (Some(3), vec![1, 2]));
    }
}
