//! A bounded, sharded TTL cache with targeted invalidation, used for both read-cache layers.
//!
//! Invalidation is by partition slot: a change to any entity of product `p` bumps the slot of
//! `p` to a new tick, and an entry is valid only if it was *started* (its ticket taken before
//! the store read) at or after its slot's last bump. A reader that raced a write can therefore
//! never re-insert stale data. Slots are a fixed array indexed by hash, so memory stays bounded;
//! a collision only invalidates a little more than needed.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use rustc_hash::FxHashMap;

use crate::feed::{ChangeEvent, Invalidate};

const SLOTS: usize = 1 << 16;
const SHARDS: usize = 16;
/// Entries sampled to pick an eviction victim when a shard is full.
const EVICTION_SAMPLE: usize = 5;

/// Invalidation state shared by the cache layers.
pub struct Invalidation {
    tick: AtomicU64,
    everything: AtomicU64,
    slots: Box<[AtomicU64]>,
    /// Counts targeted invalidations.
    pub counter: Counter,
}

impl Invalidation {
    /// Fresh state: nothing invalidated.
    pub fn new(counter: Counter) -> Self {
        Self {
            tick: AtomicU64::new(1),
            everything: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            counter,
        }
    }

    /// Take before reading the store; pass to `insert`.
    pub fn ticket(&self) -> u64 {
        self.tick.load(Ordering::Acquire)
    }

    /// The slot of a partition id.
    pub fn slot(partition: &str) -> usize {
        (xxhash_rust::xxh3::xxh3_64(partition.as_bytes()) as usize) % SLOTS
    }

    fn bump(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::AcqRel) + 1
    }

    fn valid(&self, slot: usize, ticket: u64) -> bool {
        ticket >= self.slots[slot].load(Ordering::Acquire)
            && ticket >= self.everything.load(Ordering::Acquire)
    }
}

impl Invalidate for Invalidation {
    fn invalidate(&self, events: &[ChangeEvent]) {
        let tick = self.bump();
        for e in events {
            match e {
                ChangeEvent::Entity(key) => {
                    self.slots[Self::slot(&key.id)].fetch_max(tick, Ordering::AcqRel);
                    self.counter.inc();
                }
                ChangeEvent::All => {
                    self.everything.fetch_max(tick, Ordering::AcqRel);
                }
            }
        }
    }
}

struct Entry<V> {
    value: V,
    expires: Instant,
    ticket: u64,
    slot: usize,
}

/// Counters of one cache layer.
#[derive(Clone, Default)]
pub struct CacheCounters {
    /// Hits.
    pub hits: Counter,
    /// Misses (absent, expired or invalidated).
    pub misses: Counter,
    /// Capacity evictions.
    pub evictions: Counter,
}

/// One cache layer.
pub struct Cache<K, V> {
    shards: Vec<Mutex<FxHashMap<K, Entry<V>>>>,
    per_shard: usize,
    hasher: rustc_hash::FxBuildHasher,
    invalidation: Arc<Invalidation>,
    counters: CacheCounters,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    /// A cache of at most `max_entries` entries (0 disables it).
    pub fn new(max_entries: u64, invalidation: Arc<Invalidation>, counters: CacheCounters) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(FxHashMap::default()))
                .collect(),
            per_shard: (max_entries as usize).div_ceil(SHARDS),
            hasher: Default::default(),
            invalidation,
            counters,
        }
    }

    fn shard(&self, key: &K) -> &Mutex<FxHashMap<K, Entry<V>>> {
        // High bits pick the shard; the low bits stay useful to the shard's own table.
        &self.shards[(self.hasher.hash_one(key) >> 60) as usize % SHARDS]
    }

    /// A valid entry, or `None` (counted as a miss).
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut shard = self.shard(key).lock();
        let hit = match shard.get(key) {
            Some(e) if e.expires > now && self.invalidation.valid(e.slot, e.ticket) => {
                Some(e.value.clone())
            }
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        };
        drop(shard);
        match hit {
            Some(_) => self.counters.hits.inc(),
            None => self.counters.misses.inc(),
        };
        hit
    }

    /// Inserts a value read after `ticket` was taken; depends on partition `partition`.
    pub fn insert(&self, key: K, value: V, ttl: Duration, partition: &str, ticket: u64) {
        if self.per_shard == 0 || ttl.is_zero() {
            return;
        }
        let slot = Invalidation::slot(partition);
        if !self.invalidation.valid(slot, ticket) {
            return;
        }
        let now = Instant::now();
        let mut shard = self.shard(&key).lock();
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            // Sampled eviction: prefer an expired entry, else the one expiring soonest.
            let victim = shard
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, e)| (k.clone(), e.expires <= now));
            if let Some((victim, expired)) = victim {
                shard.remove(&victim);
                if !expired {
                    self.counters.evictions.inc();
                }
            }
        }
        shard.insert(
            key,
            Entry {
                value,
                expires: now + ttl,
                ticket,
                slot,
            },
        );
    }

    /// Entries held (including expired ones not yet dropped).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Class, EntityKey};

    fn cache(max: u64) -> (Cache<String, u32>, Arc<Invalidation>, CacheCounters) {
        let inv = Arc::new(Invalidation::new(Counter::default()));
        let counters = CacheCounters::default();
        (
            Cache::new(max, inv.clone(), counters.clone()),
            inv,
            counters,
        )
    }

    fn change(id: &str) -> ChangeEvent {
        ChangeEvent::Entity(EntityKey {
            class: Class::Product,
            id: id.into(),
            sub: None,
        })
    }

    #[test]
    fn invalidation_is_targeted() {
        let (c, inv, _) = cache(100);
        let t = inv.ticket();
        c.insert("a".into(), 1, Duration::from_secs(60), "P1", t);
        c.insert("b".into(), 2, Duration::from_secs(60), "P2", t);
        inv.invalidate(&[change("P1")]);
        assert_eq!(c.get(&"a".into()), None);
        assert_eq!(c.get(&"b".into()), Some(2));
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_cached() {
        let (c, inv, _) = cache(100);
        let t = inv.ticket();
        inv.invalidate(&[change("P1")]);
        c.insert("a".into(), 1, Duration::from_secs(60), "P1", t);
        assert_eq!(c.get(&"a".into()), None);
    }

    #[test]
    fn capacity_is_bounded_and_evictions_counted() {
        let (c, inv, counters) = cache(32);
        for i in 0..1000 {
            c.insert(
                format!("k{i}"),
                i,
                Duration::from_secs(60),
                "P",
                inv.ticket(),
            );
        }
        assert!(c.len() <= 32, "{}", c.len());
        assert!(counters.evictions.get() > 900);
    }

    #[test]
    fn entries_expire() {
        let (c, inv, _) = cache(10);
        c.insert("a".into(), 1, Duration::from_nanos(1), "P", inv.ticket());
        std::thread::sleep(Duration::from_millis(1));
        assert_eq!(c.get(&"a".into()), None);
    }
}
