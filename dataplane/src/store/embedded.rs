//! The embedded store on fjall: one LSM keyspace per class and layer.
//!
//! Durability: every streaming write set is one fjall write batch (atomic across keyspaces)
//! followed by `fdatasync` of the journal (`PersistMode::SyncData`) before `commit` returns, so
//! an acknowledged batch survives a process crash or power loss. On open, fjall replays its
//! journal; a torn tail batch is dropped whole, never half-applied.
//!
//! Restart time: fjall re-inserts every journaled write that is not yet in a table file into the
//! memtables at open, and only rotates (and later deletes) a journal when a memtable flush finds
//! it past 64 MB. Left alone, a memtable flushes only at 64 MiB *per keyspace*, so with the
//! writes spread over a dozen keyspaces the journal grew for hundreds of MB, low-volume keyspaces
//! (`dedup`, `meta`, `deadletter`) pinned every sealed journal, and a clean shutdown flushed
//! nothing: each start replayed the whole history since the first write (issue #7). So the store
//! flushes all memtables itself after every `flush_bytes` written ([`FlushBudget`], which also
//! counts what a crash left unflushed) and at clean shutdown ([`Store::flush`]), and caps the journals
//! at fjall's minimum `max_journaling_size`. Durability is unchanged: a flush only copies what
//! the synced journal already holds into table files.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{
    DeadLetter, DeadLetterSource, DedupEntries, Layer, SnapshotMeta, SnapshotState, Store,
    StoreError, WriteSet,
};
use crate::model::{Class, Entity, EntityKey, SubKey, Update, time_key};

const ACTIVE_SNAPSHOT: &[u8] = b"snapshot.active";
/// Journaled bytes after which every memtable is flushed, unless configured otherwise: about the
/// most a crash leaves for the next start to re-insert (plus flushes still in flight).
pub const DEFAULT_FLUSH_BYTES: u64 = 32 << 20;
/// fjall's smallest journal cap (it rejects less): once sealed journals reach it, fjall flushes
/// the keyspaces that pin the oldest one, a second line behind [`DEFAULT_FLUSH_BYTES`].
const MAX_JOURNALING_BYTES: u64 = 64 << 20;
const SNAPSHOT_META_PREFIX: &[u8] = b"snapshot.meta.";

/// The fjall-backed [`Store`].
pub struct EmbeddedStore {
    db: Database,
    stream: Vec<Keyspace>,
    baseline: Vec<Keyspace>,
    dedup: Keyspace,
    dead_letters: Keyspace,
    deferred: Keyspace,
    meta: Keyspace,
    next_dead_letter: AtomicU64,
    dead_letter_count: AtomicU64,
    next_deferred: AtomicU64,
    deferred_count: AtomicU64,
    flush: FlushBudget,
    replayed_bytes: u64,
}

/// Counts the bytes written since the last flush of all memtables; crossing `limit` triggers the
/// next one. The count is of keys and values, which is what fjall's memtables and journal hold
/// (the journal adds a few bytes of framing per entry).
struct FlushBudget {
    limit: u64,
    unflushed: AtomicU64,
}

impl FlushBudget {
    /// Adds `bytes`; true for exactly one caller each time the budget is used up.
    fn spend(&self, bytes: u64) -> bool {
        let total = self.unflushed.fetch_add(bytes, Ordering::Relaxed) + bytes;
        total >= self.limit && self.unflushed.swap(0, Ordering::Relaxed) >= self.limit
    }
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

fn corrupt(keyspace: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        keyspace: keyspace.into(),
        why: e.to_string(),
    }
}

fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

fn id_of(key: &[u8]) -> u64 {
    key.try_into().map(u64::from_be_bytes).unwrap_or_default()
}

fn class_index(class: Class) -> usize {
    Class::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or_default()
}

impl EmbeddedStore {
    /// Opens (or creates) the store under `path` with a block cache of `cache_bytes` and the
    /// default flush budget.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_with(path, cache_bytes, DEFAULT_FLUSH_BYTES)
    }

    /// Opens (or creates) the store under `path`; all memtables are flushed after every
    /// `flush_bytes` written, which bounds what the next start replays after a crash.
    pub fn open_with(path: &Path, cache_bytes: u64, flush_bytes: u64) -> Result<Self, StoreError> {
        let started = Instant::now();
        let db = Database::builder(path)
            .cache_size(cache_bytes)
            .max_journaling_size(MAX_JOURNALING_BYTES)
            .open()
            .map_err(engine)?;
        // What recovery re-inserted into memtables: the journal fjall had to replay.
        let replayed_bytes = db.write_buffer_size();
        let open = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(engine)
        };
        let mut stream = Vec::new();
        let mut baseline = Vec::new();
        for class in Class::ALL {
            stream.push(open(&format!("stream.{class}"))?);
            baseline.push(open(&format!("baseline.{class}"))?);
        }
        let dead_letters = open("deadletter")?;
        let deferred = open("deferred")?;
        let last_id = |ks: &Keyspace| -> Result<u64, StoreError> {
            match ks.last_key_value() {
                Some(g) => Ok(id_of(&g.key().map_err(engine)?) + 1),
                None => Ok(1),
            }
        };
        let store = Self {
            next_dead_letter: AtomicU64::new(last_id(&dead_letters)?),
            dead_letter_count: AtomicU64::new(dead_letters.len().map_err(engine)? as u64),
            next_deferred: AtomicU64::new(last_id(&deferred)?),
            deferred_count: AtomicU64::new(deferred.len().map_err(engine)? as u64),
            dedup: open("dedup")?,
            meta: open("meta")?,
            db,
            stream,
            baseline,
            dead_letters,
            deferred,
            // What the last run left only in the journal counts against the budget, so replay
            // cannot pile up over a crash loop; it is not flushed right away, which would compete
            // for the CPU with the rest of the start.
            flush: FlushBudget {
                limit: flush_bytes.max(1),
                unflushed: AtomicU64::new(replayed_bytes),
            },
            replayed_bytes,
        };
        if replayed_bytes >= store.flush.limit {
            store.spend(0);
        }
        tracing::info!(
            replayed_bytes,
            open_ms = started.elapsed().as_millis() as u64,
            "store opened"
        );
        Ok(store)
    }

    /// Bytes that recovery re-inserted into memtables from the journal at open: what the
    /// previous run had not flushed to table files.
    pub fn replayed_bytes(&self) -> u64 {
        self.replayed_bytes
    }

    fn keyspaces(&self) -> impl Iterator<Item = &Keyspace> {
        self.stream.iter().chain(&self.baseline).chain([
            &self.dedup,
            &self.dead_letters,
            &self.deferred,
            &self.meta,
        ])
    }

    /// Seals every non-empty memtable and queues it for flushing; returns at once. Once the
    /// flushes are done, fjall deletes the journals they covered.
    // `rotate_memtable` is `#[doc(hidden)]` in fjall 3.1 (its tests use it): the public API has
    // no flush, and its only trigger, a per-keyspace memtable size, is fixed when a keyspace is
    // created and never fires for the low-volume ones that pin the journal.
    fn start_flush(&self) -> Result<(), StoreError> {
        for ks in self.keyspaces() {
            ks.rotate_memtable().map_err(engine)?;
        }
        Ok(())
    }

    /// Adds `bytes` written to the flush budget and starts a flush when it is used up. A failed
    /// flush start is logged, not returned: the write it follows is already durable.
    fn spend(&self, bytes: u64) {
        if self.flush.spend(bytes)
            && let Err(e) = self.start_flush()
        {
            tracing::warn!(error = %e, "starting a memtable flush failed");
        }
    }

    fn keyspace(&self, layer: Layer, class: Class) -> &Keyspace {
        match layer {
            Layer::Stream => &self.stream[class_index(class)],
            Layer::Baseline(_) => &self.baseline[class_index(class)],
        }
    }

    /// Baseline keys are prefixed by their snapshot version so versions never mix.
    fn stored_key(layer: Layer, key_bytes: &[u8]) -> Vec<u8> {
        match layer {
            Layer::Stream => key_bytes.to_vec(),
            Layer::Baseline(v) => {
                let mut out = Vec::with_capacity(8 + key_bytes.len());
                out.extend_from_slice(&id_key(v));
                out.extend_from_slice(key_bytes);
                out
            }
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(ks: &str, bytes: &[u8]) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| corrupt(ks, e))
    }
}

impl Store for EmbeddedStore {
    fn get(&self, layer: Layer, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        let ks = self.keyspace(layer, key.class);
        ks.get(Self::stored_key(layer, &key.to_bytes()))
            .map_err(engine)?
            .map(|v| Self::decode(key.class.as_str(), &v))
            .transpose()
    }

    fn prices_at(
        &self,
        layer: Layer,
        product_id: &str,
        at_ms: i64,
        depth: usize,
    ) -> Result<Vec<(EntityKey, Entity)>, StoreError> {
        let ks = self.keyspace(layer, Class::Pricing);
        let prefix = Self::stored_key(layer, &EntityKey::partition_prefix(product_id));
        let mut end = prefix.clone();
        end.extend_from_slice(&time_key(at_ms));
        let mut out = Vec::new();
        for guard in ks.range(prefix.clone()..=end).rev().take(depth) {
            let (k, v) = guard.into_inner().map_err(engine)?;
            let raw: [u8; 8] = k[prefix.len()..]
                .try_into()
                .map_err(|_| corrupt("pricing", "price key without a time"))?;
            let valid_from = (u64::from_be_bytes(raw) ^ (1 << 63)) as i64;
            let key = EntityKey {
                class: Class::Pricing,
                id: product_id.to_owned(),
                sub: Some(SubKey::Time(valid_from)),
            };
            out.push((key, Self::decode("pricing", &v)?));
        }
        Ok(out)
    }

    fn commit(&self, set: &WriteSet) -> Result<u64, StoreError> {
        let mut batch = self.db.batch();
        let mut writes = 0_u64;
        // Keys and values, for the flush budget; removals count their 8-byte id keys.
        let mut bytes = 0_u64;
        for (layer, key, entity) in &set.entities {
            let value = serde_json::to_vec(entity).map_err(engine)?;
            let stored = Self::stored_key(*layer, &key.to_bytes());
            bytes += (stored.len() + value.len()) as u64;
            batch.insert(self.keyspace(*layer, key.class), stored, value);
            writes += 1;
        }
        if let Some((id, hashes)) = &set.dedup {
            let value: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
            bytes += 8 + value.len() as u64;
            batch.insert(&self.dedup, id_key(*id), value);
            writes += 1;
        }
        for id in &set.dedup_expired {
            batch.remove(&self.dedup, id_key(*id));
        }
        let first_dead = self
            .next_dead_letter
            .fetch_add(set.dead_letters.len() as u64, Ordering::Relaxed);
        for (i, dl) in set.dead_letters.iter().enumerate() {
            let value = serde_json::to_vec(dl).map_err(engine)?;
            bytes += 8 + value.len() as u64;
            batch.insert(&self.dead_letters, id_key(first_dead + i as u64), value);
            writes += 1;
        }
        for id in &set.dead_letters_removed {
            batch.remove(&self.dead_letters, id_key(*id));
        }
        let first_deferred = self
            .next_deferred
            .fetch_add(set.deferred.len() as u64, Ordering::Relaxed);
        for (i, u) in set.deferred.iter().enumerate() {
            let value = serde_json::to_vec(u).map_err(engine)?;
            bytes += 8 + value.len() as u64;
            batch.insert(&self.deferred, id_key(first_deferred + i as u64), value);
            writes += 1;
        }
        for id in &set.deferred_removed {
            batch.remove(&self.deferred, id_key(*id));
        }
        let durability = set.durable.then_some(PersistMode::SyncData);
        batch.durability(durability).commit().map_err(engine)?;
        let removed =
            set.dedup_expired.len() + set.dead_letters_removed.len() + set.deferred_removed.len();
        self.spend(bytes + 8 * removed as u64);
        // Counts track what is stored; removals of absent ids (a replay racing a trim) are
        // clamped rather than trusted.
        let adjust = |count: &AtomicU64, add: usize, remove: usize| {
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some((c + add as u64).saturating_sub(remove as u64))
            });
        };
        adjust(
            &self.dead_letter_count,
            set.dead_letters.len(),
            set.dead_letters_removed.len(),
        );
        adjust(
            &self.deferred_count,
            set.deferred.len(),
            set.deferred_removed.len(),
        );
        Ok(writes)
    }

    fn dedup_window(&self, max_hashes: usize) -> Result<(DedupEntries, u64), StoreError> {
        let mut out = Vec::new();
        let mut total = 0;
        let mut next = 1;
        for guard in self.dedup.iter().rev() {
            let (k, v) = guard.into_inner().map_err(engine)?;
            let id = id_of(&k);
            next = next.max(id + 1);
            if total >= max_hashes {
                // Older than the window: forget it now so it cannot come back.
                self.dedup.remove(k).map_err(engine)?;
                continue;
            }
            let hashes: Vec<u64> = v
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            total += hashes.len();
            out.push((id, hashes));
        }
        Ok((out, next))
    }

    fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let mut out = Vec::new();
        for guard in self
            .dead_letters
            .range(id_key(after.saturating_add(1))..)
            .take(limit)
        {
            let (k, v) = guard.into_inner().map_err(engine)?;
            out.push((id_of(&k), Self::decode("deadletter", &v)?));
        }
        Ok(out)
    }

    fn dead_letter_count(&self) -> u64 {
        self.dead_letter_count.load(Ordering::Relaxed)
    }

    fn remove_snapshot_dead_letters(&self, version: u64) -> Result<u64, StoreError> {
        /// Only the source is decoded; the raw record is skipped.
        #[derive(serde::Deserialize)]
        struct Source {
            source: DeadLetterSource,
        }
        let mut removed = 0_u64;
        let mut batch = self.db.batch();
        for guard in self.dead_letters.iter() {
            let (k, v) = guard.into_inner().map_err(engine)?;
            let Source { source } = Self::decode("deadletter", &v)?;
            if matches!(source, DeadLetterSource::Snapshot { version: of, .. } if of == version) {
                self.spend(k.len() as u64);
                batch.remove(&self.dead_letters, k);
                removed += 1;
            }
            if batch.len() >= 10_000 {
                std::mem::replace(&mut batch, self.db.batch())
                    .commit()
                    .map_err(engine)?;
            }
        }
        batch
            .durability(Some(PersistMode::SyncAll))
            .commit()
            .map_err(engine)?;
        // Clamped like `commit`: a retention trim racing this may have removed some already.
        let _ = self
            .dead_letter_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(removed))
            });
        Ok(removed)
    }

    fn deferred(&self, limit: usize) -> Result<Vec<(u64, Update)>, StoreError> {
        let mut out = Vec::new();
        for guard in self.deferred.iter().take(limit) {
            let (k, v) = guard.into_inner().map_err(engine)?;
            out.push((id_of(&k), Self::decode("deferred", &v)?));
        }
        Ok(out)
    }

    fn deferred_count(&self) -> u64 {
        self.deferred_count.load(Ordering::Relaxed)
    }

    fn snapshots(&self) -> Result<Vec<SnapshotMeta>, StoreError> {
        let mut out = Vec::new();
        for guard in self.meta.prefix(SNAPSHOT_META_PREFIX) {
            let (_, v) = guard.into_inner().map_err(engine)?;
            out.push(Self::decode::<SnapshotMeta>("meta", &v)?);
        }
        out.sort_by_key(|m| m.version);
        Ok(out)
    }

    fn put_snapshot_meta(&self, meta: &SnapshotMeta, activate: bool) -> Result<(), StoreError> {
        let mut key = SNAPSHOT_META_PREFIX.to_vec();
        key.extend_from_slice(&id_key(meta.version));
        let mut batch = self.db.batch();
        batch.insert(&self.meta, key, serde_json::to_vec(meta).map_err(engine)?);
        if activate {
            debug_assert_eq!(meta.state, SnapshotState::Complete);
            batch.insert(&self.meta, ACTIVE_SNAPSHOT, id_key(meta.version));
        }
        batch
            .durability(Some(PersistMode::SyncAll))
            .commit()
            .map_err(engine)
    }

    fn set_active_snapshot(&self, version: u64) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        batch.insert(&self.meta, ACTIVE_SNAPSHOT, id_key(version));
        batch
            .durability(Some(PersistMode::SyncAll))
            .commit()
            .map_err(engine)
    }

    fn active_snapshot(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta
            .get(ACTIVE_SNAPSHOT)
            .map_err(engine)?
            .map(|v| id_of(&v)))
    }

    fn discard_snapshot(&self, version: u64) -> Result<(), StoreError> {
        let prefix = id_key(version);
        for ks in &self.baseline {
            let mut batch = self.db.batch();
            for guard in ks.prefix(prefix) {
                let key = guard.key().map_err(engine)?;
                self.spend(key.len() as u64);
                batch.remove(ks, key);
                if batch.len() >= 10_000 {
                    std::mem::replace(&mut batch, self.db.batch())
                        .commit()
                        .map_err(engine)?;
                }
            }
            batch.commit().map_err(engine)?;
        }
        let mut key = SNAPSHOT_META_PREFIX.to_vec();
        key.extend_from_slice(&prefix);
        let mut batch = self.db.batch();
        batch.remove(&self.meta, key);
        batch
            .durability(Some(PersistMode::SyncAll))
            .commit()
            .map_err(engine)
    }

    /// fjall's close flushes nothing, so without this the next open would re-insert every write
    /// since the last flush.
    fn flush(&self, deadline: Duration) -> Result<(), StoreError> {
        let started = Instant::now();
        self.flush.unflushed.store(0, Ordering::Relaxed);
        self.start_flush()?;
        // `sealed_memtable_count` is `#[doc(hidden)]` like `rotate_memtable`: the queued flushes
        // are done when no keyspace has a sealed memtable left.
        while self.keyspaces().any(|ks| ks.sealed_memtable_count() > 0) {
            if started.elapsed() >= deadline {
                return Err(StoreError::Engine(format!(
                    "memtables not flushed within {deadline:?}; the journal still holds them"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::info!(
            flush_ms = started.elapsed().as_millis() as u64,
            "store memtables flushed"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Field, Version};

    fn entity(v: i64) -> Entity {
        let mut e = Entity::default();
        e.fields.insert(
            "amount".into(),
            Field {
                value: v.into(),
                version: Version {
                    event_time_ms: v,
                    sequence: 0,
                    event_hash: 0,
                },
            },
        );
        e
    }

    fn price_key(id: &str, from: i64) -> EntityKey {
        EntityKey {
            class: Class::Pricing,
            id: id.into(),
            sub: Some(SubKey::Time(from)),
        }
    }

    #[test]
    fn prices_scan_newest_first_within_one_product() {
        let dir = tempdir();
        let store = EmbeddedStore::open(&dir, 1 << 20).unwrap();
        let mut set = WriteSet {
            durable: true,
            ..Default::default()
        };
        for (id, from) in [("P1", 10), ("P1", 20), ("P1", 30), ("P10", 15), ("P", 25)] {
            set.entities
                .push((Layer::Stream, price_key(id, from), entity(from)));
        }
        store.commit(&set).unwrap();
        let got: Vec<_> = store
            .prices_at(Layer::Stream, "P1", 25, 8)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.sub)
            .collect();
        assert_eq!(got, vec![Some(SubKey::Time(20)), Some(SubKey::Time(10))]);
    }

    #[test]
    fn baselines_of_different_versions_do_not_mix() {
        let dir = tempdir();
        let store = EmbeddedStore::open(&dir, 1 << 20).unwrap();
        let key = price_key("P1", 1);
        let mut set = WriteSet::default();
        set.entities
            .push((Layer::Baseline(1), key.clone(), entity(1)));
        set.entities
            .push((Layer::Baseline(2), key.clone(), entity(2)));
        store.commit(&set).unwrap();
        store.discard_snapshot(1).unwrap();
        assert_eq!(store.get(Layer::Baseline(1), &key).unwrap(), None);
        assert_eq!(
            store.get(Layer::Baseline(2), &key).unwrap(),
            Some(entity(2))
        );
    }

    /// `batches` durable write sets of 100 product states of ~2.5 KiB each (~250 KiB a set), each
    /// with a dedup entry as the writer adds one: the low-volume keyspace that used to pin the
    /// journal.
    fn write_products(store: &EmbeddedStore, batches: usize) {
        let filler = "x".repeat(2_500);
        for b in 0..batches {
            let mut set = WriteSet {
                durable: true,
                dedup: Some((b as u64 + 1, vec![b as u64; 100])),
                ..Default::default()
            };
            for i in 0..100 {
                let mut e = entity(i);
                e.fields.insert(
                    "name".into(),
                    Field {
                        value: filler.clone().into(),
                        version: Version {
                            event_time_ms: 0,
                            sequence: 0,
                            event_hash: 0,
                        },
                    },
                );
                let key = EntityKey {
                    class: Class::Product,
                    id: format!("P{b}-{i}"),
                    sub: None,
                };
                set.entities.push((Layer::Stream, key, e));
            }
            store.commit(&set).unwrap();
        }
    }

    fn wait_for_flushes(store: &EmbeddedStore) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.keyspaces().any(|ks| ks.sealed_memtable_count() > 0) {
            assert!(Instant::now() < deadline, "flushes did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The restart-time proxy for a crash: dropping the store without `flush` leaves exactly
    /// what kill -9 leaves (every batch is synced; fjall flushes nothing on drop), and what the
    /// next open re-inserts from the journal stays within the flush budget, not the ~10 MiB
    /// written. Before the budget, all of it was replayed.
    #[test]
    fn a_crash_replays_no_more_than_the_flush_budget() {
        let dir = tempdir();
        let budget = 1 << 20;
        let store = EmbeddedStore::open_with(&dir, 1 << 20, budget).unwrap();
        write_products(&store, 40);
        wait_for_flushes(&store);
        drop(store);

        let store = EmbeddedStore::open_with(&dir, 1 << 20, budget).unwrap();
        // The budget plus one write set (~260 KiB) and memtable overhead.
        assert!(
            store.replayed_bytes() <= 2 * budget,
            "replayed {} bytes after ~10 MiB written with a {budget}-byte budget",
            store.replayed_bytes()
        );
        let key = EntityKey {
            class: Class::Product,
            id: "P39-99".into(),
            sub: None,
        };
        assert!(store.get(Layer::Stream, &key).unwrap().is_some());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A clean shutdown flushes everything: the next open replays nothing, and every write is
    /// still there.
    #[test]
    fn a_clean_shutdown_leaves_nothing_to_replay() {
        let dir = tempdir();
        let store = EmbeddedStore::open(&dir, 1 << 20).unwrap();
        write_products(&store, 20);
        store.flush(Duration::from_secs(30)).unwrap();
        drop(store);

        let store = EmbeddedStore::open(&dir, 1 << 20).unwrap();
        assert_eq!(store.replayed_bytes(), 0);
        for b in [0, 19] {
            let key = EntityKey {
                class: Class::Product,
                id: format!("P{b}-99"),
                sub: None,
            };
            assert!(store.get(Layer::Stream, &key).unwrap().is_some());
        }
        assert_eq!(store.dedup_window(10_000).unwrap().0.len(), 20);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A fresh directory under the target's temp dir, removed at the next run.
    pub(crate) fn tempdir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tailwarden-store-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
