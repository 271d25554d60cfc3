//! `tailwarden-loadgen`: an open-loop load generator for the data plane.
//!
//! Requests are scheduled at fixed intended send times (rate R means one every 1/R s) no matter
//! how fast the server answers, and latency is measured from the intended send time, so queueing
//! behind slow responses is counted (no coordinated omission). Keys are Zipf-skewed like a
//! catalog with hot products. Exits non-zero when a stream did not reach 95% of its requested
//! rate or more than 1% of its requests failed.

/// mimalloc: the write path allocates many small objects and glibc malloc dominated profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use tailwarden_dataplane::workload::{Zipf, product_id, write_update};

#[derive(Parser)]
#[command(name = "tailwarden-loadgen", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a baseline snapshot (NDJSON) for `--products` products.
    Snapshot(SnapshotArgs),
    /// Runs open-loop read and write load.
    Run(RunArgs),
}

#[derive(clap::Args, Clone)]
struct SnapshotArgs {
    /// Products; each gets a price, inventory at every location and fulfillment per region.
    #[arg(long, default_value_t = 100_000)]
    products: u64,
    /// Locations per product.
    #[arg(long, default_value_t = 2)]
    locations: u64,
    /// Regions per product.
    #[arg(long, default_value_t = 1)]
    regions: u64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Write API address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    ingest: SocketAddr,
    /// Read API address (host:port).
    #[arg(long, default_value = "127.0.0.1:8081")]
    serve: SocketAddr,
    /// Reads per second (0 = none).
    #[arg(long, default_value_t = 0)]
    read_rate: u64,
    /// Updates per second (0 = none), sent in bulk requests of `--batch`.
    #[arg(long, default_value_t = 0)]
    write_rate: u64,
    /// Updates per write request.
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Product keys to draw from (match the snapshot's `--products`).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Zipf exponent of key popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Locations per product (as in the snapshot).
    #[arg(long, default_value_t = 2)]
    locations: u64,
    /// Read connections.
    #[arg(long, default_value_t = 32)]
    read_connections: usize,
    /// Write connections.
    #[arg(long, default_value_t = 8)]
    write_connections: usize,
    /// Requests per connection before it is replaced by a new one (0 = keep it). Behind a
    /// Kubernetes Service each connection stays on the pod it reached, so without this the pods
    /// added by a scale-up never see traffic from a long-running client.
    #[arg(long, default_value_t = 0)]
    reconnect_after: u64,
    /// Read mix as weights: product,pricing,inventory,fulfillment,productDetail.
    #[arg(long, default_value = "30,25,20,5,20")]
    read_mix: String,
    /// Freshness probes per second (0 = none): each writes one update stamped now and polls the
    /// read API until it is visible; reports event-to-visible latency.
    #[arg(long, default_value_t = 0)]
    probe_rate: u64,
    /// File holding the ingest bearer token (`auth.ingestTokenFile` of the data plane), sent
    /// with every write.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// File holding the read bearer token (`auth.readTokenFile`), sent with every read.
    #[arg(long)]
    read_token_file: Option<PathBuf>,
}

fn snapshot(args: &SnapshotArgs) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&args.out)?);
    for c in 0..100 {
        writeln!(
            out,
            r#"{{"class":"category","schema_version":2,"key":{{"category_id":"C{c}"}},"payload":{{"name":"Category {c}"}}}}"#
        )?;
        writeln!(
            out,
            r#"{{"class":"brand","schema_version":2,"key":{{"brand_id":"B{c}"}},"payload":{{"name":"Brand {c}"}}}}"#
        )?;
    }
    for p in 0..args.products {
        let id = product_id(p);
        writeln!(
            out,
            r#"{{"class":"product","schema_version":2,"key":{{"product_id":"{id}"}},"payload":{{"name":"Product {p}","status":"active","brand_id":"B{}","category_id":"C{}"}}}}"#,
            p % 100,
            p % 97
        )?;
        writeln!(
            out,
            r#"{{"class":"pricing","schema_version":2,"key":{{"product_id":"{id}","valid_from":"2026-01-01T00:00:00Z"}},"payload":{{"amount":{}.99,"currency":"USD"}}}}"#,
            p % 500
        )?;
        for l in 0..args.locations {
            writeln!(
                out,
                r#"{{"class":"inventory","schema_version":2,"key":{{"product_id":"{id}","location":"S{l}"}},"payload":{{"quantity":{},"unit":"each"}}}}"#,
                p % 50
            )?;
        }
        for r in 0..args.regions {
            writeln!(
                out,
                r#"{{"class":"fulfillment","schema_version":2,"key":{{"product_id":"{id}","region":"R{r}"}},"payload":{{"available":true,"methods":["ship","pickup"],"eta_days":2}}}}"#
            )?;
        }
    }
    out.flush()
}

/// Latencies and counts of one stream.
struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
    /// Scheduled but never sent because the run ended first (the server fell behind).
    unsent: u64,
    units: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            ok: 0,
            failed: 0,
            unsent: 0,
            units: 0,
        }
    }

    fn merge(&mut self, other: &Stats) {
        self.hist.add(&other.hist).expect("same bounds");
        self.ok += other.ok;
        self.failed += other.failed;
        self.unsent += other.unsent;
        self.units += other.units;
    }
}

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Conn> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What a stream sends.
#[derive(Clone)]
enum Work {
    Read { mix: Vec<(u32, &'static str)> },
    Write { batch: u64 },
}

struct Shared {
    args: RunArgs,
    zipf: Zipf,
    run_id: u64,
    sequence: AtomicU64,
    /// `Authorization` of writes, from `--token-file`.
    write_auth: Option<HeaderValue>,
    /// `Authorization` of reads, from `--read-token-file`.
    read_auth: Option<HeaderValue>,
}

/// `Bearer <token>` from a token file (surrounding whitespace dropped, as the data plane does),
/// marked sensitive so that it is never printed.
fn bearer(file: Option<&PathBuf>) -> anyhow::Result<Option<HeaderValue>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let bytes = std::fs::read(file)
        .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", file.display()))?;
    let mut value = HeaderValue::from_bytes(&[b"Bearer ", bytes.trim_ascii()].concat())
        .map_err(|_| anyhow::anyhow!("token file {} holds an invalid token", file.display()))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Adds `auth` as the `Authorization` header, if any.
fn authorized(
    mut builder: hyper::http::request::Builder,
    auth: &Option<HeaderValue>,
) -> hyper::http::request::Builder {
    if let Some(v) = auth {
        builder = builder.header(hyper::header::AUTHORIZATION, v.clone());
    }
    builder
}

fn read_path(shared: &Shared, mix: &[(u32, &'static str)], rng: &mut fastrand::Rng) -> String {
    let total: u32 = mix.iter().map(|m| m.0).sum();
    let mut pick = rng.u32(0..total.max(1));
    let class = mix
        .iter()
        .find(|(w, _)| {
            if pick < *w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .map_or("product", |m| m.1);
    let id = product_id(shared.zipf.sample(rng));
    let loc = rng.u64(0..shared.args.locations.max(1));
    match class {
        "pricing" => format!("/v1/prices/{id}"),
        "inventory" => format!("/v1/inventory/{id}/S{loc}"),
        "fulfillment" => format!("/v1/fulfillment/{id}/R0"),
        "productDetail" => format!("/v1/product-detail/{id}?location=S{loc}&region=R0"),
        _ => format!("/v1/products/{id}"),
    }
}

fn write_body(shared: &Shared, batch: u64, rng: &mut fastrand::Rng) -> String {
    let mut body = String::with_capacity(batch as usize * 240);
    let now = chrono::Utc::now().timestamp_millis();
    for _ in 0..batch {
        let seq = shared.sequence.fetch_add(1, Ordering::Relaxed);
        let id = product_id(shared.zipf.sample(rng));
        let eid = format!("lg-{}-{seq}", shared.run_id);
        write_update(&mut body, rng, &id, shared.args.locations, &eid, seq, now);
    }
    body
}

/// Sends requests until the queue closes; requests still queued at `end` are counted unsent.
async fn worker(
    shared: Arc<Shared>,
    work: Work,
    queue: async_channel::Receiver<Instant>,
    end: Instant,
) -> Stats {
    let mut stats = Stats::new();
    let mut rng = fastrand::Rng::new();
    let addr = match work {
        Work::Read { .. } => shared.args.serve,
        Work::Write { .. } => shared.args.ingest,
    };
    let mut conn: Option<Conn> = None;
    let mut sent_on_conn = 0u64;
    let reconnect_after = shared.args.reconnect_after;
    while let Ok(intended) = queue.recv().await {
        if Instant::now() >= end {
            stats.unsent += 1;
            continue;
        }
        let request = match &work {
            Work::Read { mix } => authorized(
                Request::get(read_path(&shared, mix, &mut rng)),
                &shared.read_auth,
            )
            .header("host", addr.to_string())
            .body(Full::new(Bytes::new())),
            Work::Write { batch } => authorized(Request::post("/v1/updates"), &shared.write_auth)
                .header("host", addr.to_string())
                .header("content-type", "application/x-ndjson")
                .body(Full::new(Bytes::from(write_body(
                    &shared, *batch, &mut rng,
                )))),
        }
        .expect("valid request");
        let ok = async {
            let worn = reconnect_after > 0 && sent_on_conn >= reconnect_after;
            if worn || conn.as_ref().is_none_or(|c| c.is_closed()) {
                conn = Some(connect(addr).await?);
                sent_on_conn = 0;
            }
            sent_on_conn += 1;
            let c = conn.as_mut().expect("connected");
            c.ready().await?;
            let resp = c.send_request(request).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            anyhow::Ok(status.is_success() || status == hyper::StatusCode::NOT_FOUND)
        }
        .await;
        let micros = intended.elapsed().as_micros().max(1) as u64;
        let _ = stats.hist.record(micros.min(120_000_000));
        match ok {
            Ok(true) => {
                stats.ok += 1;
                stats.units += match work {
                    Work::Read { .. } => 1,
                    Work::Write { batch } => batch,
                };
            }
            Ok(false) => stats.failed += 1,
            Err(_) => {
                stats.failed += 1;
                conn = None;
            }
        }
    }
    stats
}

/// One freshness probe: write a unique quantity to a probe key, poll until it reads back.
/// Returns event time → first read that shows it, or `None` if it never showed within 30 s.
async fn probe(shared: &Shared, n: u64) -> anyhow::Result<Option<Duration>> {
    let mut writer = connect(shared.args.ingest).await?;
    let mut reader = connect(shared.args.serve).await?;
    let product = format!("PROBE{}", n % 64);
    let event = Instant::now();
    let now = chrono::Utc::now().timestamp_millis();
    let body = format!(
        r#"{{"event_id":"probe-{}-{n}","class":"inventory","schema_version":2,"key":{{"product_id":"{product}","location":"S0"}},"event_time":{now},"sequence":{n},"payload":{{"quantity":{n}}}}}"#,
        shared.run_id
    );
    let request = authorized(Request::post("/v1/updates"), &shared.write_auth)
        .header("host", shared.args.ingest.to_string())
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from(body)))?;
    writer.ready().await?;
    let resp = writer.send_request(request).await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "probe write failed: {}",
        resp.status()
    );
    resp.into_body().collect().await?;
    let expected = format!(r#""quantity":{n}"#);
    while event.elapsed() < Duration::from_secs(30) {
        let request = authorized(
            Request::get(format!("/v1/inventory/{product}/S0")),
            &shared.read_auth,
        )
        .header("host", shared.args.serve.to_string())
        .body(Full::new(Bytes::new()))?;
        reader.ready().await?;
        let body = reader
            .send_request(request)
            .await?
            .into_body()
            .collect()
            .await?
            .to_bytes();
        if std::str::from_utf8(&body).is_ok_and(|b| b.contains(&expected)) {
            return Ok(Some(event.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(None)
}

async fn probes(shared: Arc<Shared>) -> Stats {
    let mut stats = Stats::new();
    let interval = Duration::from_secs_f64(1.0 / shared.args.probe_rate as f64);
    let start = Instant::now();
    let end = start + Duration::from_secs(shared.args.duration);
    let mut tasks = Vec::new();
    let mut next = start;
    let mut n = 1;
    while next < end {
        let shared = shared.clone();
        let id = n;
        tasks.push(tokio::spawn(async move { probe(&shared, id).await }));
        n += 1;
        next += interval;
        tokio::time::sleep_until(next.into()).await;
    }
    for t in tasks {
        match t.await {
            Ok(Ok(Some(d))) => {
                stats.ok += 1;
                stats.units += 1;
                let _ = stats.hist.record((d.as_micros() as u64).max(1));
            }
            _ => stats.failed += 1,
        }
    }
    stats
}

/// Enqueues intended send times at `rate` per second for `duration`.
async fn dispatch(rate: f64, duration: Duration, queue: async_channel::Sender<Instant>) {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut next = start;
    let end = start + duration;
    while next < end {
        let now = Instant::now();
        while next <= now && next < end {
            if queue.send(next).await.is_err() {
                return;
            }
            next += interval;
        }
        tokio::time::sleep_until(next.into()).await;
    }
}

async fn stream(shared: Arc<Shared>, work: Work, rate: f64, connections: usize) -> Stats {
    let (tx, rx) = async_channel::unbounded();
    let end = Instant::now() + Duration::from_secs(shared.args.duration);
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(shared.clone(), work.clone(), rx.clone(), end)))
        .collect();
    drop(rx);
    dispatch(rate, Duration::from_secs(shared.args.duration), tx).await;
    let mut total = Stats::new();
    for w in workers {
        if let Ok(s) = w.await {
            total.merge(&s);
        }
    }
    total
}

fn report(name: &str, unit: &str, requested: u64, stats: &Stats, elapsed: Duration) -> bool {
    let achieved = stats.units as f64 / elapsed.as_secs_f64();
    let ms = |q: f64| stats.hist.value_at_quantile(q) as f64 / 1000.0;
    let requests = stats.ok + stats.failed;
    let fail_ratio = if requests == 0 {
        0.0
    } else {
        stats.failed as f64 / requests as f64
    };
    let ok = achieved >= 0.95 * requested as f64 && fail_ratio <= 0.01;
    println!(
        "{name}: requested {requested} {unit}/s, achieved {achieved:.0} {unit}/s; requests ok {} failed {} unsent {}; latency ms p50 {:.3} p95 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}{}",
        stats.ok,
        stats.failed,
        stats.unsent,
        ms(0.5),
        ms(0.95),
        ms(0.99),
        ms(0.999),
        stats.hist.max() as f64 / 1000.0,
        if ok { "" } else { "  << TARGET MISSED" }
    );
    println!(
        "{}",
        serde_json::json!({"stream": name, "requested_per_s": requested, "achieved_per_s": achieved.round(),
            "ok": stats.ok, "failed": stats.failed, "unsent": stats.unsent, "p50_ms": ms(0.5), "p95_ms": ms(0.95), "p99_ms": ms(0.99),
            "p999_ms": ms(0.999), "max_ms": stats.hist.max() as f64 / 1000.0, "met": ok})
    );
    ok
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let names = [
        "product",
        "pricing",
        "inventory",
        "fulfillment",
        "productDetail",
    ];
    let weights: Vec<u32> = args
        .read_mix
        .split(',')
        .map(|w| w.trim().parse())
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(weights.len() == names.len(), "--read-mix needs 5 weights");
    let mix: Vec<(u32, &'static str)> = weights.into_iter().zip(names).collect();
    let shared = Arc::new(Shared {
        zipf: Zipf::new(args.keys.max(1), args.zipf),
        run_id: fastrand::u64(..),
        sequence: AtomicU64::new(0),
        write_auth: bearer(args.token_file.as_ref())?,
        read_auth: bearer(args.read_token_file.as_ref())?,
        args: args.clone(),
    });
    let started = Instant::now();
    let reads = (args.read_rate > 0).then(|| {
        tokio::spawn(stream(
            shared.clone(),
            Work::Read { mix },
            args.read_rate as f64,
            args.read_connections,
        ))
    });
    let writes = (args.write_rate > 0).then(|| {
        let requests = args.write_rate as f64 / args.batch as f64;
        tokio::spawn(stream(
            shared.clone(),
            Work::Write { batch: args.batch },
            requests,
            args.write_connections,
        ))
    });
    let probing = (args.probe_rate > 0).then(|| tokio::spawn(probes(shared.clone())));
    let mut met = true;
    let elapsed = |s: Instant| s.elapsed().max(Duration::from_secs(args.duration));
    if let Some(r) = reads {
        let stats = r.await?;
        met &= report("reads", "reads", args.read_rate, &stats, elapsed(started));
    }
    if let Some(w) = writes {
        let stats = w.await?;
        met &= report(
            "writes",
            "updates",
            args.write_rate,
            &stats,
            elapsed(started),
        );
    }
    if let Some(p) = probing {
        let stats = p.await?;
        met &= report(
            "freshness",
            "probes",
            args.probe_rate,
            &stats,
            elapsed(started),
        );
    }
    Ok(met)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Snapshot(args) => match snapshot(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tailwarden-loadgen: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(run(args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(3),
                Err(e) => {
                    eprintln!("tailwarden-loadgen: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
