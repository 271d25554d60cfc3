//! `why`: the operator's decision history, oldest first so the latest is read last, beside the
//! current conditions that explain a freeze or degradation. Both as the operator wrote them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use tailwarden_crds::{Decision, RetailPipelineStatus};
use tailwarden_operator::conditions::{
    BUDGET_EXHAUSTED, DEGRADED, METRICS_AVAILABLE, ROLLOUT_FROZEN,
};

/// The conditions behind freezes and degradation, in the order they are read: what holds
/// rollouts, the budget, degradation, and whether the SLIs behind them could be read at all.
const EXPLAINING: [&str; 4] = [
    ROLLOUT_FROZEN,
    BUDGET_EXHAUSTED,
    DEGRADED,
    METRICS_AVAILABLE,
];

/// The history and conditions of the pipeline `target` (`namespace/name`).
pub fn render(target: &str, status: Option<&RetailPipelineStatus>) -> String {
    let Some(status) = status else {
        return format!("{target} has no status yet: the operator has not reconciled it.\n");
    };
    let mut out = String::new();
    if status.decisions.is_empty() {
        out.push_str(&format!("No decisions recorded for {target} yet.\n"));
    } else {
        out.push_str(&format!("Decisions on {target}, oldest first:\n"));
        for decision in &status.decisions {
            out.push_str(&self::decision(decision));
        }
    }
    let conditions: Vec<&Condition> = EXPLAINING
        .iter()
        .filter_map(|t| status.conditions.iter().find(|c| c.type_ == *t))
        .collect();
    if !conditions.is_empty() {
        out.push_str("\nConditions:\n");
        for c in conditions {
            out.push_str(&condition(c));
        }
    }
    out
}

fn decision(d: &Decision) -> String {
    let dry_run = if d.dry_run { " (dry run)" } else { "" };
    let mut text = format!(
        "{}  {}{dry_run}\n    {}\n",
        d.time,
        d.kind.as_str(),
        d.reason
    );
    let inputs = tailwarden_operator::summary::decision_inputs(&d.inputs);
    if !inputs.is_empty() {
        text.push_str(&format!("    inputs: {inputs}\n"));
    }
    text
}

fn condition(c: &Condition) -> String {
    let mut text = format!(
        "{}={} ({}) since {}\n",
        c.type_, c.status, c.reason, c.last_transition_time.0
    );
    if !c.message.is_empty() {
        text.push_str(&format!("    {}\n", c.message));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> RetailPipelineStatus {
        serde_json::from_value(serde_json::json!({
            "decisions": [
                {"kind": "Reconciled", "reason": "generation 1 applied", "time": "2026-12-02T11:00:00Z"},
                {"kind": "ScaleServe", "reason": "serve: P99 headroom low", "dryRun": true,
                 "time": "2026-12-02T11:30:00Z",
                 "inputs": {"replicasBefore": 2, "replicasAfter": 3, "readP99": "180ms"}},
                {"kind": "FreezeRollout", "reason": "error budget 4.2% is below 10%",
                 "time": "2026-12-02T12:00:00Z",
                 "inputs": {"budgetRemainingPercent": 4.2, "worstSlo": "availability",
                            "readP99": "130ms", "freshnessLag": "42s"}},
            ],
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": "all ready",
                 "lastTransitionTime": "2026-12-02T11:00:00Z"},
                {"type": "Degraded", "status": "False", "reason": "BudgetHealthy", "message": "",
                 "lastTransitionTime": "2026-12-02T11:00:00Z"},
                {"type": "RolloutFrozen", "status": "True", "reason": "BudgetLow",
                 "message": "error budget 4.2% is below 10%",
                 "lastTransitionTime": "2026-12-02T12:00:00Z"},
            ],
        }))
        .unwrap()
    }

    #[test]
    fn decisions_oldest_first_with_inputs_then_the_conditions_behind_freezes() {
        assert_eq!(
            render("shop/web", Some(&status())),
            "Decisions on shop/web, oldest first:\n\
             2026-12-02T11:00:00Z  Reconciled\n    generation 1 applied\n\
             2026-12-02T11:30:00Z  ScaleServe (dry run)\n    serve: P99 headroom low\n    \
             inputs: replicas 2 -> 3, read P99 180ms\n\
             2026-12-02T12:00:00Z  FreezeRollout\n    error budget 4.2% is below 10%\n    \
             inputs: budget 4.2%, worst SLO availability, read P99 130ms, freshness lag 42s\n\
             \nConditions:\n\
             RolloutFrozen=True (BudgetLow) since 2026-12-02T12:00:00Z\n    \
             error budget 4.2% is below 10%\n\
             Degraded=False (BudgetHealthy) since 2026-12-02T11:00:00Z\n"
        );
    }

    #[test]
    fn says_so_when_there_is_nothing_to_show() {
        assert_eq!(
            render("shop/web", None),
            "shop/web has no status yet: the operator has not reconciled it.\n"
        );
        assert_eq!(
            render("shop/web", Some(&RetailPipelineStatus::default())),
            "No decisions recorded for shop/web yet.\n"
        );
    }
}
