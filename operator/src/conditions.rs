//! The pipeline's status, computed from what was observed: a pure function.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use tailwarden_crds::{Decision, MarkStatus, RetailPipelineStatus, RoleStatus, RolloutStatus};

use crate::freeze_annotations::describe;
use crate::pod_trouble::PodTrouble;
use crate::reachability::{self, BACKENDS_REACHABLE};
use crate::rollout::RolloutPlan;
use crate::spec_error::SpecError;
use crate::topology::Topology;
use crate::verdict::Verdict;

/// Condition types.
pub const READY: &str = "Ready";
/// See [`READY`].
pub const PROGRESSING: &str = "Progressing";
/// See [`READY`].
pub const ROLLOUT_FROZEN: &str = "RolloutFrozen";
/// See [`READY`].
pub const BUDGET_EXHAUSTED: &str = "BudgetExhausted";
/// See [`READY`].
pub const DEGRADED: &str = "Degraded";
/// Whether every SLI could be read from Prometheus; names the missing ones.
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
/// Whether the PrometheusRule and PodMonitor are in place.
pub const MONITORING_CONFIGURED: &str = "MonitoringConfigured";

/// What the reconciler saw of one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadObservation {
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// All replicas, old template included.
    pub total: i32,
    /// Whether the workload controller has seen the latest template.
    pub observed_latest: bool,
}

impl WorkloadObservation {
    /// Whether the workload is still replacing pods.
    pub fn rolling(&self) -> bool {
        // As `kubectl rollout status` judges it: done once every pod runs the new template.
        !self.observed_latest || self.updated < self.desired || self.total > self.updated
    }

    /// Whether the workload runs the latest template with every replica ready.
    pub fn available(&self) -> bool {
        !self.rolling() && self.ready >= self.desired
    }

    fn role_status(&self) -> RoleStatus {
        RoleStatus {
            desired_replicas: self.desired,
            ready_replicas: self.ready,
            summary: Some(format!("{}/{}", self.ready, self.desired)),
        }
    }
}

/// Everything the status is computed from.
#[derive(Debug, Clone)]
pub struct Observation {
    /// `metadata.generation` of the pipeline.
    pub generation: Option<i64>,
    /// The topology.
    pub topology: Topology,
    /// The version in the spec.
    pub version: String,
    /// The ingest workload (the standalone StatefulSet in that topology).
    pub ingest: WorkloadObservation,
    /// The serve workload (the same StatefulSet in the standalone topology).
    pub serve: WorkloadObservation,
    /// Why the workers are not ready, from their pods; None when unknown. Never makes Ready True.
    pub trouble: Option<PodTrouble>,
    /// Why the spec could not be used, if it could not.
    pub spec_error: Option<SpecError>,
    /// The SLO engine's latest verdict; None until it has evaluated the pipeline.
    pub verdict: Option<Verdict>,
    /// The rollout plan that was applied.
    pub rollout: RolloutPlan,
    /// The budget's freeze, the freeze annotations and what is held back.
    pub rollout_status: RolloutStatus,
    /// Whether the monitoring objects were applied, or why not.
    pub monitoring: Result<(), String>,
    /// Whether the workers use Cassandra or Kafka, whose reachability they report.
    pub remote_backends: bool,
}

/// The new status. Conditions keep their `lastTransitionTime` while their status is unchanged,
/// and fields owned by the SLO engine (SLIs, budget) are carried over.
pub fn status(
    previous: Option<&RetailPipelineStatus>,
    obs: &Observation,
    now: jiff::Timestamp,
) -> RetailPipelineStatus {
    let previous = previous.cloned().unwrap_or_default();
    let mut conditions = previous.conditions.clone();
    let mut set = |type_: &str, status: bool, reason: &str, message: String| {
        upsert(
            &mut conditions,
            type_,
            if status { "True" } else { "False" },
            reason,
            message,
            obs.generation,
            now,
        );
    };
    let workloads = [&obs.ingest, &obs.serve];
    match &obs.spec_error {
        Some(err) => set(READY, false, "InvalidSpec", err.to_string()),
        None if workloads.iter().all(|w| w.available()) => set(
            READY,
            true,
            "WorkloadsAvailable",
            format!("all {} workers are ready", obs.topology.as_str()),
        ),
        None => {
            let counts = format!(
                "ingest {}/{} ready, serve {}/{} ready",
                obs.ingest.ready, obs.ingest.desired, obs.serve.ready, obs.serve.desired
            );
            match &obs.trouble {
                Some(t) => set(READY, false, t.kind.reason(), format!("{counts}; {t}")),
                None => set(READY, false, "WorkloadsNotReady", counts),
            }
        }
    }
    if workloads.iter().any(|w| w.rolling()) {
        set(
            PROGRESSING,
            true,
            "RollingOut",
            format!("rolling out version {}", obs.version),
        );
    } else {
        set(
            PROGRESSING,
            false,
            "RolloutComplete",
            format!("version {} is rolled out", obs.version),
        );
    }
    match &obs.monitoring {
        Ok(()) => upsert(
            &mut conditions,
            MONITORING_CONFIGURED,
            "True",
            "Applied",
            "PrometheusRule and PodMonitor are applied".into(),
            obs.generation,
            now,
        ),
        Err(why) => upsert(
            &mut conditions,
            MONITORING_CONFIGURED,
            "False",
            "Skipped",
            why.clone(),
            obs.generation,
            now,
        ),
    }
    freeze_condition(&mut conditions, obs, now);
    backends_condition(&mut conditions, obs, now);
    match &obs.verdict {
        Some(verdict) => slo_conditions(&mut conditions, verdict, obs, now),
        None => {
            for type_ in [BUDGET_EXHAUSTED, DEGRADED, METRICS_AVAILABLE] {
                if !conditions.iter().any(|c| c.type_ == type_) {
                    upsert(
                        &mut conditions,
                        type_,
                        "Unknown",
                        NOT_EVALUATED,
                        NOT_EVALUATED_MESSAGE.into(),
                        obs.generation,
                        now,
                    );
                }
            }
        }
    }
    let spec_applied = obs.spec_error.is_none();
    // Engine-owned like the SLIs: carried over until the next verdict.
    let (backends, partitions) = match (&obs.verdict, obs.remote_backends) {
        (_, false) => (vec![], Default::default()),
        (Some(v), true) => (v.backends.clone(), v.kafka_partitions.clone()),
        (None, true) => (
            previous.backends,
            previous.kafka.map(|k| k.partitions).unwrap_or_default(),
        ),
    };
    RetailPipelineStatus {
        observed_generation: obs.generation,
        conditions,
        topology: Some(obs.topology.as_str().into()),
        horizontal_scaling: obs
            .topology
            .scaling_limit()
            .map(|why| format!("Unavailable: {why}")),
        current_version: if spec_applied && !workloads.iter().any(|w| w.rolling()) {
            Some(obs.rollout.version.clone())
        } else {
            previous.current_version.clone()
        },
        ingest: obs.ingest.role_status(),
        serve: obs.serve.role_status(),
        backends,
        kafka: reachability::kafka_status(&partitions, obs.ingest.desired),
        slis: obs
            .verdict
            .as_ref()
            .map_or(previous.slis, |v| v.slis.clone()),
        budget: obs
            .verdict
            .as_ref()
            .map_or(previous.budget, |v| v.budget.clone()),
        rollout: obs.rollout_status.clone(),
        decisions: previous.decisions,
    }
}

const NOT_EVALUATED: &str = "NotEvaluated";
const NOT_EVALUATED_MESSAGE: &str = "the SLO engine has not evaluated this pipeline yet";
/// The RolloutFrozen reason when only a manual freeze holds.
pub const MANUAL_FREEZE: &str = "ManualFreeze";

/// Marks a closed gate that a dry run does not enforce.
fn dry_note(verdict: &Verdict, closed: bool) -> &'static str {
    if verdict.dry_run && closed {
        " (dry run: not enforced)"
    } else {
        ""
    }
}

/// RolloutFrozen: whether the budget's gate or a manual freeze holds rollouts, why, what the freeze
/// annotations do, and what is held back. Without a verdict the budget's part is left as it was.
fn freeze_condition(conditions: &mut Vec<Condition>, obs: &Observation, now: jiff::Timestamp) {
    let r = &obs.rollout_status;
    let manual = MarkStatus::active(r.manual_freeze.as_ref());
    let mut parts = vec![];
    let (status, reason) = match &obs.verdict {
        Some(v) => {
            let gate = &v.gates.freeze;
            parts.push(format!("{}{}", gate.reason, dry_note(v, gate.closed)));
            match (gate.closed, manual) {
                (false, true) => ("True", MANUAL_FREEZE),
                (closed, _) => (bool_str(closed), gate.code.as_str()),
            }
        }
        None if manual => ("True", MANUAL_FREEZE),
        None => match conditions.iter().find(|c| c.type_ == ROLLOUT_FROZEN) {
            Some(c) if c.reason != MANUAL_FREEZE => return,
            _ => {
                parts.push(NOT_EVALUATED_MESSAGE.into());
                ("Unknown", NOT_EVALUATED)
            }
        },
    };
    if let Some(m) = &r.manual_freeze {
        parts.push(format!("manual freeze {}", describe(m)));
    }
    if let Some(m) = &r.freeze_override {
        let effect = if obs.rollout.overridden {
            ", letting rollouts through the error budget's freeze"
        } else {
            ""
        };
        parts.push(format!("freeze override {}{effect}", describe(m)));
    }
    if !r.held_back.is_empty() {
        parts.push(format!("held back: {}", r.held_back.join(", ")));
    }
    upsert(
        conditions,
        ROLLOUT_FROZEN,
        status,
        reason,
        parts.join("; "),
        obs.generation,
        now,
    );
}

/// BackendsReachable, for workers on Cassandra or Kafka: from the verdict's backend reports,
/// Unknown until the engine has evaluated; absent for workers without remote backends.
fn backends_condition(conditions: &mut Vec<Condition>, obs: &Observation, now: jiff::Timestamp) {
    if !obs.remote_backends {
        conditions.retain(|c| c.type_ != BACKENDS_REACHABLE);
        return;
    }
    let (status, reason, message) = match &obs.verdict {
        Some(v) => reachability::condition(&v.backends),
        None if conditions.iter().any(|c| c.type_ == BACKENDS_REACHABLE) => return,
        None => ("Unknown", NOT_EVALUATED, NOT_EVALUATED_MESSAGE.into()),
    };
    upsert(
        conditions,
        BACKENDS_REACHABLE,
        status,
        reason,
        message,
        obs.generation,
        now,
    );
}

/// The conditions the SLO engine's verdict sets.
fn slo_conditions(
    conditions: &mut Vec<Condition>,
    verdict: &Verdict,
    obs: &Observation,
    now: jiff::Timestamp,
) {
    let generation = obs.generation;
    let degrade = &verdict.gates.degrade;
    upsert(
        conditions,
        DEGRADED,
        bool_str(degrade.closed),
        degrade.code.as_str(),
        format!("{}{}", degrade.reason, dry_note(verdict, degrade.closed)),
        generation,
        now,
    );
    match verdict.budget.remaining_percent {
        Some(remaining) => upsert(
            conditions,
            BUDGET_EXHAUSTED,
            bool_str(remaining <= 0.0),
            if remaining <= 0.0 {
                "BudgetExhausted"
            } else {
                "BudgetAvailable"
            },
            format!("{remaining:.2}% of the error budget remains"),
            generation,
            now,
        ),
        None => {
            // Absent data never flips the condition: keep its status, say why it is stale.
            let status =
                condition_status(conditions, BUDGET_EXHAUSTED).unwrap_or_else(|| "Unknown".into());
            upsert(
                conditions,
                BUDGET_EXHAUSTED,
                &status,
                "MissingData",
                "the budget cannot be computed: SLI data is missing".into(),
                generation,
                now,
            );
        }
    }
    if verdict.missing.is_empty() {
        upsert(
            conditions,
            METRICS_AVAILABLE,
            "True",
            "AllSLIsObserved",
            "every SLI was read from Prometheus".into(),
            generation,
            now,
        );
    } else {
        upsert(
            conditions,
            METRICS_AVAILABLE,
            "False",
            "MissingData",
            format!(
                "holding replicas and rollout state; missing: {}",
                verdict.missing.join("; ")
            ),
            generation,
            now,
        );
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

fn condition_status(conditions: &[Condition], type_: &str) -> Option<String> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// Whether a condition is currently True.
pub fn is_true(status: Option<&RetailPipelineStatus>, type_: &str) -> bool {
    status
        .and_then(|s| condition(s, type_))
        .is_some_and(|c| c.status == "True")
}

/// Records a decision in the status's history; returns the text its Event carries.
pub fn decided(
    status: &mut RetailPipelineStatus,
    decision: &crate::decisions::Decision,
    now: jiff::Timestamp,
) -> String {
    let reason = if decision.dry_run {
        format!("dry run, not acted on: {}", decision.reason)
    } else {
        decision.reason.clone()
    };
    status.record(Decision {
        kind: decision.kind,
        reason: reason.clone(),
        inputs: decision.inputs.clone(),
        dry_run: decision.dry_run,
        time: now.to_string(),
    });
    reason
}

/// Sets a condition, keeping its transition time when its status does not change.
pub fn upsert(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: jiff::Timestamp,
) {
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let condition = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: transition,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// The status of a condition, if set.
pub fn condition<'a>(status: &'a RetailPipelineStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod_trouble::TroubleKind;
    use tailwarden_slo::gate::GateCode;

    fn ready(n: i32) -> WorkloadObservation {
        WorkloadObservation {
            desired: n,
            ready: n,
            updated: n,
            total: n,
            observed_latest: true,
        }
    }

    fn obs(ingest: WorkloadObservation, serve: WorkloadObservation) -> Observation {
        Observation {
            generation: Some(3),
            topology: Topology::Distributed,
            version: "1.2.0".into(),
            ingest,
            serve,
            trouble: None,
            spec_error: None,
            verdict: None,
            rollout: RolloutPlan {
                version: "1.2.0".into(),
                paused: false,
                hold: false,
                overridden: false,
            },
            rollout_status: RolloutStatus::default(),
            monitoring: Err("monitoring.coreos.com CRDs are not installed".into()),
            remote_backends: true,
        }
    }

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn ready_when_every_workload_is_available() {
        let s = status(None, &obs(ready(2), ready(3)), at(0));
        let c = condition(&s, READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "WorkloadsAvailable")
        );
        assert_eq!(condition(&s, PROGRESSING).unwrap().status, "False");
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.serve.summary.as_deref(), Some("3/3"));
        assert_eq!(s.current_version.as_deref(), Some("1.2.0"));
        assert_eq!(condition(&s, ROLLOUT_FROZEN).unwrap().status, "Unknown");
    }

    #[test]
    fn not_ready_and_progressing_while_rolling() {
        let rolling = WorkloadObservation {
            desired: 3,
            ready: 2,
            updated: 1,
            total: 3,
            observed_latest: true,
        };
        let surging = WorkloadObservation {
            desired: 3,
            ready: 4,
            updated: 3,
            total: 4,
            observed_latest: true,
        };
        let s = status(None, &obs(ready(1), surging), at(0));
        assert_eq!(
            condition(&s, PROGRESSING).unwrap().status,
            "True",
            "old pods still run"
        );
        assert_eq!(condition(&s, READY).unwrap().status, "False");
        let s = status(None, &obs(ready(1), rolling), at(0));
        assert_eq!(condition(&s, READY).unwrap().status, "False");
        assert!(condition(&s, READY).unwrap().message.contains("serve 2/3"));
        assert_eq!(condition(&s, PROGRESSING).unwrap().status, "True");
        assert_eq!(
            s.current_version, None,
            "the new version is not current until rolled out"
        );
    }

    fn trouble(kind: TroubleKind, reason: &str, message: &str) -> PodTrouble {
        PodTrouble {
            pod: "shop-web-0".into(),
            container: Some("dataplane".into()),
            kind,
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn not_ready_names_the_pods_trouble_when_known() {
        let down = WorkloadObservation {
            ready: 0,
            ..ready(1)
        };
        let message = r#"Container image "x" is not present with pull policy of Never"#;
        let mut o = obs(down.clone(), down);
        o.trouble = Some(trouble(
            TroubleKind::ImagePull,
            "ErrImageNeverPull",
            message,
        ));
        let c = condition(&status(None, &o, at(0)), READY).unwrap().clone();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "ImagePullFailed")
        );
        assert_eq!(
            c.message,
            format!(
                "ingest 0/1 ready, serve 0/1 ready; pod shop-web-0 container dataplane: \
                 ErrImageNeverPull: {message}"
            )
        );
        for (kind, reason) in [
            (TroubleKind::Crashing, "WorkerCrashing"),
            (TroubleKind::CannotStart, "WorkerCannotStart"),
            (TroubleKind::Unschedulable, "Unschedulable"),
            (TroubleKind::NotReady, "WorkerNotReady"),
            (TroubleKind::Starting, "WorkerStarting"),
        ] {
            o.trouble = Some(trouble(kind, "R", "m"));
            let c = condition(&status(None, &o, at(0)), READY).unwrap().clone();
            assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", reason));
            assert!(
                c.message
                    .ends_with("; pod shop-web-0 container dataplane: R: m")
            );
        }
        // Without a cause the reason and message are the counts' alone.
        o.trouble = None;
        let c = condition(&status(None, &o, at(0)), READY).unwrap().clone();
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            ("WorkloadsNotReady", "ingest 0/1 ready, serve 0/1 ready")
        );
    }

    #[test]
    fn available_workloads_and_an_invalid_spec_outrank_pod_trouble() {
        let mut o = obs(ready(1), ready(1));
        o.trouble = Some(trouble(TroubleKind::NotReady, "ContainersNotReady", "m"));
        let c = condition(&status(None, &o, at(0)), READY).unwrap().clone();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "WorkloadsAvailable"),
            "every workload available is Ready, whatever a pod says"
        );
        o.trouble = Some(trouble(TroubleKind::Starting, "ContainerCreating", ""));
        o.spec_error = Some(SpecError::new("spec.ingest.batch.linger", "bad"));
        let c = condition(&status(None, &o, at(0)), READY).unwrap().clone();
        assert_eq!(c.reason, "InvalidSpec", "an unusable spec is named first");
    }

    #[test]
    fn transition_time_moves_only_on_a_status_change() {
        let first = status(None, &obs(ready(1), ready(1)), at(0));
        let same = status(Some(&first), &obs(ready(1), ready(1)), at(60));
        assert_eq!(
            condition(&same, READY).unwrap().last_transition_time,
            Time(at(0))
        );
        let down = WorkloadObservation {
            ready: 0,
            ..ready(1)
        };
        let changed = status(Some(&same), &obs(ready(1), down), at(120));
        assert_eq!(
            condition(&changed, READY).unwrap().last_transition_time,
            Time(at(120))
        );
        assert_eq!(changed.conditions.len(), 8, "one entry per type");
        let monitoring = condition(&changed, MONITORING_CONFIGURED).unwrap();
        assert_eq!(
            (monitoring.status.as_str(), monitoring.reason.as_str()),
            ("False", "Skipped")
        );
    }

    #[test]
    fn spec_error_names_the_field_in_ready() {
        let mut o = obs(ready(1), ready(1));
        o.spec_error = Some(SpecError::new("spec.ingest.batch.linger", "bad"));
        let s = status(None, &o, at(0));
        let c = condition(&s, READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(c.message.contains("spec.ingest.batch.linger"));
    }

    fn verdict(remaining: Option<f64>, frozen: bool, missing: Vec<String>) -> Verdict {
        Verdict {
            budget: tailwarden_crds::BudgetStatus {
                remaining_percent: remaining,
                ..Default::default()
            },
            missing,
            ..crate::test_support::verdict(frozen, GateCode::BudgetBelowThreshold)
        }
    }

    #[test]
    fn the_verdict_sets_the_slo_conditions() {
        let mut o = obs(ready(1), ready(1));
        o.verdict = Some(verdict(Some(0.0), true, vec![]));
        o.rollout_status.held_back = vec!["version 1.1.0 -> 1.2.0".into()];
        let s = status(None, &o, at(0));
        let frozen = condition(&s, ROLLOUT_FROZEN).unwrap();
        assert_eq!(
            (frozen.status.as_str(), frozen.reason.as_str()),
            ("True", "BudgetBelowThreshold")
        );
        assert!(
            frozen
                .message
                .ends_with("; held back: version 1.1.0 -> 1.2.0"),
            "{}",
            frozen.message
        );
        assert_eq!(s.rollout.held_back, ["version 1.1.0 -> 1.2.0"]);
        assert_eq!(condition(&s, BUDGET_EXHAUSTED).unwrap().status, "True");
        assert_eq!(condition(&s, METRICS_AVAILABLE).unwrap().status, "True");
        assert!(is_true(Some(&s), ROLLOUT_FROZEN));
    }

    #[test]
    fn a_manual_freeze_sets_rollout_frozen_with_or_without_a_verdict() {
        let mut o = obs(ready(1), ready(1));
        o.rollout_status.manual_freeze = Some(MarkStatus {
            state: tailwarden_crds::MarkState::Active,
            reason: "peak sale".into(),
            by: Some("alice".into()),
            until: Some("2026-12-03T00:00:00Z".into()),
        });
        let s = status(None, &o, at(0));
        let c = condition(&s, ROLLOUT_FROZEN).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", MANUAL_FREEZE)
        );
        assert!(
            c.message
                .contains("manual freeze set by alice until 2026-12-03T00:00:00Z: peak sale"),
            "{}",
            c.message
        );
        o.verdict = Some(verdict(Some(0.9), false, vec![]));
        let c = condition(&status(Some(&s), &o, at(1)), ROLLOUT_FROZEN)
            .unwrap()
            .clone();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", MANUAL_FREEZE)
        );
        // Once it ends, without a verdict, the condition no longer claims a manual freeze.
        o.verdict = None;
        o.rollout_status.manual_freeze = None;
        let c = condition(&status(Some(&s), &o, at(2)), ROLLOUT_FROZEN)
            .unwrap()
            .clone();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "NotEvaluated")
        );
    }

    #[test]
    fn missing_data_names_the_sli_and_keeps_budget_exhausted() {
        let mut o = obs(ready(1), ready(1));
        o.verdict = Some(verdict(Some(-0.5), false, vec![]));
        let exhausted = status(None, &o, at(0));
        o.verdict = Some(verdict(
            None,
            false,
            vec!["read latency: no samples".into()],
        ));
        let s = status(Some(&exhausted), &o, at(10));
        let budget = condition(&s, BUDGET_EXHAUSTED).unwrap();
        assert_eq!(
            (budget.status.as_str(), budget.reason.as_str()),
            ("True", "MissingData")
        );
        let metrics = condition(&s, METRICS_AVAILABLE).unwrap();
        assert_eq!(metrics.status, "False");
        assert!(metrics.message.contains("read latency: no samples"));
    }

    #[test]
    fn standalone_reports_that_it_cannot_scale_out() {
        let mut o = obs(ready(1), ready(1));
        o.topology = Topology::Standalone;
        let s = status(None, &o, at(0));
        assert!(
            s.horizontal_scaling
                .unwrap()
                .contains("distributed backend")
        );
    }

    #[test]
    fn backend_reports_set_their_condition_and_the_idle_ingest_replicas() {
        let mut o = obs(ready(3), ready(2));
        let before = status(None, &o, at(0));
        assert_eq!(
            condition(&before, BACKENDS_REACHABLE).unwrap().reason,
            NOT_EVALUATED
        );
        let mut v = verdict(Some(50.0), false, vec![]);
        v.backends = vec![tailwarden_crds::BackendStatus {
            role: "serve".into(),
            backend: "cassandra".into(),
            workers: 2,
            reachable: 1,
            errors: [("unreachable".to_owned(), 1)].into(),
        }];
        v.kafka_partitions = [("p.pricing".to_owned(), 2)].into();
        o.verdict = Some(v);
        let s = status(Some(&before), &o, at(10));
        let c = condition(&s, BACKENDS_REACHABLE).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "BackendUnreachable")
        );
        assert!(
            c.message
                .starts_with("serve workers: cassandra unreachable"),
            "{}",
            c.message
        );
        assert_eq!(
            s.kafka.as_ref().unwrap().idle_ingest_replicas,
            1,
            "3 replicas, 2 partitions"
        );
        // Without a new verdict the engine's reports carry over.
        o.verdict = None;
        let later = status(Some(&s), &o, at(20));
        assert_eq!(
            (later.backends.clone(), later.kafka.clone()),
            (s.backends.clone(), s.kafka.clone())
        );
        // Workers without Cassandra or Kafka report nothing and get no condition.
        o.remote_backends = false;
        let embedded = status(Some(&later), &o, at(30));
        assert!(condition(&embedded, BACKENDS_REACHABLE).is_none());
        assert!(embedded.backends.is_empty() && embedded.kafka.is_none());
    }
}
