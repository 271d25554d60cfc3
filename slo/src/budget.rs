//! Error budgets: budget = 1 − target; how much of it a measured error ratio consumes.

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
