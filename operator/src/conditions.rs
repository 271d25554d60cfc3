//! The pipeline's status, computed from what was observed: a pure function.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use tailwarden_crds::{Decision, RetailPipelineStatus, RoleStatus};

use crate::spec_error::SpecError;
use crate::topology::Topology;

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

/// What the reconciler saw of one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadObservation {
    /// Replicas wanted.
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Replicas running the current template.
    pub updated: i32,
    /// Whether the workload controller has seen the latest template.
    pub observed_latest: bool,
}

impl WorkloadObservation {
    fn available(&self) -> bool {
        self.observed_latest && self.ready >= self.desired && self.updated >= self.desired
    }

    fn rolling(&self) -> bool {
        !self.observed_latest || self.updated < self.desired
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
    /// Why the spec could not be used, if it could not.
    pub spec_error: Option<SpecError>,
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
        None => set(
            READY,
            false,
            "WorkloadsNotReady",
            format!(
                "ingest {}/{} ready, serve {}/{} ready",
                obs.ingest.ready, obs.ingest.desired, obs.serve.ready, obs.serve.desired
            ),
        ),
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
    for type_ in [ROLLOUT_FROZEN, BUDGET_EXHAUSTED, DEGRADED] {
        if !conditions.iter().any(|c| c.type_ == type_) {
            upsert(
                &mut conditions,
                type_,
                "Unknown",
                "NotEvaluated",
                "the SLO engine has not evaluated this pipeline yet".into(),
                obs.generation,
                now,
            );
        }
    }
    let spec_applied = obs.spec_error.is_none();
    RetailPipelineStatus {
        observed_generation: obs.generation,
        conditions,
        topology: Some(obs.topology.as_str().into()),
        horizontal_scaling: obs
            .topology
            .scaling_limit()
            .map(|why| format!("Unavailable: {why}")),
        current_version: if spec_applied && !workloads.iter().any(|w| w.rolling()) {
            Some(obs.version.clone())
        } else {
            previous.current_version.clone()
        },
        ingest: obs.ingest.role_status(),
        serve: obs.serve.role_status(),
        slis: previous.slis,
        budget: previous.budget,
        last_decision: previous.last_decision,
    }
}

/// Records a decision in the status.
pub fn decided(
    status: &mut RetailPipelineStatus,
    kind: &str,
    reason: String,
    now: jiff::Timestamp,
) {
    status.last_decision = Some(Decision {
        kind: kind.into(),
        reason,
        time: now.to_string(),
    });
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

    fn ready(n: i32) -> WorkloadObservation {
        WorkloadObservation {
            desired: n,
            ready: n,
            updated: n,
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
            spec_error: None,
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
            observed_latest: true,
        };
        let s = status(None, &obs(ready(1), rolling), at(0));
        assert_eq!(condition(&s, READY).unwrap().status, "False");
        assert!(condition(&s, READY).unwrap().message.contains("serve 2/3"));
        assert_eq!(condition(&s, PROGRESSING).unwrap().status, "True");
        assert_eq!(
            s.current_version, None,
            "the new version is not current until rolled out"
        );
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
        assert_eq!(changed.conditions.len(), 5, "one entry per type");
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
}
