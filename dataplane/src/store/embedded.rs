//! The embedded store on fjall: one LSM keyspace per class and layer.
//!
//! Durability: every streaming write set is one fjall write batch (atomic across keyspaces)
//! followed by `fdatasync` of the journal (`PersistMode::SyncData`) before `commit` returns, so
//! an acknowledged batch survives a process crash or power loss. On open, fjall replays its
//! journal; a torn tail batch is dropped whole, never half-applied.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{
    DeadLetter, DeadLetterSource, DedupEntries, Layer, SnapshotMeta, SnapshotState, Store,
    StoreError, WriteSet,
};
use crate::model::{Class, Entity, EntityKey, SubKey, Update, time_key};

const ACTIVE_SNAPSHOT: &[u8] = b"snapshot.active";
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
    /// Opens (or creates) the store under `path` with a block cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::builder(path)
            .cache_size(cache_bytes)
            .open()
            .map_err(engine)?;
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
        };
        Ok(store)
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
        for (layer, key, entity) in &set.entities {
            let value = serde_json::to_vec(entity).map_err(engine)?;
            batch.insert(
                self.keyspace(*layer, key.class),
                Self::stored_key(*layer, &key.to_bytes()),
                value,
            );
            writes += 1;
        }
        if let Some((id, hashes)) = &set.dedup {
            let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
            batch.insert(&self.dedup, id_key(*id), bytes);
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
            batch.insert(&self.deferred, id_key(first_deferred + i as u64), value);
            writes += 1;
        }
        for id in &set.deferred_removed {
            batch.remove(&self.deferred, id_key(*id));
        }
        let durability = set.durable.then_some(PersistMode::SyncData);
        batch.durability(durability).commit().map_err(engine)?;
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
                batch.remove(ks, guard.key().map_err(engine)?);
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
