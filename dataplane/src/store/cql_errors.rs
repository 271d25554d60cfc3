//! The driver's errors: which [`StoreError`] each becomes (retry later or not) and what it says
//! of the cluster's reachability, the `state` of `tailwarden_backend_state{backend="cassandra"}`.

use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    MetadataError, NewSessionError, PrepareError, RequestAttemptError, SchemaAgreementError,
    UseKeyspaceError,
};
use tailwarden_contract::backend::Reachability;

use super::StoreError;

/// A driver error of any stage of the store's life: connecting, preparing, executing.
#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    /// Opening the session (connections, authentication, the first metadata fetch).
    #[error("connecting: {0}")]
    Session(#[from] NewSessionError),
    /// Preparing a statement.
    #[error("preparing {cql:?}: {source}")]
    Prepare {
        /// The statement.
        cql: String,
        /// Why it failed.
        source: PrepareError,
    },
    /// Executing a statement.
    #[error(transparent)]
    Execution(#[from] ExecutionError),
}

/// A failed connect: the store's error and the state it shows.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ConnectError {
    /// What the error says of the cluster's reachability.
    pub state: Reachability,
    /// The error, as every other store caller sees it.
    pub error: StoreError,
}

impl From<CqlError> for ConnectError {
    fn from(e: CqlError) -> Self {
        Self {
            state: reachability(&e),
            error: e.into(),
        }
    }
}

impl From<CqlError> for StoreError {
    fn from(e: CqlError) -> Self {
        match e {
            CqlError::Session(e) => session_error(e),
            CqlError::Execution(e) => execution_error(e),
            e @ CqlError::Prepare { .. } => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// What a driver error says of the cluster's reachability.
pub fn reachability(e: &CqlError) -> Reachability {
    match e {
        CqlError::Session(NewSessionError::FailedToResolveAnyHostname(_)) => {
            Reachability::Unreachable
        }
        CqlError::Session(NewSessionError::MetadataError(e)) => metadata(e),
        CqlError::Session(NewSessionError::UseKeyspaceError(e)) => use_keyspace(e),
        CqlError::Session(_) => Reachability::Failed,
        CqlError::Prepare { source, .. } => prepare(source),
        CqlError::Execution(e) => execution(e),
    }
}

/// Unreachable, timed out and unavailable: transient, worth retrying later.
fn transient(state: Reachability) -> bool {
    matches!(
        state,
        Reachability::Unreachable | Reachability::Timeout | Reachability::Unavailable
    )
}

/// Maps an execution error: transient ones (and failures of the driver's own metadata and
/// schema-agreement requests) are [`StoreError::Unavailable`] (retry later), the rest
/// [`StoreError::Engine`].
pub(crate) fn execution_error(e: ExecutionError) -> StoreError {
    let unavailable = match &e {
        ExecutionError::EmptyPlan
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::LastAttemptError(a) => transient(attempt(a)),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Engine(e.to_string())
    }
}

/// Maps a connect error: refused credentials are a configuration error (a retry cannot fix
/// them), anything else is [`StoreError::Unavailable`].
fn session_error(e: NewSessionError) -> StoreError {
    let text = e.to_string();
    if reachability(&CqlError::Session(e)) == Reachability::AuthenticationFailed {
        StoreError::Config {
            key: "storage.cassandra.credentialsDir".into(),
            why: format!("the cluster refused the credentials: {text}"),
        }
    } else {
        StoreError::Unavailable(format!("connecting: {text}"))
    }
}

fn execution(e: &ExecutionError) -> Reachability {
    match e {
        ExecutionError::EmptyPlan => Reachability::Unreachable,
        ExecutionError::PrepareError(e) => prepare(e),
        ExecutionError::ConnectionPoolError(e) => pool(e),
        ExecutionError::LastAttemptError(e) => attempt(e),
        ExecutionError::RequestTimeout(_) => Reachability::Timeout,
        ExecutionError::UseKeyspaceError(e) => use_keyspace(e),
        ExecutionError::SchemaAgreementError(e) => schema_agreement(e),
        ExecutionError::MetadataError(e) => metadata(e),
        _ => Reachability::Failed,
    }
}

fn prepare(e: &PrepareError) -> Reachability {
    match e {
        PrepareError::ConnectionPoolError(e) => pool(e),
        PrepareError::AllAttemptsFailed { first_attempt } => attempt(first_attempt),
        _ => Reachability::Failed,
    }
}

fn metadata(e: &MetadataError) -> Reachability {
    match e {
        MetadataError::ConnectionPoolError(e) => pool(e),
        _ => Reachability::Failed,
    }
}

fn schema_agreement(e: &SchemaAgreementError) -> Reachability {
    match e {
        SchemaAgreementError::ConnectionPoolError(e) => pool(e),
        SchemaAgreementError::PrepareError(e) => prepare(e),
        SchemaAgreementError::RequestError(e) => attempt(e),
        SchemaAgreementError::Timeout(_) => Reachability::Timeout,
        _ => Reachability::Failed,
    }
}

fn use_keyspace(e: &UseKeyspaceError) -> Reachability {
    match e {
        UseKeyspaceError::RequestError(e) => attempt(e),
        UseKeyspaceError::RequestTimeout(_) => Reachability::Timeout,
        _ => Reachability::Failed,
    }
}

/// A pool without a connection: why its last connection failed.
fn pool(e: &ConnectionPoolError) -> Reachability {
    match e {
        ConnectionPoolError::Broken {
            last_connection_error,
        } => connection(last_connection_error),
        ConnectionPoolError::Initializing => Reachability::Unreachable,
        _ => Reachability::Failed,
    }
}

fn connection(e: &ConnectionError) -> Reachability {
    match e {
        // No connection: refused, no route, or no answer to the connect within its timeout.
        ConnectionError::ConnectTimeout
        | ConnectionError::IoError(_)
        | ConnectionError::BrokenConnection(_) => Reachability::Unreachable,
        ConnectionError::ConnectionSetupRequestError(e) => match e.get_error() {
            ConnectionSetupRequestErrorKind::DbError(e, message) => db(e, message),
            ConnectionSetupRequestErrorKind::BrokenConnection(_) => Reachability::Unreachable,
            ConnectionSetupRequestErrorKind::MissingAuthentication
            | ConnectionSetupRequestErrorKind::StartAuthSessionError(_)
            | ConnectionSetupRequestErrorKind::AuthChallengeEvaluationError(_)
            | ConnectionSetupRequestErrorKind::AuthFinishError(_) => {
                Reachability::AuthenticationFailed
            }
            _ => Reachability::Failed,
        },
        ConnectionError::UseKeyspaceError(e) => use_keyspace(e),
        _ => Reachability::Failed,
    }
}

fn attempt(e: &RequestAttemptError) -> Reachability {
    match e {
        RequestAttemptError::BrokenConnectionError(_) => Reachability::Unreachable,
        RequestAttemptError::DbError(e, message) => db(e, message),
        _ => Reachability::Failed,
    }
}

/// An error the cluster answered with. A missing keyspace or table is an `Invalid` request,
/// told apart only by its message.
fn db(e: &DbError, message: &str) -> Reachability {
    match e {
        DbError::AuthenticationError => Reachability::AuthenticationFailed,
        DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => Reachability::Timeout,
        DbError::Unavailable { .. }
        | DbError::Overloaded
        | DbError::IsBootstrapping
        | DbError::RateLimitReached { .. } => Reachability::Unavailable,
        DbError::Invalid => {
            let m = message.to_ascii_lowercase();
            let missing = m.contains("unconfigured table")
                || (m.contains("keyspace") || m.contains("table")) && m.contains("does not exist");
            if missing {
                Reachability::Missing
            } else {
                Reachability::Failed
            }
        }
        _ => Reachability::Failed,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use scylla::errors::WriteType;
    use scylla::statement::Consistency;

    use super::*;

    fn refused() -> ConnectionPoolError {
        ConnectionPoolError::Broken {
            last_connection_error: ConnectionError::IoError(Arc::new(
                std::io::ErrorKind::ConnectionRefused.into(),
            )),
        }
    }

    fn answered(e: DbError, message: &str) -> CqlError {
        CqlError::Execution(ExecutionError::LastAttemptError(
            RequestAttemptError::DbError(e, message.into()),
        ))
    }

    #[test]
    fn driver_errors_name_the_state() {
        let cases = [
            (
                CqlError::Session(MetadataError::ConnectionPoolError(refused()).into()),
                Reachability::Unreachable,
            ),
            (
                CqlError::Session(NewSessionError::FailedToResolveAnyHostname(vec![
                    "nowhere:9042".into(),
                ])),
                Reachability::Unreachable,
            ),
            (
                CqlError::Execution(refused().into()),
                Reachability::Unreachable,
            ),
            (
                CqlError::Execution(ExecutionError::EmptyPlan),
                Reachability::Unreachable,
            ),
            (
                CqlError::Execution(ExecutionError::RequestTimeout(Duration::from_secs(2))),
                Reachability::Timeout,
            ),
            (
                answered(
                    DbError::WriteTimeout {
                        consistency: Consistency::One,
                        received: 0,
                        required: 1,
                        write_type: WriteType::Simple,
                    },
                    "",
                ),
                Reachability::Timeout,
            ),
            (
                answered(DbError::AuthenticationError, "bad credentials"),
                Reachability::AuthenticationFailed,
            ),
            (
                answered(
                    DbError::Unavailable {
                        consistency: Consistency::Quorum,
                        required: 2,
                        alive: 1,
                    },
                    "",
                ),
                Reachability::Unavailable,
            ),
            (answered(DbError::Overloaded, ""), Reachability::Unavailable),
            (
                answered(DbError::IsBootstrapping, ""),
                Reachability::Unavailable,
            ),
            (
                answered(DbError::Invalid, "unconfigured table inventory"),
                Reachability::Missing,
            ),
            (
                answered(DbError::Invalid, "Keyspace 'shop' does not exist"),
                Reachability::Missing,
            ),
            (
                answered(DbError::Invalid, "Undefined column name qty"),
                Reachability::Failed,
            ),
            (
                answered(
                    DbError::FunctionFailure {
                        keyspace: "k".into(),
                        function: "f".into(),
                        arg_types: vec![],
                    },
                    "",
                ),
                Reachability::Failed,
            ),
            (
                CqlError::Prepare {
                    cql: "SELECT 1".into(),
                    source: PrepareError::AllAttemptsFailed {
                        first_attempt: RequestAttemptError::DbError(
                            DbError::Invalid,
                            "unconfigured table t".into(),
                        ),
                    },
                },
                Reachability::Missing,
            ),
        ];
        for (error, state) in cases {
            assert_eq!(reachability(&error), state, "{error}");
        }
    }

    #[test]
    fn transient_errors_are_retried_later_and_the_rest_are_not() {
        let timeout = ExecutionError::RequestTimeout(Duration::from_secs(1));
        assert!(matches!(
            execution_error(timeout),
            StoreError::Unavailable(_)
        ));
        let CqlError::Execution(overloaded) = answered(DbError::Overloaded, "") else {
            unreachable!()
        };
        assert!(matches!(
            execution_error(overloaded),
            StoreError::Unavailable(_)
        ));
        let CqlError::Execution(invalid) = answered(DbError::Invalid, "unconfigured table t")
        else {
            unreachable!()
        };
        assert!(matches!(execution_error(invalid), StoreError::Engine(_)));
        let refused = NewSessionError::MetadataError(MetadataError::ConnectionPoolError(refused()));
        match StoreError::from(CqlError::Session(refused)) {
            StoreError::Unavailable(why) => assert!(why.starts_with("connecting: "), "{why}"),
            other => panic!("a refused connection is worth retrying: {other:?}"),
        }
    }
}
