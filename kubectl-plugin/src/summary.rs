//! `status`: one row per pipeline, read from what the operator wrote in its status. Nothing is
//! computed a second time, so the plugin cannot disagree with the operator; what the status does
//! not say is shown as `-`.

use kube::ResourceExt;
use serde::Serialize;
use tailwarden_crds::{BurnRate, MarkStatus, RetailPipeline, RetailPipelineStatus, RoleStatus};
use tailwarden_operator::conditions::DEGRADED;

use crate::table;

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
    budget_text: Option<String>,
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
            degraded: status.and_then(degraded),
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

/// The Degraded condition, when it is True or False.
fn degraded(status: &RetailPipelineStatus) -> Option<bool> {
    match status
        .conditions
        .iter()
        .find(|c| c.type_ == DEGRADED)?
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

/// Cells of the budget bar.
const BAR_CELLS: usize = 10;

/// `[#####-----] 52.0%`: one `#` per whole tenth of the budget left, none once it is spent.
pub fn budget_bar(percent: f64, text: &str) -> String {
    let filled = ((percent / 100.0 * BAR_CELLS as f64).floor().max(0.0) as usize).min(BAR_CELLS);
    format!(
        "[{}{}] {text}",
        "#".repeat(filled),
        "-".repeat(BAR_CELLS - filled)
    )
}

/// The shortest and the longest window's burn rate, e.g. `14.4/1.2 (5m/6h)`.
fn burn(rates: &[BurnRate]) -> String {
    match rates {
        [] => "-".into(),
        [only] => format!("{} ({})", only.rate, only.window),
        [short, .., long] => format!(
            "{}/{} ({}/{})",
            short.rate, long.rate, short.window, long.window
        ),
    }
}

fn frozen(f: Frozen) -> String {
    let parts: Vec<&str> = [
        (f.budget, "budget"),
        (f.manual, "manual"),
        (f.overridden, "overridden"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if parts.is_empty() {
        "no".into()
    } else {
        parts.join(",")
    }
}

fn dash<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| "-".into(), show)
}

/// The table of `rows`, with a NAMESPACE column when they come from all namespaces.
pub fn table(rows: &[Summary], with_namespace: bool) -> String {
    let mut header = vec![
        "NAME",
        "BUDGET",
        "WORST SLO",
        "BURN SHORT/LONG",
        "INGEST",
        "SERVE",
        "FROZEN",
        "DEGRADED",
    ];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let replicas = |r: Option<Replicas>| dash(r, |r| format!("{}/{}", r.ready, r.desired));
            let mut row = vec![
                r.name.clone(),
                dash(r.budget_remaining_percent, |p| {
                    let text = r.budget_text.clone().unwrap_or_else(|| format!("{p}%"));
                    budget_bar(p, &text)
                }),
                dash(r.worst_slo.clone(), |s| s),
                burn(&r.burn_rates),
                replicas(r.ingest),
                replicas(r.serve),
                dash(r.frozen, frozen),
                dash(r.degraded, |d| if d { "yes" } else { "no" }.into()),
            ];
            if with_namespace {
                row.insert(0, r.namespace.clone());
            }
            row
        })
        .collect();
    table::render(&header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str, status: Option<serde_json::Value>) -> RetailPipeline {
        let mut p: RetailPipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "tailwarden.io/v1alpha1",
            "kind": "RetailPipeline",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"dataplane": {"image": "example.com/dataplane", "version": "1.0.0"}},
        }))
        .unwrap();
        p.status = status.map(|s| serde_json::from_value(s).unwrap());
        p
    }

    fn evaluated(remaining: f64) -> serde_json::Value {
        serde_json::json!({
            "ingest": {"desiredReplicas": 2, "readyReplicas": 2, "summary": "2/2"},
            "serve": {"desiredReplicas": 3, "readyReplicas": 2, "summary": "2/3"},
            "budget": {
                "remaining": format!("{remaining:.1}%"),
                "remainingPercent": remaining,
                "worstSlo": "availability",
                "burnRates": [
                    {"window": "5m", "rate": 14.4}, {"window": "30m", "rate": 6.0},
                    {"window": "1h", "rate": 3.1}, {"window": "6h", "rate": 1.2},
                ],
            },
            "rollout": {
                "budgetFrozen": remaining < 10.0,
                "freezeOverride": {"state": "Active", "reason": "hotfix", "by": "alice",
                                   "until": "2026-12-02T14:00:00Z"},
                "manualFreeze": {"state": "Expired", "reason": "sale", "by": "bob",
                                 "until": "2026-12-01T00:00:00Z"},
            },
            "conditions": [{"type": "Degraded", "status": "True", "reason": "BudgetLow",
                            "message": "", "lastTransitionTime": "2026-12-02T12:00:00Z"}],
        })
    }

    #[test]
    fn the_bar_fills_one_cell_per_whole_tenth_and_never_overflows() {
        assert_eq!(budget_bar(52.0, "52.0%"), "[#####-----] 52.0%");
        assert_eq!(budget_bar(100.0, "100.0%"), "[##########] 100.0%");
        assert_eq!(budget_bar(9.9, "9.9%"), "[----------] 9.9%");
        assert_eq!(budget_bar(-12.5, "-12.5%"), "[----------] -12.5%");
        assert_eq!(budget_bar(250.0, "250.0%"), "[##########] 250.0%");
    }

    #[test]
    fn rows_read_the_status_and_show_a_dash_for_what_it_does_not_say() {
        let rows = [
            Summary::of(&pipeline("web", Some(evaluated(4.2)))),
            Summary::of(&pipeline("new", None)),
            Summary::of(&pipeline("search", Some(serde_json::json!({})))),
        ];
        assert_eq!(
            table(&rows, false),
            "NAME     BUDGET              WORST SLO      BURN SHORT/LONG    INGEST   SERVE   FROZEN              DEGRADED\n\
             web      [----------] 4.2%   availability   14.4/1.2 (5m/6h)   2/2      2/3     budget,overridden   yes\n\
             new      -                   -              -                  -        -       -                   -\n\
             search   -                   -              -                  -        -       no                  -\n"
        );
        assert!(table(&rows, true).starts_with("NAMESPACE   NAME "));
        assert!(table(&rows, true).contains("\nshop        web "));
    }

    #[test]
    fn lowest_budget_first_unevaluated_last() {
        let mut rows = vec![
            Summary::of(&pipeline("b-new", None)),
            Summary::of(&pipeline("c-healthy", Some(evaluated(80.0)))),
            Summary::of(&pipeline("a-new", None)),
            Summary::of(&pipeline("d-burning", Some(evaluated(4.2)))),
            Summary::of(&pipeline("e-spent", Some(evaluated(-3.0)))),
        ];
        sort(&mut rows);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["e-spent", "d-burning", "c-healthy", "a-new", "b-new"]
        );
    }

    #[test]
    fn burn_shows_the_shortest_and_longest_window() {
        let rate = |window: &str, rate| BurnRate {
            window: window.into(),
            rate,
        };
        assert_eq!(burn(&[]), "-");
        assert_eq!(burn(&[rate("5m", 2.5)]), "2.5 (5m)");
        assert_eq!(
            burn(&[rate("5m", 14.4), rate("1h", 0.5)]),
            "14.4/0.5 (5m/1h)"
        );
    }

    #[test]
    fn json_names_every_field() {
        let json =
            serde_json::to_value(Summary::of(&pipeline("web", Some(evaluated(52.0))))).unwrap();
        assert_eq!(json["budgetRemainingPercent"], 52.0);
        assert_eq!(json["worstSlo"], "availability");
        assert_eq!(json["burnRates"][0]["window"], "5m");
        assert_eq!(json["serve"], serde_json::json!({"ready": 2, "desired": 3}));
        assert_eq!(
            json["frozen"],
            serde_json::json!({"budget": false, "manual": false, "overridden": true})
        );
        assert_eq!(json["degraded"], true);
        assert!(json.get("budgetText").is_none());
    }
}
