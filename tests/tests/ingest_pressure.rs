//! The ingest backlog signal crosses its target when a real data-plane worker is overloaded: its
//! admission queue is capped at `queueCapacity`, but the records it refuses with 429 (which
//! producers hold and retry) count too, as read by a real Prometheus that scrapes the worker.

use std::time::{Duration, Instant};

use tailwarden_slo::promql;
use tailwarden_tests::dataplane_process::DataplaneProcess;
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::*;

/// The worker's queue; also the backlog one replica is sized for, as in the CRD defaults, where
/// both are 100,000.
const CAPACITY: f64 = 100.0;

/// A standalone worker whose first batch lingers 30 s, so a queued batch holds the queue full.
async fn worker() -> DataplaneProcess {
    let config = format!(
        "ingest:\n  partitions: 4\n  queueCapacity: {CAPACITY}\n  batch: {{maxRecords: 1000, linger: 30s}}\n  deadLetter: {{retention: 1h, maxRecords: 100}}\n"
    );
    DataplaneProcess::start("pressure", &config, &[]).await
}

/// Posts `n` inventory updates to `url`; the status code, 0 when the request failed or took
/// longer than `wait` (an admitted write waits for its batch's 30 s linger; a refusal is at once).
async fn post(url: &str, tag: &str, n: usize, wait: Duration) -> u16 {
    let body: String = (0..n)
            .map(|k| {
                format!(
                    r#"{{"event_id":"{tag}-{k}","class":"inventory","schema_version":2,"key":{{"product_id":"P{k}","location":"S1"}},"event_time":1,"sequence":1,"payload":{{"quantity":1}}}}"#
                ) + "\n"
            })
            .collect();
    reqwest::Client::new()
        .post(url)
        .timeout(wait)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: run tests/run.sh"]
async fn refused_writes_push_the_backlog_past_its_target_and_ingest_scales() {
    let worker = worker().await;
    let ingest = worker.updates_url();
    let prometheus = Prometheus::scraping(worker.metrics).await;
    let window = Duration::from_secs(10);
    let grouping = "namespace, pipeline";
    let backlog_expr = promql::ingest_backlog("", window, grouping);
    let queue_expr = format!("sum({})", promql::INGEST_QUEUE_DEPTH);

    // 60 records fill the queue for 30 s; producers keep writing 60-record batches.
    let first = {
        let url = ingest.clone();
        tokio::spawn(async move { post(&url, "first", 60, Duration::from_secs(60)).await })
    };
    let metrics = format!("http://{}/metrics", worker.metrics);
    wait_for("60 records queued", Duration::from_secs(10), || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.contains(&format!("{} 60", promql::INGEST_QUEUE_DEPTH))
            .then_some(())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(25);
    let (mut refused, mut seen) = (0, None);
    let mut round = 0;
    while Instant::now() < deadline && seen.is_none() {
        round += 1;
        if post(
            &ingest,
            &format!("more-{round}"),
            60,
            Duration::from_secs(2),
        )
        .await
            == 429
        {
            refused += 1;
        }
        if round % 10 == 0
            && let Some(b) = prometheus.query(&backlog_expr).await
            && b > 2.0 * CAPACITY
        {
            seen = Some(b);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backlog = seen.unwrap_or_else(|| {
        panic!("the backlog never passed twice the queue's capacity ({refused} writes refused)")
    });
    assert!(
        refused > 10,
        "the worker was overloaded: {refused} writes refused"
    );
    let queued = prometheus
        .query(&queue_expr)
        .await
        .expect("the queue depth is scraped");
    assert!(
        queued <= CAPACITY,
        "the queue alone is capped at its capacity: {queued}"
    );

    // The scaling policy, sized at one queue per replica, asks for more ingest workers.
    assert_ingest_scales_up(backlog, CAPACITY);

    // The queued batch is still acknowledged once durable.
    assert_eq!(first.await.unwrap(), 200);
}
