//! The decisions a reconcile made, found by comparing what it applied with the previous status.
//!
//! Each decision goes to three places: the status (`lastDecision`), a Kubernetes Event and the
//! `tailwarden_operator_decisions_total{kind}` metric. Kinds come from a fixed set, so the metric's
//! cardinality stays bounded.

use tailwarden_crds::RetailPipelineStatus;

use crate::conditions::{DEGRADED, ROLLOUT_FROZEN, is_true};
use crate::rollout::RolloutPlan;
use crate::verdict::Verdict;
use tailwarden_slo::gate::GateState;

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// From a fixed set: `ScaleServe`, `ScaleIngest`, `FreezeRollout`, `ResumeRollout`,
    /// `OverrideFreeze`, `Degrade`, `Restore`.
    pub kind: &'static str,
    /// Why, with the numbers.
    pub reason: String,
    /// Whether it was only reported (dry run).
    pub dry_run: bool,
}

/// What a reconcile applied.
#[derive(Debug, Clone)]
pub struct Applied<'a> {
    /// The verdict it acted on.
    pub verdict: &'a Verdict,
    /// The rollout plan.
    pub rollout: &'a RolloutPlan,
    /// Serve replicas applied.
    pub serve_replicas: i32,
    /// Ingest replicas applied.
    pub ingest_replicas: i32,
}

/// Every decision that differs from the previous status.
pub fn decisions(previous: Option<&RetailPipelineStatus>, applied: &Applied<'_>) -> Vec<Decision> {
    let v = applied.verdict;
    let mut out = vec![];
    let mut push = |kind, reason: String| {
        out.push(Decision {
            kind,
            reason,
            dry_run: v.dry_run,
        })
    };
    let roles = [
        (
            "ScaleServe",
            &v.serve,
            previous.map(|s| s.serve.desired_replicas),
            applied.serve_replicas,
        ),
        (
            "ScaleIngest",
            &v.ingest,
            previous.map(|s| s.ingest.desired_replicas),
            applied.ingest_replicas,
        ),
    ];
    for (kind, decided, before, now) in roles {
        // A scale counts once it is applied (or, in a dry run, once it is decided).
        if let Some(scale) = decided
            && before != Some(scale.replicas)
            && (v.dry_run || now == scale.replicas)
        {
            push(kind, scale.reason.clone());
        }
    }
    // A gate's decision is its transition against the condition in the previous status.
    let gate_transition =
        |type_: &str, gate: &GateState, closing: &'static str, opening: &'static str| {
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
        "FreezeRollout",
        "ResumeRollout",
    ) {
        push(kind, reason);
    }
    if applied.rollout.overridden {
        push(
            "OverrideFreeze",
            format!(
                "{}; the override annotation lets version {} through",
                v.gates.freeze.reason, applied.rollout.version
            ),
        );
    }
    if let Some((kind, reason)) = gate_transition(DEGRADED, &v.gates.degrade, "Degrade", "Restore")
    {
        push(kind, reason);
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

    #[test]
    fn a_scale_and_a_freeze_are_reported_once() {
        let v = verdict(true, Some(4));
        let p = plan();
        let applied = Applied {
            verdict: &v,
            rollout: &p,
            serve_replicas: 4,
            ingest_replicas: 1,
        };
        let kinds: Vec<_> = decisions(None, &applied).iter().map(|d| d.kind).collect();
        assert_eq!(kinds, ["ScaleServe", "FreezeRollout"]);
        // The next pass sees them in the status and reports nothing new.
        let mut status = RetailPipelineStatus::default();
        status.serve.desired_replicas = 4;
        crate::conditions::upsert(
            &mut status.conditions,
            ROLLOUT_FROZEN,
            "True",
            "X",
            String::new(),
            None,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert!(decisions(Some(&status), &applied).is_empty());
    }

    #[test]
    fn unfreezing_and_overriding_are_decisions() {
        let v = verdict(false, None);
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
        let p = plan();
        let applied = Applied {
            verdict: &v,
            rollout: &p,
            serve_replicas: 1,
            ingest_replicas: 1,
        };
        assert_eq!(decisions(Some(&status), &applied)[0].kind, "ResumeRollout");
        let frozen = verdict(true, None);
        let over = RolloutPlan {
            overridden: true,
            ..plan()
        };
        let applied = Applied {
            verdict: &frozen,
            rollout: &over,
            serve_replicas: 1,
            ingest_replicas: 1,
        };
        assert!(
            decisions(Some(&status), &applied)
                .iter()
                .any(|d| d.kind == "OverrideFreeze")
        );
    }
}
