//! A synthetic data plane for benchmarks: the data-plane metrics (`docs/metrics.md`) of many
//! pipelines at once, as a deterministic function of time, served over HTTP for Prometheus to
//! scrape (`honor_labels: true`: every series carries `namespace` and `pipeline`) or written as an
//! OpenMetrics history for `promtool tsdb create-blocks-from openmetrics`.
//!
//! Per pipeline: `tailwarden_read_requests_total` by 5 read classes × codes 200/404/503, the read
//! latency histogram with the data plane's 24 buckets for 5 classes, the ingest watermark and
//! `tailwarden_ingest_records_total` (accepted/rejected) for 4 ingest classes, and the ingest queue
//! depth: 163 series. Reads are healthy (P99 about 70 ms) until a pipeline is made slow, after
//! which every new read takes 250 ms.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The read classes (the CRD's query classes) and their share of reads.
pub const READ_CLASSES: [(&str, f64); 5] = [
    ("product", 0.4),
    ("pricing", 0.25),
    ("inventory", 0.2),
    ("fulfillment", 0.1),
    ("productDetail", 0.05),
];
/// Ingest classes with a watermark.
pub const INGEST_CLASSES: [&str; 4] = ["product", "pricing", "inventory", "fulfillment"];
/// Response codes and their share of reads (503 counts against availability).
const CODES: [(&str, f64); 3] = [("200", 0.998), ("404", 0.0019), ("503", 0.0001)];
/// The data plane's read-latency bucket bounds, seconds.
pub const BUCKETS: [f64; 24] = [
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
    0.05, 0.075, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
];
/// Healthy reads: the share at or under each bound (P95 ≈ 40 ms, P99 ≈ 70 ms).
const HEALTHY_CDF: [f64; 24] = [
    0.01, 0.02, 0.04, 0.08, 0.12, 0.2, 0.28, 0.35, 0.5, 0.6, 0.72, 0.8, 0.9, 0.985, 0.993, 0.995,
    0.997, 0.998, 0.9993, 0.9998, 1.0, 1.0, 1.0, 1.0,
];
/// Latency of a read once a pipeline is slow, seconds (falls in the 0.3 bucket).
pub const SLOW_READ: f64 = 0.25;
/// Series per pipeline.
pub const SERIES_PER_PIPELINE: usize =
    READ_CLASSES.len() * (CODES.len() + BUCKETS.len() + 3) + INGEST_CLASSES.len() * 3 + 1;

/// One pipeline's identity and load.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Namespace label.
    pub namespace: String,
    /// Pipeline label.
    pub name: String,
    /// Reads per second.
    pub read_rate: f64,
    /// Accepted records per second.
    pub ingest_rate: f64,
    /// Unix time from which reads are slow.
    pub slow_since: Option<f64>,
    /// Index, to vary the shape between pipelines.
    pub index: usize,
}

/// `n` pipelines named `p0000`… spread over `namespaces` namespaces `bench-00`…
pub fn pipelines(n: usize, namespaces: usize) -> Vec<Pipeline> {
    (0..n)
        .map(|i| Pipeline {
            namespace: namespace_of(i, namespaces),
            name: format!("p{i:04}"),
            read_rate: 50.0 + ((i * 37) % 200) as f64,
            ingest_rate: 100.0 + ((i * 53) % 300) as f64,
            slow_since: None,
            index: i,
        })
        .collect()
}

/// The namespace of pipeline `i`.
pub fn namespace_of(i: usize, namespaces: usize) -> String {
    format!("bench-{:02}", i % namespaces.max(1))
}

/// Counters start from the epoch of the model, far from zero as on long-running workers.
const EPOCH: f64 = 1_700_000_000.0;

impl Pipeline {
    /// Reads done by `t` (unix seconds): (fast, slow).
    fn reads(&self, t: f64) -> (f64, f64) {
        let base = 1e6;
        match self.slow_since {
            Some(s) if t > s => (
                base + self.read_rate * (s - EPOCH),
                self.read_rate * (t - s),
            ),
            _ => (base + self.read_rate * (t - EPOCH), 0.0),
        }
    }

    /// Appends the series of `family` at `t`; `ts` is appended to each sample (backfill) when set.
    fn render_family(&self, out: &mut String, t: f64, ts: Option<i64>, family: Family) {
        let l = format!(
            "namespace=\"{}\",pipeline=\"{}\"",
            self.namespace, self.name
        );
        let end = match ts {
            Some(ts) => format!(" {ts}\n"),
            None => "\n".to_string(),
        };
        let (fast, slow) = self.reads(t);
        match family {
            Family::Requests => {
                for (class, share) in READ_CLASSES {
                    for (code, cshare) in CODES {
                        let v = ((fast + slow) * share * cshare).floor();
                        let _ = write!(
                            out,
                            "tailwarden_read_requests_total{{{l},class=\"{class}\",code=\"{code}\"}} {v}{end}"
                        );
                    }
                }
            }
            Family::Latency => {
                for (class, share) in READ_CLASSES {
                    let (f, s) = ((fast * share).floor(), (slow * share).floor());
                    for (le, cdf) in BUCKETS.iter().zip(HEALTHY_CDF) {
                        let v = (f * cdf).floor() + if *le >= SLOW_READ { s } else { 0.0 };
                        let _ = write!(
                            out,
                            "tailwarden_read_duration_seconds_bucket{{{l},class=\"{class}\",le=\"{}\"}} {v}{end}",
                            le_text(*le)
                        );
                    }
                    let _ = write!(
                        out,
                        "tailwarden_read_duration_seconds_bucket{{{l},class=\"{class}\",le=\"+Inf\"}} {}{end}",
                        f + s
                    );
                    let _ = write!(
                        out,
                        "tailwarden_read_duration_seconds_count{{{l},class=\"{class}\"}} {}{end}",
                        f + s
                    );
                    let _ = write!(
                        out,
                        "tailwarden_read_duration_seconds_sum{{{l},class=\"{class}\"}} {}{end}",
                        f * 0.02 + s * SLOW_READ
                    );
                }
            }
            Family::Watermark => {
                for class in INGEST_CLASSES {
                    let lag = 2.0 + (self.index % 3) as f64;
                    let _ = write!(
                        out,
                        "tailwarden_ingest_watermark_timestamp_seconds{{{l},class=\"{class}\"}} {}{end}",
                        (t - lag).floor()
                    );
                }
            }
            Family::Records => {
                for class in INGEST_CLASSES {
                    let accepted = (5e6 + self.ingest_rate / 4.0 * (t - EPOCH)).floor();
                    let _ = write!(
                        out,
                        "tailwarden_ingest_records_total{{{l},class=\"{class}\",outcome=\"accepted\"}} {accepted}{end}"
                    );
                    let _ = write!(
                        out,
                        "tailwarden_ingest_records_total{{{l},class=\"{class}\",outcome=\"rejected\"}} 10{end}"
                    );
                }
            }
            Family::Queue => {
                let depth = (50.0 + 20.0 * (t / 60.0 + self.index as f64).sin()).round();
                let _ = write!(
                    out,
                    "tailwarden_ingest_queue_depth_records{{{l}}} {depth}{end}"
                );
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Family {
    Requests,
    Latency,
    Watermark,
    Records,
    Queue,
}

const FAMILIES: [(Family, &str, &str); 5] = [
    (Family::Requests, "tailwarden_read_requests", "counter"),
    (
        Family::Latency,
        "tailwarden_read_duration_seconds",
        "histogram",
    ),
    (
        Family::Watermark,
        "tailwarden_ingest_watermark_timestamp_seconds",
        "gauge",
    ),
    (Family::Records, "tailwarden_ingest_records", "counter"),
    (
        Family::Queue,
        "tailwarden_ingest_queue_depth_records",
        "gauge",
    ),
];

/// A bucket bound as the data plane's exporter writes it (`0.12`, `1.0`).
fn le_text(le: f64) -> String {
    let s = le.to_string();
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// The Prometheus text exposition of every pipeline at `t`.
pub fn exposition(pipelines: &[Pipeline], t: f64) -> String {
    let mut out = String::with_capacity(pipelines.len() * SERIES_PER_PIPELINE * 130);
    for (family, name, kind) in FAMILIES {
        // The text format names counter families with their `_total`.
        let name = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for p in pipelines {
            p.render_family(&mut out, t, None, family);
        }
    }
    out
}

/// Writes an OpenMetrics history of `pipelines` at `times` (unix seconds, ascending) to `w`:
/// family by family, each series in time order, as `promtool` requires.
/// Only the families whose name contains `only` are written.
pub fn write_history(
    pipelines: &[Pipeline],
    times: &[i64],
    only: &str,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    for (family, name, kind) in FAMILIES {
        if !name.contains(only) {
            continue;
        }
        writeln!(w, "# TYPE {name} {kind}")?;
        for p in pipelines {
            // Render every time, then regroup the lines by series (the line index within a
            // time's rendering is the series).
            let mut per_time: Vec<String> = Vec::with_capacity(times.len());
            for &t in times {
                let mut s = String::new();
                p.render_family(&mut s, t as f64, Some(t), family);
                per_time.push(s);
            }
            let split: Vec<Vec<&str>> = per_time.iter().map(|s| s.lines().collect()).collect();
            let series = split.first().map_or(0, Vec::len);
            for i in 0..series {
                for lines in &split {
                    writeln!(w, "{}", lines[i])?;
                }
            }
        }
    }
    writeln!(w, "# EOF")
}

/// The live exporter: `GET /metrics` renders every pipeline now; `GET /slow/<i>` makes pipeline
/// `i` slow from now on (for good:
/// turning it back would make the slow buckets' counters go backwards).
pub async fn serve(listener: tokio::net::TcpListener, pipelines: Vec<Pipeline>) {
    let state = Arc::new(Mutex::new(pipelines));
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let now = unix_now();
            let body = if path.starts_with("/metrics") {
                let snapshot = state.lock().unwrap().clone();
                tokio::task::spawn_blocking(move || exposition(&snapshot, now))
                    .await
                    .unwrap_or_default()
            } else if let Some(i) = path
                .strip_prefix("/slow/")
                .and_then(|i| i.parse::<usize>().ok())
            {
                let mut ps = state.lock().unwrap();
                match ps.get_mut(i) {
                    Some(p) => {
                        p.slow_since = Some(now);
                        format!("{} slow since {now}\n", p.name)
                    }
                    None => "no such pipeline\n".into(),
                }
            } else {
                "ok\n".into()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

/// Unix time now, seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
