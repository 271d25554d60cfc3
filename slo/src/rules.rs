//! Prometheus rules for one pipeline: SLI recordings per window, error-budget meta recordings and
//! multi-window multi-burn-rate alerts. The series are named as Sloth names them, with plain
//! `namespace`, `pipeline` and `slo` labels instead of Sloth's; the dashboards in `dashboards/`
//! read them. [`SeriesLabels::WithSloth`] adds Sloth's labels too, for Sloth's own dashboards.
//!
//! The structs serialize to the Prometheus rules-file format, which is also the shape of a
//! PrometheusRule's `spec.groups`, so the operator can wrap them without translation.
//!
//! Calendar-month objectives get rolling 30-day rules: burn-rate alerts are about speed, not the
//! calendar, and Prometheus cannot express "since the first of the month" in a range. The
//! operator computes the calendar-month budget itself.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::burn::{self, BurnWindow, prom_duration};
use crate::objective::{AlertHolds, Objectives, Slo, slos};
use crate::promql;
use crate::window::period;

/// Name of every burn-rate alert; `slo`, `severity`, `long` and `short` labels tell them apart.
pub const BURN_ALERT: &str = "TailwardenErrorBudgetBurn";

/// What the generated SLI recordings group by: the target labels every series carries.
pub const GROUPING: &str = "namespace, pipeline";

const DAY: u64 = 86_400;

/// The window of `slo:current_burn_rate:ratio`, as in Sloth.
const CURRENT_WINDOW: Duration = Duration::from_secs(300);

/// Which labels identify the series of an SLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeriesLabels {
    /// `namespace`, `pipeline` and `slo` only.
    #[default]
    Plain,
    /// Also Sloth's `sloth_id`, `sloth_service` (`<namespace>/<pipeline>`), `sloth_slo`,
    /// `sloth_window` and `sloth_severity`, plus a `sloth_slo_info` recording: Sloth's Grafana
    /// dashboards select on these.
    WithSloth,
}

/// What `sloth_slo_info` names as the generator, in place of Sloth's own mode, spec and version.
const SLOTH_MODE: &str = "tailwarden";
const SLOTH_SPEC: &str = "tailwarden.io/v1alpha1";
const SLOTH_VERSION: &str = concat!("tailwarden-", env!("CARGO_PKG_VERSION"));

/// A group of rules evaluated together, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleGroup {
    /// Unique within a rules file.
    pub name: String,
    /// Evaluation interval; Prometheus' global one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A recording rule (`record` set) or an alerting rule (`alert` set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Name of the recorded series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of the alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// PromQL.
    pub expr: String,
    /// How long an alert's condition must hold before it fires; absent, it fires at once.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels added to the result.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Alert annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Every window recorded: 5m (the current burn rate and the freshness base), the alert windows
/// and the period, shortest first.
pub fn sli_windows(period: Duration) -> Vec<Duration> {
    let mut all = burn::distinct_windows(period);
    all.extend([CURRENT_WINDOW, promql::FRESHNESS_BASE_WINDOW, period]);
    all.sort();
    all.dedup();
    all
}

/// The rule groups of one pipeline: SLI recordings, meta recordings, alerts. Rules within a
/// group run in order, so each group only reads series recorded by the groups before it.
pub fn pipeline_rules(
    namespace: &str,
    pipeline: &str,
    objectives: &Objectives,
    labels: SeriesLabels,
) -> Vec<RuleGroup> {
    let selector = promql::pipeline_selector(namespace, pipeline);
    let period = period(objectives);
    let slos = slos(objectives);
    let group = |kind: &str, rules: Vec<Rule>| RuleGroup {
        name: format!("tailwarden-slo-{kind}-{namespace}-{pipeline}"),
        interval: None,
        rules,
    };
    let per_slo = |f: &dyn Fn(&Slo, &Target) -> Vec<Rule>| -> Vec<Rule> {
        slos.iter()
            .flat_map(|slo| {
                let target = Target::new(namespace, pipeline, slo, labels);
                f(slo, &target)
            })
            .collect()
    };
    vec![
        group(
            "sli",
            per_slo(&|slo, t| sli_recordings(slo, t, &selector, period)),
        ),
        group("meta", per_slo(&|slo, t| meta_recordings(slo, t, period))),
        group(
            "alerts",
            per_slo(&|slo, t| burn_alerts(slo, t, period, objectives.alert_holds)),
        ),
    ]
}

/// Renders groups as a plain Prometheus rules file.
pub fn rules_file(groups: &[RuleGroup]) -> Result<String, RulesError> {
    #[derive(Serialize)]
    struct File<'a> {
        groups: &'a [RuleGroup],
    }
    Ok(serde_yaml::to_string(&File { groups })?)
}

/// Rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The YAML serializer refused the rules.
    #[error("cannot render rules as YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The series of one SLO of one pipeline: its labels and selector.
struct Target {
    labels: BTreeMap<String, String>,
    selector: String,
    scheme: SeriesLabels,
}

impl Target {
    fn new(namespace: &str, pipeline: &str, slo: &Slo, scheme: SeriesLabels) -> Self {
        let mut labels = BTreeMap::from([
            ("namespace".to_string(), namespace.to_string()),
            ("pipeline".to_string(), pipeline.to_string()),
            ("slo".to_string(), slo.name.clone()),
        ]);
        if scheme == SeriesLabels::WithSloth {
            let service = format!("{namespace}/{pipeline}");
            labels.insert("sloth_id".into(), format!("{service}-{}", slo.name));
            labels.insert("sloth_service".into(), service);
            labels.insert("sloth_slo".into(), slo.name.clone());
        }
        let selector = format!(
            "{},slo={}",
            promql::pipeline_selector(namespace, pipeline),
            promql::quote(&slo.name)
        );
        Self {
            labels,
            selector,
            scheme,
        }
    }

    /// The labels of the recording over `window`: Sloth tells the windows apart by a label too.
    fn window_labels(&self, window: Duration) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if self.scheme == SeriesLabels::WithSloth {
            labels.insert("sloth_window".into(), prom_duration(window));
        }
        labels
    }

    /// A recorded series of this SLO: `slo:sli_error:ratio_rate5m{namespace=…,slo=…}`.
    fn series(&self, metric: &str) -> String {
        format!("{metric}{{{}}}", self.selector)
    }
}

fn record(name: String, expr: String, labels: BTreeMap<String, String>) -> Rule {
    Rule {
        record: Some(name),
        alert: None,
        expr,
        for_: None,
        labels,
        annotations: BTreeMap::new(),
    }
}

/// The error ratio over each window.
fn sli_recordings(slo: &Slo, target: &Target, selector: &str, period: Duration) -> Vec<Rule> {
    sli_windows(period)
        .into_iter()
        .map(|w| {
            record(
                promql::sli_error_metric(w),
                slo.error_ratio(selector, w, GROUPING),
                target.window_labels(w),
            )
        })
        .collect()
}

/// Objective, budget, period and burn rates, as Sloth records them.
fn meta_recordings(slo: &Slo, target: &Target, period: Duration) -> Vec<Rule> {
    let budget = target.series("slo:error_budget:ratio");
    let burn = |sli_window: Duration| {
        format!(
            "{} / on(namespace, pipeline, slo) {budget}",
            target.series(&promql::sli_error_metric(sli_window))
        )
    };
    [
        (
            "slo:objective:ratio",
            format!("vector({})", number(slo.target)),
        ),
        (
            "slo:error_budget:ratio",
            format!("vector({})", number(slo.error_budget())),
        ),
        (
            "slo:time_period:days",
            format!("vector({})", number(period.as_secs_f64() / DAY as f64)),
        ),
        ("slo:current_burn_rate:ratio", burn(CURRENT_WINDOW)),
        ("slo:period_burn_rate:ratio", burn(period)),
        (
            "slo:period_error_budget_remaining:ratio",
            format!("1 - {}", target.series("slo:period_burn_rate:ratio")),
        ),
    ]
    .into_iter()
    .map(|(name, expr)| record(name.into(), expr, target.labels.clone()))
    .chain(slo_info(slo, target))
    .collect()
}

/// Sloth's `sloth_slo_info`, which its dashboards list SLOs by; the objective in percent.
fn slo_info(slo: &Slo, target: &Target) -> Option<Rule> {
    (target.scheme == SeriesLabels::WithSloth).then(|| {
        let mut labels = target.labels.clone();
        for (name, value) in [
            ("sloth_mode", SLOTH_MODE.to_string()),
            ("sloth_spec", SLOTH_SPEC.to_string()),
            ("sloth_version", SLOTH_VERSION.to_string()),
            ("sloth_objective", number(slo.target * 100.0)),
        ] {
            labels.insert(name.into(), value);
        }
        record("sloth_slo_info".into(), "vector(1)".into(), labels)
    })
}

/// One alert per window pair. By default none is held: the short window already confirms that
/// the burn is recent, and a hold only delays the alert (see `AlertHolds`).
fn burn_alerts(slo: &Slo, target: &Target, period: Duration, holds: AlertHolds) -> Vec<Rule> {
    burn::windows(period)
        .iter()
        .map(|w| burn_alert(slo, target, w, period, holds))
        .collect()
}

fn burn_alert(
    slo: &Slo,
    target: &Target,
    w: &BurnWindow,
    period: Duration,
    holds: AlertHolds,
) -> Rule {
    let threshold = format!("({} * {})", number(w.factor), number(slo.error_budget()));
    let over = |window: Duration| {
        let over = format!(
            "{} > {threshold}",
            target.series(&promql::sli_error_metric(window))
        );
        // The windows' `sloth_window` labels differ, so `and` would match nothing with them.
        match target.scheme {
            SeriesLabels::Plain => over,
            SeriesLabels::WithSloth => format!("max without (sloth_window) ({over})"),
        }
    };
    let (short, long) = (prom_duration(w.short), prom_duration(w.long));
    let mut labels = target.labels.clone();
    labels.insert("severity".into(), w.severity.as_str().into());
    labels.insert("short".into(), short.clone());
    labels.insert("long".into(), long.clone());
    if target.scheme == SeriesLabels::WithSloth {
        labels.insert("sloth_severity".into(), w.severity.as_str().into());
    }
    let pipeline = format!(
        "{}/{}",
        target.labels["namespace"], target.labels["pipeline"]
    );
    let annotations = BTreeMap::from([
        (
            "summary".to_string(),
            format!(
                "SLO {} of pipeline {pipeline} burns its error budget over {}x too fast",
                slo.name,
                number(w.factor)
            ),
        ),
        (
            "description".to_string(),
            format!(
                "The error ratio over both {short} and {long} exceeds {}x the budget of {} (target {}): \
                 at this pace {:.0} % of the budget is gone within {long}.",
                number(w.factor),
                number(slo.error_budget()),
                number(slo.target),
                w.factor * w.long.as_secs_f64() / period.as_secs_f64() * 100.0,
            ),
        ),
    ]);
    Rule {
        record: None,
        alert: Some(BURN_ALERT.into()),
        expr: format!("{}\nand\n{}", over(w.short), over(w.long)),
        for_: holds.hold(w.short).map(prom_duration),
        labels,
        annotations,
    }
}

/// A number as PromQL and humans read it: `0.0005`, not `0.0004999999999999449`.
fn number(x: f64) -> String {
    let s = format!("{x:.12}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objective::WindowKind;

    fn all_rules(objectives: &Objectives) -> Vec<Rule> {
        pipeline_rules("shop", "web", objectives, SeriesLabels::Plain)
            .into_iter()
            .flat_map(|g| g.rules)
            .collect()
    }

    fn find<'a>(rules: &'a [Rule], name: &str, slo: &str) -> &'a Rule {
        rules
            .iter()
            .find(|r| r.record.as_deref() == Some(name) && r.labels["slo"] == slo)
            .unwrap_or_else(|| panic!("no {name} for {slo}"))
    }

    #[test]
    fn windows_of_thirty_and_twenty_eight_days() {
        let names = |days: u64| -> Vec<String> {
            sli_windows(Duration::from_secs(days * DAY))
                .into_iter()
                .map(prom_duration)
                .collect()
        };
        assert_eq!(
            names(30),
            ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
        );
        assert_eq!(
            names(28),
            [
                "4m", "5m", "28m", "56m", "112m", "336m", "1344m", "4032m", "4w"
            ]
        );
    }

    #[test]
    fn groups_hold_recordings_per_window_meta_and_four_alerts_per_slo() {
        let groups = pipeline_rules("shop", "web", &Objectives::reference(), SeriesLabels::Plain);
        let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tailwarden-slo-sli-shop-web",
                "tailwarden-slo-meta-shop-web",
                "tailwarden-slo-alerts-shop-web"
            ]
        );
        let counts: Vec<_> = groups.iter().map(|g| g.rules.len()).collect();
        assert_eq!(counts, [13 * 8, 13 * 6, 13 * 4]);
        let labels = BTreeMap::from([
            ("namespace".to_string(), "shop".to_string()),
            ("pipeline".to_string(), "web".to_string()),
            ("slo".to_string(), "latency-pricing-p99".to_string()),
        ]);
        let rule = find(
            &groups[0].rules,
            "slo:sli_error:ratio_rate6h",
            "latency-pricing-p99",
        );
        assert_eq!(rule.labels, labels);
        assert_eq!(
            rule.expr,
            promql::latency_error_ratio(
                r#"namespace="shop",pipeline="web""#,
                Some("pricing"),
                Duration::from_millis(200),
                Duration::from_secs(6 * 3600),
                GROUPING
            )
        );
    }

    #[test]
    fn freshness_longer_windows_average_the_5m_recording() {
        let rules = all_rules(&Objectives::reference());
        assert!(
            find(&rules, "slo:sli_error:ratio_rate5m", "freshness")
                .expr
                .contains("> bool 600)[5m:30s]")
        );
        assert_eq!(
            find(&rules, "slo:sli_error:ratio_rate30d", "freshness").expr,
            r#"avg_over_time(slo:sli_error:ratio_rate5m{namespace="shop",pipeline="web",slo="freshness"}[30d])"#
        );
    }

    #[test]
    fn without_rules_freshness_samples_the_whole_window() {
        let slos = slos(&Objectives::reference());
        let freshness = &slos[11];
        let day = Duration::from_secs(DAY);
        assert_eq!(
            freshness.error_ratio_without_rules("", day, GROUPING),
            format!(
                "avg_over_time(({lag} > bool 600)[1d:2m]) or avg_over_time(({lag} > bool 600)[1h:30s])",
                lag = crate::promql::freshness_lag("", GROUPING)
            )
        );
        assert_eq!(
            freshness.error_ratio("", day, GROUPING),
            r#"avg_over_time(slo:sli_error:ratio_rate5m{slo="freshness"}[1d])"#
        );
        // The event SLIs read the counters either way.
        assert_eq!(
            slos[0].error_ratio("", day, GROUPING),
            slos[0].error_ratio_without_rules("", day, GROUPING)
        );
    }

    #[test]
    fn meta_rules() {
        let rules = all_rules(&Objectives::reference());
        let expr = |name| find(&rules, name, "availability").expr.clone();
        let sel = r#"{namespace="shop",pipeline="web",slo="availability"}"#;
        assert_eq!(expr("slo:objective:ratio"), "vector(0.9995)");
        assert_eq!(expr("slo:error_budget:ratio"), "vector(0.0005)");
        assert_eq!(expr("slo:time_period:days"), "vector(30)");
        assert_eq!(
            expr("slo:current_burn_rate:ratio"),
            format!(
                "slo:sli_error:ratio_rate5m{sel} / on(namespace, pipeline, slo) slo:error_budget:ratio{sel}"
            )
        );
        assert_eq!(
            expr("slo:period_burn_rate:ratio"),
            format!(
                "slo:sli_error:ratio_rate30d{sel} / on(namespace, pipeline, slo) slo:error_budget:ratio{sel}"
            )
        );
        assert_eq!(
            expr("slo:period_error_budget_remaining:ratio"),
            format!("1 - slo:period_burn_rate:ratio{sel}")
        );
    }

    /// (severity, short, long, for) of the alerts of one SLO.
    fn alert_pairs(
        objectives: &Objectives,
        slo: &str,
    ) -> Vec<(String, String, String, Option<String>)> {
        all_rules(objectives)
            .into_iter()
            .filter(|r| r.alert.is_some() && r.labels["slo"] == slo)
            .map(|r| {
                (
                    r.labels["severity"].clone(),
                    r.labels["short"].clone(),
                    r.labels["long"].clone(),
                    r.for_,
                )
            })
            .collect()
    }

    fn pairs(
        rows: &[(&str, &str, &str, Option<&str>)],
    ) -> Vec<(String, String, String, Option<String>)> {
        rows.iter()
            .map(|&(sev, short, long, hold)| {
                (sev.into(), short.into(), long.into(), hold.map(Into::into))
            })
            .collect()
    }

    #[test]
    fn alerts_follow_the_workbook_pairs_and_fire_without_a_hold_by_default() {
        assert_eq!(Objectives::reference().alert_holds, AlertHolds::None);
        assert_eq!(
            alert_pairs(&Objectives::reference(), "latency-product-p99"),
            pairs(&[
                ("page", "5m", "1h", None),
                ("page", "30m", "6h", None),
                ("ticket", "2h", "1d", None),
                ("ticket", "6h", "3d", None),
            ])
        );
        let rules = all_rules(&Objectives::reference());
        let page = rules
            .iter()
            .find(|r| r.alert.is_some() && r.labels["slo"] == "latency-product-p99")
            .unwrap();
        let sel = r#"{namespace="shop",pipeline="web",slo="latency-product-p99"}"#;
        assert_eq!(
            page.expr,
            format!(
                "slo:sli_error:ratio_rate5m{sel} > (14.4 * 0.01)\nand\nslo:sli_error:ratio_rate1h{sel} > (14.4 * 0.01)"
            )
        );
    }

    #[test]
    fn short_window_half_holds_each_alert_for_half_its_short_window() {
        let held = |window_days: u64| Objectives {
            window: Duration::from_secs(window_days * DAY),
            alert_holds: AlertHolds::ShortWindowHalf,
            ..Objectives::reference()
        };
        assert_eq!(
            alert_pairs(&held(30), "availability"),
            pairs(&[
                ("page", "5m", "1h", Some("2m")),
                ("page", "30m", "6h", Some("15m")),
                ("ticket", "2h", "1d", Some("1h")),
                ("ticket", "6h", "3d", Some("3h")),
            ])
        );
        // A 1-day SLO scales the 5m short window to 1m: half of it rounds to 0, held 1m instead.
        assert_eq!(
            alert_pairs(&held(1), "availability"),
            pairs(&[
                ("page", "1m", "2m", Some("1m")),
                ("page", "1m", "12m", Some("1m")),
                ("ticket", "4m", "48m", Some("2m")),
                ("ticket", "12m", "144m", Some("6m")),
            ])
        );
        // The holds change nothing but `for`.
        let strip = |o: &Objectives| -> Vec<Rule> {
            all_rules(o)
                .into_iter()
                .map(|r| Rule { for_: None, ..r })
                .collect()
        };
        assert_eq!(strip(&held(30)), all_rules(&Objectives::reference()));
    }

    #[test]
    fn calendar_months_get_rolling_thirty_day_rules() {
        let objectives = Objectives {
            window: Duration::from_secs(31 * DAY),
            window_kind: WindowKind::CalendarMonth,
            ..Objectives::reference()
        };
        assert_eq!(period(&objectives), Duration::from_secs(30 * DAY));
        let rules = all_rules(&objectives);
        assert_eq!(
            find(&rules, "slo:time_period:days", "freshness").expr,
            "vector(30)"
        );
    }

    #[test]
    fn rules_file_uses_the_prometheus_field_names_and_round_trips() {
        let groups = pipeline_rules("shop", "web", &Objectives::reference(), SeriesLabels::Plain);
        let yaml = rules_file(&groups).unwrap();
        assert!(yaml.starts_with("groups:\n- name: tailwarden-slo-sli-shop-web\n"));
        assert!(!yaml.contains("for:"), "no holds by default");
        assert!(!yaml.contains("for_") && !yaml.contains("interval"));
        let held = Objectives {
            alert_holds: AlertHolds::ShortWindowHalf,
            ..Objectives::reference()
        };
        let held_yaml =
            rules_file(&pipeline_rules("shop", "web", &held, SeriesLabels::Plain)).unwrap();
        assert!(held_yaml.contains("\n    for: 2m\n"));
        assert_eq!(held_yaml.matches("\n    for: ").count(), 13 * 4);
        #[derive(Deserialize)]
        struct File {
            groups: Vec<RuleGroup>,
        }
        let back: File = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back.groups, groups);
    }

    #[test]
    fn sloth_labels_add_labels_and_an_info_recording_and_keep_the_alerts_matching() {
        let sloth: Vec<Rule> = pipeline_rules(
            "shop",
            "web",
            &Objectives::reference(),
            SeriesLabels::WithSloth,
        )
        .into_iter()
        .flat_map(|g| g.rules)
        .collect();
        let info = find(&sloth, "sloth_slo_info", "availability");
        assert_eq!(info.labels["sloth_objective"], "99.95");
        assert_eq!(info.labels["sloth_id"], "shop/web-availability");
        assert_eq!(info.labels["sloth_service"], "shop/web");
        let ratio = find(&sloth, "slo:sli_error:ratio_rate30d", "availability");
        assert_eq!(ratio.labels["sloth_window"], "30d");
        assert_eq!(ratio.labels["sloth_slo"], "availability");
        let page = sloth.iter().find(|r| r.alert.is_some()).unwrap();
        assert_eq!(page.labels["sloth_severity"], "page");
        assert!(!page.labels.contains_key("sloth_window"));
        let sel = r#"{namespace="shop",pipeline="web",slo="availability"}"#;
        assert_eq!(
            page.expr,
            format!(
                "max without (sloth_window) (slo:sli_error:ratio_rate5m{sel} > (14.4 * 0.0005))\nand\n\
                 max without (sloth_window) (slo:sli_error:ratio_rate1h{sel} > (14.4 * 0.0005))"
            )
        );
        // Without the Sloth labels and the info recordings, the recordings are the plain ones.
        let records = |rules: Vec<Rule>| -> Vec<Rule> {
            rules
                .into_iter()
                .filter(|r| r.record.is_some() && r.record.as_deref() != Some("sloth_slo_info"))
                .map(|mut r| {
                    r.labels.retain(|k, _| !k.starts_with("sloth_"));
                    r
                })
                .collect()
        };
        assert_eq!(records(sloth), records(all_rules(&Objectives::reference())));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(
            [
                number(1.0 - 0.9995),
                number(14.4),
                number(30.0),
                number(28.0 / 3.0)
            ],
            ["0.0005", "14.4", "30", "9.333333333333"]
        );
    }
}
