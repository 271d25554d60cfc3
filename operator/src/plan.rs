//! The plan: everything one reconcile applies and decides, as a pure function of the pipeline,
//! what runs now ([`Live`]) and the SLO engine's latest verdict.
//!
//! The reconciler only observes before and applies and reports after; every branch (freeze and
//! degrade enforcement, the replica choice, rollout holds, the decisions) is here and unit-tested.

use tailwarden_crds::{DecisionInputs, DecisionKind, RetailPipeline, RetailPipelineStatus};
use tailwarden_slo::objective::Objectives;

use crate::children::{self, Replicas};
use crate::conditions::{DEGRADED, ROLLOUT_FROZEN, is_true};
use crate::dataplane_config;
use crate::decisions::{self, Applied, Decision};
use crate::evaluation;
use crate::rollout::{self, RolloutInput, RolloutPlan};
use crate::spec_error::SpecError;
use crate::topology::Topology;
use crate::verdict::{Scale, Verdict};

/// What the live workloads run: replica counts, the version in their templates, and whether a
/// rollout is still replacing pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Replicas of the ingest Deployment, if it exists.
    pub ingest_replicas: Option<i32>,
    /// Replicas of the serve Deployment, if it exists.
    pub serve_replicas: Option<i32>,
    /// The version label of the workloads' pod templates.
    pub version: Option<String>,
    /// Whether a workload is still replacing pods.
    pub in_flight: bool,
}

/// What to apply when the spec can be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    /// The children's plan: config, replicas, version, pause.
    pub children: children::Plan,
    /// The SLOs, for the PrometheusRule.
    pub objectives: Objectives,
}

/// The outcome of planning one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The topology the spec asks for.
    pub topology: Topology,
    /// Which version runs, and whether the freeze holds one back.
    pub rollout: RolloutPlan,
    /// What to apply, or why the spec cannot be used (then nothing is applied).
    pub apply: Result<Apply, SpecError>,
    /// The decisions this reconcile makes, to record.
    pub decisions: Vec<Decision>,
}

/// Plans one reconcile of `pipeline`.
pub fn plan(pipeline: &RetailPipeline, live: &Live, verdict: Option<&Verdict>) -> Plan {
    let spec = &pipeline.spec;
    let previous = pipeline.status.as_ref();
    let topology = Topology::of(spec);
    // Until the engine has a verdict, hold what the status says; in a dry run, enforce nothing.
    let enforce = |type_: &str, closed: fn(&Verdict) -> bool| match verdict {
        Some(v) if v.dry_run => false,
        Some(v) => closed(v),
        None => is_true(previous, type_),
    };
    let frozen = enforce(ROLLOUT_FROZEN, |v| v.gates.freeze.closed);
    let degraded = enforce(DEGRADED, |v| v.gates.degrade.closed);
    let rollout = rollout::plan(&RolloutInput {
        spec_version: &spec.dataplane.version,
        running_version: live.version.as_deref(),
        in_flight: live.in_flight,
        frozen,
        override_reason: pipeline
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(rollout::OVERRIDE_ANNOTATION))
            .map(String::as_str),
    });
    let replicas = replicas(pipeline, topology, live, verdict);
    let apply = dataplane_config::render(spec, degraded).and_then(|config| {
        Ok(Apply {
            children: children::Plan {
                config,
                replicas,
                version: rollout.version.clone(),
                paused: rollout.paused,
            },
            objectives: evaluation::objectives(spec)?,
        })
    });
    let mut made: Vec<Decision> = generation_decision(pipeline, topology, &apply)
        .into_iter()
        .collect();
    if let Some(v) = verdict {
        let scalable = topology == Topology::Distributed;
        made.extend(decisions::decisions(
            previous,
            &Applied {
                verdict: v,
                rollout: &rollout,
                serve_replicas: scalable.then_some(replicas.serve),
                ingest_replicas: scalable.then_some(replicas.ingest),
            },
        ));
    }
    Plan {
        topology,
        rollout,
        apply,
        decisions: made,
    }
}

/// Replicas per role: the engine's decision where the topology scales, autoscaling is on and the
/// run is not dry; otherwise what runs now (the minimum for new workloads). Always within range.
fn replicas(
    pipeline: &RetailPipeline,
    topology: Topology,
    live: &Live,
    verdict: Option<&Verdict>,
) -> Replicas {
    let spec = &pipeline.spec;
    let acts = spec.autoscaling.enabled
        && topology == Topology::Distributed
        && verdict.is_some_and(|v| !v.dry_run);
    let choose =
        |decided: Option<&Scale>, now: Option<i32>, range: &tailwarden_crds::ReplicaRange| {
            let wanted = match decided {
                Some(scale) if acts => scale.replicas,
                _ => now.unwrap_or(range.min),
            };
            wanted.clamp(range.min, range.max)
        };
    Replicas {
        ingest: choose(
            verdict.and_then(|v| v.ingest.as_ref()),
            live.ingest_replicas,
            &spec.ingest.replicas,
        ),
        serve: choose(
            verdict.and_then(|v| v.serve.as_ref()),
            live.serve_replicas,
            &spec.serve.replicas,
        ),
    }
}

/// A new generation is a decision: applied, or refused with the field named.
fn generation_decision(
    pipeline: &RetailPipeline,
    topology: Topology,
    apply: &Result<Apply, SpecError>,
) -> Option<Decision> {
    let generation = pipeline.metadata.generation;
    let seen = pipeline
        .status
        .as_ref()
        .and_then(|s: &RetailPipelineStatus| s.observed_generation);
    if seen == generation {
        return None;
    }
    let generation = generation.unwrap_or(0);
    let (kind, reason) = match apply {
        Err(err) => (
            DecisionKind::InvalidSpec,
            format!("generation {generation} not applied: {err}"),
        ),
        Ok(_) => (
            DecisionKind::Reconciled,
            format!(
                "applied generation {generation} as {} topology",
                topology.as_str()
            ),
        ),
    };
    Some(Decision {
        kind,
        reason,
        inputs: DecisionInputs {
            version: Some(pipeline.spec.dataplane.version.clone()),
            ..DecisionInputs::default()
        },
        dry_run: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cassandra_pipeline, pipeline, verdict};

    fn kinds(p: &Plan) -> Vec<DecisionKind> {
        p.decisions.iter().map(|d| d.kind).collect()
    }

    fn observed(mut p: RetailPipeline) -> RetailPipeline {
        let mut status = RetailPipelineStatus {
            observed_generation: p.metadata.generation,
            ..Default::default()
        };
        status.serve.desired_replicas = 1;
        status.ingest.desired_replicas = 1;
        p.status = Some(status);
        p
    }

    fn scaling_verdict(serve: i32, ingest: i32) -> Verdict {
        Verdict {
            serve: Some(Scale {
                replicas: serve,
                reason: "serve: p99 near its bound".into(),
            }),
            ingest: Some(Scale {
                replicas: ingest,
                reason: "ingest: lag".into(),
            }),
            ..verdict(false, "BudgetHealthy")
        }
    }

    #[test]
    fn a_new_generation_is_reconciled_once() {
        let p = pipeline("a");
        let planned = plan(&p, &Live::default(), None);
        assert_eq!(kinds(&planned), [DecisionKind::Reconciled]);
        assert!(planned.apply.is_ok());
        assert!(
            plan(&observed(p), &Live::default(), None)
                .decisions
                .is_empty()
        );
    }

    #[test]
    fn an_unusable_spec_applies_nothing_and_names_the_field() {
        let mut p = pipeline("a");
        p.spec.slos.freshness.max_lag = "soon".into();
        let planned = plan(&p, &Live::default(), None);
        assert_eq!(kinds(&planned), [DecisionKind::InvalidSpec]);
        let err = planned.apply.unwrap_err();
        assert_eq!(err.field, "spec.slos.freshness.maxLag");
    }

    #[test]
    fn a_standalone_pipeline_never_scales_nor_records_a_scale() {
        // The hot loop this guards against: serve min 2 against one standalone replica gave a
        // "ScaleServe 1 -> 2" on every reconcile, each one a status write and a new reconcile.
        let mut p = observed(pipeline("a"));
        p.spec.serve.replicas.min = 2;
        p.spec.serve.replicas.max = 4;
        let planned = plan(&p, &Live::default(), Some(&scaling_verdict(3, 2)));
        assert!(planned.decisions.is_empty(), "{:?}", planned.decisions);
    }

    #[test]
    fn a_distributed_pipeline_applies_the_engines_replicas_within_range() {
        let mut p = observed(cassandra_pipeline("a"));
        p.spec.serve.replicas.max = 3;
        let live = Live {
            serve_replicas: Some(1),
            ingest_replicas: Some(1),
            ..Live::default()
        };
        let planned = plan(&p, &live, Some(&scaling_verdict(5, 2)));
        let replicas = planned.apply.as_ref().unwrap().children.replicas;
        assert_eq!(
            (replicas.serve, replicas.ingest),
            (3, 2),
            "serve capped at max"
        );
        // The clamped serve count is not what the engine decided, so only ingest is recorded.
        assert_eq!(kinds(&planned), [DecisionKind::ScaleIngest]);
    }

    #[test]
    fn without_autoscaling_or_in_a_dry_run_replicas_hold() {
        let mut p = observed(cassandra_pipeline("a"));
        let live = Live {
            serve_replicas: Some(2),
            ingest_replicas: Some(1),
            ..Live::default()
        };
        p.spec.autoscaling.enabled = false;
        let held = plan(&p, &live, Some(&scaling_verdict(4, 3)));
        let r = held.apply.as_ref().unwrap().children.replicas;
        assert_eq!((r.serve, r.ingest), (2, 1));
        p.spec.autoscaling.enabled = true;
        let dry = Verdict {
            dry_run: true,
            ..scaling_verdict(4, 3)
        };
        let planned = plan(&p, &live, Some(&dry));
        let r = planned.apply.as_ref().unwrap().children.replicas;
        assert_eq!((r.serve, r.ingest), (2, 1), "a dry run does not act");
        assert!(
            planned.decisions.iter().all(|d| d.dry_run),
            "but reports what it would do"
        );
        assert_eq!(planned.decisions.len(), 2);
    }

    #[test]
    fn the_freeze_holds_the_running_version_unless_overridden() {
        let mut p = observed(cassandra_pipeline("a"));
        p.spec.dataplane.version = "2.0.0".into();
        let live = Live {
            version: Some("1.0.0".into()),
            serve_replicas: Some(1),
            ingest_replicas: Some(1),
            ..Live::default()
        };
        let frozen = verdict(true, "BudgetBelowFreeze");
        let held = plan(&p, &live, Some(&frozen));
        assert_eq!(held.apply.as_ref().unwrap().children.version, "1.0.0");
        assert!(held.rollout.held_back);
        assert_eq!(kinds(&held), [DecisionKind::FreezeRollout]);
        p.metadata.annotations =
            Some([(rollout::OVERRIDE_ANNOTATION.to_owned(), "hotfix".to_owned())].into());
        let through = plan(&p, &live, Some(&frozen));
        assert_eq!(through.apply.unwrap().children.version, "2.0.0");
        assert!(
            through
                .decisions
                .iter()
                .any(|d| d.kind == DecisionKind::OverrideFreeze)
        );
    }

    #[test]
    fn without_a_verdict_the_previous_freeze_and_degradation_hold() {
        let mut p = observed(cassandra_pipeline("a"));
        p.spec.dataplane.version = "2.0.0".into();
        let status = p.status.as_mut().unwrap();
        for type_ in [ROLLOUT_FROZEN, DEGRADED] {
            crate::conditions::upsert(
                &mut status.conditions,
                type_,
                "True",
                "X",
                String::new(),
                None,
                jiff::Timestamp::UNIX_EPOCH,
            );
        }
        let live = Live {
            version: Some("1.0.0".into()),
            ..Live::default()
        };
        let planned = plan(&p, &live, None);
        let apply = planned.apply.as_ref().unwrap();
        assert_eq!(apply.children.version, "1.0.0", "still frozen");
        assert!(
            apply.children.config.degradation.pause_non_critical,
            "still degraded"
        );
        assert!(planned.decisions.is_empty());
    }

    #[test]
    fn a_closing_degrade_gate_degrades_the_config() {
        let p = observed(cassandra_pipeline("a"));
        let mut v = verdict(false, "BudgetHealthy");
        v.gates.degrade.closed = true;
        let planned = plan(&p, &Live::default(), Some(&v));
        assert!(
            planned
                .apply
                .as_ref()
                .unwrap()
                .children
                .config
                .degradation
                .pause_non_critical
        );
        assert_eq!(kinds(&planned), [DecisionKind::Degrade]);
    }
}
