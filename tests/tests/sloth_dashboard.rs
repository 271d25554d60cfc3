//! With Sloth's labels on, the queries of Sloth's detail dashboard ("Detailed Sloth slos",
//! grafana.com dashboard 14348) return our data from a real Prometheus evaluating our rules.
//!
//! The queries are the dashboard's own, as in the copy of its JSON at
//! github.com/ghazal-naderi/platform-11, `k8s/sloth/grafana-dashboard.yaml` (commit 18943a75,
//! `"gnetId": 14348`); the label set they select on is Sloth's, as its generated rules show in
//! github.com/slok/sloth `test/integration/prometheus/testdata/out-base-extra-labels.yaml.tpl`.

use std::time::Duration;

use serde_json::Value;
use tailwarden_slo::objective::Objectives;
use tailwarden_slo::rules::{SeriesLabels, pipeline_rules, rules_file};
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::scrape_target::{ScrapeTarget, Traffic};
use tailwarden_tests::wait_for;

/// The dashboard's variables as our rules fill them: `$service` is `<namespace>/<pipeline>`.
const SERVICE: &str = "shop/web";
const SLO: &str = "availability";
/// `$min_burning_rate`'s default.
const MIN_BURNING_RATE: &str = "1";
/// The options of `$sli_window`, each of which our 30-day rules record.
const SLI_WINDOWS: [&str; 8] = ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"];

/// The panel queries, with `${service}`, `${slo}`, `${min_burning_rate}` and `${sli_window}`
/// left to [`substitute`]. `${__to:date:M}` is the month number, also substituted.
const PANELS: [(&str, &str); 9] = [
    (
        "Exceeded burning rate SLOs; All burning rate",
        "slo:current_burn_rate:ratio > ${min_burning_rate}",
    ),
    (
        "objective stats; SLI (Objective)",
        r#"slo:objective:ratio{sloth_service="${service}", sloth_slo="${slo}"}"#,
    ),
    (
        "SLI",
        r#"1 - (max(slo:sli_error:ratio_rate${sli_window}{sloth_service="${service}", sloth_slo="${slo}"}) OR on() vector(0))"#,
    ),
    (
        "Current burning budget %",
        r#"slo:current_burn_rate:ratio{sloth_service="${service}", sloth_slo="${slo}"} or on() vector(0)"#,
    ),
    (
        "Remaining error budget (month); Month error budget burn chart",
        r#"1-(
  sum_over_time(
    (
       slo:sli_error:ratio_rate1h{sloth_service="${service}",sloth_slo="${slo}"}
       * on() group_left() (
         month() == bool vector(${__to:date:M})
       )
    )[32d:1h]
  )
  / on(sloth_id)
  (
    slo:error_budget:ratio{sloth_service="${service}",sloth_slo="${slo}"} *on() group_left() (24 * days_in_month())
  )
)"#,
    ),
    (
        "Remaining error budget (30d window)",
        r#"slo:period_error_budget_remaining:ratio{sloth_service="${service}", sloth_slo="${slo}"} or on() vector(1)"#,
    ),
    (
        "Burn rate (speed) magnitude",
        r#"slo:current_burn_rate:ratio{sloth_service="${service}", sloth_slo="${slo}"} > 0"#,
    ),
    (
        "Warning alert",
        r#"max(ALERTS{sloth_service="${service}", sloth_slo="${slo}", sloth_severity="ticket"}) OR on() vector(0)"#,
    ),
    (
        "Critical alert",
        r#"max(ALERTS{sloth_service="${service}", sloth_slo="${slo}", sloth_severity="page"}) or on() vector(0)"#,
    ),
];

/// The template variables `label_values(<match>, <label>)` and the value each must offer.
const VARIABLES: [(&str, &str, &str); 2] = [
    ("slo:objective:ratio", "sloth_service", SERVICE),
    (
        r#"slo:objective:ratio{sloth_service="shop/web"}"#,
        "sloth_slo",
        SLO,
    ),
];

/// `query` with the variables filled in. The month subquery's 1h step becomes 1m: this
/// Prometheus is minutes old, so no recording precedes an hour boundary yet.
fn substitute(query: &str, sli_window: &str) -> String {
    // Prometheus's `month()` is in UTC.
    let month = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .month()
        .to_string();
    query
        .replace("${service}", SERVICE)
        .replace("${slo}", SLO)
        .replace("${min_burning_rate}", MIN_BURNING_RATE)
        .replace("${sli_window}", sli_window)
        .replace("${__to:date:M}", &month)
        .replace("[32d:1h]", "[32d:1m]")
}

/// The query without its fallback: `A or on() vector(x)` always has a result, `A and on()
/// vector(x)` only when `A` has one, and then it is `A`'s.
fn without_fallback(query: &str) -> String {
    query
        .replace(" or on() vector(", " and on() vector(")
        .replace(" OR on() vector(", " and on() vector(")
}

/// The finite values an instant query returns now, or Prometheus's error.
async fn instant(prometheus: &str, expr: &str) -> Result<Vec<f64>, String> {
    let body: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    Ok(body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
        .filter(|x| x.is_finite())
        .collect())
}

/// The values of `label` on the series `matching` selects, as Grafana's `label_values` asks.
async fn label_values(prometheus: &str, matching: &str, label: &str) -> Vec<String> {
    let body: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/label/{label}/values"))
        .query(&[("match[]", matching)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::from_value(body["data"].clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: run tests/run.sh"]
async fn every_detail_dashboard_query_returns_our_data() {
    let rules = rules_file(&pipeline_rules(
        "shop",
        "web",
        &Objectives::reference(),
        SeriesLabels::WithSloth,
    ))
    .expect("the rules render");
    // Half the reads fail: the burn rate is far above 1 and every burn-rate alert fires.
    let target = ScrapeTarget::start("shop", "web").await;
    target.set(Traffic {
        errors_per_sec: 200.0,
        ..Traffic::healthy()
    });
    let prometheus = Prometheus::scraping_with_rules(target.address, &rules).await;

    let queries: Vec<(String, String)> = PANELS
        .iter()
        .flat_map(|&(panel, query)| {
            let windows: &[&str] = if query.contains("${sli_window}") {
                &SLI_WINDOWS
            } else {
                &["-"]
            };
            windows
                .iter()
                .map(move |w| (format!("{panel} (sli_window {w})"), substitute(query, w)))
        })
        .collect();
    wait_for(
        "every detail dashboard query to return data",
        Duration::from_secs(120),
        || async {
            let mut empty = Vec::new();
            for (panel, query) in &queries {
                // The dashboard's query must run; without its fallback it must find our series.
                instant(&prometheus.url, query)
                    .await
                    .unwrap_or_else(|e| panic!("{panel}: Prometheus refused {query}: {e}"));
                if instant(&prometheus.url, &without_fallback(query))
                    .await
                    .unwrap_or_default()
                    .is_empty()
                {
                    empty.push(panel.as_str());
                }
            }
            for (matching, label, value) in VARIABLES {
                if !label_values(&prometheus.url, matching, label)
                    .await
                    .iter()
                    .any(|v| v == value)
                {
                    empty.push(label);
                }
            }
            eprintln!("without data yet: {empty:?}");
            empty.is_empty().then_some(())
        },
    )
    .await;
}
