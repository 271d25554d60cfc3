//! The objectives of one pipeline, in plain data (the operator converts the CRD spec into these).

use std::time::Duration;

/// How the error-budget window moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `window` up to now.
    Rolling,
    /// The current calendar month in UTC.
    CalendarMonth,
}

/// A read-latency objective of one query class.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyObjective {
    /// Query class as labelled in the data plane's metrics (`product`, `productDetail`, …).
    pub query_class: String,
    /// 95th-percentile bound.
    pub p95: Duration,
    /// 99th-percentile bound.
    pub p99: Duration,
}

/// Every objective of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Objectives {
    /// Read latency per query class.
    pub latency: Vec<LatencyObjective>,
    /// Largest acceptable event-time lag.
    pub freshness_max_lag: Duration,
    /// Target share of successful reads, as a fraction (0.9995).
    pub availability_target: f64,
    /// Largest acceptable share of rejected or dead-lettered records, as a fraction (0.0001).
    pub correctness_max_error: f64,
    /// The error-budget window.
    pub window: Duration,
    /// Whether the window rolls or follows calendar months.
    pub window_kind: WindowKind,
}

impl Objectives {
    /// The reference design's SLO table: P95 < 120 ms, P99 < 200 ms, freshness < 10 min,
    /// availability 99.95 % over 30 days, correctness errors < 0.01 %.
    pub fn reference() -> Self {
        let classes = [
            "product",
            "pricing",
            "inventory",
            "fulfillment",
            "productDetail",
        ];
        Self {
            latency: classes
                .iter()
                .map(|c| LatencyObjective {
                    query_class: (*c).into(),
                    p95: Duration::from_millis(120),
                    p99: Duration::from_millis(200),
                })
                .collect(),
            freshness_max_lag: Duration::from_secs(600),
            availability_target: 0.9995,
            correctness_max_error: 0.0001,
            window: Duration::from_secs(30 * 86_400),
            window_kind: WindowKind::Rolling,
        }
    }
}
