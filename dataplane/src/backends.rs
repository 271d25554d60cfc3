//! Opens what `storage` and `streams` name: the embedded store or Cassandra, and Kafka mode.
//! An unreachable Cassandra is waited for (the worker stays live and says why it is not ready),
//! so a worker started before its database becomes ready without a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tailwarden_contract::backend::Backend;

use crate::app::Tuning;
use crate::backend_probe::{Reporter, Unreached};
use crate::config::{Config, Storage};
use crate::health::Health;
use crate::snapshot::InterruptedLoads;
use crate::store::cassandra::{CassandraSettings, CassandraStore};
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};
use crate::stream::mode::KafkaMode;

/// First and longest pause between attempts to reach Cassandra.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The opened backends of one worker.
pub struct Backends {
    /// Entity state, dead letters, deferred updates, snapshots.
    pub store: Arc<dyn Store>,
    /// A writable local directory: the data dir when embedded, else a spool under the temp dir
    /// (an emptyDir in pods) for uploaded snapshot files.
    pub work_dir: PathBuf,
    /// Whether an unfinished snapshot load found at start is this worker's own (embedded: it
    /// died, discard it) or may be another worker's, still running (shared store: keep it).
    pub interrupted: InterruptedLoads,
    /// Kafka mode, when `streams.kafka` is set.
    pub kafka: Option<KafkaMode>,
    /// The same store as `store` when it is Cassandra, for the reachability probe.
    pub cassandra: Option<Arc<CassandraStore>>,
}

/// Opens the configured backends. Configuration errors end the start; an unreachable Cassandra
/// is retried with back-off, its error shown on `/readyz` and each attempt's state reported,
/// until it answers.
pub async fn open(
    config: &Config,
    tuning: &Tuning,
    health: &Health,
    reporter: &Reporter,
) -> anyhow::Result<Backends> {
    let kafka = KafkaMode::from_config(config).context("streams.kafka")?;
    match &config.storage {
        Storage::Embedded { path } => {
            std::fs::create_dir_all(path)
                .with_context(|| format!("creating data dir {}", path.display()))?;
            let (dir, cache, flush) = (
                path.clone(),
                tuning.store_cache_bytes,
                tuning.store_flush_bytes,
            );
            let store =
                tokio::task::spawn_blocking(move || EmbeddedStore::open_with(&dir, cache, flush))
                    .await?
                    .with_context(|| format!("opening the store at {}", path.display()))?;
            Ok(Backends {
                store: Arc::new(store),
                work_dir: path.clone(),
                interrupted: InterruptedLoads::Discard,
                kafka,
                cassandra: None,
            })
        }
        Storage::Cassandra { .. } => {
            let settings = CassandraSettings::from_storage(&config.storage)?
                .context("storage.cassandra settings")?;
            let store = Arc::new(connect_when_reachable(&settings, health, reporter).await?);
            let work_dir = std::env::temp_dir().join("tailwarden-spool");
            std::fs::create_dir_all(&work_dir)
                .with_context(|| format!("creating spool dir {}", work_dir.display()))?;
            Ok(Backends {
                store: store.clone(),
                work_dir,
                interrupted: InterruptedLoads::Keep,
                kafka,
                cassandra: Some(store),
            })
        }
    }
}

/// Connects to Cassandra, retrying while it is unavailable; reports each attempt's state.
async fn connect_when_reachable(
    settings: &CassandraSettings,
    health: &Health,
    reporter: &Reporter,
) -> Result<CassandraStore, StoreError> {
    let mut pause = RETRY_FIRST;
    loop {
        let attempt = CassandraStore::open(settings).await;
        reporter.record(
            Backend::Cassandra,
            attempt.as_ref().map(drop).map_err(Unreached::from),
        );
        match attempt.map_err(|e| e.error) {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(why)) => {
                tracing::debug!(error = %why, retry_in = ?pause, "Cassandra is unreachable");
                health.waiting(format!("starting: waiting for Cassandra: {why}"));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}
