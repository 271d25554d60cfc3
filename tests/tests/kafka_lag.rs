//! A growing Kafka consumer lag scales ingest up: a real worker consumes real topics (Kafka mode,
//! embedded store) while its writer lingers, so the group's committed offsets stay behind what
//! producers wrote; the worker's lag monitor exports that lag, a real Prometheus scrapes it, the
//! SLO engine's backlog expression counts it, and the ingest policy asks for more workers. Once
//! the batch is durable, the offsets are committed and the lag drains to zero.

use std::time::Duration;

use tailwarden_slo::promql;
use tailwarden_tests::dataplane_process::DataplaneProcess;
use tailwarden_tests::kafka::Topics;
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::*;

/// The backlog one ingest replica is sized for in this test.
const TARGET: f64 = 100.0;
/// Records written; all stay uncommitted for the writer's linger.
const RECORDS: usize = 600;

fn inventory(k: usize) -> String {
    format!(
        r#"{{"event_id":"lag-{k}","class":"inventory","schema_version":2,"key":{{"product_id":"P{k}","location":"S1"}},"event_time":1,"sequence":1,"payload":{{"quantity":1}}}}"#
    ) + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka and Prometheus: run tests/run.sh"]
async fn a_growing_consumer_lag_scales_ingest_up() {
    let prefix = format!("lag-{:08x}", fastrand::u32(..));
    let topics = Topics::create(&prefix, 2);
    // The writer commits a batch after 30 s or 100,000 records: until then nothing is committed.
    let config = format!(
        "{}ingest:\n  partitions: 4\n  queueCapacity: 100000\n  batch: {{maxRecords: 100000, linger: 30s}}\n  deadLetter: {{retention: 1h, maxRecords: 100}}\n",
        topics.streams_yaml(&prefix)
    );
    let worker = DataplaneProcess::start("lag", &config, &[]).await;
    let prometheus = Prometheus::scraping(worker.metrics).await;
    let lag_expr = format!("sum({})", promql::CONSUMER_LAG);
    let backlog_expr = promql::ingest_backlog("", Duration::from_secs(10), "namespace, pipeline");

    // Producers write through the worker's HTTP API, which acknowledges once Kafka has them.
    let client = reqwest::Client::new();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(100) {
        let body: String = chunk.iter().map(|k| inventory(*k)).collect();
        let status = client
            .post(worker.updates_url())
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let backlog = wait_for(
        "Prometheus to see the whole lag in the ingest backlog",
        Duration::from_secs(25),
        || async {
            let lag = prometheus.query(&lag_expr).await?;
            let backlog = prometheus.query(&backlog_expr).await?;
            (lag >= RECORDS as f64 && backlog >= lag).then_some(backlog)
        },
    )
    .await;

    assert_ingest_scales_up(backlog, TARGET);

    // After the linger the batch is durable, its offsets committed, and the lag gone.
    wait_for(
        "the lag to drain once the batch is committed",
        Duration::from_secs(60),
        || async { (prometheus.query(&lag_expr).await? == 0.0).then_some(()) },
    )
    .await;
}
