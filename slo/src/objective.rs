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

/// Whether burn-rate alerts wait (`for`) before they fire. A bounded choice, not a duration: the
/// short window of each pair already filters brief spikes, so the only other policy worth having
/// is Pyrra's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlertHolds {
    /// No `for`: an alert fires at the first evaluation at which both windows burn, as in Sloth
    /// and the SRE workbook.
    #[default]
    None,
    /// Pyrra's holds: `for` half the short window, in whole minutes, at least 1m (2m, 15m, 1h and
    /// 3h for 30 days). Later alerts, and episodes shorter than the hold never fire.
    ShortWindowHalf,
}

impl AlertHolds {
    /// The `for` of the alert whose short window is `short`, if any.
    pub fn hold(self, short: Duration) -> Option<Duration> {
        match self {
            AlertHolds::None => None,
            AlertHolds::ShortWindowHalf => {
                Some(Duration::from_secs((short.as_secs() / 2 / 60).max(1) * 60))
            }
        }
    }
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
    /// How long burn-rate alerts wait before firing.
    pub alert_holds: AlertHolds,
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
            alert_holds: AlertHolds::None,
        }
    }
}
