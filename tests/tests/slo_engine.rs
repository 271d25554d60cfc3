//! The SLO engine against a real Prometheus holding an exact 31-day history with a known outage:
//! its SLIs, budget and burn rates must equal the values computed by hand from the raw counters.
//! And against a Prometheus that evaluates the generated rules: the ratios then come from the
//! recordings, with no raw-counter query.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kube::runtime::reflector::ObjectRef;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::engine::{Engine, EngineConfig};
use tailwarden_operator::evaluation::objectives;
use tailwarden_operator::metrics::Metrics;
use tailwarden_operator::verdict::Verdicts;
use tailwarden_slo::rules::{SeriesLabels, pipeline_rules, rules_file};
use tailwarden_tests::prometheus::{History, Prometheus};
use tailwarden_tests::scrape_target::{ScrapeTarget, Traffic};
use tailwarden_tests::wait_for;

const STEP: i64 = 120;
const DAY: i64 = 86_400;
/// Requests per step; during the outage all of them fail.
const PER_STEP: f64 = 100.0;
/// The outage covers the last five samples (ten minutes).
const OUTAGE_STEPS: i64 = 5;

fn pipeline() -> RetailPipeline {
    tailwarden_tests::shop_web_pipeline()
}

/// 31 days at a 2-minute step ending at `end`. Counters start from large baselines so that
/// Prometheus extrapolates every series of a ratio alike, which keeps ratios exact.
fn history(end: i64) -> String {
    let times: Vec<i64> = (0..=31 * DAY / STEP)
        .map(|i| end - 31 * DAY + i * STEP)
        .collect();
    let step_index = |t: i64| ((t - times[0]) / STEP) as f64;
    let outage_start = end - (OUTAGE_STEPS - 1) * STEP;
    let failed_steps = move |t: i64| ((t - outage_start) / STEP + 1).clamp(0, OUTAGE_STEPS) as f64;
    let sel = |extra: &str| format!("namespace=\"shop\",pipeline=\"web\",class=\"product\"{extra}");
    let mut h = History::default();
    h.family("tailwarden_read_requests", "counter")
        .series(
            "tailwarden_read_requests_total",
            &sel(",code=\"200\""),
            &times,
            |t| 1e6 + PER_STEP * (step_index(t) - failed_steps(t)),
        )
        .series(
            "tailwarden_read_requests_total",
            &sel(",code=\"500\""),
            &times,
            |t| 1e3 + PER_STEP * failed_steps(t),
        );
    // Every read is fast: all fall into the 0.12 s bucket.
    let reads = |t: i64| 1e6 + 1e3 + PER_STEP * step_index(t);
    h.family("tailwarden_read_duration_seconds", "histogram");
    for le in ["0.12", "0.2", "+Inf"] {
        h.series(
            "tailwarden_read_duration_seconds_bucket",
            &sel(&format!(",le=\"{le}\"")),
            &times,
            reads,
        );
    }
    h.series(
        "tailwarden_read_duration_seconds_count",
        &sel(""),
        &times,
        reads,
    )
    .series(
        "tailwarden_read_duration_seconds_sum",
        &sel(""),
        &times,
        |t| reads(t) * 0.01,
    );
    h.family("tailwarden_ingest_watermark_timestamp_seconds", "gauge")
        .series(
            "tailwarden_ingest_watermark_timestamp_seconds",
            &sel(""),
            &times,
            |t| (t - 5) as f64,
        );
    h.family("tailwarden_ingest_records", "counter")
        .series(
            "tailwarden_ingest_records_total",
            &sel(",outcome=\"accepted\""),
            &times,
            |t| 5e6 + 1000.0 * step_index(t),
        )
        .series(
            "tailwarden_ingest_records_total",
            &sel(",outcome=\"rejected\""),
            &times,
            |_| 10.0,
        );
    h.family("tailwarden_ingest_queue_depth_records", "gauge")
        .series(
            "tailwarden_ingest_queue_depth_records",
            "namespace=\"shop\",pipeline=\"web\"",
            &times,
            |_| 0.0,
        );
    h.finish()
}

/// Errors over all requests between the first and last sample inside a window of `steps` steps.
fn error_ratio(window_steps: i64) -> f64 {
    let increments = (window_steps - 1) as f64;
    (PER_STEP * OUTAGE_STEPS as f64) / (PER_STEP * increments)
}

#[tokio::test]
#[ignore = "needs Prometheus: run tests/run.sh"]
async fn engine_numbers_match_hand_computed_values_from_real_prometheus() {
    // End on a whole step a little in the past, so every block is complete.
    let end = (Timestamp::now().as_second() / STEP) * STEP - 10 * STEP;
    let prometheus = Prometheus::with_history(&history(end)).await;
    let verdicts = Verdicts::default();
    let config = EngineConfig {
        default_prometheus: Some(prometheus.url.clone()),
        // The history has one sample per 2 minutes; a rate needs two in its window.
        signal_window: std::time::Duration::from_secs(300),
        ..EngineConfig::default()
    };
    let engine = Engine::new(config, verdicts.clone(), Arc::new(Metrics::default()));
    let pipelines = vec![Arc::new(pipeline())];
    // One second after the last sample: no sample sits on a window's edge, so the count of samples
    // in each window is the same whether the version treats the left edge as open or closed.
    let now = Timestamp::from_second(end + 1).unwrap();

    let report = engine.pass(&pipelines, now).await;
    assert_eq!(report.failed_queries, 0, "{}", prometheus.log());
    let v = verdicts
        .get(&ObjectRef::new("web").within("shop"))
        .expect("a verdict");
    assert!(v.missing.is_empty(), "missing: {:?}", v.missing);

    // Availability over 30 days: 500 failed of 100 × 21 599 requests; budget 0.05 %.
    let ratio_30d = error_ratio(30 * DAY / STEP);
    let remaining = 1.0 - ratio_30d / 0.0005;
    assert_eq!(
        v.budget.remaining_percent,
        Some((remaining * 10_000.0).round() / 100.0)
    );
    assert_eq!(v.budget.worst_slo.as_deref(), Some("availability"));
    assert_eq!(
        v.slis.availability_percent,
        Some(((1.0 - ratio_30d) * 10_000.0).round() / 100.0)
    );
    let burn = |w: &str| {
        v.budget
            .burn_rates
            .iter()
            .find(|b| b.window == w)
            .map(|b| b.rate)
    };
    let expect = |steps: i64| ((error_ratio(steps) / 0.0005) * 100.0).round() / 100.0;
    assert_eq!(
        burn("5m"),
        Some(2000.0),
        "the last 5 minutes failed entirely"
    );
    assert_eq!(burn("30m"), Some(expect(15)));
    assert_eq!(burn("1h"), Some(expect(30)));
    assert_eq!(burn("6h"), Some(expect(180)));
    // All reads fell in the first bucket: P99 interpolates to 0.99 × 120 ms.
    assert_eq!(v.slis.read_p99.as_deref(), Some("119ms"));
    assert_eq!(
        v.slis.freshness_lag.as_deref(),
        Some("6s"),
        "watermark 5 s behind the last sample, read 1 s later"
    );
    assert_eq!(v.slis.correctness_error_percent, Some(0.0));
    // A fast burn freezes rollouts though half the budget is left; nothing is degraded.
    assert!(v.gates.freeze.closed);
    assert_eq!(v.gates.freeze.code.as_str(), "FastBurn");
    assert!(!v.gates.degrade.closed);

    // Prometheus goes away: nothing flips, and the verdict names what is missing.
    let mut frozen = pipeline();
    frozen.status = Some(Default::default());
    let status = frozen.status.as_mut().unwrap();
    // The budget's freeze as the previous pass recorded it.
    status.rollout.budget_frozen = true;
    status.serve.desired_replicas = 4;
    drop(prometheus);
    let report = engine.pass(&[Arc::new(frozen)], now).await;
    assert_eq!(report.failed_queries, report.queries, "every query fails");
    let v = verdicts.get(&ObjectRef::new("web").within("shop")).unwrap();
    assert!(v.gates.freeze.closed, "absent data never unfreezes");
    assert_eq!(v.gates.freeze.code.as_str(), "MissingData");
    assert_eq!(v.serve.as_ref().unwrap().replicas, 4, "replicas are held");
    assert!(
        v.missing.iter().any(|m| m.contains("query failed")),
        "{:?}",
        v.missing
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: run tests/run.sh"]
async fn with_the_generated_rules_loaded_the_ratios_come_from_the_recordings() {
    let web = pipeline();
    let rules = rules_file(&pipeline_rules(
        "shop",
        "web",
        &objectives(&web.spec).expect("valid objectives"),
        SeriesLabels::Plain,
    ))
    .expect("the rules render");
    let target = ScrapeTarget::start("shop", "web").await;
    // About 1 % of reads fail, so the availability ratios are not zero.
    target.set(Traffic {
        errors_per_sec: 2.0,
        ..Traffic::healthy()
    });
    let prometheus = Prometheus::scraping_with_rules(target.address, &rules).await;
    let verdicts = Verdicts::default();
    let engine = Engine::new(
        EngineConfig {
            default_prometheus: Some(prometheus.url.clone()),
            ..EngineConfig::default()
        },
        verdicts.clone(),
        Arc::new(Metrics::default()),
    );
    let web = Arc::new(web);
    // 5 SLOs (availability, latency P95/P99 of one class, freshness, correctness) over the 4 page
    // windows and the 30-day period. The freshness base ratio samples every 30 s, so the last
    // recordings can take a while to appear.
    const RATIOS: usize = 5 * 5;
    // A little in the past, so that no rule evaluation lands at or before `now` afterwards.
    let now = || Timestamp::now() - SignedDuration::from_secs(2);
    let (at, report) = wait_for(
        "every ratio of shop/web to be recorded",
        std::time::Duration::from_secs(120),
        || async {
            let at = now();
            let report = engine.pass(std::slice::from_ref(&web), at).await;
            (report.recorded_ratios == RATIOS).then_some((at, report))
        },
    )
    .await;
    assert_eq!(report.failed_queries, 0, "{}", prometheus.log());
    assert_eq!(
        report.queries,
        5 + 7 + 2 + 2,
        "one recorded query per window, the 7 signals, the check of the 2 latency bounds' \
         buckets and the backends' states and Kafka partitions (a distributed pipeline), no \
         raw-counter ratio"
    );
    let v = verdicts
        .get(&ObjectRef::new("web").within("shop"))
        .expect("a verdict");
    assert!(v.missing.is_empty(), "missing: {:?}", v.missing);
    assert_eq!(v.budget.worst_slo.as_deref(), Some("availability"));
    let recorded = reqwest::get(format!(
        "{}/api/v1/query?query=slo:sli_error:ratio_rate5m{{slo=%22availability%22}}&time={}",
        prometheus.url,
        at.as_second()
    ))
    .await
    .unwrap()
    .json::<serde_json::Value>()
    .await
    .unwrap();
    let ratio: f64 = recorded["data"]["result"][0]["value"][1]
        .as_str()
        .expect("a recorded 5m availability ratio")
        .parse()
        .unwrap();
    assert!(ratio > 0.0, "{recorded}");
    let burn_5m = v.budget.burn_rates.iter().find(|b| b.window == "5m");
    assert_eq!(
        burn_5m.map(|b| b.rate),
        Some((ratio / 0.0005 * 100.0).round() / 100.0),
        "the 5m burn rate is the recorded ratio over the 0.05 % budget"
    );

    // A pipeline whose rules are not loaded is computed from the raw counters in the same pass.
    let mut other = pipeline();
    other.metadata.name = Some("other".into());
    let report = engine.pass(&[web, Arc::new(other)], now()).await;
    assert_eq!(report.recorded_ratios, RATIOS);
    assert_eq!(
        report.queries,
        5 + 7 + 2 + 2 + 5 * 5,
        "plus the 25 raw ratios"
    );
}
