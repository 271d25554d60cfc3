//! A scrape target that stands in for a data-plane worker: it serves the data plane's metrics for
//! one pipeline, with counters that advance with real time at rates the test sets. Prometheus
//! scrapes it, so the SLO engine sees exactly the traffic the test describes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

/// What the simulated workers do right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Successful reads per second.
    pub ok_per_sec: f64,
    /// Failed (5xx) reads per second.
    pub errors_per_sec: f64,
    /// Whether reads are slow (300 ms) rather than fast (10 ms).
    pub slow_reads: bool,
    /// Ingest backlog growth per second (negative drains it, floored at zero).
    pub backlog_growth_per_sec: f64,
    /// Records ingested per second.
    pub ingested_per_sec: f64,
}

impl Traffic {
    /// Healthy traffic: fast, no errors, no backlog.
    pub fn healthy() -> Self {
        Self {
            ok_per_sec: 200.0,
            errors_per_sec: 0.0,
            slow_reads: false,
            backlog_growth_per_sec: 0.0,
            ingested_per_sec: 500.0,
        }
    }
}

#[derive(Debug)]
struct Counters {
    traffic: Traffic,
    at: Instant,
    ok: f64,
    errors: f64,
    fast: f64,
    slow: f64,
    ingested: f64,
    backlog: f64,
}

impl Counters {
    fn advance(&mut self) {
        let dt = self.at.elapsed().as_secs_f64();
        self.at = Instant::now();
        let t = self.traffic;
        self.ok += t.ok_per_sec * dt;
        self.errors += t.errors_per_sec * dt;
        let reads = (t.ok_per_sec + t.errors_per_sec) * dt;
        if t.slow_reads {
            self.slow += reads;
        } else {
            self.fast += reads;
        }
        self.ingested += t.ingested_per_sec * dt;
        self.backlog = (self.backlog + t.backlog_growth_per_sec * dt).max(0.0);
    }
}

/// A running target; it stops when dropped.
pub struct ScrapeTarget {
    /// `host:port` to scrape.
    pub address: SocketAddr,
    counters: Arc<Mutex<Counters>>,
    server: tokio::task::JoinHandle<()>,
}

impl ScrapeTarget {
    /// Serves metrics of pipeline `namespace/pipeline` for every query class.
    pub async fn start(namespace: &str, pipeline: &str) -> Self {
        // Baselines keep every counter far from zero, as on a long-running worker.
        let counters = Arc::new(Mutex::new(Counters {
            traffic: Traffic::healthy(),
            at: Instant::now(),
            ok: 1e6,
            errors: 1e3,
            fast: 1e6,
            slow: 1e3,
            ingested: 1e6,
            backlog: 0.0,
        }));
        let labels = format!("namespace=\"{namespace}\",pipeline=\"{pipeline}\"");
        let app = Router::new()
            .route("/metrics", get(render))
            .with_state((counters.clone(), Arc::new(labels)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            counters,
            server,
        }
    }

    /// Changes the traffic from now on.
    pub fn set(&self, traffic: Traffic) {
        let mut c = self.counters.lock().unwrap();
        c.advance();
        c.traffic = traffic;
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        self.server.abort();
    }
}

const CLASSES: [&str; 5] = [
    "product",
    "pricing",
    "inventory",
    "fulfillment",
    "productDetail",
];

async fn render(State((counters, labels)): State<(Arc<Mutex<Counters>>, Arc<String>)>) -> String {
    let mut c = counters.lock().unwrap();
    c.advance();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let n = CLASSES.len() as f64;
    let mut out = String::new();
    out.push_str("# TYPE tailwarden_read_requests_total counter\n");
    out.push_str("# TYPE tailwarden_read_duration_seconds histogram\n");
    out.push_str("# TYPE tailwarden_ingest_watermark_timestamp_seconds gauge\n");
    for class in CLASSES {
        let l = format!("{labels},class=\"{class}\"");
        out.push_str(&format!(
            "tailwarden_read_requests_total{{{l},code=\"200\"}} {}\n",
            c.ok / n
        ));
        out.push_str(&format!(
            "tailwarden_read_requests_total{{{l},code=\"500\"}} {}\n",
            c.errors / n
        ));
        let (fast, slow) = (c.fast / n, c.slow / n);
        for (le, count) in [
            ("0.01", fast),
            ("0.08", fast),
            ("0.12", fast),
            ("0.2", fast),
            ("0.3", fast + slow),
            ("+Inf", fast + slow),
        ] {
            out.push_str(&format!(
                "tailwarden_read_duration_seconds_bucket{{{l},le=\"{le}\"}} {count}\n"
            ));
        }
        out.push_str(&format!(
            "tailwarden_read_duration_seconds_count{{{l}}} {}\n",
            fast + slow
        ));
        out.push_str(&format!(
            "tailwarden_read_duration_seconds_sum{{{l}}} {}\n",
            fast * 0.01 + slow * 0.3
        ));
        out.push_str(&format!(
            "tailwarden_ingest_watermark_timestamp_seconds{{{l}}} {}\n",
            now - 1.0
        ));
    }
    out.push_str("# TYPE tailwarden_ingest_records_total counter\n");
    out.push_str(&format!(
        "tailwarden_ingest_records_total{{{labels},class=\"product\",outcome=\"accepted\"}} {}\n",
        c.ingested
    ));
    out.push_str("# TYPE tailwarden_ingest_queue_depth_records gauge\n");
    out.push_str(&format!(
        "tailwarden_ingest_queue_depth_records{{{labels}}} {}\n",
        c.backlog
    ));
    out
}
