//! The generated rules against the real `promtool` (Debian's `prometheus` package, installed by
//! `tests/prometheus/install.sh`): syntax checks, and unit tests over synthetic histories whose
//! outcomes are computed by hand in the comments.
//!
//! Every series is sampled once a minute and the rules are evaluated once a minute.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde::Serialize;
use tailwarden_slo::objective::{AlertHolds, Objectives, WindowKind};
use tailwarden_slo::promql;
use tailwarden_slo::rules::{self, BURN_ALERT, Rule, RuleGroup, SeriesLabels};

const DAY: u64 = 86_400;

/// Runs promtool, failing loudly when it is missing: these tests must not pass by skipping.
fn promtool(args: &[&Path], subcommand: &[&str]) -> Output {
    Command::new("promtool")
        .args(subcommand)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is required; install it with tests/prometheus/install.sh ({e})")
        })
}

fn assert_success(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fresh directory for one test's files.
fn workdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("promtool")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test directory");
    dir
}

/// Writes the rules of pipeline shop/web and returns the path and the rules.
fn write_rules(
    dir: &Path,
    objectives: &Objectives,
    labels: SeriesLabels,
) -> (PathBuf, Vec<RuleGroup>) {
    let groups = rules::pipeline_rules("shop", "web", objectives, labels);
    let path = dir.join("rules.yaml");
    std::fs::write(&path, rules::rules_file(&groups).expect("render rules")).expect("write rules");
    (path, groups)
}

#[derive(Serialize)]
struct UnitTests {
    rule_files: Vec<String>,
    evaluation_interval: &'static str,
    group_eval_order: Vec<String>,
    tests: Vec<Case>,
}

#[derive(Serialize)]
struct Case {
    interval: &'static str,
    input_series: Vec<Series>,
    alert_rule_test: Vec<AlertTest>,
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Serialize)]
struct Series {
    series: String,
    values: String,
}

#[derive(Serialize)]
struct AlertTest {
    eval_time: String,
    alertname: &'static str,
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Serialize)]
struct ExpAlert {
    exp_labels: BTreeMap<String, String>,
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ExprTest {
    expr: String,
    eval_time: String,
    exp_samples: Vec<Sample>,
}

#[derive(Serialize)]
struct Sample {
    labels: String,
    value: f64,
}

/// Runs one promtool unit-test case against the rules of `objectives`.
fn run_case(name: &str, objectives: &Objectives, case: impl FnOnce(&[Rule]) -> Case) {
    run_labelled_case(name, objectives, SeriesLabels::Plain, case);
}

/// [`run_case`] with the rules labelled as `labels` says.
fn run_labelled_case(
    name: &str,
    objectives: &Objectives,
    labels: SeriesLabels,
    case: impl FnOnce(&[Rule]) -> Case,
) {
    let dir = workdir(name);
    let (rules_path, groups) = write_rules(&dir, objectives, labels);
    let rules: Vec<Rule> = groups.iter().flat_map(|g| g.rules.clone()).collect();
    let tests = UnitTests {
        rule_files: vec![rules_path.display().to_string()],
        evaluation_interval: "1m",
        // promtool orders unlisted groups arbitrarily; Prometheus runs groups independently, so
        // there an alert may read recordings one evaluation old.
        group_eval_order: groups.iter().map(|g| g.name.clone()).collect(),
        tests: vec![case(&rules)],
    };
    let test_path = dir.join("test.yaml");
    std::fs::write(&test_path, serde_yaml::to_string(&tests).unwrap()).unwrap();
    assert_success(
        &promtool(&[&test_path], &["test", "rules"]),
        &format!("promtool test rules {}", test_path.display()),
    );
}

/// A counter sampled every minute from 0: each segment adds `per_minute` for `minutes` minutes.
fn counter(segments: &[(u64, f64)]) -> String {
    let mut value = 0.0;
    let mut values = vec!["0".to_string()];
    for &(minutes, per_minute) in segments {
        for _ in 0..minutes {
            value += per_minute;
            values.push(value.to_string());
        }
    }
    values.join(" ")
}

fn series(name: &str, extra: &str, values: String) -> Series {
    let sep = if extra.is_empty() { "" } else { "," };
    Series {
        series: format!(r#"{name}{{namespace="shop",pipeline="web"{sep}{extra}}}"#),
        values,
    }
}

/// Reads of class `product`: `ok` and `errors` (5xx) per minute in each segment.
fn reads(segments: &[(u64, f64, f64)]) -> Vec<Series> {
    let ok: Vec<_> = segments.iter().map(|&(m, ok, _)| (m, ok)).collect();
    let err: Vec<_> = segments.iter().map(|&(m, _, e)| (m, e)).collect();
    vec![
        series(
            "tailwarden_read_requests_total",
            r#"class="product",code="200""#,
            counter(&ok),
        ),
        series(
            "tailwarden_read_requests_total",
            r#"class="product",code="500""#,
            counter(&err),
        ),
    ]
}

/// A watermark 30 s behind the clock that stops moving after `until` minutes.
fn watermark(until: u64, minutes: u64) -> String {
    let values: Vec<String> = (0..=minutes)
        .map(|m| (m.min(until) as i64 * 60 - 30).to_string())
        .collect();
    values.join(" ")
}

fn minutes(m: u64) -> String {
    format!("{m}m")
}

/// The alerts expected to fire: those generated for `slo` with the given `short` windows, with
/// exactly the labels and annotations of the generated rules.
fn firing(rules: &[Rule], slo: &str, shorts: &[&str]) -> Vec<ExpAlert> {
    shorts
        .iter()
        .map(|short| {
            let rule = rules
                .iter()
                .find(|r| {
                    r.alert.as_deref() == Some(BURN_ALERT)
                        && r.labels["slo"] == slo
                        && r.labels["short"] == *short
                })
                .unwrap_or_else(|| panic!("no alert for {slo} with short window {short}"));
            ExpAlert {
                exp_labels: rule.labels.clone(),
                exp_annotations: rule.annotations.clone(),
            }
        })
        .collect()
}

fn alerts_at(minute: u64, expected: Vec<ExpAlert>) -> AlertTest {
    AlertTest {
        eval_time: minutes(minute),
        alertname: BURN_ALERT,
        exp_alerts: expected,
    }
}

/// Expects the recorded `metric` of `slo` of shop/web at `minute` to equal `value`.
fn value_at(minute: u64, metric: &str, slo: &str, value: f64) -> ExprTest {
    rounded_at(
        minute,
        &format!(r#"{metric}{{slo="{slo}"}}"#),
        &format!(r#"namespace="shop",pipeline="web",slo="{slo}""#),
        value,
    )
}

/// Expects `expr` at `minute` to give one series with `labels` and `value`, to 12 decimals:
/// promtool compares floats exactly, and a ratio of rates is not exactly the ratio of its counts.
fn rounded_at(minute: u64, expr: &str, labels: &str, value: f64) -> ExprTest {
    const PRECISION: f64 = 1e-12;
    // The same arithmetic as PromQL's round().
    let inverse = 1.0 / PRECISION;
    ExprTest {
        expr: format!("round({expr}, {PRECISION:e})"),
        eval_time: minutes(minute),
        exp_samples: vec![Sample {
            labels: format!("{{{labels}}}"),
            value: (value * inverse + 0.5).floor() / inverse,
        }],
    }
}

/// `objectives` with Pyrra's holds: `for` half the short window (2m, 15m, 1h, 3h for 30 days).
fn held(objectives: Objectives) -> Objectives {
    Objectives {
        alert_holds: AlertHolds::ShortWindowHalf,
        ..objectives
    }
}

fn custom_28d() -> Objectives {
    Objectives {
        window: Duration::from_secs(28 * DAY),
        availability_target: 0.999,
        ..Objectives::reference()
    }
}

#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn generated_rules_pass_promtool_check() {
    let calendar = Objectives {
        window_kind: WindowKind::CalendarMonth,
        ..Objectives::reference()
    };
    let plain = SeriesLabels::Plain;
    for (name, objectives, labels) in [
        ("check-reference", Objectives::reference(), plain),
        ("check-reference-held", held(Objectives::reference()), plain),
        ("check-28d", custom_28d(), plain),
        ("check-calendar", calendar, plain),
        (
            "check-sloth",
            Objectives::reference(),
            SeriesLabels::WithSloth,
        ),
        ("check-sloth-28d", custom_28d(), SeriesLabels::WithSloth),
    ] {
        let dir = workdir(name);
        let (path, groups) = write_rules(&dir, &objectives, labels);
        let count: usize = groups.iter().map(|g| g.rules.len()).sum();
        let out = assert_success(&promtool(&[&path], &["check", "rules"]), name);
        assert!(
            out.contains(&format!("SUCCESS: {count} rules found")),
            "{name}: {out}"
        );
    }
}

/// A total outage from minute 60 on, after an hour of 600 good reads a minute.
/// At 61m the 5m ratio is 600 / 3000 = 0.2 and the 1h ratio 600 / 36000, both above
/// 14.4 × 0.0005 = 0.0072. Every longer window holds all 61 minutes of data, 600 / 36,600 errors,
/// above 6x, 3x and 1x the budget too. Without holds all four pairs fire at 61m, the first
/// evaluation that sees an error.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn total_outage_pages_and_tickets_at_the_first_bad_evaluation() {
    run_case("fast-burn", &Objectives::reference(), |rules| {
        let all = || firing(rules, "availability", &["5m", "30m", "2h", "6h"]);
        Case {
            interval: "1m",
            input_series: reads(&[(60, 600.0, 0.0), (30, 0.0, 600.0)]),
            alert_rule_test: vec![
                alerts_at(60, vec![]),
                alerts_at(61, all()),
                alerts_at(90, all()),
            ],
            promql_expr_test: vec![
                value_at(61, "slo:sli_error:ratio_rate5m", "availability", 0.2),
                value_at(
                    61,
                    "slo:sli_error:ratio_rate1h",
                    "availability",
                    600.0 / 36_000.0,
                ),
            ],
        }
    });
}

/// The same outage with Sloth's labels: the same four alerts fire, now also labelled
/// `sloth_severity` and without `sloth_window`, and the recordings carry Sloth's labels.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn with_sloth_labels_a_total_outage_fires_the_same_alerts() {
    let reference = Objectives::reference();
    run_labelled_case(
        "fast-burn-sloth",
        &reference,
        SeriesLabels::WithSloth,
        |rules| {
            let all = || firing(rules, "availability", &["5m", "30m", "2h", "6h"]);
            assert!(
                all()
                    .iter()
                    .all(|a| a.exp_labels.contains_key("sloth_severity")
                        && !a.exp_labels.contains_key("sloth_window"))
            );
            let sloth = r#"sloth_id="shop/web-availability",sloth_service="shop/web",sloth_slo="availability""#;
            let labels = format!(r#"namespace="shop",pipeline="web",slo="availability",{sloth}"#);
            Case {
                interval: "1m",
                input_series: reads(&[(60, 600.0, 0.0), (30, 0.0, 600.0)]),
                alert_rule_test: vec![alerts_at(60, vec![]), alerts_at(61, all())],
                promql_expr_test: vec![
                    rounded_at(
                        61,
                        r#"slo:sli_error:ratio_rate5m{sloth_slo="availability"}"#,
                        &format!(r#"{labels},sloth_window="5m""#),
                        0.2,
                    ),
                    rounded_at(
                        61,
                        r#"slo:current_burn_rate:ratio{sloth_slo="availability"}"#,
                        &labels,
                        0.2 / 0.0005,
                    ),
                    rounded_at(
                        61,
                        r#"sloth_slo_info{sloth_slo="availability"}"#,
                        &format!(
                            r#"{labels},sloth_mode="tailwarden",sloth_objective="99.95",sloth_spec="tailwarden.io/v1alpha1",sloth_version="tailwarden-{}""#,
                            env!("CARGO_PKG_VERSION")
                        ),
                        1.0,
                    ),
                ],
            }
        },
    );
}

/// The same outage with Pyrra's holds: the 5m/1h page is pending from 61m, held 2m, firing at
/// 63m; the 30m/6h page is held 15m, firing at 76m. Tickets are held 1h and 3h, so none fires
/// by 90m.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn with_holds_a_total_outage_pages_only_after_the_holds() {
    run_case("fast-burn-held", &held(Objectives::reference()), |rules| {
        let fast = || firing(rules, "availability", &["5m"]);
        let both = || firing(rules, "availability", &["5m", "30m"]);
        Case {
            interval: "1m",
            input_series: reads(&[(60, 600.0, 0.0), (30, 0.0, 600.0)]),
            alert_rule_test: vec![
                alerts_at(60, vec![]),
                alerts_at(61, vec![]),
                alerts_at(62, vec![]),
                alerts_at(63, fast()),
                alerts_at(75, fast()),
                alerts_at(76, both()),
                alerts_at(90, both()),
            ],
            promql_expr_test: vec![
                value_at(61, "slo:sli_error:ratio_rate5m", "availability", 0.2),
                value_at(
                    61,
                    "slo:sli_error:ratio_rate1h",
                    "availability",
                    600.0 / 36_000.0,
                ),
            ],
        }
    });
}

/// 2x burn from 6h on, after 6h at 0.4x (2 errors in 10,000 reads a minute, then 10).
/// The 3d window holds all data; its ratio (720 + 10 (T − 360)) / 10,000 T passes 0.0005 at
/// T = 576m (0.000499 at 575m, equal at 576m, 0.000501 at 577m), the 6h one already at
/// T = 495m, so the 6h/3d ticket fires at 576m or 577m. 2x never reaches 3x, 6x or 14.4x:
/// nothing else fires.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn slow_burn_raises_a_ticket_and_never_pages() {
    run_case("slow-burn", &Objectives::reference(), |rules| {
        let ticket = || firing(rules, "availability", &["6h"]);
        Case {
            interval: "1m",
            input_series: reads(&[(360, 9998.0, 2.0), (440, 9990.0, 10.0)]),
            alert_rule_test: vec![
                alerts_at(360, vec![]),
                alerts_at(575, vec![]),
                alerts_at(577, ticket()),
                alerts_at(800, ticket()),
            ],
            promql_expr_test: vec![value_at(
                800,
                "slo:sli_error:ratio_rate6h",
                "availability",
                0.001,
            )],
        }
    });
}

/// The same slow burn with Pyrra's holds: the ticket is pending from 576m or 577m and, held 3h,
/// fires at 756m or 757m, three hours after the ticket without holds.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn with_holds_a_slow_burn_tickets_three_hours_late() {
    run_case("slow-burn-held", &held(Objectives::reference()), |rules| {
        let ticket = || firing(rules, "availability", &["6h"]);
        Case {
            interval: "1m",
            input_series: reads(&[(360, 9998.0, 2.0), (440, 9990.0, 10.0)]),
            alert_rule_test: vec![
                alerts_at(360, vec![]),
                alerts_at(600, vec![]),
                alerts_at(755, vec![]),
                alerts_at(758, ticket()),
                alerts_at(800, ticket()),
            ],
            promql_expr_test: vec![value_at(
                800,
                "slo:sli_error:ratio_rate6h",
                "availability",
                0.001,
            )],
        }
    });
}

/// A pipeline 2h old (10,000 reads a minute, no errors) burns at 10x (50 errors a minute,
/// ratio 0.005) for 184 minutes, from 120m to 304m, then recovers; checked up to 340m.
fn ten_x_burn() -> Vec<Series> {
    reads(&[
        (120, 10_000.0, 0.0),
        (184, 9_950.0, 50.0),
        (36, 10_000.0, 0.0),
    ])
}

/// The 30m/6h page condition of `ten_x_burn` holds for 6 minutes, 301m to 306m, which is what
/// the comparison with Sloth found: a 10x burn that our 15m hold never paged on. Every window up
/// to 6h covers all the data since 0, so its ratio at T is 0.005 × (minutes burnt) / T:
/// - 30m/6h page (> 0.003): the 6h ratio passes 6x when more than 60 % of the minutes burnt:
///   180 / 300 is exactly 0.003 at 300m, 181 / 301 at 301m is above, and after the burn
///   184 / 306 still is but 184 / 307 (0.0029967) is not. The 30m ratio is 10x throughout.
/// - 2h/1d ticket (> 0.0015): the 1d ratio passes 30 %, 52 / 172 at 172m (51 / 171 is below).
/// - 6h/3d ticket (> 0.0005): the 6h ratio passes 10 %, 14 / 134 at 134m (13 / 133 is below).
/// - The 5m/1h page needs 14.4x and never fires.
///
/// Without holds the page fires for those 6 minutes and the tickets fire as their conditions
/// start.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn a_six_minute_page_episode_pages_without_holds() {
    run_case("six-minute-page", &Objectives::reference(), |rules| {
        let tickets = || firing(rules, "availability", &["2h", "6h"]);
        let page = || firing(rules, "availability", &["30m", "2h", "6h"]);
        let ratio_6h = |minute: u64, burnt: f64| {
            value_at(
                minute,
                "slo:sli_error:ratio_rate6h",
                "availability",
                burnt * 50.0 / (minute as f64 * 10_000.0),
            )
        };
        Case {
            interval: "1m",
            input_series: ten_x_burn(),
            alert_rule_test: vec![
                alerts_at(120, vec![]),
                alerts_at(133, vec![]),
                alerts_at(134, firing(rules, "availability", &["6h"])),
                alerts_at(171, firing(rules, "availability", &["6h"])),
                alerts_at(172, tickets()),
                alerts_at(299, tickets()),
                alerts_at(301, page()),
                alerts_at(304, page()),
                alerts_at(306, page()),
                alerts_at(307, tickets()),
                alerts_at(340, tickets()),
            ],
            promql_expr_test: vec![
                ratio_6h(301, 181.0),
                ratio_6h(306, 184.0),
                ratio_6h(307, 184.0),
                value_at(
                    306,
                    "slo:sli_error:ratio_rate30m",
                    "availability",
                    0.005 * 28.0 / 30.0,
                ),
            ],
        }
    });
}

/// The same episode with Pyrra's holds. The page is pending from 301m but needs 15m, and its
/// condition ends after 306m: it never fires. The tickets fire 1h (232m, not 172m) and 3h (314m,
/// not 134m) late. This is the cost of `AlertHolds::ShortWindowHalf`.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn with_holds_a_six_minute_page_episode_never_pages() {
    run_case(
        "six-minute-page-held",
        &held(Objectives::reference()),
        |rules| {
            let day = || firing(rules, "availability", &["2h"]);
            let tickets = || firing(rules, "availability", &["2h", "6h"]);
            Case {
                interval: "1m",
                input_series: ten_x_burn(),
                alert_rule_test: vec![
                    alerts_at(134, vec![]),
                    alerts_at(231, vec![]),
                    alerts_at(232, day()),
                    alerts_at(301, day()),
                    alerts_at(306, day()),
                    alerts_at(313, day()),
                    alerts_at(314, tickets()),
                    alerts_at(316, tickets()),
                    alerts_at(320, tickets()),
                    alerts_at(340, tickets()),
                ],
                promql_expr_test: vec![],
            }
        },
    );
}

/// The healthy pipeline's series over `minutes`, as described on the test that uses it.
fn healthy_series(minutes: u64) -> Vec<Series> {
    let mut input_series = reads(&[(minutes, 9998.0, 2.0)]);
    for (le, per_minute) in [("0.12", 9700.0), ("0.2", 9950.0), ("+Inf", 10000.0)] {
        input_series.push(series(
            "tailwarden_read_duration_seconds_bucket",
            &format!(r#"class="product",le="{le}""#),
            counter(&[(minutes, per_minute)]),
        ));
    }
    input_series.push(series(
        "tailwarden_read_duration_seconds_count",
        r#"class="product""#,
        counter(&[(minutes, 10000.0)]),
    ));
    for (outcome, per_minute) in [("accepted", 100_000.0), ("rejected", 5.0), ("stale", 50.0)] {
        input_series.push(series(
            "tailwarden_ingest_records_total",
            &format!(r#"class="pricing",outcome="{outcome}""#),
            counter(&[(minutes, per_minute)]),
        ));
    }
    input_series.push(series(
        "tailwarden_ingest_watermark_timestamp_seconds",
        r#"class="pricing""#,
        watermark(minutes, minutes),
    ));
    input_series.push(series(
        "tailwarden_ingest_queue_depth_records",
        "",
        counter(&[(minutes, 60.0)]),
    ));
    input_series
}

/// A healthy pipeline for 4h: every SLI recorded at its hand-computed value, no alert ever.
/// Per minute: 10,000 product reads with 2 errors (ratio 0.0002, 0.4x); 9,700 of them under
/// 120 ms and 9,950 under 200 ms (p95 error 0.03 = 0.6x, p99 0.005 = 0.5x); 100,000 accepted
/// and 5 rejected records (5 / 100,005, 0.5x); a watermark 30 s behind (lag far below 10 min).
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn healthy_pipeline_records_hand_computed_values_and_never_alerts() {
    const MINUTES: u64 = 240;
    run_case("healthy", &Objectives::reference(), |_| {
        let input_series = healthy_series(MINUTES);
        let at_2h = |metric: &str, slo: &str, value: f64| value_at(120, metric, slo, value);
        let sli = |window: &str| format!("slo:sli_error:ratio_rate{window}");
        let mut promql_expr_test = Vec::new();
        for window in ["5m", "1h", "30d"] {
            promql_expr_test.extend([
                at_2h(&sli(window), "availability", 0.0002),
                at_2h(&sli(window), "latency-product-p95", 0.03),
                at_2h(&sli(window), "latency-product-p99", 0.005),
                at_2h(&sli(window), "correctness", 5.0 / 100_005.0),
                at_2h(&sli(window), "freshness", 0.0),
            ]);
        }
        promql_expr_test.extend([
            at_2h("slo:objective:ratio", "availability", 0.9995),
            at_2h("slo:error_budget:ratio", "availability", 0.0005),
            at_2h("slo:time_period:days", "availability", 30.0),
            at_2h("slo:current_burn_rate:ratio", "availability", 0.4),
            at_2h("slo:period_burn_rate:ratio", "availability", 0.4),
            at_2h(
                "slo:period_error_budget_remaining:ratio",
                "availability",
                0.6,
            ),
            at_2h("slo:period_burn_rate:ratio", "latency-product-p99", 0.5),
            at_2h("slo:period_burn_rate:ratio", "correctness", 0.5 / 1.000_05),
        ]);
        Case {
            interval: "1m",
            input_series,
            alert_rule_test: [1, 10, 60, 120, 180, MINUTES]
                .into_iter()
                .map(|m| alerts_at(m, vec![]))
                .collect(),
            promql_expr_test,
        }
    });
}

/// The watermark stops at minute 60 (lag 30 s then), so the lag passes 600 s after 69.5m. The
/// 5m base ratio samples the lag every 30 s: 0 at 69m, 1/11 at 70m, 3/11 at 71m, 5/11 at 72m
/// (1/10, 3/10, 5/10 where the subquery counts 10 points), 1 from 75m. The longer ratios average
/// that recording over the minutes they cover. At 71m: 30m (4/11) / 31 ≈ 0.0117 > 6x; 2h, 6h, 1d
/// and 3d, which all cover the 72 minutes since 0, (4/11) / 72 ≈ 0.0051 > 3x and 1x; but 1h
/// (4/11) / 61 ≈ 0.0060 < 14.4x. At 72m the 1h ratio is (9/11) / 61 ≈ 0.0134 > 14.4x. Without
/// holds the 30m/6h page and both tickets fire at 71m, the 5m/1h page at 72m.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn stalled_ingest_pages_on_freshness() {
    run_case("freshness-stall", &Objectives::reference(), |rules| Case {
        interval: "1m",
        input_series: vec![series(
            "tailwarden_ingest_watermark_timestamp_seconds",
            r#"class="pricing""#,
            watermark(60, 100),
        )],
        alert_rule_test: vec![
            alerts_at(69, vec![]),
            alerts_at(71, firing(rules, "freshness", &["30m", "2h", "6h"])),
            alerts_at(72, firing(rules, "freshness", &["5m", "30m", "2h", "6h"])),
            alerts_at(100, firing(rules, "freshness", &["5m", "30m", "2h", "6h"])),
        ],
        promql_expr_test: vec![
            value_at(69, "slo:sli_error:ratio_rate5m", "freshness", 0.0),
            value_at(75, "slo:sli_error:ratio_rate5m", "freshness", 1.0),
        ],
    });
}

/// Three classes from two workers: inventory stays fresh (received and visible together),
/// catalog goes idle at minute 10 (nothing received after what is visible), pricing stalls at
/// minute 60 while its events keep arriving. Only pricing ages: the stalest class is the
/// pipeline's lag, inventory's fresh watermark on another worker does not hide it, and the idle
/// class burns nothing. Without the stall, the pipeline would never breach.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn the_stalest_class_is_the_lag_and_an_idle_class_burns_nothing() {
    let by = rules::GROUPING;
    run_case("freshness-classes", &Objectives::reference(), |rules| {
        Case {
            interval: "1m",
            input_series: vec![
                series(
                    "tailwarden_ingest_watermark_timestamp_seconds",
                    r#"class="inventory",instance="w1""#,
                    watermark(100, 100),
                ),
                series(
                    "tailwarden_ingest_received_timestamp_seconds",
                    r#"class="inventory",instance="w1""#,
                    watermark(100, 100),
                ),
                series(
                    "tailwarden_ingest_watermark_timestamp_seconds",
                    r#"class="catalog",instance="w1""#,
                    watermark(10, 100),
                ),
                series(
                    "tailwarden_ingest_received_timestamp_seconds",
                    r#"class="catalog",instance="w1""#,
                    watermark(10, 100),
                ),
                series(
                    "tailwarden_ingest_watermark_timestamp_seconds",
                    r#"class="pricing",instance="w2""#,
                    watermark(60, 100),
                ),
                series(
                    "tailwarden_ingest_received_timestamp_seconds",
                    r#"class="pricing",instance="w2""#,
                    watermark(100, 100),
                ),
            ],
            alert_rule_test: vec![
                alerts_at(69, vec![]),
                alerts_at(71, firing(rules, "freshness", &["30m", "2h", "6h"])),
                alerts_at(72, firing(rules, "freshness", &["5m", "30m", "2h", "6h"])),
            ],
            promql_expr_test: vec![
                // At 50m every received event is visible: each class lags 0, catalog idle for 40
                // minutes included.
                ExprTest {
                    expr: promql::freshness_lag_by_class("", by),
                    eval_time: minutes(50),
                    exp_samples: ["catalog", "inventory", "pricing"]
                        .into_iter()
                        .map(|class| Sample {
                            labels: format!(
                                r#"{{namespace="shop",pipeline="web",class="{class}"}}"#
                            ),
                            value: 0.0,
                        })
                        .collect(),
                },
                value_at(50, "slo:sli_error:ratio_rate5m", "freshness", 0.0),
                // At 80m pricing's events since minute 60 wait: 80m - 59.5m = 1230 s, the pipeline's
                // lag, though inventory's watermark on the other worker is 30 s old.
                rounded_at(
                    80,
                    &promql::freshness_lag("", by),
                    r#"namespace="shop",pipeline="web""#,
                    1230.0,
                ),
                value_at(80, "slo:sli_error:ratio_rate5m", "freshness", 1.0),
            ],
        }
    });
}

/// The same stall with Pyrra's holds: the 5m/1h page fires at 74m, held 2m; the 30m/6h pair,
/// pending from 71m, fires 15m later at 86m. The tickets, held 1h and 3h, have not fired by then.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn with_holds_stalled_ingest_pages_after_the_holds() {
    run_case(
        "freshness-stall-held",
        &held(Objectives::reference()),
        |rules| Case {
            interval: "1m",
            input_series: vec![series(
                "tailwarden_ingest_watermark_timestamp_seconds",
                r#"class="pricing""#,
                watermark(60, 100),
            )],
            alert_rule_test: vec![
                alerts_at(69, vec![]),
                alerts_at(73, vec![]),
                alerts_at(74, firing(rules, "freshness", &["5m"])),
                alerts_at(85, firing(rules, "freshness", &["5m"])),
                alerts_at(86, firing(rules, "freshness", &["5m", "30m"])),
            ],
            promql_expr_test: vec![
                value_at(69, "slo:sli_error:ratio_rate5m", "freshness", 0.0),
                value_at(75, "slo:sli_error:ratio_rate5m", "freshness", 1.0),
            ],
        },
    );
}

/// The same total outage under a 28-day 99.9 % SLO: the pairs shrink to 4m/56m, 28m/336m,
/// 112m/1344m and 336m/4032m, the budget grows to 0.001. The 4m ratio at 61m is
/// 600 / 2400 = 0.25 and the 56m one 600 / 33600, above 14.4 × 0.001; the longer windows all hold
/// 600 / 36,600, above 6x, 3x and 1x. All four scaled pairs fire at 61m.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn custom_window_pages_on_its_scaled_pairs() {
    run_case("custom-28d", &custom_28d(), |rules| Case {
        interval: "1m",
        input_series: reads(&[(60, 600.0, 0.0), (10, 0.0, 600.0)]),
        alert_rule_test: vec![
            alerts_at(60, vec![]),
            alerts_at(
                61,
                firing(rules, "availability", &["4m", "28m", "112m", "336m"]),
            ),
        ],
        promql_expr_test: vec![value_at(
            61,
            "slo:sli_error:ratio_rate56m",
            "availability",
            600.0 / 33_600.0,
        )],
    });
}

/// The live queries of `promql.rs` (used by the operator without the rules) over the healthy
/// pipeline at 2h: 10,000 reads and 100,000 accepted records a minute; P99 interpolated in the
/// (0.12, 0.2] bucket at rank 9,900: 0.12 + 0.08 × 200 / 250 = 0.184 s; P95 in the first bucket,
/// from 0: 0.12 × 9,500 / 9,700; a backlog growing 60 records a minute (7,200 at 2h, 1/s); a
/// lag of 30 s; and no freshness breach over 1h.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn live_queries_evaluate_to_hand_computed_values() {
    let m5 = Duration::from_secs(300);
    let objectives = Objectives::reference();
    let freshness = tailwarden_slo::objective::slos(&objectives)
        .into_iter()
        .find(|s| s.name == "freshness")
        .unwrap();
    let shop_web = r#"namespace="shop",pipeline="web""#;
    let at_2h = |expr: String, value: f64| rounded_at(120, &expr, shop_web, value);
    let product = Some("product");
    let by = rules::GROUPING;
    run_case("live", &objectives, |_| Case {
        interval: "1m",
        input_series: healthy_series(180),
        alert_rule_test: vec![],
        promql_expr_test: vec![
            at_2h(promql::request_rate("", m5, by), 10_000.0 / 60.0),
            at_2h(promql::accepted_rate("", m5, by), 100_000.0 / 60.0),
            // No refusal series (an older worker): the backlog is the queue alone.
            at_2h(promql::ingest_backlog("", m5, by), 7_200.0),
            at_2h(promql::queue_depth_slope("", m5, by), 1.0),
            at_2h(promql::latency_quantile("", product, 0.99, m5, by), 0.184),
            at_2h(
                promql::latency_quantile("", product, 0.95, m5, by),
                0.12 * 9_500.0 / 9_700.0,
            ),
            at_2h(promql::freshness_lag("", by), 30.0),
            at_2h(
                freshness.error_ratio_without_rules("", Duration::from_secs(3600), by),
                0.0,
            ),
        ],
    });
}

/// The ingest backlog counts what producers hold after a 429: a worker whose queue is pinned at
/// its capacity (100,000, the default `targetBacklogPerReplica`) and refuses 1,200,000 records a
/// minute (20,000/s) with a Retry-After of 2 s has 100,000 + 20,000 × 2 = 140,000 records waiting,
/// so the backlog crosses its target under the default config. Its queue alone never could.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn refused_writes_count_as_backlog_beyond_the_queue() {
    let m5 = Duration::from_secs(300);
    let objectives = Objectives::reference();
    let shop_web = r#"namespace="shop",pipeline="web""#;
    let by = rules::GROUPING;
    run_case("refused", &objectives, |_| {
        let mut input_series = vec![
            series(
                "tailwarden_ingest_queue_depth_records",
                "",
                "100000+0x60".into(),
            ),
            series("tailwarden_ingest_retry_after_seconds", "", "2+0x60".into()),
        ];
        input_series.push(series(
            "tailwarden_ingest_refused_records_total",
            "",
            counter(&[(60, 1_200_000.0)]),
        ));
        Case {
            interval: "1m",
            input_series,
            alert_rule_test: vec![],
            promql_expr_test: vec![
                rounded_at(30, &promql::ingest_backlog("", m5, by), shop_web, 140_000.0),
                rounded_at(30, &promql::queue_depth_slope("", m5, by), shop_web, 0.0),
            ],
        }
    });
}

/// A distributed pipeline's Kafka consumer lag is backlog: two partitions, exported by the two
/// workers they are assigned to, lag 1,000 and 500 records at the start and each grows 60 records
/// a minute. At 30m: 0 queued + (1,000 + 1,800) + (500 + 1,800) = 5,100 records, growing
/// 2 records/s; no refusal series, so that term is zero.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn consumer_lag_counts_as_backlog() {
    let m5 = Duration::from_secs(300);
    let objectives = Objectives::reference();
    let shop_web = r#"namespace="shop",pipeline="web""#;
    let by = rules::GROUPING;
    run_case("consumer-lag", &objectives, |_| Case {
        interval: "1m",
        input_series: vec![
            series(
                "tailwarden_ingest_queue_depth_records",
                r#"pod="a""#,
                "0+0x60".into(),
            ),
            series(
                "tailwarden_ingest_queue_depth_records",
                r#"pod="b""#,
                "0+0x60".into(),
            ),
            series(
                "tailwarden_kafka_consumer_lag_records",
                r#"pod="a",topic="prices",partition="0""#,
                "1000+60x60".into(),
            ),
            series(
                "tailwarden_kafka_consumer_lag_records",
                r#"pod="b",topic="prices",partition="1""#,
                "500+60x60".into(),
            ),
        ],
        alert_rule_test: vec![],
        promql_expr_test: vec![
            rounded_at(30, &promql::ingest_backlog("", m5, by), shop_web, 5_100.0),
            rounded_at(30, &promql::queue_depth_slope("", m5, by), shop_web, 2.0),
        ],
    });
}

/// A latency bound that is not a bucket of the workers' read histogram is found per class, so the
/// status can name the field instead of reporting plain missing data; a bound that is a bucket
/// finds nothing.
#[test]
#[ignore = "needs promtool: tests/run.sh"]
fn a_bound_without_a_bucket_is_found() {
    let objectives = Objectives::reference();
    let by = "namespace, pipeline, class";
    run_case("buckets", &objectives, |_| Case {
        interval: "1m",
        input_series: healthy_series(30),
        alert_rule_test: vec![],
        promql_expr_test: vec![
            rounded_at(
                20,
                &promql::missing_bucket("", Duration::from_millis(250), by),
                r#"namespace="shop",pipeline="web",class="product""#,
                1.0,
            ),
            ExprTest {
                expr: promql::missing_bucket("", Duration::from_millis(200), by),
                eval_time: minutes(20),
                exp_samples: vec![],
            },
        ],
    });
}
