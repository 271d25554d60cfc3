//! Benchmarks of the operator's SLO engine against a real Prometheus (Debian's `prometheus`,
//! started here on loopback). Prints its figures; `docs/benchmarks.md` records them.
//!
//! ```text
//! slo_bench live     [--pipelines 1000] [--namespaces 10] [--scrape 5] [--warmup 240]
//!                    [--passes 6] [--interval 5] [--trials 3] [--rules SECONDS]
//! slo_bench backfill [--pipelines 10] [--days 30] [--step 300] [--passes 5] [--only NAME]
//! ```
//!
//! `live`: a synthetic exporter (this binary, `exporter` subcommand, in its own process so that
//! the RSS figures are the engine's alone) serves the data-plane metrics of every pipeline;
//! Prometheus scrapes it with `honor_labels: true`. After `--warmup` seconds of history the engine
//! evaluates every pipeline every `--interval` seconds: pass times, queries, failures and
//! Prometheus's own per-query cost (`stats=all`), then `--trials` P99 breaches (one pipeline's
//! reads turn slow) timed from the exporter change and from the moment Prometheus shows the
//! breach to the verdict's new serve replica count, then the process RSS. `--rules N` also loads
//! every pipeline's generated rules, evaluated every N seconds, so the engine reads the recorded
//! ratios.
//!
//! `backfill`: the same metrics as an exact history of `--days` days at one sample every
//! `--step` seconds, built by `promtool tsdb create-blocks-from openmetrics`; the same pass and
//! per-query figures over a long history, to extrapolate the cost of the 30-day windows.

#[path = "../exporter.rs"]
mod exporter;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::engine::{Engine, EngineConfig};
use tailwarden_operator::evaluation::objectives;
use tailwarden_operator::metrics::Metrics;
use tailwarden_operator::verdict::Verdicts;
use tailwarden_slo::rules::{SeriesLabels, pipeline_rules, rules_file};
use tailwarden_tests::free_port;
use tailwarden_tests::prometheus::Prometheus;

/// Options, `--name value`.
struct Opts(BTreeMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut map = BTreeMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                map.insert(name.to_string(), it.next().cloned().unwrap_or_default());
            }
        }
        Self(map)
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        self.0
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().unwrap_or_default();
    let opts = Opts::parse(&args);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    match mode.as_str() {
        "exporter" => rt.block_on(run_exporter(opts)),
        "live" => rt.block_on(live(opts)),
        "backfill" => rt.block_on(backfill(opts)),
        _ => {
            eprintln!("usage: slo_bench live|backfill [--pipelines N] ... (see the source header)");
            std::process::exit(2);
        }
    }
}

async fn run_exporter(o: Opts) {
    let n = o.get("pipelines", 1000usize);
    let ns = o.get("namespaces", 10usize);
    let port = o.get("port", 0u16);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind loopback");
    exporter::serve(listener, exporter::pipelines(n, ns)).await;
}

/// Series in the head block.
async fn head_series(prom: &Prometheus, http: &reqwest::Client) -> Option<u64> {
    let v: serde_json::Value = http
        .get(format!("{}/api/v1/status/tsdb", prom.url))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["data"]["headStats"]["numSeries"].as_u64()
}

/// An instant query's first value, if any.
async fn scalar(prom: &Prometheus, http: &reqwest::Client, query: &str) -> Option<f64> {
    let (v, _) = instant_query(prom, http, query, None, false).await.ok()?;
    let first = v["data"]["result"].as_array()?.first()?.clone();
    first["value"][1].as_str()?.parse().ok()
}

/// An instant query at `at` (default now), with Prometheus's own cost when `stats`.
async fn instant_query(
    prom: &Prometheus,
    http: &reqwest::Client,
    query: &str,
    at: Option<i64>,
    stats: bool,
) -> anyhow::Result<(serde_json::Value, Duration)> {
    let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", prom.url))?;
    url.query_pairs_mut().append_pair("query", query);
    if let Some(at) = at {
        url.query_pairs_mut().append_pair("time", &at.to_string());
    }
    if stats {
        url.query_pairs_mut().append_pair("stats", "all");
    }
    let start = Instant::now();
    let v: serde_json::Value = http.get(url).send().await?.json().await?;
    Ok((v, start.elapsed()))
}

/// Starts Prometheus on `dir` (a backfilled TSDB can take minutes to open); `SLO_BENCH_KEEP`
/// leaves its files behind.
async fn start_prometheus(dir: PathBuf, config: &str) -> Prometheus {
    let mut prom = Prometheus::start(dir, config, Duration::from_secs(600)).await;
    if std::env::var_os("SLO_BENCH_KEEP").is_some() {
        prom.keep_files();
    }
    prom
}

fn fresh_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slo-bench-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `VmRSS` and `VmHWM` of a process, MiB.
fn rss(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User plus system CPU seconds of a process.
fn cpu(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15: indices 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

/// `n` default-SLO, distributed (Cassandra) pipelines named as the exporter names them.
fn retail_pipelines(n: usize, namespaces: usize) -> Vec<Arc<RetailPipeline>> {
    exporter::pipelines(n, namespaces)
        .into_iter()
        .map(|e| {
            let mut p = tailwarden_tests::pipeline(&e.name, tailwarden_tests::cassandra_spec());
            p.metadata.namespace = Some(e.namespace);
            Arc::new(p)
        })
        .collect()
}

fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "n/a".into();
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    format!(
        "min {:.3} s, median {:.3} s, max {:.3} s (n = {})",
        v[0],
        median,
        v[v.len() - 1],
        v.len()
    )
}

/// Times every engine query in Prometheus one at a time with `stats=all` and prints the costliest.
async fn per_query_costs(prom: &Prometheus, http: &reqwest::Client, queries: &[String], at: i64) {
    let mut rows = vec![];
    for q in queries {
        match instant_query(prom, http, q, Some(at), true).await {
            Ok((v, wall)) => {
                let s = &v["data"]["stats"];
                let eval = s["timings"]["execTotalTime"].as_f64().unwrap_or(f64::NAN);
                let samples = s["samples"]["totalQueryableSamples"]
                    .as_f64()
                    .unwrap_or(f64::NAN);
                let peak = s["samples"]["peakSamples"].as_f64().unwrap_or(f64::NAN);
                let series = v["data"]["result"].as_array().map_or(0, Vec::len);
                let status = match v["error"].as_str() {
                    Some(e) => format!("error: {e}"),
                    None => v["status"].as_str().unwrap_or("?").to_string(),
                };
                rows.push((
                    wall.as_secs_f64(),
                    eval,
                    samples,
                    series,
                    status,
                    q.clone(),
                    peak,
                ));
            }
            Err(e) => rows.push((
                f64::NAN,
                f64::NAN,
                f64::NAN,
                0,
                e.to_string(),
                q.clone(),
                f64::NAN,
            )),
        }
    }
    let total_wall: f64 = rows.iter().map(|r| r.0).filter(|x| x.is_finite()).sum();
    let total_eval: f64 = rows.iter().map(|r| r.1).filter(|x| x.is_finite()).sum();
    let total_samples: f64 = rows.iter().map(|r| r.2).filter(|x| x.is_finite()).sum();
    println!(
        "per-query (sequential, stats=all): {} queries, sum of wall {:.3} s, sum of Prometheus execTotalTime {:.3} s, {:.3e} samples read in all ({:.1} M samples/s)",
        rows.len(),
        total_wall,
        total_eval,
        total_samples,
        total_samples / total_eval.max(1e-9) / 1e6
    );
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "costliest queries: wall s | Prometheus exec s | samples read | peak samples | result series | status | query"
    );
    for r in rows.iter().take(8) {
        let q: String = r.5.chars().take(150).collect();
        println!(
            "  {:.3} | {:.3} | {:.3e} | {:.3e} | {} | {} | {q}",
            r.0, r.1, r.2, r.6, r.3, r.4
        );
    }
    let failed = rows.iter().filter(|r| r.4 != "success").count();
    println!("queries not answered with success: {failed}");
}

async fn live(o: Opts) {
    let n = o.get("pipelines", 1000usize);
    let namespaces = o.get("namespaces", 10usize);
    let scrape = o.get("scrape", 5u64);
    let warmup = o.get("warmup", 240u64);
    let passes = o.get("passes", 6usize);
    let interval = Duration::from_secs(o.get("interval", 5u64));
    let trials = o.get("trials", 3usize);
    let http = reqwest::Client::new();
    let me = std::process::id().to_string();
    println!(
        "live: {n} pipelines in {namespaces} namespaces, {} series each ({} in all), scraped every {scrape} s, warm-up {warmup} s, pass interval {interval:?}",
        exporter::SERIES_PER_PIPELINE,
        n * exporter::SERIES_PER_PIPELINE
    );

    // The exporter, in its own process.
    let port = free_port();
    let mut exporter_child = Command::new(std::env::current_exe().unwrap())
        .args(["exporter", "--pipelines", &n.to_string()])
        .args(["--namespaces", &namespaces.to_string()])
        .args(["--port", &port.to_string()])
        .spawn()
        .expect("exporter starts");
    let exporter_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{exporter_url}/")).await.is_err() {
        assert!(Instant::now() < deadline, "exporter did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let body = reqwest::get(format!("{exporter_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!(
        "exporter: one scrape is {:.1} MB, rendered and fetched in {:.3} s",
        body.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    drop(body);

    let rules_every = o.get("rules", 0u64);
    let dir = fresh_dir("live");
    std::fs::create_dir_all(&dir).unwrap();
    let (evaluation, rule_files) = if rules_every > 0 {
        let file = dir.join("rules.yml");
        let groups: Vec<_> = retail_pipelines(n, namespaces)
            .iter()
            .flat_map(|p| {
                let o = objectives(&p.spec).expect("default objectives");
                pipeline_rules(
                    &p.namespace().unwrap(),
                    &p.name_any(),
                    &o,
                    SeriesLabels::Plain,
                )
            })
            .collect();
        std::fs::write(&file, rules_file(&groups).unwrap()).unwrap();
        println!(
            "rules: {} groups, {} rules, evaluated every {rules_every} s",
            groups.len(),
            groups.iter().map(|g| g.rules.len()).sum::<usize>()
        );
        (
            rules_every,
            format!("rule_files: [\"{}\"]\n", file.display()),
        )
    } else {
        (scrape, String::new())
    };
    let config = format!(
        "global:\n  scrape_interval: {scrape}s\n  scrape_timeout: {scrape}s\n  evaluation_interval: {evaluation}s\n{rule_files}scrape_configs:\n  - job_name: dataplane\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
    );
    let prom = start_prometheus(dir, &config).await;
    let prom_pid = prom.pid().to_string();
    let prom_start = Instant::now();
    println!("prometheus {} (pid {prom_pid})", prom.url);
    let mut last_report = Instant::now();
    while prom_start.elapsed() < Duration::from_secs(warmup) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let series = head_series(&prom, &http).await;
            let scrape_s = scalar(&prom, &http, "scrape_duration_seconds{job=\"dataplane\"}").await;
            println!(
                "  warm-up {:>4} s: head series {series:?}, last scrape took {scrape_s:?} s",
                prom_start.elapsed().as_secs()
            );
        }
    }
    let series = head_series(&prom, &http).await;
    let scrape_s = scalar(&prom, &http, "scrape_duration_seconds{job=\"dataplane\"}").await;
    println!(
        "history: {} s of scrapes; head series {series:?}; last scrape took {scrape_s:?} s",
        prom_start.elapsed().as_secs()
    );

    let (rss_before, _) = rss(&me);
    let pipelines = retail_pipelines(n, namespaces);
    let verdicts = Verdicts::default();
    let config = EngineConfig {
        default_prometheus: Some(prom.url.clone()),
        interval,
        ..EngineConfig::default()
    };
    println!(
        "engine: query timeout {:?}, concurrency {}, signal window {:?}",
        config.query_timeout, config.concurrency, config.signal_window
    );
    let engine = Arc::new(Engine::new(
        config,
        verdicts.clone(),
        Arc::new(Metrics::default()),
    ));

    // Prometheus's own cost per query (before the pass loop, so the figures are clean).
    let queries = engine.queries(&pipelines[..1], Timestamp::now());
    per_query_costs(&prom, &http, &queries, Timestamp::now().as_second()).await;

    // Trial pipelines, spread over the fleet.
    let trial_idx: Vec<usize> = (0..trials).map(|k| (101 + k * 293) % n).collect();
    let key = move |i: usize| (exporter::namespace_of(i, namespaces), format!("p{i:04}"));

    // The pass loop, as `Engine::run` paces it.
    #[derive(Clone)]
    struct PassRecord {
        start: Instant,
        end: Instant,
        queries: usize,
        recorded: usize,
        failed: usize,
        changed: usize,
        serve: Vec<Option<i32>>,
        first: Option<tailwarden_operator::verdict::Verdict>,
    }
    let records: Arc<Mutex<Vec<PassRecord>>> = Arc::default();
    let (start_tx, mut start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let loop_task = {
        let engine = engine.clone();
        let records = records.clone();
        let pipelines = pipelines.clone();
        let verdicts = verdicts.clone();
        let trial_idx = trial_idx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let start = Instant::now();
                let _ = start_tx.send(Some(start));
                let r = engine.pass(&pipelines, Timestamp::now()).await;
                let serve = trial_idx
                    .iter()
                    .map(|&i| {
                        let (ns, name) = key(i);
                        verdicts
                            .get(&ObjectRef::new(&name).within(&ns))
                            .and_then(|v| v.serve.map(|s| s.replicas))
                    })
                    .collect();
                let (ns0, name0) = key(0);
                records.lock().unwrap().push(PassRecord {
                    start,
                    end: Instant::now(),
                    queries: r.queries,
                    recorded: r.recorded_ratios,
                    failed: r.failed_queries,
                    changed: r.changed.len(),
                    serve,
                    first: verdicts.get(&ObjectRef::new(&name0).within(&ns0)),
                });
            }
        })
    };
    let cpu_before = [
        cpu(&me),
        cpu(&prom_pid),
        cpu(&exporter_child.id().to_string()),
    ];
    let steady_start = Instant::now();
    while records.lock().unwrap().len() < passes {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let steady_wall = steady_start.elapsed().as_secs_f64();
    let cpu_after = [
        cpu(&me),
        cpu(&prom_pid),
        cpu(&exporter_child.id().to_string()),
    ];
    let used: Vec<f64> = cpu_after
        .iter()
        .zip(cpu_before)
        .map(|(a, b)| a - b)
        .collect();
    println!(
        "CPU over the {passes} passes ({steady_wall:.1} s wall, 2 cores = {:.1} core-s): engine process {:.1} s, Prometheus {:.1} s, exporter {:.1} s",
        steady_wall * 2.0,
        used[0],
        used[1],
        used[2]
    );
    if rules_every > 0 {
        // Prometheus does not scrape itself here: read its own /metrics.
        let text = reqwest::get(format!("{}/metrics", prom.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let sum = |family: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        println!(
            "rule evaluation: the groups' last evaluations took {:.0} s summed (wall time; groups run concurrently, so this includes waiting for CPU); failures {}; missed iterations {}",
            sum("prometheus_rule_group_last_duration_seconds"),
            sum("prometheus_rule_evaluation_failures_total"),
            sum("prometheus_rule_group_iterations_missed_total")
        );
    }
    let steady: Vec<PassRecord> = records.lock().unwrap()[..passes].to_vec();
    println!(
        "passes over {n} pipelines: {}",
        stats(
            steady
                .iter()
                .map(|r| (r.end - r.start).as_secs_f64())
                .collect()
        )
    );
    println!(
        "  queries per pass {:?}, recorded ratios read {:?}, failed {:?}, verdicts changed {:?}",
        steady.iter().map(|r| r.queries).collect::<Vec<_>>(),
        steady.iter().map(|r| r.recorded).collect::<Vec<_>>(),
        steady.iter().map(|r| r.failed).collect::<Vec<_>>(),
        steady.iter().map(|r| r.changed).collect::<Vec<_>>()
    );
    // What differs between consecutive verdicts of one healthy pipeline (why it "changed").
    for w in steady.windows(2) {
        if let (Some(a), Some(b)) = (&w[0].first, &w[1].first) {
            let mut diff = vec![];
            if a.gates != b.gates {
                diff.push("gates".to_string());
            }
            if a.serve != b.serve || a.ingest != b.ingest {
                diff.push(format!(
                    "scale ({:?} -> {:?})",
                    a.ingest.as_ref().map(|s| &s.reason),
                    b.ingest.as_ref().map(|s| &s.reason)
                ));
            }
            if a.slis != b.slis {
                diff.push(format!("slis ({:?} -> {:?})", a.slis, b.slis));
            }
            if a.budget != b.budget {
                diff.push(format!(
                    "budget ({:?} -> {:?})",
                    a.budget.remaining_percent, b.budget.remaining_percent
                ));
            }
            if a.missing != b.missing {
                diff.push("missing".into());
            }
            println!(
                "  p0000 verdict changes between passes: {}",
                diff.join("; ")
            );
        }
    }
    let (ns0, name0) = key(0);
    if let Some(v) = verdicts.get(&ObjectRef::new(&name0).within(&ns0)) {
        println!(
            "  verdict of {ns0}/{name0}: serve {:?}, p99 {:?}, budget {:?}, missing {:?}",
            v.serve.map(|s| (s.replicas, s.reason)),
            v.slis.read_p99,
            v.budget.remaining,
            v.missing
        );
    }
    let (vm_rss, vm_hwm) = rss(&me);
    println!(
        "engine process after {passes} passes: VmRSS {vm_rss:.1} MiB, VmHWM {vm_hwm:.1} MiB (VmRSS {rss_before:.1} MiB before the pipelines and the engine existed)"
    );

    // P99 breaches.
    let mut results = vec![];
    for (k, &idx) in trial_idx.iter().enumerate() {
        let (ns, name) = key(idx);
        let offset = interval.mul_f64((k as f64 + 0.5) / trials as f64);
        let _ = start_rx.borrow_and_update();
        start_rx.changed().await.unwrap();
        let pass_start = start_rx.borrow().unwrap();
        tokio::time::sleep_until((pass_start + offset).into()).await;
        let baseline = records.lock().unwrap().last().and_then(|r| r.serve[k]);
        let flip = Instant::now();
        let flip_at = records.lock().unwrap().len();
        reqwest::get(format!("{exporter_url}/slow/{idx}"))
            .await
            .expect("exporter answers");
        let p99 = format!(
            "max(histogram_quantile(0.99, sum by (class, le) (rate(tailwarden_read_duration_seconds_bucket{{namespace=\"{ns}\",pipeline=\"{name}\"}}[5m]))))"
        );
        // The scale-up threshold: 80 % of the 200 ms P99 bound.
        let threshold = 0.16;
        let mut visible = None;
        let mut decided = None;
        let deadline = flip + Duration::from_secs(120);
        while Instant::now() < deadline && decided.is_none() {
            if visible.is_none()
                && scalar(&prom, &http, &p99)
                    .await
                    .is_some_and(|v| v > threshold)
            {
                visible = Some(Instant::now());
            }
            decided = records.lock().unwrap()[flip_at..]
                .iter()
                .enumerate()
                .find(|(_, r)| r.serve[k] != baseline)
                .map(|(i, r)| (flip_at + i, r.clone()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let Some((pass_no, rec)) = decided else {
            println!("breach {k} ({ns}/{name}): no verdict change within 120 s");
            continue;
        };
        let recs = records.lock().unwrap().clone();
        let visible = visible.unwrap_or(rec.end);
        let passes_after_flip = recs[flip_at..=pass_no]
            .iter()
            .filter(|r| r.start >= flip)
            .count();
        let passes_after_visible = recs[flip_at..=pass_no]
            .iter()
            .filter(|r| r.start >= visible)
            .count();
        let from_flip = (rec.end - flip).as_secs_f64();
        let from_visible = rec.end.saturating_duration_since(visible).as_secs_f64();
        println!(
            "breach {k} ({ns}/{name}), exporter turned slow {:.2} s into an interval: visible in Prometheus (P99 > {threshold} s) after {:.2} s; serve {baseline:?} -> {:?} in the pass ending {from_flip:.2} s after the exporter change = {from_visible:.2} s ({:.2} intervals) after visibility; passes started after the change: {passes_after_flip}, after visibility: {passes_after_visible}",
            offset.as_secs_f64(),
            (visible - flip).as_secs_f64(),
            rec.serve[k],
            from_visible / interval.as_secs_f64()
        );
        results.push((from_flip, from_visible, passes_after_visible));
    }
    if !results.is_empty() {
        println!(
            "breach -> verdict, from the exporter change: {}; from visibility in Prometheus: {}; worst passes after visibility: {}",
            stats(results.iter().map(|r| r.0).collect()),
            stats(results.iter().map(|r| r.1).collect()),
            results.iter().map(|r| r.2).max().unwrap_or(0)
        );
    }

    let all = records.lock().unwrap().clone();
    println!(
        "all {} passes (the later ones while the breach watcher queried too): {}; failed queries in all: {}",
        all.len(),
        stats(
            all.iter()
                .map(|r| (r.end - r.start).as_secs_f64())
                .collect()
        ),
        all.iter().map(|r| r.failed).sum::<usize>()
    );
    let (vm_rss, vm_hwm) = rss(&me);
    let (p_rss, p_hwm) = rss(&prom_pid);
    let (e_rss, e_hwm) = rss(&exporter_child.id().to_string());
    println!(
        "RSS at the end: engine process VmRSS {vm_rss:.1} MiB / VmHWM {vm_hwm:.1} MiB ({} verdicts held); Prometheus {p_rss:.1} / {p_hwm:.1} MiB; exporter {e_rss:.1} / {e_hwm:.1} MiB",
        all.last().map_or(0, |_| n)
    );
    loop_task.abort();
    let _ = exporter_child.kill();
    let _ = exporter_child.wait();
}

async fn backfill(o: Opts) {
    let n = o.get("pipelines", 10usize);
    let days = o.get("days", 30i64);
    let step = o.get("step", 300i64);
    let passes = o.get("passes", 5usize);
    // `--only watermark`: just the series whose metric name contains this (all by default).
    let only = o.get("only", String::new());
    let http = reqwest::Client::new();
    let pipelines_model = exporter::pipelines(n, 1);
    // End on a whole step a little in the past.
    let end = (Timestamp::now().as_second() / step) * step - 2 * step;
    let times: Vec<i64> = (0..=days * 86_400 / step)
        .map(|i| end - days * 86_400 + i * step)
        .collect();
    let samples = times.len() * n * exporter::SERIES_PER_PIPELINE;
    println!(
        "backfill: {n} pipelines × {} series × {} samples ({days} d at {step} s) = {:.1} M samples{}",
        exporter::SERIES_PER_PIPELINE,
        times.len(),
        samples as f64 / 1e6,
        if only.is_empty() {
            String::new()
        } else {
            format!(", of which only the families matching {only:?} are written")
        }
    );
    let dir = fresh_dir("backfill");
    let input = dir.join("history.om");
    let t = Instant::now();
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        exporter::write_history(&pipelines_model, &times, &only, &mut w).unwrap();
    }
    println!(
        "  OpenMetrics written ({:.0} MB) in {:.1} s",
        std::fs::metadata(&input).map_or(0, |m| m.len()) as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
        .arg(&input)
        .arg(&data)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&input);
    println!(
        "  promtool create-blocks-from openmetrics: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let prom = start_prometheus(dir, "global:\n  scrape_interval: 1h\n").await;
    // Prometheus compacts the 2h blocks that promtool writes; measure once that has settled.
    let t = Instant::now();
    let mut last = (-1.0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let blocks = std::fs::read_dir(prom.data_dir())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().join("meta.json").exists())
                    .count() as f64
            })
            .unwrap_or(-1.0);
        if blocks != last.0 {
            last = (blocks, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    println!(
        "  Prometheus settled ({} blocks on disk) after {:.0} s",
        last.0,
        t.elapsed().as_secs_f64()
    );
    let pipelines = retail_pipelines(n, 1);
    let verdicts = Verdicts::default();
    let engine = Engine::new(
        EngineConfig {
            default_prometheus: Some(prom.url.clone()),
            ..EngineConfig::default()
        },
        verdicts.clone(),
        Arc::new(Metrics::default()),
    );
    let now = Timestamp::from_second(end + 1).unwrap();
    let queries = engine.queries(&pipelines[..1], now);
    per_query_costs(&prom, &http, &queries, end + 1).await;
    let mut times = vec![];
    let mut failed = vec![];
    for _ in 0..passes {
        let r = engine.pass(&pipelines, now).await;
        times.push(r.duration.as_secs_f64());
        failed.push(r.failed_queries);
    }
    println!(
        "passes over {n} pipelines with {days} d of history: {}; failed queries per pass {failed:?}",
        stats(times)
    );
    let (ns, name) = (exporter::namespace_of(0, 1), "p0000");
    if let Some(v) = verdicts.get(&ObjectRef::new(name).within(&ns)) {
        println!(
            "  verdict of {ns}/{name}: budget {:?}, availability {:?}, p99 {:?}, missing {:?}",
            v.budget.remaining, v.slis.availability_percent, v.slis.read_p99, v.missing
        );
    }
}
