//! The desired state of a retail data pipeline, as users write it.
//!
//! Every field carries a doc comment because `kubectl explain` shows it, and every rule that types
//! alone cannot express is a CEL rule in the schema, so that the API server rejects a bad spec on
//! `kubectl apply` with a message that names the field.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::RetailPipelineStatus;

/// Go-style duration up to hours, e.g. `250ms`, `5s`, `10m`, `1h30m`. CEL's `duration()` parses it.
pub const SHORT_DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";
/// A long window for budgets, in whole days or weeks, e.g. `30d` or `4w`.
pub const WINDOW_PATTERN: &str = r"^[1-9][0-9]*(d|w)$";

/// A retail data pipeline: ingest and serve workers, their storage and streams, and the SLOs that
/// the operator enforces through error budgets.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tailwarden.io",
    version = "v1alpha1",
    kind = "RetailPipeline",
    doc = "A retail data pipeline managed by Tailwarden: data-plane workers, storage, streams and SLOs.",
    plural = "retailpipelines",
    validation = Rule::new("self.metadata.name.size() <= 40 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS label of at most 40 characters (children are named <name>-standalone, <name>-dataplane, ...)"),
    shortname = "rp",
    namespaced,
    status = "RetailPipelineStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Ingest","type":"string","jsonPath":".status.ingest.summary"}"#,
    printcolumn = r#"{"name":"Serve","type":"string","jsonPath":".status.serve.summary"}"#,
    printcolumn = r#"{"name":"P99","type":"string","jsonPath":".status.slis.readP99"}"#,
    printcolumn = r#"{"name":"Budget","type":"string","jsonPath":".status.budget.remaining"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.storage) || !has(self.storage.cassandra) || (has(self.streams) && has(self.streams.kafka))").message("storage.cassandra needs streams.kafka: serve workers learn of changes from its change topic").field_path(".streams"))]
pub struct RetailPipelineSpec {
    /// The data-plane workers to run. Changing `version` is a rollout, gated by the error budget.
    pub dataplane: DataplaneSpec,
    /// Where the pipeline keeps its state. `embedded` (the default) runs one standalone worker on a
    /// persistent volume; `cassandra` runs separately scaled ingest and serve workers.
    #[serde(default)]
    pub storage: StorageSpec,
    /// How updates arrive. `http` (the default) is the bulk HTTP write API; `kafka` consumes topics.
    #[serde(default)]
    pub streams: StreamsSpec,
    /// The ingest (write) workers.
    #[serde(default)]
    pub ingest: IngestSpec,
    /// The serve (read) workers.
    #[serde(default)]
    pub serve: ServeSpec,
    /// Service-level objectives. Defaults are the reference design's SLO table.
    #[serde(default)]
    pub slos: SloSpec,
    /// What the operator does as the error budget runs out.
    #[serde(default)]
    pub error_budget_policy: ErrorBudgetPolicy,
    /// How the operator scales ingest and serve from the SLIs.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Where the operator reads this pipeline's SLIs. Unset means the operator's global default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
}

/// The data-plane image and the version to run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneSpec {
    /// Image repository without a tag, e.g. `docker.io/tailwarden/tailwarden-dataplane` (scripts/build-images.sh).
    #[schemars(regex(pattern = r"^([a-z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._/-][a-z0-9]+)*$"))]
    pub image: String,
    /// Image tag to run. Changing it is a rollout, frozen while the error budget is exhausted.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub version: String,
    /// When the kubelet pulls the image.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,
    /// Bearer tokens of the workers' HTTP APIs, each from a Secret mounted into the pods. An
    /// API without a token is unauthenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<DataplaneAuth>,
    /// Deliberate failures, to test what enforces the SLOs (a "bad version" on demand). While
    /// set, the workers start with `--allow-fault-injection`; never set it in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<FaultInjection>,
}

/// Deliberate failures of the workers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FaultInjection {
    /// Percent of reads answered `500 injected_fault`, 0 to 100.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub read_error_percent: f64,
}

/// Bearer tokens of the data plane's HTTP APIs. Only the mounted file's path reaches the
/// workers' config (a ConfigMap); the token stays in its Secret.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DataplaneAuth {
    /// Token of the bulk write API (`POST /v1/updates`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest_token_secret_ref: Option<SecretKeyRef>,
    /// Token of the admin routes: dead letters, snapshots, the degradation switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_secret_ref: Option<SecretKeyRef>,
    /// Token of the read API. Reads are open without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token_secret_ref: Option<SecretKeyRef>,
}

/// One key of a Secret in the pipeline's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: SecretName,
    /// Key of the token in the Secret's data.
    #[schemars(regex(pattern = r"^[-._a-zA-Z0-9]+$"), length(max = 253))]
    pub key: String,
}

/// When the kubelet pulls the image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull only when the image is not on the node.
    #[default]
    IfNotPresent,
    /// Pull on every start.
    Always,
    /// Never pull.
    Never,
}

/// Exactly one storage backend.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.embedded), has(self.cassandra)].filter(x, x).size() == 1").message("exactly one storage backend must be set: embedded or cassandra").reason(Reason::FieldValueInvalid))]
pub struct StorageSpec {
    /// One standalone worker with an embedded store on a persistent volume. Horizontal scaling
    /// needs a distributed backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStorage>,
    /// Apache Cassandra or ScyllaDB: ingest and serve run as separately scaled Deployments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<CassandraStorage>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            embedded: Some(EmbeddedStorage::default()),
            cassandra: None,
        }
    }
}

/// The embedded single-node store.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedStorage {
    /// Size of the persistent volume, a Kubernetes quantity such as `10Gi`.
    #[serde(default = "default_volume_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub volume_size: String,
    /// StorageClass of the volume. Unset uses the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for EmbeddedStorage {
    fn default() -> Self {
        Self {
            volume_size: default_volume_size(),
            storage_class_name: None,
        }
    }
}

fn default_volume_size() -> String {
    "10Gi".into()
}

/// Connection to an Apache Cassandra or ScyllaDB cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CassandraStorage {
    /// Contact points as `host:port`.
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"), length(max = 253))
    )]
    pub contact_points: Vec<String>,
    /// Keyspace that holds the pipeline's tables.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,47}$"))]
    pub keyspace: String,
    /// Consistency level of reads and writes.
    #[serde(default)]
    pub consistency: Consistency,
    /// Secret with the credentials (keys `username` and `password`). Never copied into status or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// CQL consistency level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Consistency {
    /// One replica.
    One,
    /// One replica in the local data centre.
    LocalOne,
    /// A majority of replicas.
    Quorum,
    /// A majority of replicas in the local data centre.
    #[default]
    LocalQuorum,
    /// Every replica.
    All,
}

/// A reference to a Secret in the pipeline's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: SecretName,
}

/// The name of a Secret, validated as the API server names objects (a DNS subdomain).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretName(
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    String,
);

impl SecretName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretName {
    fn from(name: &str) -> Self {
        Self(name.to_owned())
    }
}

/// Exactly one source of updates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("[has(self.http), has(self.kafka)].filter(x, x).size() == 1").message("exactly one stream source must be set: http or kafka"))]
pub struct StreamsSpec {
    /// The bulk HTTP write API of the ingest workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStreams>,
    /// Apache Kafka topics, one per data class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaStreams>,
}

impl Default for StreamsSpec {
    fn default() -> Self {
        Self {
            http: Some(HttpStreams::default()),
            kafka: None,
        }
    }
}

/// The bulk HTTP write API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpStreams {
    /// Largest accepted request body in bytes.
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = 1024, max = 268435456))]
    pub max_body_bytes: i64,
}

impl Default for HttpStreams {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
        }
    }
}

fn default_max_body_bytes() -> i64 {
    16 * 1024 * 1024
}

/// Apache Kafka as the source of updates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStreams {
    /// Bootstrap servers as `host:port`.
    #[schemars(
        length(min = 1, max = 64),
        inner(regex(pattern = r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"), length(max = 253))
    )]
    pub bootstrap_servers: Vec<String>,
    /// Topic per data class.
    pub topics: KafkaTopics,
    /// Consumer group of the ingest workers.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub consumer_group: String,
    /// Secret with SASL credentials (keys `username` and `password`). Never copied into status or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// One Kafka topic per data class, and the pipeline's change and dead-letter topics. Topics
/// and their partition counts belong to the Kafka administrator: the workers never create them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopics {
    /// Topic of product metadata updates.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub product: String,
    /// Topic of price updates.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub pricing: String,
    /// Topic of inventory updates.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub inventory: String,
    /// Topic of fulfillment-option updates.
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub fulfillment: String,
    /// Topic of change events that every serve worker consumes to invalidate its caches.
    /// Default: `<pipeline name>.changes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub changes: Option<String>,
    /// Topic of rejected records with their reasons. Default: `<pipeline name>.dead-letters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,249}$"))]
    pub dead_letters: Option<String>,
}

/// A replica range for one role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max").field_path(".min"))]
pub struct ReplicaRange {
    /// Fewest replicas the autoscaler may run.
    #[schemars(range(min = 1, max = 1000))]
    pub min: i32,
    /// Most replicas the autoscaler may run.
    #[schemars(range(min = 1, max = 1000))]
    pub max: i32,
}

/// The ingest (write) workers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestSpec {
    /// Replica range of the ingest Deployment (distributed backends only).
    #[serde(default = "default_ingest_replicas")]
    pub replicas: ReplicaRange,
    /// Number of partitions updates are batched by.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 4096))]
    pub partitions: i32,
    /// How updates are batched before a durable write.
    #[serde(default)]
    pub batch: BatchSpec,
    /// What happens to records that fail validation.
    #[serde(default)]
    pub dead_letter: DeadLetterPolicy,
    /// CPU and memory of each ingest worker. Unset uses the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for IngestSpec {
    fn default() -> Self {
        Self {
            replicas: default_ingest_replicas(),
            partitions: default_partitions(),
            batch: BatchSpec::default(),
            dead_letter: DeadLetterPolicy::default(),
            resources: None,
        }
    }
}

fn default_ingest_replicas() -> ReplicaRange {
    ReplicaRange { min: 1, max: 10 }
}

fn default_partitions() -> i32 {
    16
}

/// Partition-aware batching of updates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Most updates in one durable write.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_records: i32,
    /// Longest an update waits for its batch to fill, e.g. `5ms`.
    #[serde(default = "default_linger")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) <= duration('10s')").message("linger must be at most 10s"))]
    pub linger: String,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: default_batch_size(),
            linger: default_linger(),
        }
    }
}

fn default_batch_size() -> i32 {
    1000
}

fn default_linger() -> String {
    "5ms".into()
}

/// Retention of rejected records, kept with their reason so they can be listed and replayed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPolicy {
    /// How long a rejected record is kept, e.g. `168h`.
    #[serde(default = "default_dead_letter_retention")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub retention: String,
    /// Most rejected records kept; the oldest are dropped first beyond it.
    #[serde(default = "default_dead_letter_max")]
    #[schemars(range(min = 1, max = 1000000000))]
    pub max_records: i64,
}

impl Default for DeadLetterPolicy {
    fn default() -> Self {
        Self {
            retention: default_dead_letter_retention(),
            max_records: default_dead_letter_max(),
        }
    }
}

fn default_dead_letter_retention() -> String {
    "168h".into()
}

fn default_dead_letter_max() -> i64 {
    1_000_000
}

/// The serve (read) workers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServeSpec {
    /// Replica range of the serve Deployment (distributed backends only).
    #[serde(default = "default_serve_replicas")]
    pub replicas: ReplicaRange,
    /// Cache time-to-live per data class: short for pricing and inventory, long for metadata.
    #[serde(default)]
    pub cache_ttl: CacheTtls,
    /// Most entries held by the read caches before eviction.
    #[serde(default = "default_cache_entries")]
    #[schemars(range(min = 0, max = 100000000))]
    pub cache_max_entries: i64,
    /// CPU and memory of each serve worker (and of the standalone worker). Unset uses the
    /// operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl Default for ServeSpec {
    fn default() -> Self {
        Self {
            replicas: default_serve_replicas(),
            cache_ttl: CacheTtls::default(),
            cache_max_entries: default_cache_entries(),
            resources: None,
        }
    }
}

fn default_serve_replicas() -> ReplicaRange {
    ReplicaRange { min: 2, max: 20 }
}

fn default_cache_entries() -> i64 {
    100_000
}

/// Cache time-to-live per data class, as durations such as `2s` or `10m`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CacheTtls {
    /// Product metadata, which changes rarely.
    #[serde(default = "default_ttl_product")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub product: String,
    /// Prices, which change often.
    #[serde(default = "default_ttl_pricing")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub pricing: String,
    /// Inventory, which changes most often.
    #[serde(default = "default_ttl_inventory")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub inventory: String,
    /// Fulfillment options.
    #[serde(default = "default_ttl_fulfillment")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub fulfillment: String,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            product: default_ttl_product(),
            pricing: default_ttl_pricing(),
            inventory: default_ttl_inventory(),
            fulfillment: default_ttl_fulfillment(),
        }
    }
}

fn default_ttl_product() -> String {
    "10m".into()
}
fn default_ttl_pricing() -> String {
    "5s".into()
}
fn default_ttl_inventory() -> String {
    "2s".into()
}
fn default_ttl_fulfillment() -> String {
    "30s".into()
}

/// Service-level objectives, after the reference design's SLO table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    /// Read-latency objectives per query class.
    #[serde(default = "default_read_latency")]
    #[schemars(length(min = 1, max = 5))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["queryClass".into()]))]
    pub read_latency: Vec<ReadLatencySlo>,
    /// Freshness: how far the event-time watermark may lag behind now.
    #[serde(default)]
    pub freshness: FreshnessSlo,
    /// Availability: the share of successful (non-5xx) reads.
    #[serde(default)]
    pub availability: AvailabilitySlo,
    /// Correctness: the share of records rejected or dead-lettered.
    #[serde(default)]
    pub correctness: CorrectnessSlo,
    /// How the generated burn-rate alerts fire.
    #[serde(default)]
    pub alerting: AlertingSpec,
}

impl Default for SloSpec {
    fn default() -> Self {
        Self {
            read_latency: default_read_latency(),
            freshness: FreshnessSlo::default(),
            availability: AvailabilitySlo::default(),
            correctness: CorrectnessSlo::default(),
            alerting: AlertingSpec::default(),
        }
    }
}

/// How the generated burn-rate alerts fire.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AlertingSpec {
    /// How long each burn-rate alert's condition must hold (`for`) before it fires. `None` (the
    /// default, as in Sloth and the SRE workbook): fires at the first evaluation at which both
    /// windows burn; the short window of each pair already filters brief spikes, so a short
    /// episode it let through can still page. `ShortWindowHalf` (as in Pyrra): holds each alert
    /// for half its short window, in whole minutes and at least 1m (2m, 15m, 1h and 3h for a
    /// 30-day window); alerts fire that much later, and episodes shorter than the hold never
    /// fire. See docs/slo-rules.md.
    #[serde(default)]
    pub holds: AlertHolds,
}

/// How long burn-rate alerts wait before firing; see `AlertingSpec::holds`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AlertHolds {
    /// No `for`: fire as soon as both windows of a pair burn.
    #[default]
    None,
    /// `for` half the short window, in whole minutes, at least 1m (Pyrra's holds).
    ShortWindowHalf,
}

fn default_read_latency() -> Vec<ReadLatencySlo> {
    QueryClass::ALL
        .iter()
        .map(|&query_class| ReadLatencySlo {
            query_class,
            p95: "120ms".into(),
            p99: "200ms".into(),
        })
        .collect()
}

/// The read endpoints of the serve workers.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "camelCase")]
pub enum QueryClass {
    /// Product metadata by product id.
    Product,
    /// Price in effect by product id and time.
    Pricing,
    /// Inventory by product id and location.
    Inventory,
    /// Fulfillment options by product id and region.
    Fulfillment,
    /// The assembled product-detail view.
    ProductDetail,
}

impl QueryClass {
    /// Every query class, in a stable order.
    pub const ALL: [QueryClass; 5] = [
        QueryClass::Product,
        QueryClass::Pricing,
        QueryClass::Inventory,
        QueryClass::Fulfillment,
        QueryClass::ProductDetail,
    ];

    /// The name used in the API and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryClass::Product => "product",
            QueryClass::Pricing => "pricing",
            QueryClass::Inventory => "inventory",
            QueryClass::Fulfillment => "fulfillment",
            QueryClass::ProductDetail => "productDetail",
        }
    }
}

/// Latency objective of one query class.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.p95) <= duration(self.p99)").message("p95 must not exceed p99").field_path(".p95"))]
pub struct ReadLatencySlo {
    /// The query class this objective applies to.
    pub query_class: QueryClass,
    /// 95th-percentile latency bound, e.g. `120ms`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("p95 must be positive"))]
    pub p95: String,
    /// 99th-percentile latency bound, e.g. `200ms`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("p99 must be positive"))]
    pub p99: String,
}

/// Freshness objective.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FreshnessSlo {
    /// Largest acceptable lag from event time to visible on the read path, e.g. `10m`.
    #[serde(default = "default_max_lag")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("maxLag must be positive"))]
    pub max_lag: String,
}

impl Default for FreshnessSlo {
    fn default() -> Self {
        Self {
            max_lag: default_max_lag(),
        }
    }
}

fn default_max_lag() -> String {
    "10m".into()
}

/// Availability objective and the window its error budget is counted over.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilitySlo {
    /// Target share of successful reads, in percent, strictly between 0 and 100 (e.g. `99.95`).
    #[serde(default = "default_availability_target")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 100.0").message("target must be strictly between 0 and 100 percent"))]
    pub target_percent: f64,
    /// Length of the rolling budget window, in days or weeks (e.g. `30d`, `4w`).
    #[serde(default = "default_window")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(d|w)$"))]
    pub window: String,
    /// `Rolling` counts the last `window`; `CalendarMonth` resets the budget each month (UTC).
    #[serde(default)]
    pub window_kind: WindowKind,
}

impl Default for AvailabilitySlo {
    fn default() -> Self {
        Self {
            target_percent: default_availability_target(),
            window: default_window(),
            window_kind: WindowKind::default(),
        }
    }
}

fn default_availability_target() -> f64 {
    99.95
}

fn default_window() -> String {
    "30d".into()
}

/// How the error-budget window moves.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WindowKind {
    /// The last `window` up to now.
    #[default]
    Rolling,
    /// The current calendar month in UTC.
    CalendarMonth,
}

/// Correctness objective.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CorrectnessSlo {
    /// Largest acceptable share of rejected or dead-lettered records, in percent, strictly between
    /// 0 and 100 (e.g. `0.01`).
    #[serde(default = "default_max_error_percent")]
    #[x_kube(validation = Rule::new("self > 0.0 && self < 100.0").message("maxErrorPercent must be strictly between 0 and 100"))]
    pub max_error_percent: f64,
}

impl Default for CorrectnessSlo {
    fn default() -> Self {
        Self {
            max_error_percent: default_max_error_percent(),
        }
    }
}

fn default_max_error_percent() -> f64 {
    0.01
}

/// What the operator does as the error budget runs out.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.degradeBelowPercent <= self.freezeRolloutsBelowPercent").message("degradeBelowPercent must not exceed freezeRolloutsBelowPercent").field_path(".degradeBelowPercent"))]
pub struct ErrorBudgetPolicy {
    /// Version changes are not rolled out while the remaining budget is below this percent.
    #[serde(default = "default_freeze_below")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 100.0").message("freezeRolloutsBelowPercent must be between 0 and 100"))]
    pub freeze_rollouts_below_percent: f64,
    /// Non-critical work (enrichment, auxiliary attributes) pauses while the remaining budget is
    /// below this percent.
    #[serde(default = "default_degrade_below")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 100.0").message("degradeBelowPercent must be between 0 and 100"))]
    pub degrade_below_percent: f64,
}

impl Default for ErrorBudgetPolicy {
    fn default() -> Self {
        Self {
            freeze_rollouts_below_percent: default_freeze_below(),
            degrade_below_percent: default_degrade_below(),
        }
    }
}

fn default_freeze_below() -> f64 {
    25.0
}

fn default_degrade_below() -> f64 {
    10.0
}

/// How the operator scales ingest and serve from the SLIs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Whether the operator changes replica counts at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Decide and report, but change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// How often the operator reads this pipeline's SLIs and decides on them, from `5s` up. The
    /// operator's `--evaluation-interval` is the fastest it goes: the interval is rounded to a
    /// whole number of the operator's ticks, at least one.
    #[serde(default = "default_evaluation_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('5s')").message("evaluationInterval must be at least 5s"))]
    pub evaluation_interval: String,
    /// Serve scaling: P99 headroom and request rate.
    #[serde(default)]
    pub serve: ServeScaling,
    /// Ingest scaling: freshness lag and backlog trend.
    #[serde(default)]
    pub ingest: IngestScaling,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            dry_run: false,
            evaluation_interval: default_evaluation_interval(),
            serve: ServeScaling::default(),
            ingest: IngestScaling::default(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_evaluation_interval() -> String {
    "15s".into()
}

/// Targets of serve scaling.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServeScaling {
    /// Scale up when the P99 exceeds this percent of its SLO bound.
    #[serde(default = "default_p99_target")]
    #[schemars(range(min = 1, max = 99))]
    pub target_p99_percent_of_slo: i32,
    /// Requests per second one serve replica is sized for.
    #[serde(default = "default_requests_per_replica")]
    #[schemars(range(min = 1))]
    pub target_requests_per_replica: i64,
    /// How fast replicas are added.
    #[serde(default = "ScalingBehavior::default_up")]
    pub scale_up: ScalingBehavior,
    /// How slowly replicas are removed.
    #[serde(default = "ScalingBehavior::default_down")]
    pub scale_down: ScalingBehavior,
}

impl Default for ServeScaling {
    fn default() -> Self {
        Self {
            target_p99_percent_of_slo: default_p99_target(),
            target_requests_per_replica: default_requests_per_replica(),
            scale_up: ScalingBehavior::default_up(),
            scale_down: ScalingBehavior::default_down(),
        }
    }
}

fn default_p99_target() -> i32 {
    80
}

fn default_requests_per_replica() -> i64 {
    5_000
}

/// Targets of ingest scaling.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IngestScaling {
    /// Scale up when the freshness lag exceeds this percent of `slos.freshness.maxLag`.
    #[serde(default = "default_lag_target")]
    #[schemars(range(min = 1, max = 99))]
    pub target_lag_percent_of_slo: i32,
    /// Backlog one ingest replica is sized for: updates queued, plus those producers hold after a
    /// 429 (refused per second times Retry-After).
    #[serde(default = "default_backlog_per_replica")]
    #[schemars(range(min = 1))]
    pub target_backlog_per_replica: i64,
    /// How fast replicas are added.
    #[serde(default = "ScalingBehavior::default_up")]
    pub scale_up: ScalingBehavior,
    /// How slowly replicas are removed.
    #[serde(default = "ScalingBehavior::default_down")]
    pub scale_down: ScalingBehavior,
}

impl Default for IngestScaling {
    fn default() -> Self {
        Self {
            target_lag_percent_of_slo: default_lag_target(),
            target_backlog_per_replica: default_backlog_per_replica(),
            scale_up: ScalingBehavior::default_up(),
            scale_down: ScalingBehavior::default_down(),
        }
    }
}

fn default_lag_target() -> i32 {
    50
}

fn default_backlog_per_replica() -> i64 {
    100_000
}

/// Damping of scaling in one direction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// A change is made only if it was wanted for this whole window, e.g. `5m`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub stabilization_window: String,
    /// Least time between two changes in this direction, e.g. `2m`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"), length(max = 32))]
    pub cooldown: String,
    /// Most replicas added or removed in one change.
    #[schemars(range(min = 1, max = 1000))]
    pub max_step: i32,
}

impl ScalingBehavior {
    fn default_up() -> Self {
        Self {
            stabilization_window: "0s".into(),
            cooldown: "30s".into(),
            max_step: 4,
        }
    }

    fn default_down() -> Self {
        Self {
            stabilization_window: "5m".into(),
            cooldown: "2m".into(),
            max_step: 1,
        }
    }
}

/// Where the operator reads this pipeline's SLIs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PrometheusSpec {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"))]
    pub url: String,
    /// Whether the SLO rules (the PrometheusRule, and what `render-rules` prints) also carry
    /// Sloth's labels (`sloth_id`, `sloth_service`, `sloth_slo`, `sloth_window`,
    /// `sloth_severity`) and `sloth_slo_info`, so Sloth's Grafana dashboards find the SLOs.
    /// `sloth_service` is `<namespace>/<pipeline>`.
    #[serde(
        rename = "slothLabels",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub sloth_labels: bool,
}
