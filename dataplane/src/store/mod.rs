//! Storage behind a trait: the embedded fjall store, or a wide-column store (Cassandra or
//! ScyllaDB, `cassandra`) shared by several workers. The write path hands the store whole
//! batches so that one batch is one durable write (group commit; atomic in the embedded store,
//! ordered and retry-safe in Cassandra); the read path asks for single-partition lookups only.

pub mod cassandra;
mod cql_cells;
pub mod cql_errors;
mod cql_schema;
mod cql_statements;
pub mod embedded;

use serde::{Deserialize, Serialize};

use crate::model::{Class, Entity, EntityKey, Update};

/// Where an entity lives: the streaming layer, or the baseline of one snapshot version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Streaming updates (on top of whichever baseline is active).
    Stream,
    /// The baseline loaded as snapshot `version`.
    Baseline(u64),
}

/// A record the write path rejected, kept with its reason for listing and replay.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// When it was rejected, epoch milliseconds.
    pub received_at_ms: i64,
    /// Where it came from; replay parses it the same way.
    pub source: DeadLetterSource,
    /// Its class, when readable.
    pub class: Option<Class>,
    /// The offending field.
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
    /// The record as received (lossy UTF-8, truncated to [`MAX_DEAD_LETTER_RAW`] bytes).
    pub raw: String,
}

impl DeadLetter {
    /// A record of the streaming write path, received at `received_at_ms` and rejected.
    pub fn stream(
        received_at_ms: i64,
        class: Option<Class>,
        field: String,
        reason: String,
        raw: &[u8],
    ) -> Self {
        Self {
            received_at_ms,
            source: DeadLetterSource::Stream,
            class,
            field,
            reason,
            raw: crate::snapshot::lossy(raw),
        }
    }
}

/// Largest raw record kept in the dead-letter store.
pub const MAX_DEAD_LETTER_RAW: usize = 64 * 1024;

/// Where a dead-lettered record came from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DeadLetterSource {
    /// The streaming write API.
    Stream,
    /// Line `line` of snapshot `version`.
    Snapshot {
        /// Snapshot version.
        version: u64,
        /// The snapshot's time.
        as_of_ms: i64,
        /// Line number, from 1.
        line: u64,
    },
}

impl DeadLetterSource {
    /// How a replay parses the record again: as it was parsed when it was rejected.
    pub fn mode(&self) -> crate::schema::Mode {
        match *self {
            DeadLetterSource::Stream => crate::schema::Mode::Stream,
            DeadLetterSource::Snapshot {
                version,
                as_of_ms,
                line,
            } => crate::schema::Mode::Snapshot {
                version,
                as_of_ms,
                line,
            },
        }
    }
}

/// Lifecycle of a snapshot.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotState {
    /// Being written; never visible; discarded at start if the process died.
    Loading,
    /// Fully written and durable; can be activated.
    Complete,
}

/// What is known about one snapshot version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotMeta {
    /// Version, increasing.
    pub version: u64,
    /// Lifecycle state.
    pub state: SnapshotState,
    /// The time the snapshot represents, epoch milliseconds.
    pub as_of_ms: i64,
    /// When loading finished, epoch milliseconds.
    pub completed_at_ms: Option<i64>,
    /// Records written.
    pub records: u64,
    /// Records dead-lettered.
    pub rejected: u64,
}

/// One durable write: everything a batch changes, committed atomically.
#[derive(Default, Debug)]
pub struct WriteSet {
    /// New entity states (already merged).
    pub entities: Vec<(Layer, EntityKey, Entity)>,
    /// Event-id hashes to remember, as one dedup-window entry under this id.
    pub dedup: Option<(u64, Vec<u64>)>,
    /// Dedup-window entries that fell out of the window.
    pub dedup_expired: Vec<u64>,
    /// Records to dead-letter.
    pub dead_letters: Vec<DeadLetter>,
    /// Dead letters to delete (replayed or expired).
    pub dead_letters_removed: Vec<u64>,
    /// Non-critical updates to defer.
    pub deferred: Vec<Update>,
    /// Deferred updates to delete (applied).
    pub deferred_removed: Vec<u64>,
    /// Fsync before returning. Streaming batches always are; snapshot chunks are not (their
    /// completion marker is).
    pub durable: bool,
}

/// A storage failure. Writes that fail are never acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (I/O, corruption, poisoned after a failed fsync).
    #[error("store: {0}")]
    Engine(String),
    /// A stored value does not decode.
    #[error("store: corrupt value in {keyspace}: {why}")]
    Corrupt {
        /// Where.
        keyspace: String,
        /// What.
        why: String,
    },
    /// The backend is unreachable or timed out. Nothing is lost: callers back off and retry the
    /// same write, never drop it.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's configuration is unusable (a setting, or credentials the backend refuses).
    #[error("store configuration: {key}: {why}")]
    Config {
        /// The configuration key at fault, e.g. `storage.cassandra.consistency`.
        key: String,
        /// What is wrong with it.
        why: String,
    },
}

/// Dedup-window entries as stored: (entry id, event-id hashes).
pub type DedupEntries = Vec<(u64, Vec<u64>)>;

/// The state store.
pub trait Store: Send + Sync + 'static {
    /// One entity in one layer.
    fn get(&self, layer: Layer, key: &EntityKey) -> Result<Option<Entity>, StoreError>;
    /// Price windows of `product_id` with `valid_from <= at_ms`, newest first, at most `depth`:
    /// a bounded scan inside one partition.
    fn prices_at(
        &self,
        layer: Layer,
        product_id: &str,
        at_ms: i64,
        depth: usize,
    ) -> Result<Vec<(EntityKey, Entity)>, StoreError>;
    /// Commits a write set atomically; with `durable`, it is on disk when this returns.
    /// Returns the number of physical key writes. (Cassandra cannot commit many partitions
    /// atomically; its commit is ordered so that retrying a failed one is safe, see `cassandra`.)
    fn commit(&self, set: &WriteSet) -> Result<u64, StoreError>;

    /// The dedup window: entries newest first, up to `max_hashes` hashes in total, and the next
    /// free entry id.
    fn dedup_window(&self, max_hashes: usize) -> Result<(DedupEntries, u64), StoreError>;

    /// Dead letters with id greater than `after`, oldest first.
    fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<(u64, DeadLetter)>, StoreError>;
    /// Number of stored dead letters.
    fn dead_letter_count(&self) -> u64;
    /// Deletes the dead letters of snapshot `version` (a failed or interrupted load); returns
    /// how many.
    fn remove_snapshot_dead_letters(&self, version: u64) -> Result<u64, StoreError>;

    /// Deferred non-critical updates, oldest first.
    fn deferred(&self, limit: usize) -> Result<Vec<(u64, Update)>, StoreError>;
    /// Number of deferred updates.
    fn deferred_count(&self) -> u64;

    /// All snapshot metadata, by version.
    fn snapshots(&self) -> Result<Vec<SnapshotMeta>, StoreError>;
    /// Writes snapshot metadata and, if given, the active version, durably and atomically.
    fn put_snapshot_meta(&self, meta: &SnapshotMeta, activate: bool) -> Result<(), StoreError>;
    /// Sets the active snapshot durably (rollback).
    fn set_active_snapshot(&self, version: u64) -> Result<(), StoreError>;
    /// The active snapshot version, if any.
    fn active_snapshot(&self) -> Result<Option<u64>, StoreError>;
    /// Deletes a snapshot's baseline and metadata.
    fn discard_snapshot(&self, version: u64) -> Result<(), StoreError>;

    /// True when the store itself keeps the newest version of every field (last-writer-wins per
    /// field), so that writers may blind-write an update's fields without reading and merging
    /// first; several ingest workers can then share one store.
    fn resolves_field_conflicts(&self) -> bool {
        false
    }

    /// Moves whatever only the journal holds into the store's tables, waiting at most
    /// `deadline`, so that the next start has nothing to replay. Called at clean shutdown; it
    /// adds no durability (commits are durable already), only a fast restart. Stores without a
    /// replayed journal of their own have nothing to do.
    fn flush(&self, deadline: std::time::Duration) -> Result<(), StoreError> {
        let _ = deadline;
        Ok(())
    }
}
