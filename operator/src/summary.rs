//! One pipeline at a glance, read from what the operator wrote in its status: the rows of the
//! kubectl plugin's `status` and of the status page's list. Shared, so the two cannot disagree.

use kube::ResourceExt;
use serde::Serialize;
use tailwarden_crds::{
    BurnRate, DecisionInputs, MarkStatus, RetailPipeline, RetailPipelineStatus, RoleStatus,
};

use crate::conditions::DEGRADED;

/// What `status` shows of one pipeline; also its JSON and YAML output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub namespace: String,
    pub name: String,
    /// Remaining error budget in percent, the lowest across the pipeline's SLOs.
    pub budget_remaining_percent: Option<f64>,
    /// The same as the operator writes it for `kubectl get`, e.g. `72.5%`.
    #[serde(skip)]
    pub budget_text: Option<String>,
    /// The SLO with the least budget left.
    pub worst_slo: Option<String>,
    /// Burn rates of the worst SLO, shortest window first.
    pub burn_rates: Vec<BurnRate>,
    pub ingest: Option<Replicas>,
    pub serve: Option<Replicas>,
    /// What freezes rollouts; None before the operator wrote a status.
    pub frozen: Option<Frozen>,
    /// Whether non-critical work is paused; None while unknown.
    pub degraded: Option<bool>,
}

/// Ready and desired replicas of one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replicas {
    pub ready: i32,
    pub desired: i32,
}

/// What holds rollouts: the error budget, a manual freeze, and whether an override lets them
/// through the budget's freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Frozen {
    pub budget: bool,
    pub manual: bool,
    pub overridden: bool,
}

impl Summary {
    /// The row of `pipeline`.
    pub fn of(pipeline: &RetailPipeline) -> Self {
        let status = pipeline.status.as_ref();
        let budget = status.map(|s| &s.budget);
        Summary {
            namespace: pipeline.namespace().unwrap_or_default(),
            name: pipeline.name_any(),
            budget_remaining_percent: budget.and_then(|b| b.remaining_percent),
            budget_text: budget.and_then(|b| b.remaining.clone()),
            worst_slo: budget.and_then(|b| b.worst_slo.clone()),
            burn_rates: budget.map(|b| b.burn_rates.clone()).unwrap_or_default(),
            ingest: status.and_then(|s| replicas(&s.ingest)),
            serve: status.and_then(|s| replicas(&s.serve)),
            frozen: status.map(|s| Frozen {
                budget: s.rollout.budget_frozen,
                manual: MarkStatus::active(s.rollout.manual_freeze.as_ref()),
                overridden: MarkStatus::active(s.rollout.freeze_override.as_ref()),
            }),
            degraded: status.and_then(|s| condition(s, DEGRADED)),
        }
    }
}

/// A role's replicas once the operator has counted them (it writes the summary with them).
fn replicas(role: &RoleStatus) -> Option<Replicas> {
    role.summary.as_ref().map(|_| Replicas {
        ready: role.ready_replicas,
        desired: role.desired_replicas,
    })
}

/// The signals a decision was taken on, those the status names, as `name value` joined by
/// commas: one wording for `kubectl tailwarden why` and the status page.
pub fn decision_inputs(i: &DecisionInputs) -> String {
    let replicas = match (i.replicas_before, i.replicas_after) {
        (Some(before), Some(after)) => Some(format!("{before} -> {after}")),
        (None, Some(after)) => Some(format!("-> {after}")),
        (Some(before), None) => Some(format!("{before} ->")),
        (None, None) => None,
    };
    [
        ("replicas", replicas),
        (
            "budget",
            i.budget_remaining_percent.map(|b| format!("{b:.1}%")),
        ),
        ("worst SLO", i.worst_slo.clone()),
        ("read P99", i.read_p99.clone()),
        ("freshness lag", i.freshness_lag.clone()),
        ("by", i.actor.clone()),
        ("until", i.until.clone()),
        ("version", i.version.clone()),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some(format!("{name} {}", value?)))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Whether the condition `type_` is True or False; None when absent or Unknown.
pub fn condition(status: &RetailPipelineStatus, type_: &str) -> Option<bool> {
    match status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?
        .status
        .as_str()
    {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

/// Lowest remaining budget first: those closest to a freeze lead. Pipelines without a budget
/// (not evaluated yet) come last; ties by namespace and name.
pub fn sort(rows: &mut [Summary]) {
    rows.sort_by(|a, b| {
        let budget = match (a.budget_remaining_percent, b.budget_remaining_percent) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (a, b) => a.is_none().cmp(&b.is_none()),
        };
        budget
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_inputs_name_what_is_known() {
        let i = DecisionInputs {
            actor: Some("alice".into()),
            until: Some("2026-12-02T18:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(decision_inputs(&i), "by alice, until 2026-12-02T18:00:00Z");
        let i = DecisionInputs {
            replicas_before: Some(2),
            replicas_after: Some(3),
            budget_remaining_percent: Some(18.0),
            ..Default::default()
        };
        assert_eq!(decision_inputs(&i), "replicas 2 -> 3, budget 18.0%");
    }
}
