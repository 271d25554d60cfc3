//! The data-plane configuration file: the contract between the operator, which renders it into a
//! ConfigMap, and the workers, which read it at start.
//!
//! Unknown keys are rejected so that a typo fails at start with the key's name instead of being
//! silently ignored. Durations are written the humantime way: `5ms`, `10m`, `1h 30m`, `7d`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which part of the pipeline a process runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Validates, deduplicates and writes updates.
    Ingest,
    /// Answers reads.
    Serve,
    /// Both roles in one process on one embedded store.
    Standalone,
}

impl Role {
    /// The name used on the command line, in labels and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Serve => "serve",
            Role::Standalone => "standalone",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "serve" => Ok(Role::Serve),
            "standalone" => Ok(Role::Standalone),
            other => Err(ConfigError::Invalid {
                key: "role".into(),
                why: format!("{other:?} is not one of ingest, serve, standalone"),
            }),
        }
    }
}

/// The whole configuration file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Where state is kept.
    #[serde(default)]
    pub storage: Storage,
    /// Where updates come from.
    #[serde(default)]
    pub streams: Streams,
    /// Listen addresses.
    #[serde(default)]
    pub listen: Listen,
    /// Write-path settings.
    #[serde(default)]
    pub ingest: Ingest,
    /// Read-path settings.
    #[serde(default)]
    pub serve: Serve,
    /// Switches the operator flips under error-budget pressure.
    #[serde(default)]
    pub degradation: Degradation,
    /// Where `POST /v1/snapshots?path=` may read from.
    #[serde(default, skip_serializing_if = "is_default")]
    pub snapshots: Snapshots,
    /// Bearer tokens of the HTTP APIs, as files mounted from Secrets.
    #[serde(default, skip_serializing_if = "is_default")]
    pub auth: Auth,
    /// Deliberate failures, for testing what watches the pipeline. Refused at start unless the
    /// worker runs with `--allow-fault-injection`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub faults: Faults,
}

/// Sections added after the first release are left out while unset, so that the YAML the
/// operator renders for an existing pipeline, and with it the pods' config hash, stays the same
/// (a changed hash would restart every worker on an operator upgrade).
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Exactly one storage backend.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Storage {
    /// The embedded single-node store under `path`.
    Embedded {
        /// Directory of the store.
        path: PathBuf,
    },
    /// Apache Cassandra or ScyllaDB.
    #[serde(rename_all = "camelCase")]
    Cassandra {
        /// Contact points as `host:port`.
        contact_points: Vec<String>,
        /// Keyspace of the pipeline's tables.
        keyspace: String,
        /// CQL consistency level, e.g. `LOCAL_QUORUM`.
        consistency: String,
        /// Directory holding `username` and `password` files, mounted from a Secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials_dir: Option<PathBuf>,
    },
}

impl Default for Storage {
    fn default() -> Self {
        Storage::Embedded {
            path: PathBuf::from("/var/lib/tailwarden"),
        }
    }
}

/// Exactly one source of updates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[expect(
    clippy::large_enum_variant,
    reason = "read once per process; boxing would only add noise to every match"
)]
pub enum Streams {
    /// The bulk HTTP write API.
    #[serde(rename_all = "camelCase")]
    Http {
        /// Largest accepted request body in bytes.
        max_body_bytes: u64,
    },
    /// Apache Kafka topics.
    #[serde(rename_all = "camelCase")]
    Kafka {
        /// Bootstrap servers as `host:port`.
        bootstrap_servers: Vec<String>,
        /// Topic per data class.
        topics: KafkaTopics,
        /// Consumer group.
        consumer_group: String,
        /// Directory holding `username` and `password` files, mounted from a Secret.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credentials_dir: Option<PathBuf>,
    },
}

impl Default for Streams {
    fn default() -> Self {
        Streams::Http {
            max_body_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One Kafka topic per data class, and the pipeline's two topics of its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaTopics {
    /// Product metadata updates.
    pub product: String,
    /// Price updates.
    pub pricing: String,
    /// Inventory updates.
    pub inventory: String,
    /// Fulfillment-option updates.
    pub fulfillment: String,
    /// Change events that every serve worker consumes to invalidate its caches.
    pub changes: String,
    /// Rejected records with their reasons, replayable like the embedded dead-letter store.
    pub dead_letters: String,
}

/// Listen addresses. Each role opens only the listeners it serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Listen {
    /// The write API (ingest and standalone).
    pub ingest: SocketAddr,
    /// The read API (serve and standalone).
    pub serve: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz` (every role).
    pub metrics: SocketAddr,
}

/// Default ports: 8080 write API, 8081 read API, 9090 metrics and health.
pub const INGEST_PORT: u16 = 8080;
/// See [`INGEST_PORT`].
pub const SERVE_PORT: u16 = 8081;
/// See [`INGEST_PORT`].
pub const METRICS_PORT: u16 = 9090;

impl Default for Listen {
    fn default() -> Self {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        Self {
            ingest: any(INGEST_PORT),
            serve: any(SERVE_PORT),
            metrics: any(METRICS_PORT),
        }
    }
}

/// Write-path settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingest {
    /// Number of partitions updates are batched by.
    pub partitions: u32,
    /// Batching before a durable write.
    pub batch: Batch,
    /// Most updates queued before the write API answers 429.
    pub queue_capacity: usize,
    /// Retention of rejected records.
    pub dead_letter: DeadLetter,
}

impl Default for Ingest {
    fn default() -> Self {
        Self {
            partitions: 16,
            batch: Batch::default(),
            queue_capacity: 100_000,
            dead_letter: DeadLetter::default(),
        }
    }
}

/// Batching before a durable write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Batch {
    /// Most updates in one durable write.
    pub max_records: u32,
    /// Longest an update waits for its batch to fill.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            max_records: 1000,
            linger: Duration::from_millis(5),
        }
    }
}

/// Retention of rejected records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetter {
    /// How long a rejected record is kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Most rejected records kept; the oldest go first beyond it.
    pub max_records: u64,
}

impl Default for DeadLetter {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 86_400),
            max_records: 1_000_000,
        }
    }
}

/// Read-path settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Serve {
    /// Cache time-to-live per data class.
    pub cache_ttl: CacheTtls,
    /// Most entries held by the read caches before eviction.
    pub cache_max_entries: u64,
    /// Deadline of one read; a read past it fails fast rather than queueing.
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
    /// The pipeline's read-latency objectives in seconds, added to the read histogram's buckets
    /// so each one is a bucket boundary and its SLO is counted exactly (the operator renders them).
    #[serde(default)]
    pub latency_bounds_seconds: Vec<f64>,
}

impl Default for Serve {
    fn default() -> Self {
        Self {
            cache_ttl: CacheTtls::default(),
            cache_max_entries: 100_000,
            read_timeout: Duration::from_millis(100),
            latency_bounds_seconds: Vec::new(),
        }
    }
}

/// Cache time-to-live per data class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheTtls {
    /// Product metadata.
    #[serde(with = "humantime_serde")]
    pub product: Duration,
    /// Prices.
    #[serde(with = "humantime_serde")]
    pub pricing: Duration,
    /// Inventory.
    #[serde(with = "humantime_serde")]
    pub inventory: Duration,
    /// Fulfillment options.
    #[serde(with = "humantime_serde")]
    pub fulfillment: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            product: Duration::from_secs(600),
            pricing: Duration::from_secs(5),
            inventory: Duration::from_secs(2),
            fulfillment: Duration::from_secs(30),
        }
    }
}

/// Switches the operator flips under error-budget pressure.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Degradation {
    /// Pause non-critical work (enrichment, auxiliary attribute updates) while core product,
    /// pricing and inventory updates and all reads go on.
    pub pause_non_critical: bool,
}

/// Deliberate failures: a "bad version" on demand, so that error budgets, freezes and rollbacks
/// can be tested against real workers. All off by default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Percent of reads (0 to 100) answered `500 injected_fault` instead of their data.
    #[serde(default)]
    pub read_error_percent: f64,
}

impl Faults {
    /// Whether any fault is asked for.
    pub fn any(&self) -> bool {
        self.read_error_percent > 0.0
    }
}

/// Snapshot loading from files on the server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Snapshots {
    /// The only directory `POST /v1/snapshots?path=` may read from. Without it, `?path=` is
    /// refused and snapshots can only be uploaded, because rejected lines are dead-lettered
    /// with their content and would otherwise expose any file the process can read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_dir: Option<PathBuf>,
}

/// Bearer tokens of the HTTP APIs. Each is a file path (mounted from a Secret), never the token
/// itself, because this file is a ConfigMap. A scope without a file is open, as before.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// Token of `POST /v1/updates`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_token_file: Option<PathBuf>,
    /// Token of the admin routes: dead letters, snapshots, the degradation switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Token of the read API; reads are open without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token_file: Option<PathBuf>,
}

/// A configuration that cannot be used. The message always names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not match the schema; serde_yaml's message names the key.
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why, with the key's path.
        source: serde_yaml::Error,
    },
    /// A value parses but is out of range.
    #[error("config key `{key}`: {why}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// What is wrong.
        why: String,
    },
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Config = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Renders the config as YAML, as the operator writes it into the ConfigMap.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("the config always serializes")
    }

    /// Checks ranges that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, why: &str| {
            Err(ConfigError::Invalid {
                key: key.into(),
                why: why.into(),
            })
        };
        if self.ingest.partitions == 0 {
            return invalid("ingest.partitions", "must be at least 1");
        }
        if self.ingest.batch.max_records == 0 {
            return invalid("ingest.batch.maxRecords", "must be at least 1");
        }
        if self.ingest.queue_capacity == 0 {
            return invalid("ingest.queueCapacity", "must be at least 1");
        }
        let faulty = self.faults.read_error_percent;
        if !(0.0..=100.0).contains(&faulty) {
            return Err(ConfigError::Invalid {
                key: "faults.readErrorPercent".into(),
                why: format!("must be between 0 and 100, got {faulty}"),
            });
        }
        if self.serve.read_timeout.is_zero() {
            return invalid("serve.readTimeout", "must be positive");
        }
        if let Some(bad) = self
            .serve
            .latency_bounds_seconds
            .iter()
            .find(|b| !b.is_finite() || **b <= 0.0)
        {
            return Err(ConfigError::Invalid {
                key: "serve.latencyBoundsSeconds".into(),
                why: format!("every bound must be a positive number of seconds, got {bad}"),
            });
        }
        match &self.storage {
            Storage::Cassandra { contact_points, .. } if contact_points.is_empty() => {
                return invalid(
                    "storage.cassandra.contactPoints",
                    "must list at least one host:port",
                );
            }
            _ => {}
        }
        if matches!(self.storage, Storage::Cassandra { .. })
            && !matches!(self.streams, Streams::Kafka { .. })
        {
            return invalid(
                "storage.cassandra",
                "needs streams.kafka: serve workers learn of changes from its change topic",
            );
        }
        match &self.streams {
            Streams::Kafka {
                bootstrap_servers, ..
            } if bootstrap_servers.is_empty() => {
                return invalid(
                    "streams.kafka.bootstrapServers",
                    "must list at least one host:port",
                );
            }
            Streams::Http { max_body_bytes } if *max_body_bytes == 0 => {
                return invalid("streams.http.maxBodyBytes", "must be positive");
            }
            _ => {}
        }
        if self
            .snapshots
            .import_dir
            .as_ref()
            .is_some_and(|d| !d.is_absolute())
        {
            return invalid("snapshots.importDir", "must be an absolute path");
        }
        for (key, file) in [
            ("auth.ingestTokenFile", &self.auth.ingest_token_file),
            ("auth.adminTokenFile", &self.auth.admin_token_file),
            ("auth.readTokenFile", &self.auth.read_token_file),
        ] {
            if file.as_ref().is_some_and(|f| !f.is_absolute()) {
                return invalid(key, "must be an absolute path");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_yaml() {
        let config = Config::default();
        assert_eq!(Config::parse(&config.to_yaml()).unwrap(), config);
    }

    #[test]
    fn unset_later_sections_are_not_rendered() {
        let yaml = Config::default().to_yaml();
        assert!(
            !yaml.contains("snapshots") && !yaml.contains("auth"),
            "{yaml}"
        );
    }

    #[test]
    fn faults_are_off_unrendered_by_default_and_bounded() {
        assert!(!Config::default().to_yaml().contains("faults"));
        let config = Config::parse("faults: {readErrorPercent: 5}\n").unwrap();
        assert!(config.faults.any());
        assert_eq!(Config::parse(&config.to_yaml()).unwrap(), config);
        for bad in ["-1", "100.5", ".nan"] {
            let err = Config::parse(&format!("faults: {{readErrorPercent: {bad}}}\n")).unwrap_err();
            assert!(
                err.to_string().contains("faults.readErrorPercent"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("ingest:\n  partitions: 4\n  batchSize: 3\n").unwrap_err();
        assert!(err.to_string().contains("batchSize"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = Config::parse("ingest:\n  partitions: many\n").unwrap_err();
        assert!(err.to_string().contains("ingest.partitions"), "{err}");
    }

    #[test]
    fn out_of_range_names_the_key() {
        let err = Config::parse("serve:\n  readTimeout: 0s\n  cacheMaxEntries: 1\n  cacheTtl: {product: 1s, pricing: 1s, inventory: 1s, fulfillment: 1s}\n").unwrap_err();
        assert!(err.to_string().contains("serve.readTimeout"), "{err}");
    }

    #[test]
    fn import_dir_and_token_files_parse_and_must_be_absolute() {
        let config = Config::parse(
            "snapshots: {importDir: /import}\nauth: {ingestTokenFile: /t/ingest, adminTokenFile: /t/admin}\n",
        )
        .unwrap();
        assert_eq!(config.snapshots.import_dir, Some(PathBuf::from("/import")));
        assert_eq!(config.auth.read_token_file, None);
        assert_eq!(Config::parse(&config.to_yaml()).unwrap(), config);
        let err = Config::parse("snapshots: {importDir: import}\n").unwrap_err();
        assert!(err.to_string().contains("snapshots.importDir"), "{err}");
        let err = Config::parse("auth: {adminTokenFile: token}\n").unwrap_err();
        assert!(err.to_string().contains("auth.adminTokenFile"), "{err}");
        // The token itself has no key: a typo'd inline token fails instead of being used.
        let err = Config::parse("auth: {adminToken: s3cret}\n").unwrap_err();
        assert!(err.to_string().contains("adminToken"), "{err}");
    }

    #[test]
    fn cassandra_needs_kafka_and_kafka_names_its_own_topics() {
        let cassandra =
            "storage: !cassandra {contactPoints: ['c:9042'], keyspace: k, consistency: ONE}\n";
        let err = Config::parse(cassandra).unwrap_err();
        assert!(err.to_string().contains("storage.cassandra"), "{err}");
        let kafka = "streams: !kafka {bootstrapServers: ['k:9092'], consumerGroup: g, topics: {product: p, pricing: q, inventory: i, fulfillment: f, changes: c, deadLetters: d}}\n";
        let config = Config::parse(&format!("{cassandra}{kafka}")).unwrap();
        assert_eq!(Config::parse(&config.to_yaml()).unwrap(), config);
        let err = Config::parse(&kafka.replace(", deadLetters: d", "")).unwrap_err();
        assert!(err.to_string().contains("deadLetters"), "{err}");
    }

    #[test]
    fn role_parses_and_rejects() {
        assert_eq!("standalone".parse::<Role>().unwrap(), Role::Standalone);
        assert!(
            "writer"
                .parse::<Role>()
                .unwrap_err()
                .to_string()
                .contains("role")
        );
    }
}
