//! What the operator observed and decided, written only through the status subresource.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a RetailPipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetailPipelineStatus {
    /// The `metadata.generation` this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: Ready, Progressing, RolloutFrozen, BudgetExhausted, Degraded,
    /// MetricsAvailable (which SLIs could not be read, and why), MonitoringConfigured and
    /// BackendsReachable.
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
    /// How the workers of each role reach their backends, from their own
    /// `tailwarden_backend_state` metrics (distributed pipelines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStatus>,
    /// The Kafka topics' partitions and the ingest replicas they leave idle (pipelines on Kafka).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaStatus>,
    /// The SLIs last read from Prometheus.
    #[serde(default)]
    pub slis: SliStatus,
    /// The error budget as of the last evaluation.
    #[serde(default)]
    pub budget: BudgetStatus,
    /// What freezes rollouts, what a freeze holds back, and the freeze annotations' state.
    #[serde(default)]
    pub rollout: RolloutStatus,
    /// The last decisions, oldest first, at most [`DECISION_HISTORY`]: Events expire after an
    /// hour, this history stays with the pipeline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<Decision>,
}

/// How many decisions the status keeps.
pub const DECISION_HISTORY: usize = 10;

impl RetailPipelineStatus {
    /// The most recent decision.
    pub fn last_decision(&self) -> Option<&Decision> {
        self.decisions.last()
    }

    /// Appends a decision, dropping the oldest beyond [`DECISION_HISTORY`].
    pub fn record(&mut self, decision: Decision) {
        self.decisions.push(decision);
        let excess = self.decisions.len().saturating_sub(DECISION_HISTORY);
        self.decisions.drain(..excess);
    }
}

/// Rollouts: the error budget's freeze, the manual freeze and override annotations, and what a
/// freeze keeps from the workers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Whether the error budget's gate is closed. Kept apart from the manual freeze, so that the
    /// gate's hysteresis and a restarted operator see the budget's state alone.
    #[serde(default)]
    pub budget_frozen: bool,
    /// Changes a freeze keeps from the workers, e.g. `version 1.0.0 -> 1.1.0` or
    /// `config ingest.batch.linger`; they roll out when the freeze ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<String>,
    /// The `tailwarden.io/rollout-freeze` annotation: in effect, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_freeze: Option<MarkStatus>,
    /// The `tailwarden.io/rollout-freeze-override` annotation: in effect, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze_override: Option<MarkStatus>,
}

/// One freeze annotation as the operator read it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MarkStatus {
    /// Whether it is in effect, or why not.
    pub state: MarkState,
    /// The annotation's value: why it was set.
    pub reason: String,
    /// Who set it (its `-by` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Its expiry (its `-until` annotation), as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

impl MarkStatus {
    /// Whether the annotation is in effect.
    pub fn active(mark: Option<&MarkStatus>) -> bool {
        mark.is_some_and(|m| m.state == MarkState::Active)
    }
}

/// How far ahead a freeze annotation's expiry may lie, in days: an override is an emergency
/// measure, not a permanent bypass (the text of [`MarkState::ExpiryTooFar`] says the same).
pub const MARK_MAX_DAYS_AHEAD: i64 = 7;

/// Whether a freeze annotation is in effect, or why it has no effect.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkState {
    /// In effect until its expiry.
    Active,
    /// Its expiry has passed.
    Expired,
    /// It has no `-until` annotation.
    NoExpiry,
    /// Its `-until` annotation is not an RFC 3339 time.
    InvalidExpiry,
    /// Its expiry is further ahead than the operator allows.
    ExpiryTooFar,
    /// It has no `-by` annotation naming who set it.
    NoActor,
}

impl MarkState {
    /// Why the annotation has no effect, in words; None when it is in effect.
    pub fn why_not(self) -> Option<&'static str> {
        match self {
            MarkState::Active => None,
            MarkState::Expired => Some("its expiry has passed"),
            MarkState::NoExpiry => Some("it has no -until annotation"),
            MarkState::InvalidExpiry => Some("its -until annotation is not an RFC 3339 time"),
            MarkState::ExpiryTooFar => Some("its expiry is more than 7 days ahead"),
            MarkState::NoActor => Some("it has no -by annotation naming who set it"),
        }
    }
}

/// One backend as the workers of one role last reached it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendStatus {
    /// `ingest` or `serve`.
    pub role: String,
    /// `cassandra` or `kafka`.
    pub backend: String,
    /// Workers reporting this backend.
    pub workers: i32,
    /// Workers whose last contact succeeded.
    pub reachable: i32,
    /// The other workers by the error of their last contact, e.g. `timeout: 1`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, i32>,
}

/// Kafka as the ingest workers see it. Topics and partitions belong to the Kafka administrator;
/// the operator only reports them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KafkaStatus {
    /// Partitions per consumed topic, as the broker reports them to the ingest workers.
    pub partitions: BTreeMap<String, i32>,
    /// Ingest replicas beyond the partitions to consume: the consumer group assigns them none.
    pub idle_ingest_replicas: i32,
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
    /// Freshness lag of the stalest class, e.g. `42s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_lag: Option<String>,
    /// Freshness lag per data class: now minus the class's newest visible event time while it has
    /// events waiting, `0s` while it is idle (everything received is visible).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub freshness_lag_by_class: BTreeMap<String, String>,
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

/// A decision of the operator, its reason and what it was based on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What was decided.
    pub kind: DecisionKind,
    /// Why, in words.
    pub reason: String,
    /// The signals the decision was taken on.
    #[serde(default)]
    pub inputs: DecisionInputs,
    /// Decided and reported, but not acted on (`autoscaling.dryRun`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// When, as RFC 3339.
    pub time: String,
}

/// Every kind of decision: one fixed set shared by the status, the Events' reason and the
/// `tailwarden_operator_decisions_total{kind}` metric, so the metric's cardinality is bounded.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// A new generation of the spec was applied.
    Reconciled,
    /// A new generation of the spec could not be used.
    InvalidSpec,
    /// Serve replicas changed.
    ScaleServe,
    /// Ingest replicas changed.
    ScaleIngest,
    /// Rollouts were frozen (error budget, page-level burn, or a manual freeze).
    FreezeRollout,
    /// Rollouts were unfrozen.
    ResumeRollout,
    /// A freeze override let a rollout through.
    OverrideFreeze,
    /// Non-critical work was paused.
    Degrade,
    /// Non-critical work was resumed.
    Restore,
}

impl DecisionKind {
    /// Every kind, for pre-registering metrics.
    pub const ALL: [DecisionKind; 9] = [
        DecisionKind::Reconciled,
        DecisionKind::InvalidSpec,
        DecisionKind::ScaleServe,
        DecisionKind::ScaleIngest,
        DecisionKind::FreezeRollout,
        DecisionKind::ResumeRollout,
        DecisionKind::OverrideFreeze,
        DecisionKind::Degrade,
        DecisionKind::Restore,
    ];

    /// The name used in the status, Events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Reconciled => "Reconciled",
            DecisionKind::InvalidSpec => "InvalidSpec",
            DecisionKind::ScaleServe => "ScaleServe",
            DecisionKind::ScaleIngest => "ScaleIngest",
            DecisionKind::FreezeRollout => "FreezeRollout",
            DecisionKind::ResumeRollout => "ResumeRollout",
            DecisionKind::OverrideFreeze => "OverrideFreeze",
            DecisionKind::Degrade => "Degrade",
            DecisionKind::Restore => "Restore",
        }
    }
}

/// The signals a decision was taken on, as the status reports them; absent when unknown.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecisionInputs {
    /// Replicas of the role before a scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_before: Option<i32>,
    /// Replicas of the role after a scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_after: Option<i32>,
    /// Remaining error budget in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_remaining_percent: Option<f64>,
    /// The SLO with the least budget left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst_slo: Option<String>,
    /// Worst read P99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_p99: Option<String>,
    /// Freshness lag of the stalest class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness_lag: Option<String>,
    /// Who set the annotation the decision follows (overrides and manual freezes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Until when that annotation holds, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The data-plane version concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
