//! Faults of a distributed pipeline on real servers: a Kafka broker killed and restarted, the
//! Cassandra node stopped and restarted, an ingest worker killed mid-batch. A test that stops a
//! server starts its own (tests/services scripts, in its own directory; `OwnServices` stops it
//! on drop, also on a panic), so the shared servers other test binaries use are never touched;
//! the rest run on the shared servers named by the environment (`. DIR/env`).
//!
//! ```sh
//! tests/services/kafka-up.sh /tmp/svc && TAILWARDEN_CASSANDRA_AUTH=1 tests/services/cassandra-up.sh /tmp/svc
//! . /tmp/svc/env && cargo test -p tailwarden-dataplane --test faults -- --ignored
//! ```

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::kafka::bootstrap;
use support::pipeline::{Backends, Pipeline, VISIBLE, quantity, until_quantity};
use support::services::{OwnServices, Service};
use support::{eventually, inventory, metrics_text, until_backend_state};

/// POSTs `body` to the write API at `url`; true only for a 200 (acknowledged by Kafka). A
/// refused connection or a timeout counts as not acknowledged.
async fn acknowledged(client: &reqwest::Client, url: &str, body: &str) -> bool {
    let sent = client
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned())
        .send()
        .await;
    matches!(sent, Ok(r) if r.status().as_u16() == 200)
}

/// How many partition assignments the ingest worker's consumer has seen (its metrics).
async fn assigned(ingest: &support::Server) -> u64 {
    metrics_text(ingest)
        .await
        .lines()
        .find_map(|l| l.strip_prefix("tailwarden_kafka_rebalances_total{kind=\"assign\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until each worker reports `backend` in a state other than `reachable`; returns the
/// states.
async fn until_not_reachable(workers: &[&support::Server], backend: &str) -> Vec<String> {
    let mut states = Vec::new();
    for worker in workers {
        states.push(until_backend_state(worker, backend, VISIBLE, |s| s != "reachable").await);
    }
    states
}

/// Waits until each worker reports `backend` reachable again.
async fn until_reachable(workers: &[&support::Server], backend: &str) {
    for worker in workers {
        let back = Duration::from_secs(120);
        until_backend_state(worker, backend, back, |s| s == "reachable").await;
    }
}

/// Waits until every `(product, quantity)` is served, then checks each once more.
async fn until_all(serve: &support::Server, want: &[(String, i64)]) {
    for (product, q) in want {
        until_quantity(serve, product, *q).await;
    }
    for (product, q) in want {
        assert_eq!(quantity(serve, product).await, Some(json!(q)), "{product}");
    }
}

/// Hot keys written by every batch (newer event time each batch: the last batch wins).
const HOT: i64 = 5;
/// Keys of their own per batch.
const NEW: i64 = 2;

/// Batch `b` of the broker-kill writer: the hot keys get quantity `b` at event time `1000 + b`,
/// and keys `N{b}-{n}` of their own get `b * 100 + n`. A retry sends the same event ids.
fn batch(b: i64) -> String {
    let hot = (0..HOT).map(|h| {
        inventory(
            &format!("h{h}-{b}"),
            &format!("H{h}"),
            "S1",
            b,
            1_000 + b,
            1,
        )
    });
    let new = (0..NEW).map(|n| {
        inventory(
            &format!("n{b}-{n}"),
            &format!("N{b}-{n}"),
            "S1",
            b * 100 + n,
            1_000,
            1,
        )
    });
    hot.chain(new).collect()
}

/// What batches `0..batches` imply under last-writer-wins.
fn expected(batches: i64) -> Vec<(String, i64)> {
    let hot = (0..HOT).map(|h| (format!("H{h}"), batches - 1));
    let new = (0..batches).flat_map(|b| (0..NEW).map(move |n| (format!("N{b}-{n}"), b * 100 + n)));
    hot.chain(new).collect()
}

/// The broker is SIGKILLed while a writer keeps POSTing batches (retrying each until a 200, as
/// a producer would), then restarted on its data: every acknowledged update is served with the
/// value last-writer-wins implies, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Cassandra node (tests/run.sh) and starts its own Kafka broker"]
async fn a_broker_killed_mid_stream_and_restarted_loses_no_acknowledged_update() {
    let started = Instant::now();
    let own = OwnServices::start("broker-kill", &[Service::Kafka]).await;
    let backends = Backends {
        kafka: own.kafka(),
        ..Backends::shared()
    };
    let pipeline = Pipeline::create_with("fault-broker", backends).await;
    let ingest = pipeline.start("ingest", "ingest").await;
    let serve = pipeline.start("serve", "serve").await;

    let acked = Arc::new(AtomicI64::new(0)); // batches acknowledged so far
    let retries = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, retries, stop) = (acked.clone(), retries.clone(), stop.clone());
        let url = format!("{}/v1/updates", ingest.ingest);
        tokio::spawn(async move {
            // Longer than the write API's produce timeout (30 s), which answers 503.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .unwrap();
            let mut b = 0;
            while !stop.load(Ordering::SeqCst) {
                let body = batch(b);
                let mut tries = 0;
                while !acknowledged(&client, &url, &body).await {
                    tries += 1;
                    assert!(tries < 30, "batch {b} never acknowledged");
                    retries.fetch_add(1, Ordering::SeqCst);
                }
                b += 1;
                acked.store(b, Ordering::SeqCst);
            }
            b
        })
    };

    let at_least = |n: i64| {
        let acked = acked.clone();
        move || {
            let acked = acked.clone();
            async move { (acked.load(Ordering::SeqCst) >= n).then_some(()) }
        }
    };
    eventually("10 batches before the kill", VISIBLE, at_least(10)).await;
    until_reachable(&[&ingest, &serve], "kafka").await;
    own.kill(Service::Kafka);
    let at_kill = acked.load(Ordering::SeqCst);
    let down = Instant::now();
    // The probes' metadata requests find no broker.
    let kafka_down = until_not_reachable(&[&ingest, &serve], "kafka").await;
    own.up(Service::Kafka, true).await;
    let restarted = down.elapsed();
    until_reachable(&[&ingest, &serve], "kafka").await;
    eventually(
        "10 batches acknowledged after the restart",
        Duration::from_secs(120),
        at_least(acked.load(Ordering::SeqCst) + 10),
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let batches = writer.await.unwrap();
    assert!(
        batches > at_kill + 10,
        "the writer went on after the restart"
    );

    until_all(&serve, &expected(batches)).await;
    eprintln!(
        "broker kill: {batches} batches ({at_kill} before the kill), {} retried, broker back in \
         {restarted:?}, kafka states while down (ingest, serve) {kafka_down:?}, {:?} in all",
        retries.load(Ordering::SeqCst),
        started.elapsed()
    );
    drop((ingest, serve));
    pipeline.drop_keyspace().await;
}

/// The Cassandra node stops: the write API keeps acknowledging (Kafka holds the records), the
/// ingest worker pauses instead of dropping them, a serve worker answers a cached key from its
/// cache and fails an uncached one fast (503 within the read deadline); once the node is back on
/// its data, both workers recover by themselves and every record is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs a Kafka broker (tests/run.sh) and starts its own Cassandra node"]
async fn cassandra_stopped_pauses_ingest_serves_the_cache_fails_fast_and_recovers() {
    let started = Instant::now();
    let own = OwnServices::start("cassandra-stop", &[Service::Cassandra]).await;
    let read_timeout = Duration::from_secs(2);
    let backends = Backends {
        kafka: bootstrap(),
        cassandra: own.cassandra(),
        credentials: None,
        read_timeout,
    };
    let pipeline = Pipeline::create_with("fault-cass", backends).await;
    let mut ingest = pipeline.start("ingest", "ingest").await;
    let mut serve = pipeline.start("serve", "serve").await;

    let (status, body) = ingest
        .post_updates(inventory("c1-1", "C1", "S1", 5, 1_000, 1))
        .await;
    assert_eq!(status, 200, "{body}");
    until_quantity(&serve, "C1", 5).await;

    until_reachable(&[&ingest, &serve], "cassandra").await;
    own.down(Service::Cassandra).await;
    let down = Instant::now();
    let cassandra_down = until_not_reachable(&[&ingest, &serve], "cassandra").await;
    let t = Instant::now();
    assert_eq!(
        quantity(&serve, "C1").await,
        Some(json!(5)),
        "from the cache"
    );
    assert!(
        t.elapsed() < read_timeout,
        "a cached read took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let (status, body) = serve.get("/v1/inventory/U1/S1").await;
    let took = t.elapsed();
    assert_eq!(status, 503, "an uncached read without Cassandra: {body}");
    assert!(
        took < read_timeout * 2 + Duration::from_secs(1),
        "an uncached read without Cassandra took {took:?}"
    );

    // Acknowledged while the node is down: Kafka holds them until the writer can apply them.
    let while_down: Vec<(String, i64)> = (0..50).map(|k| (format!("W{k}"), k)).collect();
    let mut body: String = while_down
        .iter()
        .map(|(p, q)| inventory(&format!("{p}-1"), p, "S1", *q, 1_000, 1))
        .collect();
    body += &inventory("c1-2", "C1", "S1", 9, 2_000, 1);
    let (status, answer) = ingest.post_updates(body).await;
    assert_eq!(status, 200, "{answer}");

    // The writer fails the job and the consumer pauses and rewinds its partitions (the records
    // stay in Kafka) rather than committing past them.
    let log = ingest.dir.join("log");
    eventually(
        "the ingest worker to pause its partitions",
        VISIBLE,
        || async {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("job not committed; pausing its partitions")
                .then_some(())
        },
    )
    .await;

    own.up(Service::Cassandra, true).await;
    let outage = down.elapsed();
    until_reachable(&[&ingest, &serve], "cassandra").await;
    let mut want = while_down;
    want.push(("C1".into(), 9));
    until_all(&serve, &want).await;
    eventually("the uncached key to be read again", VISIBLE, || async {
        (serve.get("/v1/inventory/U1/S1").await.0 == 404).then_some(())
    })
    .await;
    assert!(
        ingest.child.try_wait().unwrap().is_none(),
        "ingest restarted"
    );
    assert!(serve.child.try_wait().unwrap().is_none(), "serve restarted");
    eprintln!(
        "cassandra stop: uncached read failed in {took:?}, cassandra states while down (ingest, \
         serve) {cassandra_down:?}, node down and back up in {outage:?}, all applied {:?} after, \
         {:?} in all",
        down.elapsed() - outage,
        started.elapsed()
    );
    drop((ingest, serve));
    pipeline.drop_keyspace().await;
}

/// Two ingest workers in the group; one is SIGKILLed right after its batch was acknowledged
/// (while its consumer applies it). The group hands its partitions to the other after the
/// session timeout (10 s, `SESSION_TIMEOUT_MS`), and the final state is the no-fault one:
/// nothing lost, nothing older winning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Kafka and Cassandra: tests/services (tests/run.sh starts them)"]
async fn an_ingest_worker_killed_mid_batch_is_replaced_by_the_group() {
    let started = Instant::now();
    let pipeline = Pipeline::create("fault-ingest").await;
    let mut ingest_1 = pipeline.start("ingest-1", "ingest").await;
    let ingest_2 = pipeline.start("ingest-2", "ingest").await;
    let serve = pipeline.start("serve", "serve").await;
    // Both members got partitions (an eager rebalance assigns every member in one generation).
    eventually("both workers to own partitions", VISIBLE, || async {
        (assigned(&ingest_1).await > 0 && assigned(&ingest_2).await > 0).then_some(())
    })
    .await;

    // 4 versions of 400 keys, in event-time order within the batch: the last one wins.
    let keys = 400;
    let big: String = (0..4)
        .flat_map(|v| {
            (0..keys).map(move |k| {
                inventory(
                    &format!("k{k}-{v}"),
                    &format!("K{k}"),
                    "S1",
                    k * 10 + v,
                    1_000 + v,
                    1,
                )
            })
        })
        .collect();
    let (status, body) = ingest_1.post_updates(big).await;
    assert_eq!(status, 200, "{body}");
    ingest_1.kill();
    let killed = Instant::now();
    let late: String = (0..100)
        .map(|k| inventory(&format!("l{k}"), &format!("L{k}"), "S1", k, 1_000, 1))
        .collect();
    let (status, body) = ingest_2.post_updates(late).await;
    assert_eq!(status, 200, "{body}");

    let before = assigned(&ingest_2).await;
    eventually("the group to rebalance", VISIBLE, || async {
        (assigned(&ingest_2).await > before).then_some(())
    })
    .await;
    let rebalanced = killed.elapsed();
    let late_keys: Vec<(String, i64)> = (0..100).map(|k| (format!("L{k}"), k)).collect();
    until_all(&serve, &late_keys).await;
    let late_visible = killed.elapsed();
    let want: Vec<(String, i64)> = (0..keys).map(|k| (format!("K{k}"), k * 10 + 3)).collect();
    until_all(&serve, &want).await;
    let took = killed.elapsed();
    // The late keys follow the big batch in every partition, so once they are all served the
    // dead member's partitions were taken over and applied. librdkafka's default session timeout
    // (45 s) would have held them at least that long.
    assert!(
        late_visible < Duration::from_secs(40),
        "the late keys were applied {late_visible:?} after the kill"
    );
    eprintln!(
        "ingest kill: rebalanced {rebalanced:?}, late keys applied {late_visible:?}, all checked \
         {took:?} after the kill, {:?} in all",
        started.elapsed()
    );
    drop((ingest_1, ingest_2, serve));
    pipeline.drop_keyspace().await;
}
