//! Distributed reads and freshness against real servers (not run by CI):
//! - serve P50/P99 and throughput reading from Cassandra, with the caches on and off, closed loop,
//!   beside two yardsticks measured in the same run with the same client and concurrency: axum
//!   hello-world (the HTTP stack) and the same keys read straight from Cassandra by a plain
//!   prepared SELECT (the store);
//! - freshness, event to visible: an update posted to an ingest worker (its event time is the
//!   send time) travels through Kafka, the ingest worker and Cassandra, and a change event makes
//!   the serve worker drop its cached value; the clock stops when a read returns the new value.
//!
//! ```sh
//! . /tmp/svc/env   # tests/services: kafka-up.sh and cassandra-up.sh (TAILWARDEN_CASSANDRA_AUTH=1)
//! cargo build --release -p tailwarden-dataplane --bins --examples
//! target/release/examples/serve_bench 10000 64 15 200
//! ```
//!
//! Arguments: products loaded, concurrent readers, seconds per read run, freshness samples.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use common::{Run, Worker, free_port, inventory, load_average, session};

/// Latencies of one closed-loop run.
struct Measured {
    requests: usize,
    errors: usize,
    seconds: f64,
    sorted: Vec<Duration>,
}

impl Measured {
    fn quantile(&self, q: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let i = ((self.sorted.len() as f64 * q).ceil() as usize).clamp(1, self.sorted.len()) - 1;
        self.sorted[i].as_secs_f64() * 1000.0
    }

    fn report(&self, what: &str) {
        println!(
            "  {what:<34} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
            self.requests as f64 / self.seconds,
            self.quantile(0.5),
            self.quantile(0.99),
            self.errors
        );
    }
}

/// Runs `readers` loops of `one` for `seconds`, each on a uniformly random key below `keys`.
async fn closed_loop<F, Fut>(readers: usize, seconds: u64, keys: usize, one: F) -> Measured
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0);
                while Instant::now() < end {
                    let t = Instant::now();
                    if one(fastrand::usize(..keys)).await {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut m = Measured {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        sorted: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.expect("reader task");
        m.errors += errors;
        m.sorted.extend(lat);
    }
    m.seconds = start.elapsed().as_secs_f64();
    m.requests = m.sorted.len();
    m.sorted.sort();
    m
}

fn client(readers: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(readers)
        .build()
        .expect("an HTTP client")
}

/// Reads of `/v1/inventory/P<k>/S1` from `worker`.
async fn serve_reads(worker: &Worker, readers: usize, seconds: u64, keys: usize) -> Measured {
    let (http, base) = (client(readers), format!("http://{}", worker.serve));
    closed_loop(readers, seconds, keys, move |k| {
        let request = http.get(format!("{base}/v1/inventory/P{k}/S1")).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// Loads `n` products through the ingest worker and waits until the last is readable.
async fn load(ingest: &Worker, serve: &Worker, n: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let at = now_ms();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let body: String = chunk
            .iter()
            .map(|k| inventory(&format!("l-{k}"), &format!("P{k}"), k % 100, at) + "\n")
            .collect();
        let r = http
            .post(format!("http://{}/v1/updates", ingest.ingest))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("loading: {} {}", r.status(), r.text().await?);
        }
    }
    let last = format!("http://{}/v1/inventory/P{}/S1", serve.serve, n - 1);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !http
        .get(&last)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        if Instant::now() > deadline {
            bail!("the load was not visible within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Event-to-visible latencies of `samples` updates of one cached key, one after the other.
async fn freshness(ingest: &Worker, serve: &Worker, samples: usize) -> anyhow::Result<Measured> {
    let http = reqwest::Client::new();
    let read = format!("http://{}/v1/inventory/FRESH/S1", serve.serve);
    let mut sorted = Vec::with_capacity(samples);
    let start = Instant::now();
    for i in 1..=samples {
        // Cache the previous value first, so the new one needs the change event.
        let _ = http.get(&read).send().await;
        let sent = now_ms();
        let r = http
            .post(format!("http://{}/v1/updates", ingest.ingest))
            .header("content-type", "application/x-ndjson")
            .body(inventory(&format!("f-{i}"), "FRESH", i, sent) + "\n")
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("freshness write {i}: {}", r.status());
        }
        let want = format!("\"quantity\":{i}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let body = http.get(&read).send().await?.text().await?;
            if body.contains(&want) {
                break;
            }
            if Instant::now() > deadline {
                bail!("update {i} not visible within 60 s: {body}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sorted.push(Duration::from_millis(now_ms() - sent));
    }
    sorted.sort();
    Ok(Measured {
        requests: samples,
        errors: 0,
        seconds: start.elapsed().as_secs_f64(),
        sorted,
    })
}

/// The store yardstick: the same keys read by a prepared SELECT over the run's own table.
async fn cassandra_reads(
    keyspace: &str,
    readers: usize,
    seconds: u64,
    keys: usize,
) -> anyhow::Result<Measured> {
    let s = Arc::new(session().await?);
    // The stream layer (-1) of the inventory table: the row a serve read of a key starts with.
    let select = Arc::new(
        s.prepare(format!(
            "SELECT fields FROM {keyspace}.inventory WHERE layer = -1 AND product_id = ? AND location = 'S1'"
        ))
        .await?,
    );
    Ok(closed_loop(readers, seconds, keys, move |k| {
        let (s, select) = (s.clone(), select.clone());
        async move { s.execute_unpaged(&select, (format!("P{k}"),)).await.is_ok() }
    })
    .await)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (products, readers, seconds, samples) =
        (arg(1, 10_000), arg(2, 64), arg(3, 15) as u64, arg(4, 200));
    println!(
        "{products} products, {readers} readers, {seconds} s per run, {samples} freshness samples; \
         load average before: {}",
        load_average()
    );
    let tag = format!("serve-{:08x}", fastrand::u32(..));
    let run = Run::create(
        &tag,
        "serve: {cacheTtl: {product: 10m, pricing: 10m, inventory: 10m, fulfillment: 10m}, cacheMaxEntries: 1000000, readTimeout: 100ms}\n",
    )
    .await?;
    let ingest = run.worker("ingest", "ingest").await?;
    let cached = run.worker("serve", "serve-cached").await?;
    load(&ingest, &cached, products).await?;

    // The uncached worker: the same pipeline with every cache entry expiring at once.
    let uncached_config = run.dir.join("uncached.yaml");
    std::fs::write(
        &uncached_config,
        std::fs::read_to_string(&run.config)?.replace("10m", "0s"),
    )?;
    let uncached = run
        .worker_with("serve", "serve-uncached", &uncached_config)
        .await?;

    let hello_addr = format!("127.0.0.1:{}", free_port());
    let hello_bin = std::env::current_exe()?.with_file_name("hello_world");
    let mut hello = Command::new(&hello_bin)
        .arg(&hello_addr)
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", hello_bin.display()))?;
    let http = client(readers);
    let hello_url = format!("http://{hello_addr}/");
    let deadline = Instant::now() + Duration::from_secs(10);
    while http.get(&hello_url).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("hello_world did not answer");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    println!("closed-loop reads, uniform over {products} keys:");
    closed_loop(readers, seconds, products, move |_| {
        let request = http.get(&hello_url).send();
        async move { request.await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
    .report("axum hello-world (HTTP yardstick)");
    cassandra_reads(&run.keyspace, readers, seconds, products)
        .await?
        .report("Cassandra prepared SELECT (store)");
    // Warm the cache, then measure.
    serve_reads(&cached, readers, seconds.min(5), products).await;
    serve_reads(&cached, readers, seconds, products)
        .await
        .report("serve, caches on (warm)");
    serve_reads(&uncached, readers, seconds, products)
        .await
        .report("serve, caches off");
    let _ = hello.kill();
    let _ = hello.wait();
    drop(uncached);

    let fresh = freshness(&ingest, &cached, samples).await?;
    println!(
        "freshness, event to visible through Kafka and Cassandra ({samples} updates of one cached key): \
         p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        fresh.quantile(0.5),
        fresh.quantile(0.99),
        fresh.quantile(1.0)
    );
    println!("load average after: {}", load_average());
    drop((ingest, cached));
    run.finish().await
}
