//! Multi-window, multi-burn-rate alerting (Google SRE workbook, ch. 5), scaled to any SLO window.
//!
//! For a 30-day window: page on 14.4x over 1h (confirmed by 5m) or 6x over 6h (30m); ticket on 3x
//! over 1d (2h) or 1x over 3d (6h). Each factor spends a fixed share of the budget in its long
//! window (2 %, 5 %, 10 %, 10 %), so for another SLO window the long windows scale with it and
//! the factors stay: the same share of the budget triggers the same alert.

use std::time::Duration;

use crate::budget::burn_rate;

/// Who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Look at it in working hours.
    Ticket,
}

impl Severity {
    /// Label value, as Sloth writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One alert: both windows must burn faster than `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindow {
    /// The confirming short window (1/12 of the long one).
    pub short: Duration,
    /// The long window.
    pub long: Duration,
    /// Burn-rate threshold.
    pub factor: f64,
    /// Page or ticket.
    pub severity: Severity,
}

impl BurnWindow {
    /// Whether this alert's condition holds for an SLO of `target`: both windows' error ratios
    /// burn the budget faster than `factor`.
    pub fn fires(&self, target: f64, short_ratio: f64, long_ratio: f64) -> bool {
        self.fires_at(
            burn_rate(target, short_ratio),
            burn_rate(target, long_ratio),
        )
    }

    /// Whether this alert's condition holds for the burn rates of its two windows.
    pub fn fires_at(&self, short_rate: f64, long_rate: f64) -> bool {
        short_rate > self.factor && long_rate > self.factor
    }
}

const DAY: u64 = 86_400;
const REFERENCE_WINDOW: u64 = 30 * DAY;

/// The four window pairs for an SLO over `slo_window`, fastest first.
pub fn windows(slo_window: Duration) -> [BurnWindow; 4] {
    let scale = |secs: u64| {
        // Whole minutes, so the windows are valid PromQL ranges.
        let scaled =
            (secs as u128 * slo_window.as_secs() as u128 / REFERENCE_WINDOW as u128) as u64;
        Duration::from_secs((scaled / 60).max(1) * 60)
    };
    let pair = |short: u64, long: u64, factor, severity| BurnWindow {
        short: scale(short),
        long: scale(long),
        factor,
        severity,
    };
    [
        pair(5 * 60, 3600, 14.4, Severity::Page),
        pair(30 * 60, 6 * 3600, 6.0, Severity::Page),
        pair(2 * 3600, DAY, 3.0, Severity::Ticket),
        pair(6 * 3600, 3 * DAY, 1.0, Severity::Ticket),
    ]
}

/// Every distinct window the alerts need, shortest first.
pub fn distinct_windows(slo_window: Duration) -> Vec<Duration> {
    let mut all: Vec<Duration> = windows(slo_window)
        .iter()
        .flat_map(|w| [w.short, w.long])
        .collect();
    all.sort();
    all.dedup();
    all
}

/// Formats a duration as a Prometheus range: `5m`, `1h`, `1d`, `3d`.
pub fn prom_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [("w", 7 * DAY), ("d", DAY), ("h", 3600), ("m", 60)] {
        if s >= len && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_gives_the_workbook_pairs() {
        let w = windows(Duration::from_secs(30 * DAY));
        let shown: Vec<_> = w
            .iter()
            .map(|w| {
                (
                    prom_duration(w.short),
                    prom_duration(w.long),
                    w.factor,
                    w.severity,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("5m".into(), "1h".into(), 14.4, Severity::Page),
                ("30m".into(), "6h".into(), 6.0, Severity::Page),
                ("2h".into(), "1d".into(), 3.0, Severity::Ticket),
                ("6h".into(), "3d".into(), 1.0, Severity::Ticket),
            ]
        );
    }

    #[test]
    fn other_windows_scale_and_keep_the_budget_share() {
        // 28 days, as Pyrra does: 1h becomes 56m, 3d becomes 2d 19h 12m.
        let w = windows(Duration::from_secs(28 * DAY));
        assert_eq!(w[0].long, Duration::from_secs(56 * 60));
        assert_eq!(
            w[3].long,
            Duration::from_secs(2 * DAY + 19 * 3600 + 12 * 60)
        );
        // The long window of the page alert spends 2 % of any budget: 14.4 * 1h / 30d.
        for days in [7u64, 28, 30, 90] {
            let slo = Duration::from_secs(days * DAY);
            let w = windows(slo)[0];
            let share = w.factor * w.long.as_secs_f64() / slo.as_secs_f64();
            assert!((share - 0.02).abs() < 0.001, "{days}d: {share}");
        }
    }

    #[test]
    fn a_pair_fires_only_when_both_windows_burn_faster_than_its_factor() {
        let page = windows(Duration::from_secs(30 * DAY))[0];
        // 99.9 %: 14.4x is an error ratio of 1.44 %.
        assert!(page.fires(0.999, 0.015, 0.015));
        assert!(
            !page.fires(0.999, 0.015, 0.0144),
            "exactly the factor does not fire"
        );
        assert!(!page.fires(0.999, 0.0, 0.5), "the short window confirms");
        assert!(page.fires(1.0, 0.001, 0.001), "no budget: any error burns");
    }

    #[test]
    fn distinct_windows_are_sorted_and_unique() {
        let d = distinct_windows(Duration::from_secs(30 * DAY));
        let names: Vec<_> = d.iter().map(|d| prom_duration(*d)).collect();
        assert_eq!(names, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    }
}
