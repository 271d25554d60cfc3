//! Operator metrics, exported on `/metrics` in the OpenMetrics text format: the operator's own
//! health (`tailwarden_operator_*`) and each pipeline's state ([`pipeline`],
//! `tailwarden_pipeline_*`).

pub mod pipeline;

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use tailwarden_crds::DecisionKind;

use crate::error::ErrorClass;
use pipeline::PipelineMetrics;

/// Label of the error counter: the bounded error class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// One of [`ErrorClass::as_str`].
    pub class: &'static str,
}

/// Label of the decision counter: what was decided.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The decision kind.
    pub kind: &'static str,
}

/// All operator metrics, registered once.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    duration: Histogram,
    leader: Gauge,
    slo_pass: Histogram,
    slo_queries: Counter,
    slo_query_failures: Counter,
    /// Each pipeline's state, for dashboards.
    pub pipelines: PipelineMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut root = Registry::with_prefix("tailwarden");
        let pipelines = PipelineMetrics::default();
        pipelines.register(root.sub_registry_with_prefix("pipeline"));
        let registry = root.sub_registry_with_prefix("operator");
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error class",
            errors.clone(),
        );
        for class in ErrorClass::ALL {
            // Pre-register every class so rate() works from the first error on.
            let _ = errors.get_or_create(&ErrorLabels {
                class: class.as_str(),
            });
        }
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register("decisions", "Decisions by kind", decisions.clone());
        for kind in DecisionKind::ALL {
            // Every kind from the start, so dashboards and alerts see zeros rather than nothing.
            let _ = decisions.get_or_create(&DecisionLabels {
                kind: kind.as_str(),
            });
        }
        let duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile takes",
            duration.clone(),
        );
        let leader = Gauge::<i64>::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let slo_pass = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]);
        registry.register(
            "slo_pass_duration_seconds",
            "Time one SLO evaluation pass over all pipelines takes",
            slo_pass.clone(),
        );
        let slo_queries = Counter::default();
        registry.register(
            "slo_queries",
            "Prometheus queries sent by the SLO engine",
            slo_queries.clone(),
        );
        let slo_query_failures = Counter::default();
        registry.register(
            "slo_query_failures",
            "Prometheus queries that failed",
            slo_query_failures.clone(),
        );
        Self {
            registry: root,
            reconciles,
            errors,
            decisions,
            duration,
            leader,
            slo_pass,
            slo_queries,
            slo_query_failures,
            pipelines,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and returns a guard that observes its duration when dropped.
    pub fn reconcile_started(&self) -> impl Drop + '_ {
        self.reconciles.inc();
        DurationGuard {
            histogram: &self.duration,
            start: std::time::Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, class: ErrorClass) {
        self.errors
            .get_or_create(&ErrorLabels {
                class: class.as_str(),
            })
            .inc();
    }

    /// Counts a decision about the pipeline `(namespace, name)`, for the operator and for the
    /// pipeline.
    pub fn decided(&self, pipeline: (&str, &str), kind: DecisionKind) {
        self.decisions
            .get_or_create(&DecisionLabels {
                kind: kind.as_str(),
            })
            .inc();
        self.pipelines.decided(pipeline, kind);
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records one SLO evaluation pass.
    pub fn slo_pass(&self, took: Duration, queries: usize, failures: usize) {
        self.slo_pass.observe(took.as_secs_f64());
        self.slo_queries.inc_by(queries as u64);
        self.slo_query_failures.inc_by(failures as u64);
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

struct DurationGuard<'a> {
    histogram: &'a Histogram,
    start: std::time::Instant,
}

impl Drop for DurationGuard<'_> {
    fn drop(&mut self) {
        self.histogram
            .observe(Duration::as_secs_f64(&self.start.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_errors_and_durations_are_exported() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        m.reconcile_failed(ErrorClass::Conflict);
        m.decided(("shop", "web"), DecisionKind::Reconciled);
        m.set_leader(true);
        let text = m.encode();
        assert!(
            text.contains("tailwarden_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"tailwarden_operator_reconcile_errors_total{class="conflict"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tailwarden_operator_reconcile_errors_total{class="spec"} 0"#),
            "{text}"
        );
        assert!(
            text.contains("tailwarden_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"tailwarden_operator_decisions_total{kind="Reconciled"} 1"#),
            "{text}"
        );
        assert!(text.contains("tailwarden_operator_leader 1"), "{text}");
    }
}
