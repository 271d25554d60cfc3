//! One pipeline at a glance, read from what the operator wrote in its status: the rows of the
//! kubectl plugin's `status` and of the status page's list. Shared, so the two cannot disagree.

use kube::ResourceExt;
use serde::Serialize;
use tailwarden_crds::{BurnRate, MarkStatus, RetailPipeline, RetailPipelineStatus, RoleStatus};

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
