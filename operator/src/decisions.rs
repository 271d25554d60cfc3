//! The decisions a reconcile makes, found by comparing what it plans with the previous status.
//!
//! Each decision goes to three places: the status's decision history, a Kubernetes Event and the
//! `tailwarden_operator_decisions_total{kind}` metric. Kinds are one enum ([`DecisionKind`]), so
//! the three always agree and the metric's cardinality stays bounded.

use tailwarden_crds::{DecisionInputs, DecisionKind, RetailPipelineStatus};

use crate::conditions::{DEGRADED, ROLLOUT_FROZEN, is_true};
use crate::rollout::RolloutPlan;
use crate::verdict::Verdict;
use tailwarden_slo::gate::GateState;

/// One decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What was decided.
    pub kind: DecisionKind,
    /// Why, with the numbers.
    pub reason: String,
    /// The signals it was taken on.
    pub inputs: DecisionInputs,
    /// Whether it was only reported (dry run).
    pub dry_run: bool,
}

/// What a reconcile plans to apply.
#[derive(Debug, Clone)]
pub struct Applied<'a> {
    /// The verdict it acts on.
    pub verdict: &'a Verdict,
    /// The rollout plan.
    pub rollout: &'a RolloutPlan,
    /// Serve replicas applied; None where the topology cannot scale serve.
    pub serve_replicas: Option<i32>,
    /// Ingest replicas applied; see `serve_replicas`.
    pub ingest_replicas: Option<i32>,
}

/// The signals of a verdict that every decision records.
fn inputs(v: &Verdict) -> DecisionInputs {
    DecisionInputs {
        budget_remaining_percent: v.budget.remaining_percent,
        worst_slo: v.budget.worst_slo.clone(),
        read_p99: v.slis.read_p99.clone(),
        freshness_lag: v.slis.freshness_lag.clone(),
        ..DecisionInputs::default()
    }
}

/// Every decision of the verdict that differs from the previous status.
pub fn decisions(previous: Option<&RetailPipelineStatus>, applied: &Applied<'_>) -> Vec<Decision> {
    let v = applied.verdict;
    let mut out = vec![];
    let mut push = |kind, reason: String, inputs: DecisionInputs| {
        out.push(Decision {
            kind,
            reason,
            inputs,
            dry_run: v.dry_run,
        })
    };
    let roles = [
        (
            DecisionKind::ScaleServe,
            &v.serve,
            previous.map(|s| s.serve.desired_replicas),
            applied.serve_replicas,
        ),
        (
            DecisionKind::ScaleIngest,
            &v.ingest,
            previous.map(|s| s.ingest.desired_replicas),
            applied.ingest_replicas,
        ),
    ];
    for (kind, decided, before, now) in roles {
        // A scale counts once it is applied (or, in a dry run, once it is decided), and only
        // where the topology can scale the role at all.
        if let (Some(scale), Some(now)) = (decided, now)
            && before != Some(scale.replicas)
            && (v.dry_run || now == scale.replicas)
        {
            let inputs = DecisionInputs {
                replicas_before: before,
                replicas_after: Some(scale.replicas),
                ..inputs(v)
            };
            push(kind, scale.reason.clone(), inputs);
        }
    }
    // A gate's decision is its transition against the condition in the previous status.
    let gate_transition = |type_: &str, gate: &GateState, closing, opening| {
        (gate.closed != is_true(previous, type_)).then(|| {
            (
                if gate.closed { closing } else { opening },
                gate.reason.clone(),
            )
        })
    };
    if let Some((kind, reason)) = gate_transition(
        ROLLOUT_FROZEN,
        &v.gates.freeze,
        DecisionKind::FreezeRollout,
        DecisionKind::ResumeRollout,
    ) {
        push(kind, reason, inputs(v));
    }
    if applied.rollout.overridden {
        push(
            DecisionKind::OverrideFreeze,
            format!(
                "{}; the override annotation lets version {} through",
                v.gates.freeze.reason, applied.rollout.version
            ),
            DecisionInputs {
                version: Some(applied.rollout.version.clone()),
                ..inputs(v)
            },
        );
    }
    if let Some((kind, reason)) = gate_transition(
        DEGRADED,
        &v.gates.degrade,
        DecisionKind::Degrade,
        DecisionKind::Restore,
    ) {
        push(kind, reason, inputs(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Scale;

    fn verdict(frozen: bool, serve: Option<i32>) -> Verdict {
        Verdict {
            serve: serve.map(|replicas| Scale {
                replicas,
                reason: format!("to {replicas}"),
            }),
            ..crate::test_support::verdict(frozen, "X")
        }
    }

    fn plan() -> RolloutPlan {
        RolloutPlan {
            version: "1".into(),
            paused: false,
            held_back: false,
            overridden: false,
        }
    }

    fn frozen_status() -> RetailPipelineStatus {
        let mut status = RetailPipelineStatus::default();
        crate::conditions::upsert(
            &mut status.conditions,
            ROLLOUT_FROZEN,
            "True",
            "X",
            String::new(),
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        status
    }

    #[test]
    fn a_scale_and_a_freeze_are_reported_once() {
        let v = verdict(true, Some(4));
        let p = plan();
        let applied = Applied {
            verdict: &v,
            rollout: &p,
            serve_replicas: Some(4),
            ingest_replicas: Some(1),
        };
        let made = decisions(None, &applied);
        let kinds: Vec<_> = made.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [DecisionKind::ScaleServe, DecisionKind::FreezeRollout]
        );
        assert_eq!(made[0].inputs.replicas_after, Some(4));
        // The next pass sees them in the status and reports nothing new.
        let mut status = frozen_status();
        status.serve.desired_replicas = 4;
        assert!(decisions(Some(&status), &applied).is_empty());
    }

    #[test]
    fn a_role_that_cannot_scale_gets_no_scaling_decision() {
        let v = verdict(false, Some(2));
        let p = plan();
        let applied = Applied {
            verdict: &v,
            rollout: &p,
            serve_replicas: None,
            ingest_replicas: None,
        };
        let mut status = RetailPipelineStatus::default();
        status.serve.desired_replicas = 1;
        assert!(decisions(Some(&status), &applied).is_empty());
    }

    #[test]
    fn unfreezing_and_overriding_are_decisions() {
        let v = verdict(false, None);
        let status = frozen_status();
        let p = plan();
        let applied = Applied {
            verdict: &v,
            rollout: &p,
            serve_replicas: Some(1),
            ingest_replicas: Some(1),
        };
        assert_eq!(
            decisions(Some(&status), &applied)[0].kind,
            DecisionKind::ResumeRollout
        );
        let frozen = verdict(true, None);
        let over = RolloutPlan {
            overridden: true,
            ..plan()
        };
        let applied = Applied {
            verdict: &frozen,
            rollout: &over,
            serve_replicas: Some(1),
            ingest_replicas: Some(1),
        };
        let made = decisions(Some(&status), &applied);
        let o = made
            .iter()
            .find(|d| d.kind == DecisionKind::OverrideFreeze)
            .expect("an override decision");
        assert_eq!(o.inputs.version.as_deref(), Some("1"));
    }
}
