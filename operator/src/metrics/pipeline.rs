//! Per-pipeline series (`tailwarden_pipeline_*`): what the status and the SLO engine know about
//! each pipeline, as gauges a dashboard can sort, filter and plot over time, and the pipeline's
//! decisions as a counter a dashboard can annotate with.
//!
//! Every series carries the pipeline's `namespace` and `pipeline` labels, as the data plane's
//! series do once scraped, so dashboards join them on those labels. A deleted pipeline's series
//! are removed, so a dashboard never shows a pipeline that no longer exists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tailwarden_contract::config::Role;
use tailwarden_crds::{DecisionKind, MarkStatus, RetailPipelineStatus};
use tailwarden_slo::objective::Objectives;

use crate::conditions::{DEGRADED, METRICS_AVAILABLE, condition, is_true};
use crate::topology::Topology;

/// What holds a pipeline's rollouts: the `cause` label of `tailwarden_pipeline_rollout_frozen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezeCause {
    /// The error budget's gate is closed (as `status.rollout.budgetFrozen` says).
    Budget,
    /// An active `tailwarden.io/rollout-freeze` annotation.
    Manual,
}

impl FreezeCause {
    /// Every cause, so each pipeline exports both series, 0 or 1.
    pub const ALL: [FreezeCause; 2] = [FreezeCause::Budget, FreezeCause::Manual];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FreezeCause::Budget => "budget",
            FreezeCause::Manual => "manual",
        }
    }
}

/// The `quantile` label of a query class's two latency objectives, P95 then P99.
const QUANTILES: [&str; 2] = ["0.95", "0.99"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    namespace: String,
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SloLabels {
    namespace: String,
    pipeline: String,
    slo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FreezeLabels {
    namespace: String,
    pipeline: String,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    namespace: String,
    pipeline: String,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    namespace: String,
    pipeline: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectiveLabels {
    namespace: String,
    pipeline: String,
    class: String,
    quantile: &'static str,
}

type Ratio = Gauge<f64, AtomicU64>;

/// (namespace, name) of a pipeline.
type Key = (String, String);

/// The label values of a pipeline that are not bounded by an enum (SLO names and query classes
/// come from its spec), remembered so that its series can be removed.
#[derive(Debug, Default)]
struct Exported {
    /// Whether the decision counters exist.
    reported: bool,
    slos: BTreeSet<String>,
    classes: BTreeSet<String>,
    roles: BTreeSet<&'static str>,
}

/// The per-pipeline families.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    budget_remaining: Family<SloLabels, Ratio>,
    rollout_frozen: Family<FreezeLabels, Gauge>,
    degraded: Family<PipelineLabels, Gauge>,
    metrics_missing: Family<PipelineLabels, Gauge>,
    desired_replicas: Family<RoleLabels, Gauge>,
    ready_replicas: Family<RoleLabels, Gauge>,
    decisions: Family<KindLabels, Counter>,
    latency_objective: Family<ObjectiveLabels, Ratio>,
    freshness_max_lag: Family<PipelineLabels, Ratio>,
    exported: Mutex<HashMap<Key, Exported>>,
}

impl PipelineMetrics {
    /// Registers the families in `registry` (prefixed `tailwarden_pipeline`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "budget_remaining_ratio",
            "Error budget left per SLO as the SLO engine last computed it (1 = untouched, 0 = spent); absent while the SLO has no data",
            self.budget_remaining.clone(),
        );
        registry.register(
            "rollout_frozen",
            "1 while rollouts are frozen for this cause: the error budget's gate, or a manual freeze annotation",
            self.rollout_frozen.clone(),
        );
        registry.register(
            "degraded",
            "1 while the Degraded condition is True: non-critical work is paused",
            self.degraded.clone(),
        );
        registry.register(
            "metrics_missing",
            "1 unless the MetricsAvailable condition is True: some SLI has no data, so replicas and gates are held",
            self.metrics_missing.clone(),
        );
        registry.register(
            "desired_replicas",
            "Replicas the operator wants per role",
            self.desired_replicas.clone(),
        );
        registry.register(
            "ready_replicas",
            "Ready replicas per role",
            self.ready_replicas.clone(),
        );
        registry.register("decisions", "Decisions by kind", self.decisions.clone());
        registry.register(
            "read_latency_objective_seconds",
            "The P95 and P99 read latency bounds of each query class in the spec",
            self.latency_objective.clone(),
        );
        registry.register(
            "freshness_max_lag_seconds",
            "The freshness objective's maximum lag in the spec",
            self.freshness_max_lag.clone(),
        );
    }

    /// Exports what the status says: freeze causes, degradation, missing data, replicas per role
    /// of `topology`, and the objectives when the spec could be used. The first report of a
    /// pipeline creates its decision counters at 0, so the first decision is an increase.
    pub fn report(
        &self,
        (namespace, pipeline): (&str, &str),
        topology: Topology,
        status: &RetailPipelineStatus,
        objectives: Option<&Objectives>,
    ) {
        let p = labels(namespace, pipeline);
        let mut exported = self
            .exported
            .lock()
            .expect("metrics lock is never poisoned");
        let seen = exported.entry(key(namespace, pipeline)).or_default();
        if !seen.reported {
            for kind in DecisionKind::ALL {
                let _ = self.decisions.get_or_create(&kind_labels(&p, kind));
            }
            seen.reported = true;
        }
        for cause in FreezeCause::ALL {
            let frozen = match cause {
                FreezeCause::Budget => status.rollout.budget_frozen,
                FreezeCause::Manual => MarkStatus::active(status.rollout.manual_freeze.as_ref()),
            };
            self.rollout_frozen
                .get_or_create(&freeze_labels(&p, cause))
                .set(i64::from(frozen));
        }
        self.degraded
            .get_or_create(&p)
            .set(i64::from(is_true(Some(status), DEGRADED)));
        let observed = condition(status, METRICS_AVAILABLE).is_some_and(|c| c.status == "True");
        self.metrics_missing
            .get_or_create(&p)
            .set(i64::from(!observed));
        self.replicas(&p, seen, topology, status);
        if let Some(objectives) = objectives {
            self.objectives(&p, seen, objectives);
        }
    }

    /// Replicas per role of `topology`; a role the topology no longer runs loses its series.
    fn replicas(
        &self,
        p: &PipelineLabels,
        seen: &mut Exported,
        topology: Topology,
        status: &RetailPipelineStatus,
    ) {
        let roles: Vec<_> = match topology {
            Topology::Standalone => vec![(Role::Standalone, &status.serve)],
            Topology::Distributed => {
                vec![(Role::Ingest, &status.ingest), (Role::Serve, &status.serve)]
            }
        };
        let now: BTreeSet<_> = roles.iter().map(|(r, _)| r.as_str()).collect();
        for &gone in seen.roles.difference(&now) {
            let labels = role_labels(p, gone);
            self.desired_replicas.remove(&labels);
            self.ready_replicas.remove(&labels);
        }
        for (role, replicas) in roles {
            let labels = role_labels(p, role.as_str());
            self.desired_replicas
                .get_or_create(&labels)
                .set(i64::from(replicas.desired_replicas));
            self.ready_replicas
                .get_or_create(&labels)
                .set(i64::from(replicas.ready_replicas));
        }
        seen.roles = now;
    }

    /// The latency bounds per query class and the freshness maximum; a class the spec no longer
    /// names loses its series.
    fn objectives(&self, p: &PipelineLabels, seen: &mut Exported, objectives: &Objectives) {
        let classes: BTreeSet<_> = objectives
            .latency
            .iter()
            .map(|l| l.query_class.clone())
            .collect();
        for gone in seen.classes.difference(&classes) {
            for quantile in QUANTILES {
                self.latency_objective
                    .remove(&objective_labels(p, gone, quantile));
            }
        }
        for l in &objectives.latency {
            for (quantile, bound) in QUANTILES.into_iter().zip([l.p95, l.p99]) {
                self.latency_objective
                    .get_or_create(&objective_labels(p, &l.query_class, quantile))
                    .set(bound.as_secs_f64());
            }
        }
        seen.classes = classes;
        self.freshness_max_lag
            .get_or_create(p)
            .set(objectives.freshness_max_lag.as_secs_f64());
    }

    /// Exports the SLO engine's budget per SLO; an SLO without data loses its series rather than
    /// keeping a stale value.
    pub fn budgets(&self, (namespace, pipeline): (&str, &str), budgets: &BTreeMap<String, f64>) {
        let p = labels(namespace, pipeline);
        let mut exported = self
            .exported
            .lock()
            .expect("metrics lock is never poisoned");
        let seen = exported.entry(key(namespace, pipeline)).or_default();
        for gone in seen.slos.iter().filter(|s| !budgets.contains_key(*s)) {
            self.budget_remaining.remove(&slo_labels(&p, gone));
        }
        for (slo, remaining) in budgets {
            self.budget_remaining
                .get_or_create(&slo_labels(&p, slo))
                .set(*remaining);
        }
        seen.slos = budgets.keys().cloned().collect();
    }

    /// Counts one decision of the pipeline.
    pub fn decided(&self, (namespace, pipeline): (&str, &str), kind: DecisionKind) {
        self.decisions
            .get_or_create(&kind_labels(&labels(namespace, pipeline), kind))
            .inc();
    }

    /// Removes every series of the pipelines for which `keep(namespace, name)` is false.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut exported = self
            .exported
            .lock()
            .expect("metrics lock is never poisoned");
        let gone: Vec<Key> = exported
            .keys()
            .filter(|(ns, name)| !keep(ns, name))
            .cloned()
            .collect();
        for k in gone {
            let seen = exported.remove(&k).unwrap_or_default();
            self.remove(&labels(&k.0, &k.1), &seen);
        }
    }

    fn remove(&self, p: &PipelineLabels, seen: &Exported) {
        for slo in &seen.slos {
            self.budget_remaining.remove(&slo_labels(p, slo));
        }
        for cause in FreezeCause::ALL {
            self.rollout_frozen.remove(&freeze_labels(p, cause));
        }
        self.degraded.remove(p);
        self.metrics_missing.remove(p);
        for &role in &seen.roles {
            self.desired_replicas.remove(&role_labels(p, role));
            self.ready_replicas.remove(&role_labels(p, role));
        }
        for kind in DecisionKind::ALL {
            self.decisions.remove(&kind_labels(p, kind));
        }
        for class in &seen.classes {
            for quantile in QUANTILES {
                self.latency_objective
                    .remove(&objective_labels(p, class, quantile));
            }
        }
        self.freshness_max_lag.remove(p);
    }
}

fn key(namespace: &str, pipeline: &str) -> Key {
    (namespace.to_owned(), pipeline.to_owned())
}

fn labels(namespace: &str, pipeline: &str) -> PipelineLabels {
    PipelineLabels {
        namespace: namespace.to_owned(),
        pipeline: pipeline.to_owned(),
    }
}

fn slo_labels(p: &PipelineLabels, slo: &str) -> SloLabels {
    SloLabels {
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        slo: slo.to_owned(),
    }
}

fn freeze_labels(p: &PipelineLabels, cause: FreezeCause) -> FreezeLabels {
    FreezeLabels {
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        cause: cause.as_str(),
    }
}

fn role_labels(p: &PipelineLabels, role: &'static str) -> RoleLabels {
    RoleLabels {
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        role,
    }
}

fn kind_labels(p: &PipelineLabels, kind: DecisionKind) -> KindLabels {
    KindLabels {
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        kind: kind.as_str(),
    }
}

fn objective_labels(p: &PipelineLabels, class: &str, quantile: &'static str) -> ObjectiveLabels {
    ObjectiveLabels {
        namespace: p.namespace.clone(),
        pipeline: p.pipeline.clone(),
        class: class.to_owned(),
        quantile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use tailwarden_crds::MarkState;

    fn status(budget_frozen: bool, manual: bool) -> RetailPipelineStatus {
        let mut s = RetailPipelineStatus::default();
        s.rollout.budget_frozen = budget_frozen;
        s.rollout.manual_freeze = manual.then(|| MarkStatus {
            state: MarkState::Active,
            reason: "peak sale".into(),
            by: Some("alice".into()),
            until: Some("2030-01-01T00:00:00Z".into()),
        });
        s.serve.desired_replicas = 3;
        s.serve.ready_replicas = 2;
        s.ingest.desired_replicas = 1;
        s
    }

    fn lines(m: &Metrics, pipeline: &str) -> Vec<String> {
        let needle = format!("pipeline=\"{pipeline}\"");
        m.encode()
            .lines()
            .filter(|l| l.starts_with("tailwarden_pipeline_") && l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_status_and_the_objectives_become_series() {
        let m = Metrics::default();
        let objectives = Objectives::reference();
        m.pipelines.report(
            ("shop", "web"),
            Topology::Distributed,
            &status(false, true),
            Some(&objectives),
        );
        let text = lines(&m, "web").join("\n");
        for line in [
            r#"tailwarden_pipeline_rollout_frozen{namespace="shop",pipeline="web",cause="budget"} 0"#,
            r#"tailwarden_pipeline_rollout_frozen{namespace="shop",pipeline="web",cause="manual"} 1"#,
            r#"tailwarden_pipeline_degraded{namespace="shop",pipeline="web"} 0"#,
            r#"tailwarden_pipeline_metrics_missing{namespace="shop",pipeline="web"} 1"#,
            r#"tailwarden_pipeline_desired_replicas{namespace="shop",pipeline="web",role="serve"} 3"#,
            r#"tailwarden_pipeline_ready_replicas{namespace="shop",pipeline="web",role="serve"} 2"#,
            r#"tailwarden_pipeline_desired_replicas{namespace="shop",pipeline="web",role="ingest"} 1"#,
            r#"tailwarden_pipeline_decisions_total{namespace="shop",pipeline="web",kind="FreezeRollout"} 0"#,
            r#"tailwarden_pipeline_read_latency_objective_seconds{namespace="shop",pipeline="web",class="product",quantile="0.99"} 0.2"#,
            r#"tailwarden_pipeline_freshness_max_lag_seconds{namespace="shop",pipeline="web"} 600.0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // A move to the standalone topology reports one role, the standalone worker.
        m.pipelines.report(
            ("shop", "web"),
            Topology::Standalone,
            &status(true, false),
            Some(&objectives),
        );
        let text = lines(&m, "web").join("\n");
        assert!(text.contains(r#"cause="budget"} 1"#), "{text}");
        assert!(text.contains(r#"role="standalone"} 3"#), "{text}");
        assert!(!text.contains(r#"role="serve""#), "{text}");
    }

    #[test]
    fn budgets_follow_the_data_and_a_deleted_pipeline_leaves_no_series() {
        let m = Metrics::default();
        let budgets = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(s, r)| (s.to_string(), *r)).collect()
        };
        m.pipelines.budgets(
            ("shop", "web"),
            &budgets(&[("availability", 0.5), ("freshness", 1.0)]),
        );
        m.pipelines.report(
            ("shop", "web"),
            Topology::Standalone,
            &status(false, false),
            Some(&Objectives::reference()),
        );
        m.pipelines.report(
            ("shop", "other"),
            Topology::Standalone,
            &status(false, false),
            None,
        );
        m.decided(("shop", "web"), DecisionKind::Degrade);
        let text = lines(&m, "web").join("\n");
        assert!(
            text.contains(r#"tailwarden_pipeline_budget_remaining_ratio{namespace="shop",pipeline="web",slo="availability"} 0.5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tailwarden_pipeline_decisions_total{namespace="shop",pipeline="web",kind="Degrade"} 1"#),
            "{text}"
        );
        // Freshness loses its data: its series goes rather than showing a stale budget.
        m.pipelines
            .budgets(("shop", "web"), &budgets(&[("availability", 0.4)]));
        let text = lines(&m, "web").join("\n");
        assert!(!text.contains(r#"slo="freshness""#), "{text}");
        assert!(text.contains(r#"slo="availability"} 0.4"#), "{text}");

        m.pipelines.retain(|_, name| name != "web");
        assert_eq!(lines(&m, "web"), Vec::<String>::new());
        assert!(!lines(&m, "other").is_empty(), "other pipelines stay");
    }
}
