//! The objectives of one pipeline, in plain data (the operator converts the CRD spec into these),
//! and the SLOs they make.

use std::time::Duration;

use crate::promql;

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

/// What an SLO measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// Reads answered with a 5xx.
    Availability,
    /// Reads of a query class slower than a bucket boundary.
    Latency {
        /// Query class label.
        class: String,
        /// Latency bound; must be a bucket boundary of the read histogram.
        threshold: Duration,
    },
    /// Time during which the event-time lag exceeded `max_lag`.
    Freshness {
        /// Largest acceptable lag.
        max_lag: Duration,
    },
    /// Rejected records against accepted and rejected ones.
    Correctness,
}

/// One SLO of a pipeline, as the rules and the operator see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// The `slo` label value: `availability`, `latency-product-p99`, `freshness`, `correctness`.
    pub name: String,
    /// Target share of good events (or of good time, for freshness).
    pub target: f64,
    /// What is measured.
    pub sli: Sli,
}

impl Slo {
    /// The PromQL error ratio of this SLO over `window`, as the rules record it: straight from
    /// the data plane's metrics, except freshness beyond 5m, which averages its 5m recording.
    pub fn error_ratio(&self, selector: &str, window: Duration, grouping: &str) -> String {
        match &self.sli {
            Sli::Freshness { .. } if window != promql::FRESHNESS_BASE_WINDOW => {
                promql::freshness_error_ratio(selector, window)
            }
            _ => self.error_ratio_without_rules(selector, window, grouping),
        }
    }

    /// The error ratio from the data plane's metrics alone, for when the generated rules may be
    /// missing. Freshness then runs a subquery over the whole window, which is costly for long
    /// windows.
    pub fn error_ratio_without_rules(
        &self,
        selector: &str,
        window: Duration,
        grouping: &str,
    ) -> String {
        match &self.sli {
            Sli::Availability => promql::availability_error_ratio(selector, window, grouping),
            Sli::Latency { class, threshold } => {
                promql::latency_error_ratio(selector, Some(class), *threshold, window, grouping)
            }
            Sli::Freshness { max_lag } => {
                promql::freshness_sampled_error_ratio(selector, *max_lag, window, grouping)
            }
            Sli::Correctness => promql::correctness_error_ratio(selector, window, grouping),
        }
    }

    /// Share of events allowed to be bad.
    pub fn error_budget(&self) -> f64 {
        1.0 - self.target
    }
}

/// The SLOs of a pipeline. Each latency bound pNN < t becomes "NN % of reads under t".
/// Objectives carry no freshness target, so freshness is held to the availability target:
/// stale data is a form of unavailability.
pub fn slos(objectives: &Objectives) -> Vec<Slo> {
    let mut slos = vec![Slo {
        name: "availability".into(),
        target: objectives.availability_target,
        sli: Sli::Availability,
    }];
    for l in &objectives.latency {
        for (pct, threshold) in [(95, l.p95), (99, l.p99)] {
            slos.push(Slo {
                name: format!("latency-{}-p{pct}", l.query_class),
                target: f64::from(pct) / 100.0,
                sli: Sli::Latency {
                    class: l.query_class.clone(),
                    threshold,
                },
            });
        }
    }
    slos.push(Slo {
        name: promql::FRESHNESS_SLO.into(),
        target: objectives.availability_target,
        sli: Sli::Freshness {
            max_lag: objectives.freshness_max_lag,
        },
    });
    slos.push(Slo {
        name: "correctness".into(),
        target: 1.0 - objectives.correctness_max_error,
        sli: Sli::Correctness,
    });
    slos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_slos_and_targets() {
        let slos = slos(&Objectives::reference());
        let names: Vec<_> = slos.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 13);
        assert_eq!(
            names[..3],
            ["availability", "latency-product-p95", "latency-product-p99"]
        );
        assert_eq!(names[11..], ["freshness", "correctness"]);
        let p99 = &slos[2];
        assert_eq!(p99.target, 0.99);
        assert_eq!(
            p99.sli,
            Sli::Latency {
                class: "product".into(),
                threshold: Duration::from_millis(200)
            }
        );
        assert!((slos[12].error_budget() - 0.0001).abs() < 1e-12);
        assert_eq!(slos[11].target, 0.9995);
    }
}
