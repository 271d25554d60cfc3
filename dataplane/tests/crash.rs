//! SIGKILL during sustained HTTP ingest: every acknowledged update survives, nothing applies
//! twice. One test body, two backends: the embedded store (standalone), and Kafka + Cassandra
//! (an ingest worker in Kafka mode, whose write API acknowledges once Kafka did; it is replaced
//! by a new worker in the same consumer group, and a serve worker reads).
//!
//! The distributed variant needs the shared servers of tests/services (`. /tmp/svc/env`):
//!
//! ```sh
//! cargo test -p tailwarden-dataplane --test crash -- --include-ignored
//! ```

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::pipeline::{Pipeline, VISIBLE, quantity};
use support::{Server, eventually, inventory, temp_dir};

const BATCH: usize = 200;
/// Acknowledged batches replayed after the restart.
const REPLAYED: usize = 5;

fn batch(n: usize) -> String {
    (0..BATCH)
        .map(|i| {
            inventory(
                &format!("crash-{n}-{i}"),
                &format!("P{n}x{i}"),
                "S1",
                (n * 1000 + i) as i64,
                1_700_000_000_000,
                1,
            )
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    /// A standalone worker on its embedded store: it ingests and serves.
    Embedded,
    /// Ingest and serve workers on Kafka and Cassandra.
    Distributed,
}

/// The processes under test: `ingest` is the one killed; reads go to `serve` if there is one.
struct Deployment {
    ingest: Server,
    serve: Option<Server>,
    pipeline: Option<Pipeline>,
}

impl Deployment {
    async fn start(backend: Backend) -> Self {
        match backend {
            // Two writer threads (more than the default on 2 cores): batches split across
            // them must survive the kill as whole acknowledged requests.
            Backend::Embedded => Self {
                ingest: Server::start(&temp_dir("crash"), &["--writer-threads", "2"]).await,
                serve: None,
                pipeline: None,
            },
            Backend::Distributed => {
                let pipeline = Pipeline::create("crash").await;
                Self {
                    ingest: pipeline.start("ingest", "ingest").await,
                    serve: Some(pipeline.start("serve", "serve").await),
                    pipeline: Some(pipeline),
                }
            }
        }
    }

    fn reader(&self) -> &Server {
        self.serve.as_ref().unwrap_or(&self.ingest)
    }

    /// A counter of the ingest worker's records of class inventory with `outcome`.
    async fn inventory_records(&self, outcome: &str) -> u64 {
        let line = format!(
            "tailwarden_ingest_records_total{{class=\"inventory\",outcome=\"{outcome}\"}} "
        );
        metrics(&self.ingest)
            .await
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Kafka mode: waits until the group has committed every record of the inventory topic.
    async fn until_consumed(&self) {
        eventually("the consumer group to catch up", VISIBLE, || async {
            let text = metrics(&self.ingest).await;
            let lags: Vec<i64> = text
                .lines()
                .filter(|l| l.starts_with("tailwarden_kafka_consumer_lag_records{"))
                .filter(|l| l.contains(".inventory\""))
                .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
                .collect();
            (!lags.is_empty() && lags.iter().all(|&n| n == 0)).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        let Deployment {
            ingest,
            serve,
            pipeline,
        } = self;
        drop((ingest, serve));
        if let Some(p) = pipeline {
            p.drop_keyspace().await;
        }
    }
}

async fn metrics(server: &Server) -> String {
    match reqwest::get(format!("{}/metrics", server.metrics)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn acknowledged_updates_survive_sigkill_without_duplicate_effects(backend: Backend) {
    let started = Instant::now();
    let mut d = Deployment::start(backend).await;
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    // Four concurrent producers keep ingest busy until the process dies under them.
    let url = format!("{}/v1/updates", d.ingest.ingest);
    let mut producers = Vec::new();
    for p in 0..4 {
        let (acked, url) = (acked.clone(), url.clone());
        producers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for k in 0.. {
                let n = k * 4 + p;
                let sent = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(batch(n))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(n),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    eventually("40 acknowledged batches", Duration::from_secs(60), || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 40).then_some(()) }
    })
    .await;
    d.ingest.kill();
    for p in producers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // Kafka mode: the same config, so the same consumer group takes over the partitions.
    d.ingest.restart().await;

    for &n in &acked {
        for i in [0, BATCH / 2, BATCH - 1] {
            let product = format!("P{n}x{i}");
            let want = json!(n * 1000 + i);
            let what = format!("acknowledged update {n}/{i}");
            eventually(&what, VISIBLE, || async {
                (quantity(d.reader(), &product).await.as_ref() == Some(&want)).then_some(())
            })
            .await;
        }
    }
    // Replaying acknowledged batches after the restart changes nothing: dedup was persisted.
    match backend {
        Backend::Embedded => {
            for &n in acked.iter().take(REPLAYED) {
                let (status, body) = d.ingest.post_updates(batch(n)).await;
                assert_eq!(status, 200);
                assert_eq!(body["deduplicated"], json!(BATCH), "{body}");
                assert_eq!(body["accepted"], json!(0), "{body}");
            }
        }
        // Kafka acknowledges the replay; the consuming writer reports its outcome in metrics.
        Backend::Distributed => {
            d.until_consumed().await;
            let accepted = d.inventory_records("accepted").await;
            let deduplicated = d.inventory_records("deduplicated").await;
            for &n in acked.iter().take(REPLAYED) {
                let (status, body) = d.ingest.post_updates(batch(n)).await;
                assert_eq!(status, 200, "{body}");
                assert_eq!(body["durable"], json!("kafka"), "{body}");
            }
            let want = deduplicated + (REPLAYED * BATCH) as u64;
            eventually("the replayed batches to be consumed", VISIBLE, || async {
                let applied = d.inventory_records("accepted").await - accepted;
                assert_eq!(applied, 0, "an acknowledged update applied twice");
                (d.inventory_records("deduplicated").await >= want).then_some(())
            })
            .await;
            assert_eq!(d.inventory_records("deduplicated").await, want);
            assert_eq!(d.inventory_records("accepted").await, accepted);
        }
    }
    eprintln!(
        "{backend:?}: {} batches acknowledged before the kill, {:?} in all",
        acked.len(),
        started.elapsed()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_acknowledged_updates_survive_sigkill_without_duplicate_effects() {
    acknowledged_updates_survive_sigkill_without_duplicate_effects(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Kafka and Cassandra: tests/services (tests/run.sh starts them)"]
async fn distributed_acknowledged_updates_survive_sigkill_without_duplicate_effects() {
    acknowledged_updates_survive_sigkill_without_duplicate_effects(Backend::Distributed).await;
}
