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

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use tailwarden_dataplane::metrics::Metrics;
use tailwarden_dataplane::stream::client::Connection;
use tailwarden_dataplane::stream::lag::LagMonitor;
use tailwarden_dataplane::stream::producer::{Producer, Record};
use tailwarden_dataplane::stream::{Topics, TopicsExt};

const PARTITIONS: i32 = 4;
/// Records per produce call, like one HTTP write request.
const PRODUCE_BATCH: usize = 5_000;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: . DIR/env of tests/services"))
}

fn record(k: usize) -> String {
    format!(
        r#"{{"event_id":"b-{k}","class":"inventory","schema_version":2,"key":{{"product_id":"P{k}","location":"S1"}},"event_time":{},"sequence":1,"payload":{{"quantity":{}}}}}"#,
        1_700_000_000_000u64 + k as u64,
        k % 100
    )
}

async fn session() -> anyhow::Result<Session> {
    Ok(SessionBuilder::new()
        .known_node(env("TAILWARDEN_CASSANDRA")?)
        .user(
            env("TAILWARDEN_CASSANDRA_USER")?,
            env("TAILWARDEN_CASSANDRA_PASSWORD")?,
        )
        .build()
        .await?)
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(bin: &Path, config: &Path, log: PathBuf) -> anyhow::Result<(Worker, String)> {
    let metrics = format!("127.0.0.1:{}", free_port());
    let child = Command::new(bin)
        .args(["--role", "ingest", "--config"])
        .arg(config)
        .args(["--listen-ingest", &format!("127.0.0.1:{}", free_port())])
        .args(["--listen-metrics", &metrics])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok((Worker(child), format!("http://{metrics}/readyz")))
}

/// Ours: `n` records through Kafka and `workers` ingest processes into Cassandra. Records per
/// second from the first record produced to the last offset committed.
async fn ours(n: usize, workers: usize, bin: &Path, tag: &str) -> anyhow::Result<f64> {
    let bootstrap = env("TAILWARDEN_KAFKA_BOOTSTRAP")?;
    let conn = Connection::new(std::slice::from_ref(&bootstrap), None)?;
    let topics = Topics::with_prefix(tag);
    let admin: AdminClient<DefaultClientContext> = conn.config().create()?;
    let names = [
        &topics.product,
        &topics.pricing,
        &topics.inventory,
        &topics.fulfillment,
        &topics.changes,
        &topics.dead_letters,
    ];
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    let dir = std::env::temp_dir().join(format!("tailwarden-{tag}"));
    std::fs::create_dir_all(dir.join("creds"))?;
    std::fs::write(
        dir.join("creds/username"),
        env("TAILWARDEN_CASSANDRA_USER")?,
    )?;
    std::fs::write(
        dir.join("creds/password"),
        env("TAILWARDEN_CASSANDRA_PASSWORD")?,
    )?;
    let keyspace = tag.replace('-', "_");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "storage: !cassandra {{contactPoints: ['{}'], keyspace: {keyspace}, consistency: ONE, credentialsDir: {}}}\n\
             streams: !kafka {{bootstrapServers: ['{bootstrap}'], consumerGroup: {tag}, topics: {{product: {}, pricing: {}, inventory: {}, fulfillment: {}, changes: {}, deadLetters: {}}}}}\n\
             ingest: {{partitions: 4, queueCapacity: 100000, batch: {{maxRecords: 2000, linger: 10ms}}, deadLetter: {{retention: 1h, maxRecords: 1000}}}}\n",
            env("TAILWARDEN_CASSANDRA")?,
            dir.join("creds").display(),
            topics.product,
            topics.pricing,
            topics.inventory,
            topics.fulfillment,
            topics.changes,
            topics.dead_letters,
        ),
    )?;
    let mut running = Vec::new();
    for w in 0..workers {
        let (worker, readyz) = spawn_worker(bin, &config, dir.join(format!("worker-{w}.log")))?;
        running.push(worker);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if reqwest::get(&readyz)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("worker {w} not ready in 180 s: see {}", dir.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let metrics = Arc::new(Metrics::new());
    let producer = Producer::new(&conn, Duration::from_secs(30), metrics.clone())?;
    let lag = LagMonitor::new(&conn, tag, &topics, metrics)?;
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
    session()
        .await?
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[])
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(n as f64 / elapsed.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    let bin = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .context("the example lives in target/<profile>/examples")?
        .join("tailwarden-dataplane");
    let run = format!("{:08x}", fastrand::u32(..));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("{n} records; load average before: {}", load.trim());
    let yard = yardstick(n, &format!("bench_yard_{run}")).await?;
    println!("yardstick (prepared INSERT, 64 in flight): {yard:.0} records/s");
    for workers in [1, 2] {
        let ours = ours(n, workers, &bin, &format!("bench-{workers}w-{run}")).await?;
        println!(
            "Kafka -> {workers} ingest worker(s) -> Cassandra: {ours:.0} records/s = {:.2} x yardstick",
            ours / yard
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average after: {}", load.trim());
    Ok(())
}
