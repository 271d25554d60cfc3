//! The plan: everything one reconcile applies and decides, as a pure function of the pipeline,
//! what runs now ([`Live`]) and the SLO engine's latest verdict.
//!
//! The reconciler only observes before and applies and reports after; every branch (freeze and
//! degrade enforcement, the replica choice, rollout holds, the decisions) is here and unit-tested.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;
use tailwarden_crds::{
    DecisionInputs, DecisionKind, MarkStatus, RetailPipeline, RetailPipelineStatus, RolloutStatus,
};
use tailwarden_slo::objective::Objectives;

use crate::children::{self, Children, Replicas, Role};
use crate::conditions::{DEGRADED, is_true};
use crate::dataplane_config;
use crate::decisions::{self, Applied, Decision};
use crate::evaluation;
use crate::freeze_annotations::{self, Mark};
use crate::held_back::{self, LiveRollout};
use crate::rollout::{self, RolloutInput, RolloutPlan};
use crate::spec_error::SpecError;
use crate::topology::Topology;
use crate::verdict::{Scale, Verdict};

/// What runs now: replica counts, the workloads' templates and version, the config, and whether
/// a rollout is still replacing pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Replicas of the ingest Deployment, if it exists.
    pub ingest_replicas: Option<i32>,
    /// Replicas of the serve Deployment, if it exists.
    pub serve_replicas: Option<i32>,
    /// The version label of the workloads' pod templates.
    pub version: Option<String>,
    /// Whether a workload is still replacing pods.
    pub in_flight: bool,
    /// Each existing workload's pod template, which a freeze keeps.
    pub templates: Vec<(Role, PodTemplateSpec)>,
    /// The ConfigMap's data-plane config, which a freeze keeps.
    pub config: Option<String>,
}

/// What to apply when the spec can be used.
#[derive(Debug, Clone, PartialEq)]
pub struct Apply {
    /// The children, with what runs kept where a freeze holds.
    pub children: Children,
    /// The SLOs, for the PrometheusRule.
    pub objectives: Objectives,
}

/// The outcome of planning one reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The topology the spec asks for.
    pub topology: Topology,
    /// Which version runs, and whether a freeze holds.
    pub rollout: RolloutPlan,
    /// The status's view of rollouts: budget freeze, annotations, what is held back.
    pub rollout_status: RolloutStatus,
    /// What to apply, or why the spec cannot be used (then nothing is applied).
    pub apply: Result<Apply, SpecError>,
    /// The decisions this reconcile makes, to record.
    pub decisions: Vec<Decision>,
    /// When a freeze annotation expires, so the next reconcile comes no later.
    pub recheck_at: Option<Timestamp>,
}

/// Plans one reconcile of `pipeline` at `now`.
pub fn plan(
    pipeline: &RetailPipeline,
    live: &Live,
    verdict: Option<&Verdict>,
    now: Timestamp,
) -> Plan {
    let spec = &pipeline.spec;
    let previous = pipeline.status.as_ref();
    let topology = Topology::of(spec);
    // Until the engine has a verdict, hold what the status says; in a dry run, enforce nothing.
    let dry_run = verdict.map_or(spec.autoscaling.dry_run, |v| v.dry_run);
    let budget_frozen = verdict.map_or_else(
        || previous.is_some_and(|s| s.rollout.budget_frozen),
        |v| v.gates.freeze.closed,
    );
    let degraded =
        !dry_run && verdict.map_or_else(|| is_true(previous, DEGRADED), |v| v.gates.degrade.closed);
    let annotations = pipeline.metadata.annotations.as_ref();
    let manual_freeze = Mark::Freeze.read(annotations, now);
    let freeze_override = Mark::Override.read(annotations, now);
    let rollout = rollout::plan(&RolloutInput {
        spec_version: &spec.dataplane.version,
        running_version: live.version.as_deref(),
        in_flight: live.in_flight,
        budget_frozen: budget_frozen && !dry_run,
        manual_freeze: MarkStatus::active(manual_freeze.as_ref()),
        override_active: MarkStatus::active(freeze_override.as_ref()),
    });
    let replicas = replicas(pipeline, topology, live, verdict);
    let mut held = vec![];
    let apply = dataplane_config::render(&pipeline.name_any(), spec, degraded).and_then(|config| {
        let mut children = children::desired(
            pipeline,
            &children::Plan {
                config,
                replicas,
                version: rollout.version.clone(),
                paused: rollout.paused,
            },
        );
        if rollout.hold {
            let running = LiveRollout {
                version: live.version.as_deref(),
                templates: &live.templates,
                config: live.config.as_deref(),
            };
            held = held_back::hold(&mut children, &running, &spec.dataplane.version);
        }
        Ok(Apply {
            children,
            objectives: evaluation::objectives(spec)?,
        })
    });
    let recheck_at = [&manual_freeze, &freeze_override]
        .into_iter()
        .filter_map(|m| freeze_annotations::expiry(m.as_ref()))
        .min();
    let rollout_status = RolloutStatus {
        budget_frozen,
        held_back: held,
        manual_freeze,
        freeze_override,
    };
    let mut made: Vec<Decision> = generation_decision(pipeline, topology, &apply)
        .into_iter()
        .collect();
    if let Some(v) = verdict {
        let scalable = topology == Topology::Distributed;
        made.extend(decisions::decisions(
            previous,
            &Applied {
                verdict: v,
                serve_replicas: scalable.then_some(replicas.serve),
                ingest_replicas: scalable.then_some(replicas.ingest),
            },
        ));
    }
    made.extend(decisions::freeze_annotations(
        previous.map(|s| &s.rollout),
        &rollout_status,
        dry_run,
    ));
    Plan {
        topology,
        rollout,
        rollout_status,
        apply,
        decisions: made,
        recheck_at,
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
    use crate::children::{VERSION_LABEL, Workloads};
    use crate::test_support::{cassandra_pipeline, pipeline, verdict};
    use std::collections::BTreeMap;
    use tailwarden_crds::MarkState;
    use tailwarden_slo::gate::GateCode;

    fn now() -> Timestamp {
        "2026-12-02T12:00:00Z".parse().unwrap()
    }

    fn plan_now(p: &RetailPipeline, live: &Live, v: Option<&Verdict>) -> Plan {
        plan(p, live, v, now())
    }

    fn kinds(p: &Plan) -> Vec<DecisionKind> {
        p.decisions.iter().map(|d| d.kind).collect()
    }

    fn applied(p: &Plan) -> &Children {
        &p.apply.as_ref().unwrap().children
    }

    /// (serve, ingest) replicas of the Deployments.
    fn replicas_of(p: &Plan) -> (i32, i32) {
        let Workloads::Distributed { ingest, serve } = &applied(p).workloads else {
            unreachable!("a distributed pipeline")
        };
        let n = |d: &k8s_openapi::api::apps::v1::Deployment| d.spec.as_ref().unwrap().replicas;
        (n(serve).unwrap(), n(ingest).unwrap())
    }

    fn version_of(p: &Plan) -> String {
        applied(p).config_map.metadata.labels.as_ref().unwrap()[VERSION_LABEL].clone()
    }

    fn degraded(p: &Plan) -> bool {
        let mut c = applied(p).clone();
        c.config_yaml_mut()
            .unwrap()
            .contains("pauseNonCritical: true")
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
            ..verdict(false, GateCode::BudgetHealthy)
        }
    }

    /// What runs after applying `p` at `version`: as the API server returns it.
    fn running(p: &RetailPipeline, version: &str) -> Live {
        let mut at_version = p.clone();
        at_version.spec.dataplane.version = version.into();
        let mut children =
            applied(&plan_now(&observed(at_version), &Live::default(), None)).clone();
        Live {
            serve_replicas: Some(1),
            ingest_replicas: Some(1),
            version: Some(version.into()),
            in_flight: false,
            config: children.config_yaml_mut().cloned(),
            templates: children
                .templates_mut()
                .into_iter()
                .map(|(role, t)| (role, t.clone()))
                .collect(),
        }
    }

    fn annotate(p: &mut RetailPipeline, mark: Mark, until: &str, by: &str) {
        let a = p.metadata.annotations.get_or_insert_with(BTreeMap::new);
        a.insert(mark.annotation().into(), "reason".into());
        a.insert(mark.until_annotation().into(), until.into());
        a.insert(mark.by_annotation().into(), by.into());
    }

    #[test]
    fn a_new_generation_is_reconciled_once() {
        let p = pipeline("a");
        let planned = plan_now(&p, &Live::default(), None);
        assert_eq!(kinds(&planned), [DecisionKind::Reconciled]);
        assert!(planned.apply.is_ok());
        assert!(
            plan_now(&observed(p), &Live::default(), None)
                .decisions
                .is_empty()
        );
    }

    #[test]
    fn an_unusable_spec_applies_nothing_and_names_the_field() {
        let mut p = pipeline("a");
        p.spec.slos.freshness.max_lag = "soon".into();
        let planned = plan_now(&p, &Live::default(), None);
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
        let planned = plan_now(&p, &Live::default(), Some(&scaling_verdict(3, 2)));
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
        let planned = plan_now(&p, &live, Some(&scaling_verdict(5, 2)));
        assert_eq!(replicas_of(&planned), (3, 2), "serve capped at max");
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
        let held = plan_now(&p, &live, Some(&scaling_verdict(4, 3)));
        assert_eq!(replicas_of(&held), (2, 1));
        p.spec.autoscaling.enabled = true;
        let dry = Verdict {
            dry_run: true,
            ..scaling_verdict(4, 3)
        };
        let planned = plan_now(&p, &live, Some(&dry));
        assert_eq!(replicas_of(&planned), (2, 1), "a dry run does not act");
        assert!(
            planned.decisions.iter().all(|d| d.dry_run),
            "but reports what it would do"
        );
        assert_eq!(planned.decisions.len(), 2);
    }

    #[test]
    fn the_freeze_holds_every_rollout_but_scaling_and_lists_what_it_holds() {
        let base = observed(cassandra_pipeline("a"));
        let live = running(&base, "1.0.0");
        let mut p = base.clone();
        p.spec.dataplane.version = "2.0.0".into();
        p.spec.ingest.batch.linger = "50ms".into();
        let frozen = Verdict {
            serve: Some(Scale {
                replicas: 2,
                reason: "p99".into(),
            }),
            ..verdict(true, GateCode::BudgetBelowThreshold)
        };
        let held = plan_now(&p, &live, Some(&frozen));
        assert_eq!(version_of(&held), "1.0.0");
        assert!(held.rollout.hold);
        assert_eq!(
            held.rollout_status.held_back,
            ["version 1.0.0 -> 2.0.0", "config ingest.batch.linger"]
        );
        let mut kept = applied(&held).clone();
        let live_templates: Vec<_> = live.templates.iter().map(|(_, t)| t.clone()).collect();
        let templates: Vec<_> = kept
            .templates_mut()
            .into_iter()
            .map(|(_, t)| t.clone())
            .collect();
        assert_eq!(templates, live_templates, "no pod is rolled");
        assert_eq!(
            kept.config_yaml_mut().cloned(),
            live.config,
            "nor is the config"
        );
        assert_eq!(replicas_of(&held), (2, 1), "but scaling is remediation");
        assert_eq!(
            kinds(&held),
            [DecisionKind::ScaleServe, DecisionKind::FreezeRollout]
        );
        // Unfrozen, all of it rolls out.
        let open = plan_now(&p, &live, Some(&verdict(false, GateCode::BudgetHealthy)));
        assert_eq!(version_of(&open), "2.0.0");
        assert!(open.rollout_status.held_back.is_empty());
    }

    #[test]
    fn an_override_in_effect_lets_changes_through_and_is_recorded_with_its_actor() {
        let base = observed(cassandra_pipeline("a"));
        let live = running(&base, "1.0.0");
        let mut p = base;
        p.status.as_mut().unwrap().rollout.budget_frozen = true;
        p.spec.dataplane.version = "2.0.0".into();
        let frozen = verdict(true, GateCode::BudgetBelowThreshold);
        annotate(&mut p, Mark::Override, "2026-12-02T13:00:00Z", "alice");
        let through = plan_now(&p, &live, Some(&frozen));
        assert_eq!(version_of(&through), "2.0.0");
        assert_eq!(kinds(&through), [DecisionKind::OverrideFreeze]);
        assert_eq!(through.decisions[0].inputs.actor.as_deref(), Some("alice"));
        assert_eq!(
            through.recheck_at,
            Some("2026-12-02T13:00:00Z".parse().unwrap())
        );
        // Expired: the budget's freeze applies again, and the status says why.
        annotate(&mut p, Mark::Override, "2026-12-02T11:00:00Z", "alice");
        let expired = plan_now(&p, &live, Some(&frozen));
        assert_eq!(version_of(&expired), "1.0.0");
        assert_eq!(
            expired
                .rollout_status
                .freeze_override
                .as_ref()
                .unwrap()
                .state,
            MarkState::Expired
        );
        assert_eq!(expired.recheck_at, None);
    }

    #[test]
    fn a_manual_freeze_holds_without_the_engine_until_it_expires() {
        let base = observed(cassandra_pipeline("a"));
        let live = running(&base, "1.0.0");
        let mut p = base;
        p.spec.dataplane.version = "2.0.0".into();
        annotate(&mut p, Mark::Freeze, "2026-12-02T18:00:00Z", "bob");
        let held = plan_now(&p, &live, None);
        assert_eq!(version_of(&held), "1.0.0");
        assert_eq!(kinds(&held), [DecisionKind::FreezeRollout]);
        assert_eq!(held.decisions[0].inputs.actor.as_deref(), Some("bob"));
        // An override does not lift a manual freeze.
        annotate(&mut p, Mark::Override, "2026-12-02T13:00:00Z", "alice");
        assert_eq!(version_of(&plan_now(&p, &live, None)), "1.0.0");
        // Without an actor it has no effect.
        p.metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(Mark::Freeze.by_annotation());
        let anonymous = plan_now(&p, &live, None);
        assert_eq!(version_of(&anonymous), "2.0.0");
        assert_eq!(
            anonymous.rollout_status.manual_freeze.unwrap().state,
            MarkState::NoActor
        );
    }

    #[test]
    fn without_a_verdict_the_previous_freeze_and_degradation_hold() {
        let base = observed(cassandra_pipeline("a"));
        let live = running(&base, "1.0.0");
        let mut p = base;
        p.spec.dataplane.version = "2.0.0".into();
        let status = p.status.as_mut().unwrap();
        status.rollout.budget_frozen = true;
        crate::conditions::upsert(
            &mut status.conditions,
            DEGRADED,
            "True",
            "X",
            String::new(),
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        let planned = plan_now(&p, &live, None);
        assert_eq!(version_of(&planned), "1.0.0", "still frozen");
        assert!(degraded(&planned), "still degraded");
        assert!(planned.decisions.is_empty());
        p.spec.autoscaling.dry_run = true;
        assert_eq!(
            version_of(&plan_now(&p, &live, None)),
            "2.0.0",
            "a dry run enforces nothing"
        );
    }

    #[test]
    fn a_closing_degrade_gate_degrades_the_config() {
        let p = observed(cassandra_pipeline("a"));
        let mut v = verdict(false, GateCode::BudgetHealthy);
        v.gates.degrade.closed = true;
        let planned = plan_now(&p, &Live::default(), Some(&v));
        assert!(degraded(&planned));
        assert_eq!(kinds(&planned), [DecisionKind::Degrade]);
    }
}
