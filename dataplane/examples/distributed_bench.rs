//! Distributed ingest throughput against real servers (not run by CI): Kafka → ingest worker
//! processes → Cassandra, with 1 and 2 workers, against a yardstick measured in the same run: the
//! same rows written straight to Cassandra by a plain prepared-statement loader (64 in flight).
//!
//! ```sh
//! . /tmp/svc/env   # tests/services: kafka-up.sh and cassandra-up.sh (TAILWARDEN_CASSANDRA_AUTH=1)
//! cargo build --release -p tailwarden-dataplane --bins --examples
//! target/release/examples/distributed_bench 50000
//! ```
//!
//! Argument: records per run. Each run uses fresh topics (4 partitions), group and keyspace; the
//! workers are started and Ready (tables created) before the clock starts, which then runs from
//! the first record produced until the group has committed every offset (durably in Cassandra).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use common::{Run, inventory, load_average, session};
use futures::StreamExt;
use tailwarden_dataplane::metrics::Metrics;
use tailwarden_dataplane::stream::lag::LagMonitor;
use tailwarden_dataplane::stream::producer::{Producer, Record};

/// Records per produce call, like one HTTP write request.
const PRODUCE_BATCH: usize = 5_000;

fn record(k: usize) -> String {
    inventory(
        &format!("b-{k}"),
        &format!("P{k}"),
        k % 100,
        1_700_000_000_000 + k as u64,
    )
}

/// The yardstick: `n` rows by prepared statement, 64 in flight. Records per second.
async fn yardstick(n: usize, keyspace: &str) -> anyhow::Result<f64> {
    let s = session().await?;
    s.query_unpaged(
        format!("CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
        &[],
    )
    .await?;
    s.query_unpaged(
        format!("CREATE TABLE {keyspace}.inventory (product_id text, location text, quantity blob, PRIMARY KEY ((product_id), location))"),
        &[],
    )
    .await?;
    let insert = s
        .prepare(format!(
            "INSERT INTO {keyspace}.inventory (product_id, location, quantity) VALUES (?, ?, ?) USING TIMESTAMP ?"
        ))
        .await?;
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|k| {
            let (s, insert) = (&s, &insert);
            async move {
                let value = format!("{}", k % 100).into_bytes();
                s.execute_unpaged(
                    insert,
                    (
                        format!("P{k}"),
                        "S1",
                        value,
                        1_700_000_000_000_000i64 + k as i64,
                    ),
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let elapsed = start.elapsed();
    for r in results {
        r?;
    }
    s.query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[])
        .await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Ours: `n` records through Kafka and `workers` ingest processes into Cassandra. Records per
/// second from the first record produced to the last offset committed.
async fn ours(n: usize, workers: usize, tag: &str) -> anyhow::Result<f64> {
    let run = Run::create(
        tag,
        "ingest: {partitions: 4, queueCapacity: 100000, batch: {maxRecords: 2000, linger: 10ms}, deadLetter: {retention: 1h, maxRecords: 1000}}\n",
    )
    .await?;
    let mut running = Vec::new();
    for w in 0..workers {
        running.push(run.worker("ingest", &format!("worker-{w}")).await?);
    }
    let (conn, topics) = (&run.conn, &run.topics);

    let metrics = Arc::new(Metrics::new());
    let producer = Producer::new(conn, Duration::from_secs(30), metrics.clone())?;
    let lag = LagMonitor::new(conn, &run.group, topics, metrics)?;
    let values: Vec<(String, String)> = (0..n).map(|k| (format!("P{k}"), record(k))).collect();
    let start = Instant::now();
    for chunk in values.chunks(PRODUCE_BATCH) {
        let records: Vec<Record<'_>> = chunk
            .iter()
            .map(|(key, value)| Record {
                topic: &topics.inventory,
                key: Some(key.as_bytes()),
                payload: value.as_bytes(),
            })
            .collect();
        producer.send_all(&records).await?;
    }
    let produced = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = tokio::task::block_in_place(|| lag.measure())?
            .iter()
            .filter(|p| p.topic == topics.inventory)
            .all(|p| p.committed == Some(p.high));
        if done {
            break;
        }
        if Instant::now() > deadline {
            bail!("not committed within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = start.elapsed();
    println!(
        "  {workers} worker(s): produced in {:.2} s, committed in {:.2} s",
        produced.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    drop(running);
    run.finish().await?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let run = format!("{:08x}", fastrand::u32(..));
    println!("{n} records; load average before: {}", load_average());
    let yard = yardstick(n, &format!("bench_yard_{run}")).await?;
    println!("yardstick (prepared INSERT, 64 in flight): {yard:.0} records/s");
    for workers in [1, 2] {
        let ours = ours(n, workers, &format!("bench-{workers}w-{run}")).await?;
        println!(
            "Kafka -> {workers} ingest worker(s) -> Cassandra: {ours:.0} records/s = {:.2} x yardstick",
            ours / yard
        );
    }
    println!("load average after: {}", load_average());
    Ok(())
}
