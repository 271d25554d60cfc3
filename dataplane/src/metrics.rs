//! The SLI metrics, on one explicit registry. Names, labels and meaning are the contract with the
//! operator's SLO engine and dashboards; `docs/metrics.md` documents each one.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use tailwarden_contract::backend::{Backend, Reachability};

use crate::config::Role;

/// `class`, `outcome` of an ingested record.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// Data class, or `unknown` when the record is unreadable.
    pub class: &'static str,
    /// accepted | rejected | deduplicated | stale | deferred
    pub outcome: &'static str,
}

/// `class` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// Data class or query class.
    pub class: &'static str,
}

/// `class`, `code` of a read request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Query class: product, pricing, inventory, fulfillment, productDetail, category, brand,
    /// attribute.
    pub class: &'static str,
    /// HTTP status code.
    pub code: u16,
}

/// `code` of a write-API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// HTTP status code.
    pub code: u16,
}

/// `layer` of a cache.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayerLabel {
    /// response | data
    pub layer: &'static str,
}

/// `topic`, `partition` of a consumed Kafka partition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Topic name (from the config: a bounded set).
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

/// `topic` of a Kafka topic produced to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name (from the config: a bounded set).
    pub topic: String,
}

/// `role`, `backend`, `state` of a backend's reachability (`tailwarden_backend_state`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendStateLabels {
    /// The worker's role.
    pub role: &'static str,
    /// cassandra | kafka
    pub backend: &'static str,
    /// One of `Reachability::as_str()`.
    pub state: &'static str,
}

/// Result of a Kafka offset commit.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CommitResult {
    /// Committed (or nothing new to commit).
    Ok,
    /// The broker refused or the request failed; the records are consumed again after a
    /// rebalance or restart (idempotent writes make that harmless).
    Error,
}

impl EncodeLabelValue for CommitResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            CommitResult::Ok => "ok",
            CommitResult::Error => "error",
        })
    }
}

/// `result` of a Kafka offset commit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabel {
    /// ok | error
    pub result: CommitResult,
}

/// What a consumer-group rebalance did to this consumer.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RebalanceKind {
    /// Partitions assigned.
    Assign,
    /// Partitions revoked.
    Revoke,
    /// The rebalance failed.
    Error,
}

impl EncodeLabelValue for RebalanceKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            RebalanceKind::Assign => "assign",
            RebalanceKind::Revoke => "revoke",
            RebalanceKind::Error => "error",
        })
    }
}

/// `kind` of a rebalance.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RebalanceLabel {
    /// assign | revoke | error
    pub kind: RebalanceKind,
}

/// Every metric the data plane exports.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    /// Records by class and outcome.
    pub ingest_records: Family<RecordLabels, Counter>,
    /// Write-API requests by status code.
    pub ingest_requests: Family<CodeLabel, Counter>,
    /// Event time to visible on the read path, seconds.
    pub ingest_lag: Family<ClassLabel, Histogram>,
    /// Newest event time made visible, unix seconds, per class.
    pub ingest_watermark: Family<ClassLabel, Gauge<f64, AtomicU64>>,
    /// Newest event time received by the write API, unix seconds, per class: above the
    /// watermark, the class has events waiting; otherwise it is idle.
    pub ingest_received: Family<ClassLabel, Gauge<f64, AtomicU64>>,
    /// Records admitted and not yet durable.
    pub ingest_queue_depth: Gauge,
    /// Admission limit on queued records.
    pub ingest_queue_capacity: Gauge,
    /// Records of write-API writes refused with 429 (estimated from the mean batch when refused
    /// before the body is read).
    pub ingest_refused_records: Counter,
    /// The Retry-After of a 429: refused records per second times this is the backlog producers
    /// hold.
    pub ingest_retry_after: Gauge,
    /// Deferred non-critical updates waiting for `pauseNonCritical` to clear.
    pub ingest_deferred: Gauge,
    /// Unknown fields seen (kept or ignored per the unknown-field policy).
    pub ingest_unknown_fields: Family<ClassLabel, Counter>,
    /// Durable commit duration, seconds.
    pub ingest_commit_duration: Histogram,
    /// Logical updates that reached the store (accepted or stale, not rejected/deduplicated).
    pub logical_updates: Counter,
    /// Physical key writes to the store.
    pub physical_writes: Counter,
    /// Read latency by query class, seconds.
    pub read_duration: Family<ClassLabel, Histogram, ReadBuckets>,
    /// Read requests by query class and status code.
    pub read_requests: Family<RequestLabels, Counter>,
    /// Cache hits by layer.
    pub cache_hits: Family<LayerLabel, Counter>,
    /// Cache misses by layer.
    pub cache_misses: Family<LayerLabel, Counter>,
    /// Cache evictions by layer (capacity, not TTL or invalidation).
    pub cache_evictions: Family<LayerLabel, Counter>,
    /// Targeted invalidations received from the change feed.
    pub cache_invalidations: Counter,
    /// Records dead-lettered by class.
    pub dead_letters: Family<ClassLabel, Counter>,
    /// Records currently in the dead-letter store.
    pub dead_letters_stored: Gauge,
    /// Active snapshot version (0 = none).
    pub snapshot_version: Gauge,
    /// Completion time of the active snapshot, unix seconds.
    pub snapshot_timestamp: Gauge,
    /// Kafka: records not yet committed by the consumer group, per partition.
    pub kafka_lag_records: Family<PartitionLabels, Gauge>,
    /// Kafka: age of the oldest uncommitted record, seconds, per partition (0 without backlog).
    pub kafka_lag_seconds: Family<PartitionLabels, Gauge<f64, AtomicU64>>,
    /// Kafka: offset commits by result.
    pub kafka_offset_commits: Family<CommitLabel, Counter>,
    /// Kafka: consumer-group rebalances seen by this consumer, by kind.
    pub kafka_rebalances: Family<RebalanceLabel, Counter>,
    /// Kafka: records that could not be produced (not acknowledged), by topic.
    pub kafka_producer_errors: Family<TopicLabel, Counter>,
    /// Kafka: partitions of each consumed topic, as the broker reports them: ingest replicas
    /// beyond their sum have nothing to consume.
    pub kafka_topic_partitions: Family<TopicLabel, Gauge>,
    /// The outcome of the last contact with each backend the worker uses, one series per
    /// (role, backend) whose `state` label names it: the operator counts workers per state
    /// without reading their logs. Set through [`Metrics::set_backend_state`].
    pub backend_state: Family<BackendStateLabels, Gauge>,
    /// The state each `backend_state` series shows now, to remove it when the state changes.
    backend_states: Mutex<BTreeMap<(&'static str, Backend), Reachability>>,
}

/// Read-latency buckets: fine from 0.5 ms to 1 s so that P95 and P99 interpolate well.
/// Latency SLOs are counted at bucket bounds, so the common thresholds (80, 120, 150, 200 ms: the
/// reference P95 and P99 among them) must be bounds.
pub const READ_BUCKETS: [f64; 24] = [
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
    0.05, 0.075, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
];

/// Freshness buckets: from 1 ms to the paper's 10-minute objective and beyond.
pub const LAG_BUCKETS: [f64; 20] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1200.0, 3600.0,
];

/// The read histogram's bounds: [`READ_BUCKETS`] plus the pipeline's own latency objectives
/// (`serve.latencyBoundsSeconds`), so every configured bound is a bucket boundary and its latency
/// SLO can be counted exactly.
#[derive(Clone, Debug)]
pub struct ReadBuckets(Arc<[f64]>);

impl ReadBuckets {
    /// The default bounds with `extra` added, sorted, without duplicates; non-finite or
    /// non-positive values (which config validation refuses) are ignored.
    pub fn with(extra: &[f64]) -> Self {
        let mut all: Vec<f64> = READ_BUCKETS
            .iter()
            .chain(extra.iter().filter(|b| b.is_finite() && **b > 0.0))
            .copied()
            .collect();
        all.sort_by(f64::total_cmp);
        all.dedup();
        Self(all.into())
    }
}

impl MetricConstructor<Histogram> for ReadBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `tailwarden_` prefix, with the default read
    /// buckets.
    pub fn new() -> Self {
        Self::with_read_bounds(&[])
    }

    /// Like [`Metrics::new`], with `bounds` (seconds) added to the read histogram's buckets.
    pub fn with_read_bounds(bounds: &[f64]) -> Self {
        let mut registry = Registry::with_prefix("tailwarden");
        let lag_hist = || Histogram::new(LAG_BUCKETS);
        let m = Self {
            ingest_records: Family::default(),
            ingest_requests: Family::default(),
            ingest_lag: Family::new_with_constructor(lag_hist),
            ingest_watermark: Family::default(),
            ingest_received: Family::default(),
            ingest_queue_depth: Gauge::default(),
            ingest_queue_capacity: Gauge::default(),
            ingest_refused_records: Counter::default(),
            ingest_retry_after: Gauge::default(),
            ingest_deferred: Gauge::default(),
            ingest_unknown_fields: Family::default(),
            ingest_commit_duration: Histogram::new(READ_BUCKETS),
            logical_updates: Counter::default(),
            physical_writes: Counter::default(),
            read_duration: Family::new_with_constructor(ReadBuckets::with(bounds)),
            read_requests: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_evictions: Family::default(),
            cache_invalidations: Counter::default(),
            dead_letters: Family::default(),
            dead_letters_stored: Gauge::default(),
            snapshot_version: Gauge::default(),
            snapshot_timestamp: Gauge::default(),
            kafka_lag_records: Family::default(),
            kafka_lag_seconds: Family::default(),
            kafka_offset_commits: Family::default(),
            kafka_rebalances: Family::default(),
            kafka_producer_errors: Family::default(),
            kafka_topic_partitions: Family::default(),
            backend_state: Family::default(),
            backend_states: Mutex::default(),
            registry: Registry::default(),
        };
        // prometheus-client appends `_total` to counters and the unit to names.
        registry.register(
            "ingest_records",
            "Ingested records by class and outcome",
            m.ingest_records.clone(),
        );
        registry.register(
            "ingest_requests",
            "Write-API requests by status code",
            m.ingest_requests.clone(),
        );
        registry.register(
            "ingest_lag_seconds",
            "Event time to visible on the read path",
            m.ingest_lag.clone(),
        );
        registry.register(
            "ingest_watermark_timestamp_seconds",
            "Newest event time made visible, per class",
            m.ingest_watermark.clone(),
        );
        registry.register(
            "ingest_received_timestamp_seconds",
            "Newest event time received by the write API, per class",
            m.ingest_received.clone(),
        );
        registry.register(
            "ingest_queue_depth_records",
            "Records admitted and not yet durable",
            m.ingest_queue_depth.clone(),
        );
        registry.register(
            "ingest_queue_capacity_records",
            "Most records admitted before 429",
            m.ingest_queue_capacity.clone(),
        );
        registry.register(
            "ingest_refused_records",
            "Records of write-API writes refused with 429 (the mean batch when refused unread)",
            m.ingest_refused_records.clone(),
        );
        registry.register(
            "ingest_retry_after_seconds",
            "Retry-After of a 429",
            m.ingest_retry_after.clone(),
        );
        registry.register(
            "ingest_deferred_records",
            "Non-critical updates deferred by pauseNonCritical",
            m.ingest_deferred.clone(),
        );
        registry.register(
            "ingest_unknown_fields",
            "Unknown record fields seen (payload ones are kept)",
            m.ingest_unknown_fields.clone(),
        );
        registry.register(
            "ingest_commit_duration_seconds",
            "Durable batch commit (write + fdatasync)",
            m.ingest_commit_duration.clone(),
        );
        registry.register(
            "store_logical_updates",
            "Updates applied to the store (write-amplification numerator's denominator)",
            m.logical_updates.clone(),
        );
        registry.register(
            "store_physical_writes",
            "Physical key writes to the store",
            m.physical_writes.clone(),
        );
        registry.register(
            "read_duration_seconds",
            "Read latency by query class",
            m.read_duration.clone(),
        );
        registry.register(
            "read_requests",
            "Read requests by query class and status code",
            m.read_requests.clone(),
        );
        registry.register("cache_hits", "Cache hits by layer", m.cache_hits.clone());
        registry.register(
            "cache_misses",
            "Cache misses by layer",
            m.cache_misses.clone(),
        );
        registry.register(
            "cache_evictions",
            "Entries evicted for capacity by layer",
            m.cache_evictions.clone(),
        );
        registry.register(
            "cache_invalidations",
            "Targeted invalidations from ingest change events",
            m.cache_invalidations.clone(),
        );
        registry.register(
            "deadletter_records",
            "Records dead-lettered by class",
            m.dead_letters.clone(),
        );
        registry.register(
            "deadletter_stored_records",
            "Records currently in the dead-letter store",
            m.dead_letters_stored.clone(),
        );
        registry.register(
            "snapshot_active_version",
            "Active baseline snapshot version (0 = none)",
            m.snapshot_version.clone(),
        );
        registry.register(
            "snapshot_active_timestamp_seconds",
            "Completion time of the active snapshot",
            m.snapshot_timestamp.clone(),
        );
        registry.register(
            "kafka_consumer_lag_records",
            "Records of a partition not yet committed by the consumer group",
            m.kafka_lag_records.clone(),
        );
        registry.register(
            "kafka_consumer_lag_seconds",
            "Age of a partition's oldest uncommitted record (0 without backlog)",
            m.kafka_lag_seconds.clone(),
        );
        registry.register(
            "kafka_offset_commits",
            "Consumer offset commits by result",
            m.kafka_offset_commits.clone(),
        );
        registry.register(
            "kafka_rebalances",
            "Consumer-group rebalances by kind",
            m.kafka_rebalances.clone(),
        );
        registry.register(
            "kafka_producer_errors",
            "Records not acknowledged by Kafka, by topic",
            m.kafka_producer_errors.clone(),
        );
        registry.register(
            "kafka_topic_partitions",
            "Partitions of a consumed topic, as the broker reports them",
            m.kafka_topic_partitions.clone(),
        );
        registry.register(
            tailwarden_contract::backend::STATE_METRIC,
            "Outcome of the last contact with a backend, named by state (one series per backend)",
            m.backend_state.clone(),
        );
        Self { registry, ..m }
    }

    /// Shows `state` as the one `backend_state` series of (`role`, `backend`), removing the
    /// series of the previous state. Returns the previous state.
    pub fn set_backend_state(
        &self,
        role: Role,
        backend: Backend,
        state: Reachability,
    ) -> Option<Reachability> {
        let labels = |state: Reachability| BackendStateLabels {
            role: role.as_str(),
            backend: backend.as_str(),
            state: state.as_str(),
        };
        let mut states = self.backend_states.lock();
        let before = states.insert((role.as_str(), backend), state);
        if before != Some(state) {
            if let Some(old) = before {
                self.backend_state.remove(&labels(old));
            }
            self.backend_state.get_or_create(&labels(state)).set(1);
        }
        before
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_latency_bounds_are_bucket_boundaries() {
        // 250 ms is no default bound: without it, a `p99: 250ms` objective had no bucket to count.
        let m = Metrics::with_read_bounds(&[0.25, 0.12, f64::NAN]);
        m.read_duration
            .get_or_create(&ClassLabel { class: "product" })
            .observe(0.2);
        let text = m.encode();
        assert!(
            text.contains(
                "tailwarden_read_duration_seconds_bucket{le=\"0.25\",class=\"product\"} 1"
            ),
            "{text}"
        );
        let read_bucket = "tailwarden_read_duration_seconds_bucket{le=\"0.12\"";
        assert_eq!(
            text.matches(read_bucket).count(),
            1,
            "a default bound is not doubled"
        );
        assert!(!Metrics::new().encode().contains("le=\"0.25\""));
    }

    /// The `backend_state` series of `text`, sorted: a Family encodes in hash-map order.
    fn backend_series(text: &str) -> Vec<&str> {
        let mut series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tailwarden_backend_state{"))
            .collect();
        series.sort_unstable();
        series
    }

    #[test]
    fn one_backend_state_series_per_role_and_backend() {
        let m = Metrics::new();
        assert!(
            backend_series(&m.encode()).is_empty(),
            "none before a contact"
        );
        let cassandra =
            |m: &Metrics, state| m.set_backend_state(Role::Serve, Backend::Cassandra, state);
        assert_eq!(cassandra(&m, Reachability::Unreachable), None);
        assert_eq!(
            m.set_backend_state(Role::Serve, Backend::Kafka, Reachability::Reachable),
            None
        );
        assert_eq!(
            cassandra(&m, Reachability::Unreachable),
            Some(Reachability::Unreachable)
        );
        assert_eq!(
            backend_series(&m.encode()),
            [
                "tailwarden_backend_state{role=\"serve\",backend=\"cassandra\",state=\"unreachable\"} 1",
                "tailwarden_backend_state{role=\"serve\",backend=\"kafka\",state=\"reachable\"} 1",
            ]
            .as_slice()
        );
        assert_eq!(
            cassandra(&m, Reachability::Reachable),
            Some(Reachability::Unreachable)
        );
        let text = m.encode();
        let series = backend_series(&text);
        assert_eq!(series.len(), 2, "the unreachable series is removed: {text}");
        assert!(series.contains(
            &"tailwarden_backend_state{role=\"serve\",backend=\"cassandra\",state=\"reachable\"} 1"
        ));
        assert!(!text.contains("unreachable"), "{text}");
    }

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::new();
        m.ingest_records
            .get_or_create(&RecordLabels {
                class: "pricing",
                outcome: "accepted",
            })
            .inc();
        m.read_duration
            .get_or_create(&ClassLabel {
                class: "productDetail",
            })
            .observe(0.001);
        m.kafka_lag_records
            .get_or_create(&PartitionLabels {
                topic: "p.pricing".into(),
                partition: 3,
            })
            .set(7);
        m.kafka_offset_commits
            .get_or_create(&CommitLabel {
                result: CommitResult::Ok,
            })
            .inc();
        m.kafka_rebalances
            .get_or_create(&RebalanceLabel {
                kind: RebalanceKind::Revoke,
            })
            .inc();
        let text = m.encode();
        for name in [
            "tailwarden_ingest_records_total{class=\"pricing\",outcome=\"accepted\"} 1",
            "tailwarden_read_duration_seconds_bucket{le=\"0.0005\",class=\"productDetail\"}",
            "tailwarden_store_physical_writes_total",
            "tailwarden_snapshot_active_timestamp_seconds",
            "tailwarden_ingest_queue_depth_records",
            "tailwarden_kafka_consumer_lag_records{topic=\"p.pricing\",partition=\"3\"} 7",
            "tailwarden_kafka_offset_commits_total{result=\"ok\"} 1",
            "tailwarden_kafka_rebalances_total{kind=\"revoke\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
