//! The decisions a reconcile makes, found by comparing what it plans with the previous status.
//!
//! Each decision goes to three places: the status's decision history, a Kubernetes Event and the
//! `tailwarden_operator_decisions_total{kind}` metric. Kinds are one enum ([`DecisionKind`]), so
//! the three always agree and the metric's cardinality stays bounded.

use tailwarden_crds::{
    DecisionInputs, DecisionKind, MarkStatus, RetailPipelineStatus, RolloutStatus,
};

use crate::conditions::{DEGRADED, is_true};
use crate::freeze_annotations::describe;
use crate::verdict::Verdict;

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
    // A gate's decision is its transition against its state in the previous status.
    let transition = |was: bool, closed: bool, closing, opening| {
        (closed != was).then_some(if closed { closing } else { opening })
    };
    let freeze = &v.gates.freeze;
    if let Some(kind) = transition(
        previous.is_some_and(|s| s.rollout.budget_frozen),
        freeze.closed,
        DecisionKind::FreezeRollout,
        DecisionKind::ResumeRollout,
    ) {
        push(kind, freeze.reason.clone(), inputs(v));
    }
    let degrade = &v.gates.degrade;
    if let Some(kind) = transition(
        is_true(previous, DEGRADED),
        degrade.closed,
        DecisionKind::Degrade,
        DecisionKind::Restore,
    ) {
        push(kind, degrade.reason.clone(), inputs(v));
    }
    out
}

/// The decisions that follow the freeze annotations: a manual freeze starting or ending, and an
/// override starting or ending to apply to the budget's freeze. Each carries who set the
/// annotation and its expiry. A changed reason, actor or expiry is a new decision.
pub fn freeze_annotations(
    previous: Option<&RolloutStatus>,
    now: &RolloutStatus,
    dry_run: bool,
) -> Vec<Decision> {
    let was = previous.cloned().unwrap_or_default();
    let budget = |s: &RolloutStatus| s.budget_frozen && !dry_run;
    let mut out = vec![];
    let mut push = |kind, reason: String, mark: &MarkStatus| {
        out.push(Decision {
            kind,
            reason,
            inputs: DecisionInputs {
                actor: mark.by.clone(),
                until: mark.until.clone(),
                ..DecisionInputs::default()
            },
            dry_run: false,
        })
    };
    match (in_effect(&was.manual_freeze), in_effect(&now.manual_freeze)) {
        (before, Some(mark)) if before != Some(mark) => push(
            DecisionKind::FreezeRollout,
            format!("manual freeze {}", describe(mark)),
            mark,
        ),
        (Some(before), None) => {
            let still = if budget(now) {
                "; the error budget's freeze still applies"
            } else {
                ""
            };
            let ended = now.manual_freeze.as_ref().unwrap_or(before);
            push(
                DecisionKind::ResumeRollout,
                format!("manual freeze ended: {}{still}", ended_text(ended)),
                ended,
            )
        }
        _ => {}
    }
    // An override matters while the budget freezes and no manual freeze holds.
    let applies = |s: &RolloutStatus| budget(s) && in_effect(&s.manual_freeze).is_none();
    let before = in_effect(&was.freeze_override).filter(|_| applies(&was));
    let after = in_effect(&now.freeze_override).filter(|_| applies(now));
    match (before, after) {
        (before, Some(mark)) if before != Some(mark) => push(
            DecisionKind::OverrideFreeze,
            format!(
                "freeze override {}: rollouts go through the error budget's freeze",
                describe(mark)
            ),
            mark,
        ),
        (Some(before), None) if applies(now) => {
            let ended = now.freeze_override.as_ref().unwrap_or(before);
            push(
                DecisionKind::FreezeRollout,
                format!(
                    "freeze override ended: {}; the error budget's freeze applies again",
                    ended_text(ended)
                ),
                ended,
            )
        }
        _ => {}
    }
    out
}

fn in_effect(mark: &Option<MarkStatus>) -> Option<&MarkStatus> {
    mark.as_ref().filter(|m| MarkStatus::active(Some(m)))
}

/// An annotation that stopped being in effect: removed, or why it no longer counts.
fn ended_text(mark: &MarkStatus) -> String {
    if MarkStatus::active(Some(mark)) {
        format!("removed ({})", describe(mark))
    } else {
        describe(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Scale;
    use tailwarden_crds::MarkState;

    fn verdict(frozen: bool, serve: Option<i32>) -> Verdict {
        Verdict {
            serve: serve.map(|replicas| Scale {
                replicas,
                reason: format!("to {replicas}"),
            }),
            ..crate::test_support::verdict(
                frozen,
                tailwarden_slo::gate::GateCode::BudgetBelowThreshold,
            )
        }
    }

    fn frozen_status() -> RetailPipelineStatus {
        let mut status = RetailPipelineStatus::default();
        status.rollout.budget_frozen = true;
        status
    }

    fn applied(v: &Verdict, replicas: Option<i32>) -> Applied<'_> {
        Applied {
            verdict: v,
            serve_replicas: replicas,
            ingest_replicas: replicas.map(|_| 1),
        }
    }

    #[test]
    fn a_scale_and_a_freeze_are_reported_once() {
        let v = verdict(true, Some(4));
        let made = decisions(None, &applied(&v, Some(4)));
        let kinds: Vec<_> = made.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [DecisionKind::ScaleServe, DecisionKind::FreezeRollout]
        );
        assert_eq!(made[0].inputs.replicas_after, Some(4));
        // The next pass sees them in the status and reports nothing new.
        let mut status = frozen_status();
        status.serve.desired_replicas = 4;
        assert!(decisions(Some(&status), &applied(&v, Some(4))).is_empty());
    }

    #[test]
    fn a_role_that_cannot_scale_gets_no_scaling_decision() {
        let v = verdict(false, Some(2));
        let mut status = RetailPipelineStatus::default();
        status.serve.desired_replicas = 1;
        assert!(decisions(Some(&status), &applied(&v, None)).is_empty());
    }

    #[test]
    fn unfreezing_is_a_decision() {
        let v = verdict(false, None);
        assert_eq!(
            decisions(Some(&frozen_status()), &applied(&v, Some(1)))[0].kind,
            DecisionKind::ResumeRollout
        );
    }

    fn mark(by: &str, state: MarkState) -> Option<MarkStatus> {
        Some(MarkStatus {
            state,
            reason: "CVE fix".into(),
            by: Some(by.into()),
            until: Some("2026-12-02T14:00:00Z".into()),
        })
    }

    fn rollout(
        budget: bool,
        manual: Option<MarkStatus>,
        over: Option<MarkStatus>,
    ) -> RolloutStatus {
        RolloutStatus {
            budget_frozen: budget,
            held_back: vec![],
            manual_freeze: manual,
            freeze_override: over,
        }
    }

    fn kinds(d: &[Decision]) -> Vec<DecisionKind> {
        d.iter().map(|d| d.kind).collect()
    }

    #[test]
    fn a_manual_freeze_starts_and_ends_with_actor_and_expiry() {
        let none = rollout(false, None, None);
        let on = rollout(false, mark("alice", MarkState::Active), None);
        let made = freeze_annotations(Some(&none), &on, false);
        assert_eq!(kinds(&made), [DecisionKind::FreezeRollout]);
        assert_eq!(made[0].inputs.actor.as_deref(), Some("alice"));
        assert_eq!(
            made[0].inputs.until.as_deref(),
            Some("2026-12-02T14:00:00Z")
        );
        assert!(made[0].reason.contains("CVE fix"), "{}", made[0].reason);
        assert!(freeze_annotations(Some(&on), &on, false).is_empty(), "once");
        let by_bob = rollout(false, mark("bob", MarkState::Active), None);
        assert_eq!(
            kinds(&freeze_annotations(Some(&on), &by_bob, false)),
            [DecisionKind::FreezeRollout],
            "a new actor is a new decision"
        );
        let expired = rollout(true, mark("alice", MarkState::Expired), None);
        let ended = freeze_annotations(Some(&on), &expired, false);
        assert_eq!(kinds(&ended), [DecisionKind::ResumeRollout]);
        assert!(
            ended[0].reason.contains("its expiry has passed"),
            "{}",
            ended[0].reason
        );
        assert!(
            ended[0].reason.ends_with("still applies"),
            "{}",
            ended[0].reason
        );
        let removed = freeze_annotations(Some(&on), &none, false);
        assert!(
            removed[0].reason.contains("removed"),
            "{}",
            removed[0].reason
        );
    }

    #[test]
    fn an_override_counts_only_against_the_budgets_freeze() {
        let over = mark("alice", MarkState::Active);
        let healthy = rollout(false, None, over.clone());
        assert!(
            freeze_annotations(None, &healthy, false).is_empty(),
            "nothing to override"
        );
        let frozen = rollout(true, None, over.clone());
        let made = freeze_annotations(Some(&healthy), &frozen, false);
        assert_eq!(kinds(&made), [DecisionKind::OverrideFreeze]);
        assert_eq!(made[0].inputs.actor.as_deref(), Some("alice"));
        assert!(freeze_annotations(Some(&frozen), &frozen, false).is_empty());
        assert!(
            freeze_annotations(Some(&healthy), &frozen, true).is_empty(),
            "a dry run enforces no freeze to override"
        );
        let expired = rollout(true, None, mark("alice", MarkState::Expired));
        let ended = freeze_annotations(Some(&frozen), &expired, false);
        assert_eq!(kinds(&ended), [DecisionKind::FreezeRollout]);
        assert!(
            ended[0].reason.contains("applies again"),
            "{}",
            ended[0].reason
        );
        let manual = rollout(true, mark("bob", MarkState::Active), over);
        assert_eq!(
            kinds(&freeze_annotations(Some(&frozen), &manual, false)),
            [DecisionKind::FreezeRollout],
            "a manual freeze takes over; the override no longer applies, without a second decision"
        );
    }
}
