//! Every CQL statement the store runs, prepared once at connect.
//!
//! Retries are per statement kind: ingest writes are idempotent (explicit timestamps, ids fixed
//! before the first attempt) and retry at most [`WRITE_RETRIES`] times on transient errors;
//! serve reads never retry, since a stale or late answer is worse than a fast error that the
//! caller's own deadline handles; counter updates are not idempotent and never retry.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::errors::{DbError, RequestAttemptError};
use scylla::policies::retry::{
    FallthroughRetryPolicy, RequestInfo, RetryDecision, RetryPolicy, RetrySession,
};
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;

use super::cql_errors::CqlError;
use super::cql_schema::{id_column, sub_column, table};
use crate::model::Class;

/// Retries of an ingest write on a transient error.
pub(crate) const WRITE_RETRIES: u32 = 3;

/// Retries idempotent requests on transient failures, at most `max` times.
#[derive(Debug)]
struct BoundedRetry {
    max: u32,
}

/// A database error that passes with time: the node is overloaded, starting, or timed out.
pub(crate) fn transient(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Overloaded
            | DbError::Unavailable { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadTimeout { .. }
            | DbError::IsBootstrapping
            | DbError::RateLimitReached { .. }
    )
}

struct BoundedRetrySession {
    max: u32,
    done: u32,
}

impl RetryPolicy for BoundedRetry {
    fn new_session(&self) -> Box<dyn RetrySession> {
        Box::new(BoundedRetrySession {
            max: self.max,
            done: 0,
        })
    }
}

impl RetrySession for BoundedRetrySession {
    fn decide_should_retry(&mut self, info: RequestInfo) -> RetryDecision {
        // A server error is worth another attempt, but is not reported as unavailable.
        let transient = match info.error {
            RequestAttemptError::BrokenConnectionError(_) => true,
            RequestAttemptError::DbError(e, _) => transient(e) || matches!(e, DbError::ServerError),
            _ => false,
        };
        if !info.is_idempotent || !transient || self.done >= self.max {
            return RetryDecision::DontRetry;
        }
        self.done += 1;
        RetryDecision::RetryNextTarget(None)
    }

    fn reset(&mut self) {
        self.done = 0;
    }
}

/// How a statement is executed.
#[derive(Clone, Copy)]
enum Kind {
    /// A read on the serve path: never retried.
    Read,
    /// An idempotent write: bounded retries.
    Write,
    /// A counter update: not idempotent, never retried.
    Counter,
}

/// Per-class statements, indexed like [`Class::ALL`].
pub(crate) struct ClassStatements {
    /// `SELECT fields` of one entity.
    pub get: PreparedStatement,
    /// Adds cells: `UPDATE .. USING TIMESTAMP ? SET fields = fields + ? WHERE ..`.
    pub write: PreparedStatement,
    /// Deletes one baseline partition: `DELETE .. USING TIMESTAMP ? WHERE layer = ? AND id = ?`.
    pub delete_partition: PreparedStatement,
}

/// Every prepared statement.
pub(crate) struct Statements {
    /// By class, in [`Class::ALL`] order.
    pub classes: Vec<ClassStatements>,
    /// Price windows at a time, newest first.
    pub prices_at: PreparedStatement,
    /// `(version, bucket, class, id)` into the baseline index.
    pub index_insert: PreparedStatement,
    /// `(class, id)` of one index bucket.
    pub index_select: PreparedStatement,
    /// Deletes one index bucket.
    pub index_delete: PreparedStatement,
    /// Dedup entries.
    pub dedup_insert: PreparedStatement,
    /// Deletes one dedup entry `(id, instance)`.
    pub dedup_delete: PreparedStatement,
    /// The whole dedup window, newest first.
    pub dedup_select: PreparedStatement,
    /// Dead letters `(id, snapshot_version, value)`.
    pub dead_letter_insert: PreparedStatement,
    /// Deletes a dead letter by id.
    pub dead_letter_delete: PreparedStatement,
    /// Dead letters after an id, oldest first.
    pub dead_letters_after: PreparedStatement,
    /// `(id, snapshot_version)` of all dead letters.
    pub dead_letter_sources: PreparedStatement,
    /// Deferred updates `(id, value)`.
    pub deferred_insert: PreparedStatement,
    /// Deletes a deferred update.
    pub deferred_delete: PreparedStatement,
    /// Deferred updates, oldest first.
    pub deferred_select: PreparedStatement,
    /// Adds to a named counter.
    pub count_add: PreparedStatement,
    /// Reads a named counter.
    pub count_get: PreparedStatement,
    /// Snapshot metadata.
    pub snapshot_insert: PreparedStatement,
    /// All snapshot metadata.
    pub snapshot_select: PreparedStatement,
    /// Deletes one version's metadata.
    pub snapshot_delete: PreparedStatement,
    /// Sets a pointer row.
    pub pointer_set: PreparedStatement,
    /// Reads a pointer row.
    pub pointer_get: PreparedStatement,
}

/// What a prepared statement runs with.
#[derive(Clone, Copy)]
pub(crate) struct Execution {
    /// For every statement.
    pub consistency: Consistency,
    /// Client-side timeout of one request, retries included.
    pub request_timeout: Duration,
    /// Retries of ingest writes.
    pub write_retries: u32,
}

struct Preparer<'a> {
    session: &'a Session,
    ks: &'a str,
    exec: Execution,
    writes: Arc<dyn RetryPolicy>,
    reads: Arc<dyn RetryPolicy>,
}

impl Preparer<'_> {
    async fn prepare(&self, kind: Kind, cql: String) -> Result<PreparedStatement, CqlError> {
        let cql = cql.replace("{ks}", self.ks);
        let mut st = match self.session.prepare(cql.as_str()).await {
            Ok(st) => st,
            Err(source) => return Err(CqlError::Prepare { cql, source }),
        };
        st.set_consistency(self.exec.consistency);
        st.set_request_timeout(Some(self.exec.request_timeout));
        match kind {
            Kind::Read => {
                st.set_is_idempotent(true);
                st.set_retry_policy(Some(self.reads.clone()));
            }
            Kind::Write => {
                st.set_is_idempotent(true);
                st.set_retry_policy(Some(self.writes.clone()));
            }
            Kind::Counter => {
                st.set_is_idempotent(false);
                st.set_retry_policy(Some(self.reads.clone()));
            }
        }
        Ok(st)
    }
}

impl Statements {
    /// Prepares every statement against keyspace `ks` (already migrated).
    pub(crate) async fn prepare(
        session: &Session,
        ks: &str,
        exec: Execution,
    ) -> Result<Self, CqlError> {
        let p = Preparer {
            session,
            ks,
            exec,
            writes: Arc::new(BoundedRetry {
                max: exec.write_retries,
            }),
            reads: Arc::new(FallthroughRetryPolicy::new()),
        };
        let mut classes = Vec::new();
        for class in Class::ALL {
            let t = table(class);
            let id = id_column(class);
            let key = match sub_column(class) {
                Some((sub, _)) => format!("layer = ? AND {id} = ? AND {sub} = ?"),
                None => format!("layer = ? AND {id} = ?"),
            };
            classes.push(ClassStatements {
                get: p
                    .prepare(
                        Kind::Read,
                        format!("SELECT fields FROM {{ks}}.{t} WHERE {key}"),
                    )
                    .await?,
                write: p
                    .prepare(
                        Kind::Write,
                        format!(
                            "UPDATE {{ks}}.{t} USING TIMESTAMP ? SET fields = fields + ? \
                             WHERE {key}"
                        ),
                    )
                    .await?,
                delete_partition: p
                    .prepare(
                        Kind::Write,
                        format!(
                            "DELETE FROM {{ks}}.{t} USING TIMESTAMP ? \
                             WHERE layer = ? AND {id} = ?"
                        ),
                    )
                    .await?,
            });
        }
        Ok(Self {
            classes,
            prices_at: p
                .prepare(
                    Kind::Read,
                    "SELECT valid_from, fields FROM {ks}.pricing WHERE layer = ? \
                     AND product_id = ? AND valid_from <= ? ORDER BY valid_from DESC LIMIT ?"
                        .into(),
                )
                .await?,
            index_insert: p
                .prepare(
                    Kind::Write,
                    "INSERT INTO {ks}.baseline_partitions (version, bucket, class, id) \
                     VALUES (?, ?, ?, ?)"
                        .into(),
                )
                .await?,
            index_select: p
                .prepare(
                    Kind::Write,
                    "SELECT class, id FROM {ks}.baseline_partitions \
                     WHERE version = ? AND bucket = ?"
                        .into(),
                )
                .await?,
            index_delete: p
                .prepare(
                    Kind::Write,
                    "DELETE FROM {ks}.baseline_partitions WHERE version = ? AND bucket = ?".into(),
                )
                .await?,
            dedup_insert: p
                .prepare(
                    Kind::Write,
                    "INSERT INTO {ks}.dedup (p, id, instance, hashes) VALUES (0, ?, ?, ?)".into(),
                )
                .await?,
            dedup_delete: p
                .prepare(
                    Kind::Write,
                    "DELETE FROM {ks}.dedup WHERE p = 0 AND id = ? AND instance = ?".into(),
                )
                .await?,
            dedup_select: p
                .prepare(
                    Kind::Write,
                    "SELECT id, instance, hashes FROM {ks}.dedup WHERE p = 0".into(),
                )
                .await?,
            dead_letter_insert: p
                .prepare(
                    Kind::Write,
                    "INSERT INTO {ks}.dead_letters (p, id, snapshot_version, value) \
                     VALUES (0, ?, ?, ?)"
                        .into(),
                )
                .await?,
            dead_letter_delete: p
                .prepare(
                    Kind::Write,
                    "DELETE FROM {ks}.dead_letters WHERE p = 0 AND id = ?".into(),
                )
                .await?,
            dead_letters_after: p
                .prepare(
                    Kind::Read,
                    "SELECT id, value FROM {ks}.dead_letters WHERE p = 0 AND id > ? LIMIT ?".into(),
                )
                .await?,
            dead_letter_sources: p
                .prepare(
                    Kind::Write,
                    "SELECT id, snapshot_version FROM {ks}.dead_letters WHERE p = 0".into(),
                )
                .await?,
            deferred_insert: p
                .prepare(
                    Kind::Write,
                    "INSERT INTO {ks}.deferred (p, id, value) VALUES (0, ?, ?)".into(),
                )
                .await?,
            deferred_delete: p
                .prepare(
                    Kind::Write,
                    "DELETE FROM {ks}.deferred WHERE p = 0 AND id = ?".into(),
                )
                .await?,
            deferred_select: p
                .prepare(
                    Kind::Read,
                    "SELECT id, value FROM {ks}.deferred WHERE p = 0 LIMIT ?".into(),
                )
                .await?,
            count_add: p
                .prepare(
                    Kind::Counter,
                    "UPDATE {ks}.counts SET n = n + ? WHERE name = ?".into(),
                )
                .await?,
            count_get: p
                .prepare(
                    Kind::Read,
                    "SELECT n FROM {ks}.counts WHERE name = ?".into(),
                )
                .await?,
            snapshot_insert: p
                .prepare(
                    Kind::Write,
                    "INSERT INTO {ks}.snapshots (p, version, meta) VALUES (0, ?, ?)".into(),
                )
                .await?,
            snapshot_select: p
                .prepare(
                    Kind::Read,
                    "SELECT meta FROM {ks}.snapshots WHERE p = 0".into(),
                )
                .await?,
            snapshot_delete: p
                .prepare(
                    Kind::Write,
                    "DELETE FROM {ks}.snapshots WHERE p = 0 AND version = ?".into(),
                )
                .await?,
            pointer_set: p
                .prepare(
                    Kind::Write,
                    "INSERT INTO {ks}.pointers (name, version) VALUES (?, ?)".into(),
                )
                .await?,
            pointer_get: p
                .prepare(
                    Kind::Read,
                    "SELECT version FROM {ks}.pointers WHERE name = ?".into(),
                )
                .await?,
        })
    }
}
