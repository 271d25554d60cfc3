//! What the operator observed and decided, written only through the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a RetailPipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetailPipelineStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Ready, Progressing, RolloutFrozen, BudgetExhausted, Degraded and
    /// MetricsAvailable (which SLIs could not be read, and why).
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// `standalone` (embedded store, one worker) or `distributed` (separate ingest and serve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<String>,
    /// Whether ingest and serve can scale out, and why not when they cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizontal_scaling: Option<String>,
    /// The data-plane version the workers currently run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// Ingest replicas.
    #[serde(default)]
    pub ingest: RoleStatus,
    /// Serve replicas.
    #[serde(default)]
    pub serve: RoleStatus,
    /// The SLIs last read from Prometheus.
    #[serde(default)]
    pub slis: SliStatus,
    /// The error budget as of the last evaluation.
    #[serde(default)]
    pub budget: BudgetStatus,
    /// The most recent decision and why it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<Decision>,
}

/// Replicas of one role.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// Replicas the operator wants.
    #[serde(default)]
    pub desired_replicas: i32,
    /// Replicas that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/desired`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// Service-level indicators, as last read from Prometheus.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SliStatus {
    /// Worst read P95 across query classes, e.g. `84ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_p95: Option<String>,
    /// Worst read P99 across query classes, e.g. `130ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_p99: Option<String>,
    /// Freshness lag of the event-time watermark, e.g. `42s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_lag: Option<String>,
    /// Share of successful reads in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_percent: Option<f64>,
    /// Share of rejected or dead-lettered records in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correctness_error_percent: Option<f64>,
}

/// Error budget as of the last evaluation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// Remaining budget, e.g. `72.5%`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<String>,
    /// Remaining budget in percent of the whole: the lowest across the pipeline's SLOs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_percent: Option<f64>,
    /// The SLO with the least budget left, e.g. `availability` or `latency-product-p99`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_slo: Option<String>,
    /// Burn rates of the worst SLO over the page-alert windows.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["window".into()]))]
    pub burn_rates: Vec<BurnRate>,
}

/// The burn rate over one window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BurnRate {
    /// The window, e.g. `1h`.
    pub window: String,
    /// Budget consumption speed: 1 spends exactly the budget over the SLO window.
    pub rate: f64,
}

/// A decision of the operator and its reason.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What was decided, e.g. `ScaleServe`, `FreezeRollout`, `Reconciled`.
    pub kind: String,
    /// Why, in words.
    pub reason: String,
    /// When, as RFC 3339.
    pub time: String,
}
