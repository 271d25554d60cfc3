//! Throughput and latency of Kafka mode against a real broker (not run by CI): produce and
//! acknowledge, consume + durable write + offset commit (embedded store), and change-event
//! latency from publish to a listener.
//!
//! ```sh
//! tests/services/kafka-up.sh /tmp/svc-kafka && . /tmp/svc-kafka/env
//! cargo run --release -p tailwarden-dataplane --example kafka_bench -- 100000 5000 4
//! ```
//!
//! Arguments: records, records per produce call (like one HTTP request), partitions per topic.

// The tests' broker settings and topic creation; the bench uses part of it.
#[allow(dead_code)]
#[path = "../tests/support/kafka.rs"]
mod kafka;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kafka::{conn, topics};
use parking_lot::Mutex;
use serde_json::json;
use tailwarden_dataplane::feed::{ChangeEvent, ChangeFeed, Invalidate};
use tailwarden_dataplane::ingest::writer::{Writer, WriterConfig};
use tailwarden_dataplane::metrics::Metrics;
use tailwarden_dataplane::model::{Class, EntityKey};
use tailwarden_dataplane::store::Store;
use tailwarden_dataplane::store::embedded::EmbeddedStore;
use tailwarden_dataplane::stream::changes::KafkaChangeFeed;
use tailwarden_dataplane::stream::consumer::{KafkaSource, SourceConfig};
use tailwarden_dataplane::stream::ingest::KafkaIngest;
use tailwarden_dataplane::stream::lag::LagMonitor;
use tailwarden_dataplane::stream::producer::Producer;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct NoFeed;
impl ChangeFeed for NoFeed {
    fn publish(&self, _: &[ChangeEvent]) {}
    fn subscribe(&self, _: Arc<dyn Invalidate>) {}
}

#[derive(Default)]
struct Arrivals(Mutex<Vec<Instant>>);
impl Invalidate for Arrivals {
    fn invalidate(&self, _: &[ChangeEvent]) {
        self.0.lock().push(Instant::now());
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (records, batch, partitions) = (arg(1, 100_000), arg(2, 5000), arg(3, 4) as i32);
    let t = topics("bench", partitions).await;

    // Records across all four operational classes, 10k products.
    let bodies: Vec<Vec<u8>> = (0..records)
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(|chunk| {
            chunk
                .iter()
                .map(|&i| {
                    let id = format!("P{}", i % 10_000);
                    let seq = i as u64;
                    let time = 1_700_000_000_000_i64 + i as i64;
                    match i % 4 {
                        0 => json!({"event_id": format!("e{i}"), "class": "product", "schema_version": 2,
                            "key": {"product_id": id}, "event_time": time, "sequence": seq,
                            "payload": {"name": format!("n{i}")}}),
                        1 => json!({"event_id": format!("e{i}"), "class": "inventory", "schema_version": 2,
                            "key": {"product_id": id, "location": "DC1"}, "event_time": time, "sequence": seq,
                            "payload": {"quantity": i % 100}}),
                        2 => json!({"event_id": format!("e{i}"), "class": "fulfillment", "schema_version": 2,
                            "key": {"product_id": id, "region": "EU"}, "event_time": time, "sequence": seq,
                            "payload": {"available": true}}),
                        _ => json!({"event_id": format!("e{i}"), "class": "product", "schema_version": 2,
                            "key": {"product_id": id}, "event_time": time, "sequence": seq,
                            "payload": {"brand_id": "B1"}}),
                    }
                    .to_string()
                })
                .collect::<Vec<_>>()
                .join("\n")
                .into_bytes()
        })
        .collect();
    let metrics = Arc::new(Metrics::new());
    let producer = Producer::new(&conn(), Duration::from_secs(60), metrics.clone()).unwrap();
    let ingest = Arc::new(KafkaIngest::new(producer, t.clone()));
    // Four concurrent "requests", like parallel HTTP clients.
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = Arc::new(bodies);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (ingest, next, bodies) = (ingest.clone(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return accepted;
                };
                let out = ingest.produce_ndjson(body).await.unwrap();
                accepted += out
                    .iter()
                    .filter(|o| **o == tailwarden_dataplane::ingest::Outcome::Accepted)
                    .count();
            }
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    let produce = started.elapsed();
    assert_eq!(accepted, records, "every record validated and acknowledged");
    println!(
        "produce+ack: {records} records in {:.2} s = {:.0} records/s (batches of {batch}, 4 concurrent)",
        produce.as_secs_f64(),
        records as f64 / produce.as_secs_f64()
    );

    // Consume, write durably (fsync per group commit), commit offsets.
    let dir = std::env::temp_dir().join(format!("tw-kafka-bench-{:08x}", fastrand::u32(..)));
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir, 64 << 20).unwrap());
    let group = format!("tw-bench-g-{:08x}", fastrand::u32(..));
    let (close, closing) = tokio::sync::watch::channel(false);
    let source = KafkaSource::new(
        &conn(),
        &group,
        &t,
        closing,
        metrics.clone(),
        SourceConfig {
            max_job_records: 5000,
            ..SourceConfig::default()
        },
    )
    .unwrap();
    let writer = Writer::new(
        store.clone(),
        Arc::new(NoFeed),
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        WriterConfig {
            max_records: 5000,
            linger: Duration::from_millis(5),
            partitions: 64,
            dead_letter_max: 1_000_000,
            dead_letter_retention: Duration::from_secs(3600),
            dedup_window: 1_000_000,
            hot_entities: 100_000,
        },
    )
    .unwrap();
    let started = Instant::now();
    let w = std::thread::spawn(move || writer.run(source));
    let monitor = LagMonitor::new(&conn(), &group, &t, metrics.clone()).unwrap();
    let m2 = metrics.clone();
    let consume = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut first = None;
        let mut all_written = None;
        loop {
            // Records the writer made durable, from its own counter (cheap to read).
            let written: u64 = m2
                .encode()
                .lines()
                .filter(|l| l.starts_with("tailwarden_ingest_records_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum();
            if first.is_none() && written > 0 {
                first = Some(started.elapsed());
                println!(
                    "  first batch durable after {:.2} s (group join + first poll)",
                    started.elapsed().as_secs_f64()
                );
            }
            if all_written.is_none() && written >= records as u64 {
                all_written = Some(started.elapsed());
                println!(
                    "  all records durable after {:.2} s",
                    started.elapsed().as_secs_f64()
                );
            }
            if all_written.is_some()
                && monitor
                    .measure()
                    .unwrap()
                    .iter()
                    .map(|p| p.records)
                    .sum::<i64>()
                    == 0
            {
                return (first.unwrap(), started.elapsed());
            }
            assert!(Instant::now() < deadline, "consumer never caught up");
            std::thread::sleep(Duration::from_millis(10));
        }
    })
    .await
    .unwrap();
    close.send(true).unwrap();
    tokio::task::spawn_blocking(move || w.join().unwrap())
        .await
        .unwrap();
    let key = EntityKey {
        class: Class::Product,
        id: "P0".into(),
        sub: None,
    };
    assert!(
        store
            .get(tailwarden_dataplane::store::Layer::Stream, &key)
            .unwrap()
            .is_some()
    );
    let (first, consume) = consume;
    println!(
        "consume+write+commit: {records} records in {:.2} s = {:.0} records/s; \
         {:.0} records/s after the group join (first batch at {:.2} s)",
        consume.as_secs_f64(),
        records as f64 / consume.as_secs_f64(),
        records as f64 / (consume - first).as_secs_f64(),
        first.as_secs_f64()
    );
    let text = metrics.encode();
    for line in text.lines().filter(|l| {
        l.starts_with("tailwarden_ingest_commit_duration_seconds_sum")
            || l.starts_with("tailwarden_ingest_commit_duration_seconds_count")
            || l.starts_with("tailwarden_kafka_offset_commits_total")
    }) {
        println!("  {line}");
    }

    // Change events: publish one, wait for the listener (another consumer), 200 times.
    let feed = KafkaChangeFeed::new(&conn(), &t.changes, metrics.clone()).unwrap();
    let arrivals = Arc::new(Arrivals::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let listener =
        KafkaChangeFeed::listen(&conn(), &t.changes, arrivals.clone(), stopping).unwrap();
    let latencies = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        for i in 0..200 {
            let event = ChangeEvent::Entity(EntityKey {
                class: Class::Product,
                id: format!("P{i}"),
                sub: None,
            });
            let sent = Instant::now();
            feed.publish(&[event]);
            let deadline = sent + Duration::from_secs(10);
            loop {
                if let Some(at) = arrivals.0.lock().get(i) {
                    v.push(at.duration_since(sent));
                    break;
                }
                assert!(Instant::now() < deadline, "change event {i} never arrived");
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        v
    })
    .await
    .unwrap();
    stop.send(true).unwrap();
    listener.join().unwrap();
    let mut sorted = latencies.clone();
    sorted.sort();
    println!(
        "change event publish->listener: n={} p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        percentile(&sorted, 0.5).as_secs_f64() * 1000.0,
        percentile(&sorted, 0.95).as_secs_f64() * 1000.0,
        percentile(&sorted, 0.99).as_secs_f64() * 1000.0,
        sorted.last().unwrap().as_secs_f64() * 1000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
