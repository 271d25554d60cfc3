//! `status`: one row per pipeline, read from what the operator wrote in its status. Nothing is
//! computed a second time, so the plugin cannot disagree with the operator; what the status does
//! not say is shown as `-`.

use tailwarden_crds::BurnRate;
use tailwarden_operator::summary::{Frozen, Replicas, Summary};

use crate::table;

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
    use tailwarden_crds::RetailPipeline;
    use tailwarden_operator::summary::sort;

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
