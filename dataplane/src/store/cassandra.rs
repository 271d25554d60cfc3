//! The Cassandra / ScyllaDB [`Store`], on the `scylla` driver.
//!
//! Several ingest workers may share one keyspace: Cassandra resolves concurrent writes of a field
//! itself (see `cql_cells`), so writers blind-write ([`Store::resolves_field_conflicts`]).
//!
//! Runtime: the driver is async and the [`Store`] trait is synchronous. [`CassandraStore::connect`]
//! must run inside a **multi-thread** tokio runtime, whose handle the store keeps; every trait
//! method bridges with `tokio::task::block_in_place(|| handle.block_on(..))`. So the methods may
//! be called from that runtime's worker threads or from plain threads (the writer thread), but
//! not from a `current_thread` runtime, where `block_in_place` panics.
//!
//! Atomicity: a commit spans many partitions and Cassandra has no cheap multi-partition
//! transaction, so `commit` is not atomic. It is ordered so that a partial commit is safe to
//! retry: entity cells, dead letters and deferred updates first (all idempotent: explicit
//! timestamps and ids chosen before the first attempt), then removals and, last, the dedup
//! entry, which is what would make a retry of the same events be skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use parking_lot::Mutex;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::PagerExecutionError;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::unprepared::Statement;
use scylla::value::Counter;
use tailwarden_contract::backend::Reachability;
use tailwarden_contract::config::Storage;

use super::cql_cells::{cells, cells_by_version, decode_entity, layer_key, stream_timestamp};
use super::cql_errors::{ConnectError, CqlError, execution_error};
use super::cql_schema::{INDEX_BUCKETS, migrate, table, valid_keyspace};
use super::cql_statements::{Execution, Statements, WRITE_RETRIES};
use super::{
    DeadLetter, DeadLetterSource, DedupEntries, Layer, SnapshotMeta, Store, StoreError, WriteSet,
};
use crate::model::{Class, Entity, EntityKey, SubKey, Update, now_ms, partition_of};

/// Client-side timeout of one request (retries included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Statements of one commit in flight at once.
const CONCURRENCY: usize = 64;
const ACTIVE_SNAPSHOT: &str = "active_snapshot";
const DEAD_LETTERS: &str = "dead_letters";
const DEFERRED: &str = "deferred";
/// How long a counter read is reused (plus this store's own changes).
const COUNT_REFRESH: Duration = Duration::from_secs(1);

fn count_slot(name: &str) -> usize {
    usize::from(name == DEFERRED)
}

/// How to reach the cluster; built from `storage.cassandra` by [`CassandraSettings::from_storage`].
#[derive(Clone)]
pub struct CassandraSettings {
    /// `host:port` of one or more nodes.
    pub contact_points: Vec<String>,
    /// Keyspace of the tables; created (SimpleStrategy, RF 1) only if absent.
    pub keyspace: String,
    /// Consistency of every read and write.
    pub consistency: Consistency,
    /// `(username, password)`, when the cluster authenticates.
    pub credentials: Option<(String, String)>,
    /// Client-side timeout of one request.
    pub request_timeout: Duration,
    /// Retries of an ingest write on a transient error; serve reads never retry.
    pub write_retries: u32,
}

/// Never prints the password.
impl std::fmt::Debug for CassandraSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraSettings")
            .field("contact_points", &self.contact_points)
            .field("keyspace", &self.keyspace)
            .field("consistency", &self.consistency)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("request_timeout", &self.request_timeout)
            .field("write_retries", &self.write_retries)
            .finish()
    }
}

fn config(key: &str, why: impl Into<String>) -> StoreError {
    StoreError::Config {
        key: key.into(),
        why: why.into(),
    }
}

/// Parses a CQL consistency level as written in the configuration (`LOCAL_QUORUM`, ...).
pub fn parse_consistency(s: &str) -> Result<Consistency, StoreError> {
    Ok(
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "ANY" => Consistency::Any,
            "ONE" => Consistency::One,
            "TWO" => Consistency::Two,
            "THREE" => Consistency::Three,
            "QUORUM" => Consistency::Quorum,
            "ALL" => Consistency::All,
            "LOCAL_QUORUM" => Consistency::LocalQuorum,
            "EACH_QUORUM" => Consistency::EachQuorum,
            "LOCAL_ONE" => Consistency::LocalOne,
            _ => {
                return Err(config(
                    "storage.cassandra.consistency",
                    format!(
                        "unknown consistency level {s:?}; expected one of ANY, ONE, TWO, THREE, \
                     QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE"
                    ),
                ));
            }
        },
    )
}

impl CassandraSettings {
    /// Settings for `storage`: `Ok(None)` unless it is `cassandra`. Reads the credentials from
    /// `credentialsDir/username` and `credentialsDir/password` (trailing newlines trimmed).
    pub fn from_storage(storage: &Storage) -> Result<Option<Self>, StoreError> {
        let Storage::Cassandra {
            contact_points,
            keyspace,
            consistency,
            credentials_dir,
        } = storage
        else {
            return Ok(None);
        };
        if contact_points.is_empty() {
            return Err(config(
                "storage.cassandra.contactPoints",
                "must list at least one host:port",
            ));
        }
        if !valid_keyspace(keyspace) {
            return Err(config(
                "storage.cassandra.keyspace",
                format!("{keyspace:?}: use 1-48 lowercase letters, digits and underscores"),
            ));
        }
        let credentials = match credentials_dir {
            None => None,
            Some(dir) => {
                let read = |name: &str| {
                    let path = dir.join(name);
                    std::fs::read_to_string(&path)
                        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                        .map_err(|e| {
                            config(
                                "storage.cassandra.credentialsDir",
                                format!("reading {}: {e}", path.display()),
                            )
                        })
                };
                Some((read("username")?, read("password")?))
            }
        };
        Ok(Some(Self {
            contact_points: contact_points.clone(),
            keyspace: keyspace.clone(),
            consistency: parse_consistency(consistency)?,
            credentials,
            request_timeout: REQUEST_TIMEOUT,
            write_retries: WRITE_RETRIES,
        }))
    }
}

/// Unique ids across workers: epoch milliseconds in the high bits, 20 random-then-counting bits
/// below, never going backwards in one process. Two workers collide only by drawing the same
/// 20 bits in the same millisecond.
struct IdSource {
    last: AtomicU64,
}

impl IdSource {
    fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
        }
    }

    /// `n` consecutive fresh ids; returns the first.
    fn take(&self, n: u64) -> u64 {
        let candidate = ((now_ms().max(0) as u64) << 20) | fastrand::u64(..1 << 20);
        let mut first = 0;
        let _ = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                first = candidate.max(last + 1);
                Some(first + n.saturating_sub(1))
            });
        first
    }
}

/// The Cassandra-backed [`Store`].
pub struct CassandraStore {
    session: Session,
    st: Statements,
    handle: tokio::runtime::Handle,
    /// Tells this store's dedup entries from other workers' (ids are per worker).
    instance: i64,
    ids: IdSource,
    /// The write timestamp of each baseline version, fixed at its first write in this process:
    /// later than any earlier discard's tombstones of the same version number.
    baseline_timestamps: Mutex<BTreeMap<u64, i64>>,
    /// Dead-letter and deferred counts as last read, plus this store's changes since, and when
    /// they were read: the writer asks after every batch, the cluster is asked once a second.
    counts: [Mutex<(i64, Option<Instant>)>; 2],
}

/// Paging runs one request per page: a failure to start or continue is treated as unreachable,
/// except a statement the driver cannot serialize.
fn pager_error(e: PagerExecutionError) -> StoreError {
    match e {
        PagerExecutionError::SerializationError(e) => StoreError::Engine(e.to_string()),
        e => StoreError::Unavailable(e.to_string()),
    }
}

fn rows_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(format!("reading rows: {e}"))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Engine(e.to_string()))
}

fn decode<T: serde::de::DeserializeOwned>(table: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        keyspace: table.into(),
        why: e.to_string(),
    })
}

fn class_index(class: Class) -> usize {
    Class::ALL
        .iter()
        .position(|c| *c == class)
        .unwrap_or_default()
}

/// Microseconds now: the timestamp of deletes and of new baseline versions.
fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// One write of a commit, run concurrently with the others of its phase.
type Write<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;

impl CassandraStore {
    /// Connects, creates the keyspace (if absent) and tables, and prepares every statement.
    /// Must be called inside a multi-thread tokio runtime (see the module docs).
    pub async fn connect(settings: &CassandraSettings) -> Result<Self, StoreError> {
        Self::open(settings).await.map_err(|e| e.error)
    }

    /// [`CassandraStore::connect`], whose error also says what it shows of the cluster's
    /// reachability.
    pub async fn open(settings: &CassandraSettings) -> Result<Self, ConnectError> {
        if !valid_keyspace(&settings.keyspace) {
            return Err(ConnectError {
                state: Reachability::Failed,
                error: config(
                    "storage.cassandra.keyspace",
                    format!("{:?} is not a valid keyspace name", settings.keyspace),
                ),
            });
        }
        // Writes without an explicit timestamp (pointer, metadata, queues) get monotonic client
        // timestamps: a rollback right after an activation is ordered after it whichever
        // coordinator serves each write.
        let mut builder = SessionBuilder::new()
            .known_nodes(&settings.contact_points)
            .connection_timeout(settings.request_timeout)
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.user(user, password);
        }
        let session = builder.build().await.map_err(CqlError::from)?;
        migrate(&session, &settings.keyspace).await?;
        let st = Statements::prepare(
            &session,
            &settings.keyspace,
            Execution {
                consistency: settings.consistency,
                request_timeout: settings.request_timeout,
                write_retries: settings.write_retries,
            },
        )
        .await?;
        Ok(Self {
            session,
            st,
            handle: tokio::runtime::Handle::current(),
            instance: fastrand::i64(..),
            ids: IdSource::new(),
            baseline_timestamps: Mutex::new(BTreeMap::new()),
            counts: Default::default(),
        })
    }

    /// One cheap read (`system.local`, no keyspace), answered within `deadline` or failed: the
    /// reachability probe.
    pub async fn probe(&self, deadline: Duration) -> Result<(), CqlError> {
        let mut read = Statement::new("SELECT release_version FROM system.local");
        read.set_request_timeout(Some(deadline));
        self.session.query_unpaged(read, ()).await?;
        Ok(())
    }

    /// Runs a future to completion from synchronous code (see the module docs).
    fn block<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.handle.block_on(f))
    }

    async fn exec(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<scylla::response::query_result::QueryResult, StoreError> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(execution_error)
    }

    /// Every row of a (possibly large) query, page by page.
    async fn all_rows<R>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
    {
        let pager = self
            .session
            .execute_iter(st.clone(), values)
            .await
            .map_err(pager_error)?;
        pager
            .rows_stream::<R>()
            .map_err(rows_error)?
            .map_err(|e| StoreError::Unavailable(format!("paging: {e}")))
            .try_collect()
            .await
    }

    /// The `(id, encoded value)` rows of one unpaged query, values decoded as rows of `table`.
    async fn id_rows<T: serde::de::DeserializeOwned>(
        &self,
        st: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        table: &str,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let rows = self
            .exec(st, values)
            .await?
            .into_rows_result()
            .map_err(rows_error)?;
        let mut out = Vec::new();
        for row in rows.rows::<(i64, Vec<u8>)>().map_err(rows_error)? {
            let (id, value) = row.map_err(rows_error)?;
            out.push((id as u64, decode(table, &value)?));
        }
        Ok(out)
    }

    fn baseline_timestamp(&self, version: u64) -> i64 {
        *self
            .baseline_timestamps
            .lock()
            .entry(version)
            .or_insert_with(now_us)
    }

    /// Cells of one entity write.
    async fn write_cells(
        &self,
        key: &EntityKey,
        layer: Layer,
        timestamp: i64,
        cells: BTreeMap<String, Vec<u8>>,
    ) -> Result<(), StoreError> {
        let st = &self.st.classes[class_index(key.class)].write;
        let l = layer_key(layer);
        match &key.sub {
            None => self.exec(st, (timestamp, cells, l, &key.id)).await?,
            Some(SubKey::Time(t)) => self.exec(st, (timestamp, cells, l, &key.id, *t)).await?,
            Some(SubKey::Code(c)) => self.exec(st, (timestamp, cells, l, &key.id, c)).await?,
        };
        Ok(())
    }

    async fn add_count(&self, name: &'static str, delta: i64) -> Result<(), StoreError> {
        if delta != 0 {
            self.exec(&self.st.count_add, (Counter(delta), name))
                .await?;
            self.counts[count_slot(name)].lock().0 += delta;
        }
        Ok(())
    }

    fn count(&self, name: &'static str) -> u64 {
        let slot = &self.counts[count_slot(name)];
        {
            let (n, read_at) = *slot.lock();
            if read_at.is_some_and(|t| t.elapsed() < COUNT_REFRESH) {
                return n.max(0) as u64;
            }
        }
        let read = self.block(async {
            let rows = self
                .exec(&self.st.count_get, (name,))
                .await?
                .into_rows_result()
                .map_err(rows_error)?;
            Ok::<_, StoreError>(
                rows.maybe_first_row::<(Option<Counter>,)>()
                    .map_err(rows_error)?
                    .and_then(|(c,)| c)
                    .map_or(0, |c| c.0),
            )
        });
        let mut slot = slot.lock();
        match read {
            Ok(n) => *slot = (n, Some(Instant::now())),
            Err(e) => tracing::warn!(error = %e, counter = name, "reading a counter failed"),
        }
        slot.0.max(0) as u64
    }

    async fn run_all(writes: Vec<Write<'_>>) -> Result<(), StoreError> {
        stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    async fn commit_async(&self, set: &WriteSet) -> Result<u64, StoreError> {
        let mut first: Vec<Write<'_>> = Vec::new();
        let mut writes = 0_u64;
        let mut indexed = BTreeSet::new();
        for (layer, key, entity) in &set.entities {
            match layer {
                Layer::Stream => {
                    for (version, cells) in cells_by_version(entity)? {
                        first.push(Box::pin(self.write_cells(
                            key,
                            *layer,
                            stream_timestamp(&version),
                            cells,
                        )));
                        writes += 1;
                    }
                }
                Layer::Baseline(v) => {
                    let ts = self.baseline_timestamp(*v);
                    first.push(Box::pin(self.write_cells(key, *layer, ts, cells(entity)?)));
                    writes += 1;
                    if indexed.insert((*v, key.class, key.id.as_str())) {
                        let bucket = partition_of(&key.id, INDEX_BUCKETS) as i32;
                        let values = (*v as i64, bucket, key.class.as_str(), key.id.as_str());
                        first.push(Box::pin(async move {
                            self.exec(&self.st.index_insert, values).await.map(drop)
                        }));
                    }
                }
            }
        }
        let first_dead = self.ids.take(set.dead_letters.len() as u64);
        for (i, dl) in set.dead_letters.iter().enumerate() {
            let snapshot = match dl.source {
                DeadLetterSource::Snapshot { version, .. } => Some(version as i64),
                DeadLetterSource::Stream => None,
            };
            let values = ((first_dead + i as u64) as i64, snapshot, encode(dl)?);
            first.push(Box::pin(async move {
                self.exec(&self.st.dead_letter_insert, values)
                    .await
                    .map(drop)
            }));
            writes += 1;
        }
        let first_deferred = self.ids.take(set.deferred.len() as u64);
        for (i, u) in set.deferred.iter().enumerate() {
            let values = ((first_deferred + i as u64) as i64, encode(u)?);
            first.push(Box::pin(async move {
                self.exec(&self.st.deferred_insert, values).await.map(drop)
            }));
            writes += 1;
        }
        Self::run_all(first).await?;

        let mut second: Vec<Write<'_>> = Vec::new();
        for id in &set.dead_letters_removed {
            second.push(Box::pin(async move {
                self.exec(&self.st.dead_letter_delete, (*id as i64,))
                    .await
                    .map(drop)
            }));
        }
        for id in &set.deferred_removed {
            second.push(Box::pin(async move {
                self.exec(&self.st.deferred_delete, (*id as i64,))
                    .await
                    .map(drop)
            }));
        }
        for id in &set.dedup_expired {
            second.push(Box::pin(async move {
                self.exec(&self.st.dedup_delete, (*id as i64, self.instance))
                    .await
                    .map(drop)
            }));
        }
        Self::run_all(second).await?;
        // Counters are approximate: not idempotent, and removals of absent ids still count.
        self.add_count(
            DEAD_LETTERS,
            set.dead_letters.len() as i64 - set.dead_letters_removed.len() as i64,
        )
        .await?;
        self.add_count(
            DEFERRED,
            set.deferred.len() as i64 - set.deferred_removed.len() as i64,
        )
        .await?;
        if let Some((id, hashes)) = &set.dedup {
            let value: Vec<u8> = hashes.iter().flat_map(|h| h.to_le_bytes()).collect();
            self.exec(&self.st.dedup_insert, (*id as i64, self.instance, value))
                .await?;
            writes += 1;
        }
        Ok(writes)
    }

    async fn discard_async(&self, version: u64) -> Result<(), StoreError> {
        let ts = now_us();
        let v = version as i64;
        for bucket in 0..INDEX_BUCKETS as i32 {
            let rows: Vec<(String, String)> =
                self.all_rows(&self.st.index_select, (v, bucket)).await?;
            let mut deletes: Vec<Write<'_>> = Vec::new();
            for (class, id) in rows {
                let Some(class) = Class::parse(&class) else {
                    continue;
                };
                let st = &self.st.classes[class_index(class)].delete_partition;
                deletes.push(Box::pin(async move {
                    self.exec(st, (ts, v, id)).await.map(drop)
                }));
            }
            Self::run_all(deletes).await?;
            self.exec(&self.st.index_delete, (v, bucket)).await?;
        }
        self.exec(&self.st.snapshot_delete, (v,)).await?;
        // A reload of the same version number must write after these tombstones.
        self.baseline_timestamps.lock().remove(&version);
        Ok(())
    }
}

impl Store for CassandraStore {
    fn get(&self, layer: Layer, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        let st = &self.st.classes[class_index(key.class)].get;
        let l = layer_key(layer);
        self.block(async {
            let result = match &key.sub {
                None => self.exec(st, (l, &key.id)).await?,
                Some(SubKey::Time(t)) => self.exec(st, (l, &key.id, *t)).await?,
                Some(SubKey::Code(c)) => self.exec(st, (l, &key.id, c)).await?,
            };
            let rows = result.into_rows_result().map_err(rows_error)?;
            let cells = rows
                .maybe_first_row::<(Option<BTreeMap<String, Vec<u8>>>,)>()
                .map_err(rows_error)?
                .and_then(|(c,)| c);
            cells
                .map(|c| decode_entity(table(key.class), c))
                .transpose()
        })
    }

    fn prices_at(
        &self,
        layer: Layer,
        product_id: &str,
        at_ms: i64,
        depth: usize,
    ) -> Result<Vec<(EntityKey, Entity)>, StoreError> {
        if depth == 0 {
            return Ok(Vec::new());
        }
        let limit = depth.min(i32::MAX as usize) as i32;
        self.block(async {
            let rows = self
                .exec(
                    &self.st.prices_at,
                    (layer_key(layer), product_id, at_ms, limit),
                )
                .await?
                .into_rows_result()
                .map_err(rows_error)?;
            let mut out = Vec::new();
            for row in rows
                .rows::<(i64, Option<BTreeMap<String, Vec<u8>>>)>()
                .map_err(rows_error)?
            {
                let (valid_from, cells) = row.map_err(rows_error)?;
                let key = EntityKey {
                    class: Class::Pricing,
                    id: product_id.to_owned(),
                    sub: Some(SubKey::Time(valid_from)),
                };
                out.push((key, decode_entity("pricing", cells.unwrap_or_default())?));
            }
            Ok(out)
        })
    }

    fn commit(&self, set: &WriteSet) -> Result<u64, StoreError> {
        self.block(self.commit_async(set))
    }

    /// Entries of every worker sharing the keyspace, merged by id (ids are per worker, so two
    /// workers' entries may share one); entries beyond the window are deleted.
    fn dedup_window(&self, max_hashes: usize) -> Result<(DedupEntries, u64), StoreError> {
        self.block(async {
            let rows: Vec<(i64, i64, Vec<u8>)> = self.all_rows(&self.st.dedup_select, ()).await?;
            let mut out: DedupEntries = Vec::new();
            let mut total = 0;
            let mut next = 1_u64;
            let mut expired: Vec<Write<'_>> = Vec::new();
            for (id, instance, bytes) in rows {
                let id_u = id as u64;
                next = next.max(id_u + 1);
                if total >= max_hashes {
                    expired.push(Box::pin(async move {
                        self.exec(&self.st.dedup_delete, (id, instance))
                            .await
                            .map(drop)
                    }));
                    continue;
                }
                let hashes: Vec<u64> = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect();
                total += hashes.len();
                match out.last_mut() {
                    Some((last, h)) if *last == id_u => h.extend(hashes),
                    _ => out.push((id_u, hashes)),
                }
            }
            Self::run_all(expired).await?;
            Ok((out, next))
        })
    }

    fn dead_letters(&self, after: u64, limit: usize) -> Result<Vec<(u64, DeadLetter)>, StoreError> {
        let limit = limit.min(i32::MAX as usize) as i32;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.block(self.id_rows(
            &self.st.dead_letters_after,
            (after as i64, limit),
            "dead_letters",
        ))
    }

    /// Approximate: a Cassandra counter, shared by all workers, read at most once a second (this
    /// store's own changes show at once); a retried or failed commit, or the removal of an id
    /// already gone, can leave it off by those records.
    fn dead_letter_count(&self) -> u64 {
        self.count(DEAD_LETTERS)
    }

    fn remove_snapshot_dead_letters(&self, version: u64) -> Result<u64, StoreError> {
        self.block(async {
            let rows: Vec<(i64, Option<i64>)> =
                self.all_rows(&self.st.dead_letter_sources, ()).await?;
            let ids: Vec<i64> = rows
                .into_iter()
                .filter(|(_, v)| *v == Some(version as i64))
                .map(|(id, _)| id)
                .collect();
            let deletes: Vec<Write<'_>> = ids
                .iter()
                .map(|id| -> Write<'_> {
                    Box::pin(async move {
                        self.exec(&self.st.dead_letter_delete, (*id,))
                            .await
                            .map(drop)
                    })
                })
                .collect();
            Self::run_all(deletes).await?;
            self.add_count(DEAD_LETTERS, -(ids.len() as i64)).await?;
            Ok(ids.len() as u64)
        })
    }

    fn deferred(&self, limit: usize) -> Result<Vec<(u64, Update)>, StoreError> {
        let limit = limit.min(i32::MAX as usize) as i32;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.block(self.id_rows(&self.st.deferred_select, (limit,), "deferred"))
    }

    /// Approximate, like [`Store::dead_letter_count`].
    fn deferred_count(&self) -> u64 {
        self.count(DEFERRED)
    }

    fn snapshots(&self) -> Result<Vec<SnapshotMeta>, StoreError> {
        self.block(async {
            let rows: Vec<(Vec<u8>,)> = self.all_rows(&self.st.snapshot_select, ()).await?;
            let mut out = rows
                .iter()
                .map(|(m,)| decode::<SnapshotMeta>("snapshots", m))
                .collect::<Result<Vec<_>, _>>()?;
            out.sort_by_key(|m| m.version);
            Ok(out)
        })
    }

    /// Metadata first, then the pointer: a crash in between leaves a complete but inactive
    /// version, which activation can redo; never a pointer to missing metadata.
    fn put_snapshot_meta(&self, meta: &SnapshotMeta, activate: bool) -> Result<(), StoreError> {
        let value = encode(meta)?;
        self.block(async {
            self.exec(&self.st.snapshot_insert, (meta.version as i64, value))
                .await?;
            if activate {
                self.exec(&self.st.pointer_set, (ACTIVE_SNAPSHOT, meta.version as i64))
                    .await?;
            }
            Ok(())
        })
    }

    /// One row, so the switch is atomic: readers see the old or the new version.
    fn set_active_snapshot(&self, version: u64) -> Result<(), StoreError> {
        self.block(async {
            self.exec(&self.st.pointer_set, (ACTIVE_SNAPSHOT, version as i64))
                .await
                .map(drop)
        })
    }

    fn active_snapshot(&self) -> Result<Option<u64>, StoreError> {
        self.block(async {
            let rows = self
                .exec(&self.st.pointer_get, (ACTIVE_SNAPSHOT,))
                .await?
                .into_rows_result()
                .map_err(rows_error)?;
            Ok(rows
                .maybe_first_row::<(Option<i64>,)>()
                .map_err(rows_error)?
                .and_then(|(v,)| v)
                .map(|v| v as u64))
        })
    }

    /// Deletes the partitions listed for `version` in `baseline_partitions`, bucket by bucket:
    /// work proportional to the version's size, not to the tables'.
    fn discard_snapshot(&self, version: u64) -> Result<(), StoreError> {
        self.block(self.discard_async(version))
    }

    fn resolves_field_conflicts(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_consistency_names_the_field() {
        assert_eq!(
            parse_consistency("local_quorum").unwrap(),
            Consistency::LocalQuorum
        );
        match parse_consistency("MOSTLY") {
            Err(StoreError::Config { key, why }) => {
                assert_eq!(key, "storage.cassandra.consistency");
                assert!(why.contains("MOSTLY"), "{why}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn ids_never_repeat_and_increase() {
        let ids = IdSource::new();
        let mut last = 0;
        for n in [1, 5, 1, 100, 1] {
            let first = ids.take(n);
            assert!(first > last, "{first} after {last}");
            last = first + n - 1;
        }
    }
}
