//! Error budgets: budget = 1 − target; how much of it a measured error ratio consumes, and the
//! budget picture of a pipeline's SLOs from their measured error ratios.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::objective::Slo;
use crate::window::page_pairs;

/// The state of an error budget over its window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Share of the budget spent, 0 upwards (above 1 when overspent).
    pub consumed: f64,
    /// Share left, 1 − consumed, clamped at 0.
    pub remaining: f64,
}

/// The budget of `target` (a fraction such as 0.9995) when the window's error ratio is
/// `error_ratio`.
pub fn budget(target: f64, error_ratio: f64) -> Budget {
    let consumed = burn_rate(target, error_ratio);
    Budget {
        consumed,
        remaining: (1.0 - consumed).max(0.0),
    }
}

/// How fast the budget burns: 1 spends exactly the budget over the window. An SLO of 100 %
/// has no budget, so any error burns infinitely fast.
pub fn burn_rate(target: f64, error_ratio: f64) -> f64 {
    let allowed = 1.0 - target;
    if allowed <= 0.0 {
        return if error_ratio > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
    }
    error_ratio.max(0.0) / allowed
}

/// Error ratios per SLO name and window, as read from Prometheus. Absent entries are missing data.
pub type ErrorRatios = BTreeMap<String, BTreeMap<Duration, f64>>;

/// The budget picture of a pipeline's SLOs at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment<'a> {
    /// The SLO with the least budget left, with that share (the first of equals).
    pub worst: Option<(&'a Slo, f64)>,
    /// The least budget left across the SLOs; `None` when any SLO's budget window has no data.
    pub remaining: Option<f64>,
    /// The budget left of each SLO whose budget window has data, in the SLOs' order.
    pub per_slo: Vec<(&'a Slo, f64)>,
    /// Whether a page-level burn-rate pair fires; `None` when a pair has no data and none
    /// fired before it.
    pub page_burn: Option<bool>,
    /// The SLOs without an error ratio over the budget window.
    pub unknown: Vec<&'a Slo>,
}

/// Judges `slos` on their error ratios: the budget over `budget_window`, and a fast burn on the
/// page-alert pairs of `period`. Missing data never counts as good or bad: it makes the budget
/// unknown, and the page burn unknown unless another pair already proves one.
pub fn assess<'a>(
    slos: &'a [Slo],
    ratios: &ErrorRatios,
    period: Duration,
    budget_window: Duration,
) -> Assessment<'a> {
    let mut worst: Option<(&Slo, f64)> = None;
    let mut unknown = Vec::new();
    let mut page_burn = Some(false);
    let mut per_slo = Vec::new();
    for slo in slos {
        let by_window = ratios.get(&slo.name);
        let ratio = |w: &Duration| by_window.and_then(|r| r.get(w)).copied();
        match ratio(&budget_window) {
            Some(r) => {
                let b = budget(slo.target, r);
                per_slo.push((slo, b.remaining));
                if worst.is_none_or(|(_, w)| b.remaining < w) {
                    worst = Some((slo, b.remaining));
                }
            }
            None => unknown.push(slo),
        }
        for pair in page_pairs(period) {
            match (ratio(&pair.short), ratio(&pair.long)) {
                (Some(s), Some(l)) => {
                    if pair.fires(slo.target, s, l) {
                        page_burn = page_burn.map(|_| true);
                    }
                }
                // Unknown unless another pair already proves a fast burn.
                _ if page_burn == Some(true) => {}
                _ => page_burn = None,
            }
        }
    }
    Assessment {
        worst,
        remaining: unknown
            .is_empty()
            .then(|| per_slo.iter().map(|(_, r)| *r).fold(1.0, f64::min)),
        per_slo,
        page_burn,
        unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_computed_examples() {
        // 99.95 % over 30 days allows 0.05 % errors; 0.025 % measured spends half the budget.
        let b = budget(0.9995, 0.00025);
        assert!((b.consumed - 0.5).abs() < 1e-9, "{b:?}");
        assert!((b.remaining - 0.5).abs() < 1e-9, "{b:?}");
        // A 30-minute full outage in 30 days: 30 / 43200 = 0.000694 error ratio, 1.389x budget.
        let b = budget(0.9995, 30.0 / 43_200.0);
        assert!((b.consumed - 1.388_888_9).abs() < 1e-6, "{b:?}");
        assert_eq!(b.remaining, 0.0);
        // 14.4x burn: the 5m/1h page threshold of a 30-day SLO.
        assert!((burn_rate(0.999, 0.0144) - 14.4).abs() < 1e-9);
    }

    #[test]
    fn a_perfect_target_has_no_budget() {
        assert_eq!(burn_rate(1.0, 0.0), 0.0);
        assert_eq!(burn_rate(1.0, 0.001), f64::INFINITY);
    }

    /// Every reference SLO at `ratio` over the page windows and the 30-day period.
    fn ratios(ratio: f64) -> ErrorRatios {
        let period = Duration::from_secs(30 * 86_400);
        let mut windows = crate::window::page_windows(period);
        windows.push(period);
        crate::objective::slos(&crate::objective::Objectives::reference())
            .into_iter()
            .map(|slo| (slo.name, windows.iter().map(|w| (*w, ratio)).collect()))
            .collect()
    }

    #[test]
    fn assess_finds_the_worst_budget_and_a_fast_burn() {
        let slos = crate::objective::slos(&crate::objective::Objectives::reference());
        let period = Duration::from_secs(30 * 86_400);
        let a = assess(&slos, &ratios(0.0), period, period);
        assert_eq!((a.remaining, a.page_burn), (Some(1.0), Some(false)));
        assert!(a.unknown.is_empty());
        // Availability at half its budget over the period: the worst, and no burn.
        let mut r = ratios(0.0);
        r.get_mut("availability").unwrap().insert(period, 0.00025);
        let a = assess(&slos, &r, period, period);
        assert_eq!(a.worst.map(|(s, _)| s.name.as_str()), Some("availability"));
        assert!((a.remaining.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(a.per_slo.len(), slos.len(), "every SLO's own budget");
        assert!((a.per_slo[0].1 - 0.5).abs() < 1e-9, "{:?}", a.per_slo[0]);
        assert!(a.per_slo[1..].iter().all(|(_, r)| *r == 1.0));
        // Correctness burning 20x over every window: a page burn, its budget gone.
        let mut r = ratios(0.0);
        for v in r.get_mut("correctness").unwrap().values_mut() {
            *v = 0.0001 * 20.0;
        }
        let a = assess(&slos, &r, period, period);
        assert_eq!((a.remaining, a.page_burn), (Some(0.0), Some(true)));
    }

    #[test]
    fn assess_never_reads_missing_data_as_good() {
        let slos = crate::objective::slos(&crate::objective::Objectives::reference());
        let period = Duration::from_secs(30 * 86_400);
        let mut r = ratios(0.0);
        r.remove("freshness");
        let a = assess(&slos, &r, period, period);
        assert_eq!((a.remaining, a.page_burn), (None, None));
        let names: Vec<_> = a.unknown.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["freshness"]);
        assert!(
            a.per_slo.iter().all(|(s, _)| s.name != "freshness"),
            "an SLO without data has no budget, not a full one"
        );
        // A burn proven on an earlier SLO stays proven.
        for v in r.get_mut("availability").unwrap().values_mut() {
            *v = 0.0005 * 20.0;
        }
        assert_eq!(assess(&slos, &r, period, period).page_burn, Some(true));
    }

    proptest! {
        #[test]
        fn remaining_plus_consumed_is_one_until_overspent(target in 0.5f64..0.99999, ratio in 0.0f64..1.0) {
            let b = budget(target, ratio);
            prop_assert!(b.remaining >= 0.0 && b.remaining <= 1.0);
            if b.consumed <= 1.0 {
                prop_assert!((b.consumed + b.remaining - 1.0).abs() < 1e-9);
            } else {
                prop_assert_eq!(b.remaining, 0.0);
            }
        }

        #[test]
        fn more_errors_never_leave_more_budget(target in 0.5f64..0.99999, a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(budget(target, hi).remaining <= budget(target, lo).remaining);
        }
    }
}
