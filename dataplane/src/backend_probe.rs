//! The reachability of the backends a worker uses, exported as `tailwarden_backend_state` (see
//! `tailwarden_contract::backend`): set by each failed attempt while the worker waits for
//! Cassandra at start, then by a probe of each backend every [`PROBE_EVERY`].

use std::sync::Arc;
use std::time::Duration;

use tailwarden_contract::backend::{Backend, Reachability};
use tokio::sync::watch;

use crate::config::Role;
use crate::metrics::Metrics;
use crate::store::cassandra::CassandraStore;
use crate::store::cql_errors::{self, ConnectError, CqlError};
use crate::stream::probe::KafkaProbe;

/// How often each backend is probed after the start.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long one probe waits for an answer.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// A contact with a backend that failed: the state it shows, and the error.
#[derive(Debug, thiserror::Error)]
#[error("{state}: {error}")]
pub struct Unreached {
    /// What the error says of the backend's reachability.
    pub state: Reachability,
    /// The error text (it never holds credentials).
    pub error: String,
}

impl From<CqlError> for Unreached {
    fn from(e: CqlError) -> Self {
        Self {
            state: cql_errors::reachability(&e),
            error: e.to_string(),
        }
    }
}

impl From<&ConnectError> for Unreached {
    fn from(e: &ConnectError) -> Self {
        Self {
            state: e.state,
            error: e.error.to_string(),
        }
    }
}

/// Shows each contact's outcome as the worker's state of that backend.
#[derive(Clone)]
pub struct Reporter {
    metrics: Arc<Metrics>,
    role: Role,
}

impl Reporter {
    /// Reports into `metrics` as a worker of `role`.
    pub fn new(metrics: Arc<Metrics>, role: Role) -> Self {
        Self { metrics, role }
    }

    /// Records one contact with `backend`. A change of state is logged once: at warn with the
    /// error, at info when the backend becomes reachable.
    pub fn record(&self, backend: Backend, outcome: Result<(), Unreached>) {
        let state = outcome
            .as_ref()
            .err()
            .map_or(Reachability::Reachable, |e| e.state);
        if self.metrics.set_backend_state(self.role, backend, state) == Some(state) {
            return;
        }
        match outcome {
            Ok(()) => tracing::info!(backend = backend.as_str(), "backend reachable"),
            Err(e) => tracing::warn!(
                backend = backend.as_str(),
                state = state.as_str(),
                error = %e.error,
                "backend not reachable"
            ),
        }
    }
}

/// The backends a worker probes: those it uses.
pub struct Probes {
    /// The store, when `storage` is cassandra.
    pub cassandra: Option<Arc<CassandraStore>>,
    /// Kafka, when `streams` is kafka.
    pub kafka: Option<Arc<KafkaProbe>>,
}

/// Probes each backend every [`PROBE_EVERY`], the first time at once, until `stop` turns true.
/// Kafka's client blocks, so its probe runs on a blocking thread.
pub async fn run(reporter: Reporter, probes: Probes, mut stop: watch::Receiver<bool>) {
    if probes.cassandra.is_none() && probes.kafka.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Some(store) = &probes.cassandra {
            let outcome = store.probe(PROBE_DEADLINE).await.map_err(Unreached::from);
            reporter.record(Backend::Cassandra, outcome);
        }
        if let Some(kafka) = &probes.kafka {
            let kafka = kafka.clone();
            let outcome = tokio::task::spawn_blocking(move || kafka.probe(PROBE_DEADLINE))
                .await
                .unwrap_or_else(|e| {
                    Err(Unreached {
                        state: Reachability::Failed,
                        error: format!("the probe did not finish: {e}"),
                    })
                });
            reporter.record(Backend::Kafka, outcome);
        }
    }
}
