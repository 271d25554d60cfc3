//! Every SLI as PromQL, built in one place so that the generated rules and the operator's live
//! queries can never disagree.
//!
//! Each builder takes a label selector (`namespace="shop",pipeline="web"`, or `""` for every
//! pipeline), a range window and a grouping (`namespace, pipeline`). A batched live query uses an
//! empty or namespace-wide selector and groups by `namespace, pipeline`, so one query answers for
//! every pipeline.

use std::time::Duration;

use crate::burn::prom_duration;

/// Read requests by `class` and `code`.
pub const READ_REQUESTS: &str = "tailwarden_read_requests_total";
/// Read latency histogram by `class`.
pub const READ_DURATION: &str = "tailwarden_read_duration_seconds";
/// Newest event time made visible, unix seconds, by `class`.
pub const INGEST_WATERMARK: &str = "tailwarden_ingest_watermark_timestamp_seconds";
/// Newest event time the write API received, unix seconds, by `class`: above the watermark, the
/// class has events waiting; at or below it, the class is idle.
pub const INGEST_RECEIVED: &str = "tailwarden_ingest_received_timestamp_seconds";
/// Ingested records by `class` and `outcome`.
pub const INGEST_RECORDS: &str = "tailwarden_ingest_records_total";
/// Records admitted and not yet durable (a gauge per worker).
pub const INGEST_QUEUE_DEPTH: &str = "tailwarden_ingest_queue_depth_records";
/// Records of writes refused with 429 (a counter per worker).
pub const INGEST_REFUSED: &str = "tailwarden_ingest_refused_records_total";
/// The Retry-After of a worker's 429, seconds.
pub const INGEST_RETRY_AFTER: &str = "tailwarden_ingest_retry_after_seconds";
/// Records in Kafka not yet consumed by the group, by `topic` and `partition`: each partition is
/// exported by the worker it is assigned to, so the sum over workers is the group's lag.
pub const CONSUMER_LAG: &str = "tailwarden_kafka_consumer_lag_records";

/// The `slo` label value of the freshness SLO, whose windows read its own 5m recording.
pub const FRESHNESS_SLO: &str = "freshness";

/// Resolution of the freshness subquery: a breach shorter than this may go unseen.
pub const FRESHNESS_STEP: Duration = Duration::from_secs(30);

/// The window of the base freshness recording that longer windows average.
pub const FRESHNESS_BASE_WINDOW: Duration = Duration::from_secs(300);

/// The Sloth-style name of the recorded SLI error ratio over `window`: `slo:sli_error:ratio_rate5m`.
pub fn sli_error_metric(window: Duration) -> String {
    format!("slo:sli_error:ratio_rate{}", prom_duration(window))
}

/// The matchers selecting one pipeline, `namespace="shop",pipeline="web"`, with values escaped.
pub fn pipeline_selector(namespace: &str, pipeline: &str) -> String {
    format!(
        "namespace={},pipeline={}",
        quote(namespace),
        quote(pipeline)
    )
}

/// A label value as a PromQL string literal.
pub fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', r"\\").replace('"', "\\\""))
}

/// The `le` label of the bucket bounding `threshold`, written as the exporter writes it (`0.12`,
/// `1.0`): the match is on the string, so `1` would silently select nothing.
pub fn le_label(threshold: Duration) -> String {
    // One correctly rounded division gives the double nearest the decimal, as the exporter's
    // configured bound is; `as_secs_f64` adds seconds and fractions and can miss it (8.399).
    let s = (threshold.as_nanos() as f64 / 1e9).to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Share of reads answered with a 5xx. A pipeline without any 5xx series yet reads 0, not
/// "no data", because the error series only appears with the first error.
pub fn availability_error_ratio(selector: &str, window: Duration, grouping: &str) -> String {
    errors_over_total(
        &sum_rate(
            READ_REQUESTS,
            &[selector, "code=~\"5..\""],
            window,
            grouping,
        ),
        &sum_rate(READ_REQUESTS, &[selector], window, grouping),
    )
}

/// Share of reads of `class` (every class when `None`) slower than `threshold`, which must be a
/// bucket boundary of the read histogram.
pub fn latency_error_ratio(
    selector: &str,
    class: Option<&str>,
    threshold: Duration,
    window: Duration,
    grouping: &str,
) -> String {
    let class = class_matcher(class);
    let le = format!("le={}", quote(&le_label(threshold)));
    let bucket = format!("{READ_DURATION}_bucket");
    let count = format!("{READ_DURATION}_count");
    format!(
        "1 - ({} / {})",
        sum_rate(&bucket, &[selector, &class, &le], window, grouping),
        sum_rate(&count, &[selector, &class], window, grouping),
    )
}

/// The groups (by `grouping`, which should include `class`) whose read histogram has no bucket at
/// `threshold`: their latency SLI over `threshold` cannot be measured exactly. Empty when every
/// worker has the bound, as it does once the operator renders it into `serve.latencyBoundsSeconds`.
pub fn missing_bucket(selector: &str, threshold: Duration, grouping: &str) -> String {
    let le = format!("le={}", quote(&le_label(threshold)));
    format!(
        "count by ({grouping}) ({READ_DURATION}_count{{{}}}) unless on ({grouping}) count by ({grouping}) ({READ_DURATION}_bucket{{{}}})",
        matchers(&[selector]),
        matchers(&[selector, &le]),
    )
}

/// The `quantile` (0.99) of read latency of `class` (every class when `None`), in seconds,
/// interpolated within the histogram's buckets.
pub fn latency_quantile(
    selector: &str,
    class: Option<&str>,
    quantile: f64,
    window: Duration,
    grouping: &str,
) -> String {
    let class = class_matcher(class);
    let by = if grouping.is_empty() {
        "le".to_string()
    } else {
        format!("{grouping}, le")
    };
    format!(
        "histogram_quantile({quantile}, {})",
        sum_rate(
            &format!("{READ_DURATION}_bucket"),
            &[selector, &class],
            window,
            &by
        )
    )
}

/// Event-time lag of the group's stalest class, in seconds ([`freshness_lag_by_class`]): one fresh
/// class never hides a stalled one.
pub fn freshness_lag(selector: &str, grouping: &str) -> String {
    format!(
        "max by ({grouping}) ({})",
        freshness_lag_by_class(selector, grouping)
    )
}

/// Event-time lag per class in seconds, grouped by `grouping, class`.
///
/// Per class, the newest watermark across the workers counts. A class with events waiting (its
/// newest received event time is above that watermark) lags by now minus the watermark, so a
/// stalled class ages. An idle class, whose every received event is visible, lags 0: no upstream
/// events must not burn the budget. A worker that exports no received time counts as waiting, so
/// its classes age as before. A vanished watermark series gives no data rather than a lag.
pub fn freshness_lag_by_class(selector: &str, grouping: &str) -> String {
    let by = if grouping.is_empty() {
        "class".to_owned()
    } else {
        format!("{grouping}, class")
    };
    let sel = matchers(&[selector]);
    let newest = |metric: &str| format!("max by ({by}) ({metric}{{{sel}}})");
    let (visible, received) = (newest(INGEST_WATERMARK), newest(INGEST_RECEIVED));
    format!(
        "(time() - {visible}) unless on ({by}) ({received} <= {visible}) or on ({by}) (0 * {visible})"
    )
}

/// Share of `window` during which the lag exceeded `max_lag`, sampled by a subquery every
/// [`freshness_step`]: a freshness SLI has no counters to `rate`. The rules record it over
/// [`FRESHNESS_BASE_WINDOW`] only; over long windows [`freshness_error_ratio`] averages that
/// recording instead.
pub fn freshness_sampled_error_ratio(
    selector: &str,
    max_lag: Duration,
    window: Duration,
    grouping: &str,
) -> String {
    let sampled = |window: Duration, step: Duration| {
        format!(
            "avg_over_time(({} > bool {})[{}:{}])",
            freshness_lag(selector, grouping),
            max_lag.as_secs(),
            prom_duration(window),
            prom_duration(step),
        )
    };
    let step = freshness_step(window);
    if step == FRESHNESS_STEP {
        return sampled(window, step);
    }
    // A coarse grid has no sample yet for a pipeline younger than one step: such a pipeline
    // falls back to its last hour at the fine step rather than reading as missing data.
    format!(
        "{} or {}",
        sampled(window, step),
        sampled(Duration::from_secs(3600), FRESHNESS_STEP)
    )
}

/// Most samples a freshness subquery takes per series.
pub const FRESHNESS_MAX_SAMPLES: u64 = 720;

/// The subquery step over `window`: [`FRESHNESS_STEP`] up to 6 h, then coarser so that a window
/// costs at most [`FRESHNESS_MAX_SAMPLES`] evaluations per series (30 days at 30 s would be
/// 86,400 and dominated a 1,000-pipeline pass at 5 s). Over a long window the coarser grid still
/// estimates the share of stale time; short breaches are the page windows' job.
pub fn freshness_step(window: Duration) -> Duration {
    let per_sample = window.as_secs().div_ceil(FRESHNESS_MAX_SAMPLES);
    // Whole minutes beyond the base step, so the range reads naturally (`1h`, not `3600s`).
    let step = if per_sample <= FRESHNESS_STEP.as_secs() {
        FRESHNESS_STEP.as_secs()
    } else {
        per_sample.div_ceil(60) * 60
    };
    Duration::from_secs(step)
}

/// Share of `window` during which the lag exceeded the maximum: the average of the recorded 5m
/// base ratio. It needs the generated rules installed; `selector` picks pipelines as usual.
pub fn freshness_error_ratio(selector: &str, window: Duration) -> String {
    format!(
        "avg_over_time({}{{{}}}[{}])",
        sli_error_metric(FRESHNESS_BASE_WINDOW),
        matchers(&[selector, &format!("slo={}", quote(FRESHNESS_SLO))]),
        prom_duration(window),
    )
}

/// Rejected records against accepted plus rejected ones (dead-lettered records are the rejected
/// ones). Deduplicated, stale and deferred records are neither good nor bad here.
pub fn correctness_error_ratio(selector: &str, window: Duration, grouping: &str) -> String {
    errors_over_total(
        &sum_rate(
            INGEST_RECORDS,
            &[selector, "outcome=\"rejected\""],
            window,
            grouping,
        ),
        &sum_rate(
            INGEST_RECORDS,
            &[selector, "outcome=~\"accepted|rejected\""],
            window,
            grouping,
        ),
    )
}

/// Reads per second, all classes and codes: the serve autoscaler's load signal.
pub fn request_rate(selector: &str, window: Duration, grouping: &str) -> String {
    sum_rate(READ_REQUESTS, &[selector], window, grouping)
}

/// Accepted records per second: the ingest throughput that drains the backlog.
pub fn accepted_rate(selector: &str, window: Duration, grouping: &str) -> String {
    sum_rate(
        INGEST_RECORDS,
        &[selector, "outcome=\"accepted\""],
        window,
        grouping,
    )
}

/// Ingest backlog in records, summed over workers: the records admitted and not yet durable,
/// plus the records producers hold after a 429, plus the Kafka consumer group's lag. The
/// admission queue alone is capped at its capacity, so it could never show demand beyond it; a
/// producer retries a refused record every Retry-After seconds, so `refused/s × Retry-After` is
/// how many it holds. Terms a pipeline does not export (no refusals, no Kafka) count as zero.
pub fn ingest_backlog(selector: &str, window: Duration, grouping: &str) -> String {
    let sel = matchers(&[selector]);
    let queued = format!("sum by ({grouping}) ({INGEST_QUEUE_DEPTH}{{{sel}}})");
    format!(
        "{queued} + (sum by ({grouping}) (rate({INGEST_REFUSED}{{{sel}}}[{}]) * {INGEST_RETRY_AFTER}{{{sel}}}) or 0 * {queued}) + (sum by ({grouping}) ({CONSUMER_LAG}{{{sel}}}) or 0 * {queued})",
        prom_duration(window)
    )
}

/// Backlog growth in records per second over `window` (`deriv` fits a line through a gauge):
/// the admission queues' and the Kafka consumer lag's.
pub fn queue_depth_slope(selector: &str, window: Duration, grouping: &str) -> String {
    let (sel, w) = (matchers(&[selector]), prom_duration(window));
    let queued = format!("sum by ({grouping}) (deriv({INGEST_QUEUE_DEPTH}{{{sel}}}[{w}]))");
    format!(
        "{queued} + (sum by ({grouping}) (deriv({CONSUMER_LAG}{{{sel}}}[{w}])) or 0 * {queued})"
    )
}

/// `errors / total`, where missing error series count as zero errors.
fn errors_over_total(errors: &str, total: &str) -> String {
    format!("({errors} or 0 * {total}) / {total}")
}

fn sum_rate(metric: &str, selectors: &[&str], window: Duration, grouping: &str) -> String {
    format!(
        "sum by ({grouping}) (rate({metric}{{{}}}[{}]))",
        matchers(selectors),
        prom_duration(window)
    )
}

fn class_matcher(class: Option<&str>) -> String {
    class
        .map(|c| format!("class={}", quote(c)))
        .unwrap_or_default()
}

/// Joins the non-empty matcher lists with commas.
fn matchers(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod freshness_step_tests {
    use super::*;

    #[test]
    fn long_windows_sample_coarser_and_short_ones_keep_thirty_seconds() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(freshness_step(Duration::from_secs(300)), FRESHNESS_STEP);
        assert_eq!(
            freshness_step(h(6)),
            FRESHNESS_STEP,
            "6 h at 30 s is exactly 720 samples"
        );
        assert_eq!(freshness_step(h(24)), Duration::from_secs(120));
        assert_eq!(freshness_step(h(30 * 24)), h(1));
        for hours in [1, 6, 24, 72, 720, 2160] {
            let w = h(hours);
            assert!(w.as_secs() / freshness_step(w).as_secs() <= FRESHNESS_MAX_SAMPLES);
        }
        let q = freshness_sampled_error_ratio("", Duration::from_secs(600), h(720), "pipeline");
        assert!(q.contains("[30d:1h]) or avg_over_time("), "{q}");
        assert!(
            q.ends_with("[1h:30s])"),
            "young pipelines fall back to the fine grid: {q}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEL: &str = r#"namespace="shop",pipeline="web""#;
    const BY: &str = "namespace, pipeline";
    const M5: Duration = Duration::from_secs(300);
    const H1: Duration = Duration::from_secs(3600);

    #[test]
    fn availability() {
        assert_eq!(
            availability_error_ratio(SEL, M5, BY),
            r#"(sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{namespace="shop",pipeline="web",code=~"5.."}[5m])) or 0 * sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{namespace="shop",pipeline="web"}[5m]))) / sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{namespace="shop",pipeline="web"}[5m]))"#
        );
    }

    #[test]
    fn availability_of_every_pipeline_in_one_query() {
        assert_eq!(
            availability_error_ratio("", H1, BY),
            r#"(sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{code=~"5.."}[1h])) or 0 * sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{}[1h]))) / sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{}[1h]))"#
        );
    }

    #[test]
    fn latency_ratio_uses_the_exporters_le() {
        assert_eq!(
            latency_error_ratio(SEL, Some("product"), Duration::from_millis(200), M5, BY),
            r#"1 - (sum by (namespace, pipeline) (rate(tailwarden_read_duration_seconds_bucket{namespace="shop",pipeline="web",class="product",le="0.2"}[5m])) / sum by (namespace, pipeline) (rate(tailwarden_read_duration_seconds_count{namespace="shop",pipeline="web",class="product"}[5m])))"#
        );
        assert_eq!(
            latency_error_ratio(
                "",
                None,
                Duration::from_millis(120),
                H1,
                "namespace, pipeline, class"
            ),
            r#"1 - (sum by (namespace, pipeline, class) (rate(tailwarden_read_duration_seconds_bucket{le="0.12"}[1h])) / sum by (namespace, pipeline, class) (rate(tailwarden_read_duration_seconds_count{}[1h])))"#
        );
    }

    #[test]
    fn le_is_written_like_the_exporter() {
        let le = |ms| le_label(Duration::from_millis(ms));
        assert_eq!(
            [le(120), le(200), le(1000), le(2500), le(1), le(8399)],
            ["0.12", "0.2", "1.0", "2.5", "0.001", "8.399"]
        );
    }

    #[test]
    fn quantiles() {
        assert_eq!(
            latency_quantile(SEL, Some("pricing"), 0.99, M5, BY),
            r#"histogram_quantile(0.99, sum by (namespace, pipeline, le) (rate(tailwarden_read_duration_seconds_bucket{namespace="shop",pipeline="web",class="pricing"}[5m])))"#
        );
        assert_eq!(
            latency_quantile("", None, 0.95, M5, ""),
            r#"histogram_quantile(0.95, sum by (le) (rate(tailwarden_read_duration_seconds_bucket{}[5m])))"#
        );
    }

    #[test]
    fn freshness() {
        assert_eq!(
            freshness_lag(SEL, BY),
            format!(
                "max by (namespace, pipeline) ({})",
                freshness_lag_by_class(SEL, BY)
            )
        );
        let w = r#"max by (namespace, pipeline, class) (tailwarden_ingest_watermark_timestamp_seconds{namespace="shop",pipeline="web"})"#;
        let r = r#"max by (namespace, pipeline, class) (tailwarden_ingest_received_timestamp_seconds{namespace="shop",pipeline="web"})"#;
        assert_eq!(
            freshness_lag_by_class(SEL, BY),
            format!(
                "(time() - {w}) unless on (namespace, pipeline, class) ({r} <= {w}) or on (namespace, pipeline, class) (0 * {w})"
            )
        );
        assert!(freshness_lag_by_class(SEL, "").starts_with("(time() - max by (class) ("));
        assert_eq!(
            freshness_sampled_error_ratio(SEL, Duration::from_secs(600), M5, BY),
            format!(
                "avg_over_time(({} > bool 600)[5m:30s])",
                freshness_lag(SEL, BY)
            )
        );
        assert_eq!(
            freshness_error_ratio(SEL, H1),
            r#"avg_over_time(slo:sli_error:ratio_rate5m{namespace="shop",pipeline="web",slo="freshness"}[1h])"#
        );
    }

    #[test]
    fn correctness() {
        assert_eq!(
            correctness_error_ratio(SEL, Duration::from_secs(30 * 86_400), BY),
            r#"(sum by (namespace, pipeline) (rate(tailwarden_ingest_records_total{namespace="shop",pipeline="web",outcome="rejected"}[30d])) or 0 * sum by (namespace, pipeline) (rate(tailwarden_ingest_records_total{namespace="shop",pipeline="web",outcome=~"accepted|rejected"}[30d]))) / sum by (namespace, pipeline) (rate(tailwarden_ingest_records_total{namespace="shop",pipeline="web",outcome=~"accepted|rejected"}[30d]))"#
        );
    }

    proptest::proptest! {
        /// Whole milliseconds always give the shortest decimal that reads back as the bound.
        #[test]
        fn le_reads_back_as_the_threshold(ms in 1u64..100_000) {
            let le = le_label(Duration::from_millis(ms));
            proptest::prop_assert_eq!(le.parse::<f64>().unwrap(), ms as f64 / 1000.0);
            proptest::prop_assert!(le.contains('.') && !le.contains('e'), "{}", le);
        }
    }

    #[test]
    fn a_missing_bucket_is_found_per_class() {
        assert_eq!(
            missing_bucket(
                SEL,
                Duration::from_millis(250),
                "namespace, pipeline, class"
            ),
            r#"count by (namespace, pipeline, class) (tailwarden_read_duration_seconds_count{namespace="shop",pipeline="web"}) unless on (namespace, pipeline, class) count by (namespace, pipeline, class) (tailwarden_read_duration_seconds_bucket{namespace="shop",pipeline="web",le="0.25"})"#
        );
    }

    #[test]
    fn scaling_signals() {
        assert_eq!(
            request_rate("", M5, BY),
            "sum by (namespace, pipeline) (rate(tailwarden_read_requests_total{}[5m]))"
        );
        assert_eq!(
            accepted_rate(SEL, M5, BY),
            r#"sum by (namespace, pipeline) (rate(tailwarden_ingest_records_total{namespace="shop",pipeline="web",outcome="accepted"}[5m]))"#
        );
        assert_eq!(
            ingest_backlog("", M5, BY),
            "sum by (namespace, pipeline) (tailwarden_ingest_queue_depth_records{}) + (sum by (namespace, pipeline) (rate(tailwarden_ingest_refused_records_total{}[5m]) * tailwarden_ingest_retry_after_seconds{}) or 0 * sum by (namespace, pipeline) (tailwarden_ingest_queue_depth_records{})) + (sum by (namespace, pipeline) (tailwarden_kafka_consumer_lag_records{}) or 0 * sum by (namespace, pipeline) (tailwarden_ingest_queue_depth_records{}))"
        );
        assert_eq!(
            queue_depth_slope(SEL, M5, BY),
            r#"sum by (namespace, pipeline) (deriv(tailwarden_ingest_queue_depth_records{namespace="shop",pipeline="web"}[5m])) + (sum by (namespace, pipeline) (deriv(tailwarden_kafka_consumer_lag_records{namespace="shop",pipeline="web"}[5m])) or 0 * sum by (namespace, pipeline) (deriv(tailwarden_ingest_queue_depth_records{namespace="shop",pipeline="web"}[5m])))"#
        );
    }

    #[test]
    fn selectors_escape_their_values() {
        assert_eq!(pipeline_selector("shop", "web"), SEL);
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            sli_error_metric(Duration::from_secs(86_400)),
            "slo:sli_error:ratio_rate1d"
        );
    }
}
