//! Rollout freeze and graceful degradation: what the error budget allows right now.
//!
//! Both gates hold their previous state when the data to decide is missing, so an outage of
//! Prometheus neither freezes a healthy pipeline nor unfreezes an exhausted one. Unfreezing needs
//! the budget to climb a little above the threshold (hysteresis), so a budget hovering at the
//! threshold does not flip rollouts on and off every evaluation.

/// Budget share above a threshold needed before a gate opens again.
pub const HYSTERESIS: f64 = 0.02;

/// What the gates are decided from.
#[derive(Debug, Clone, PartialEq)]
pub struct GateInput {
    /// Smallest remaining budget across the pipeline's SLOs, as a fraction; None when unknown.
    pub budget_remaining: Option<f64>,
    /// Whether a page-level burn-rate alert condition holds; None when unknown.
    pub page_burn: Option<bool>,
    /// Rollouts freeze below this remaining budget (fraction).
    pub freeze_below: f64,
    /// Non-critical work pauses below this remaining budget (fraction).
    pub degrade_below: f64,
    /// The freeze state before this evaluation.
    pub was_frozen: bool,
    /// The degradation state before this evaluation.
    pub was_degraded: bool,
}

/// The state of one gate and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateState {
    /// Whether the gate is closed (rollouts frozen, or non-critical work paused).
    pub closed: bool,
    /// Why, in words, with the numbers.
    pub reason: String,
    /// Machine-readable reason, for conditions.
    pub code: GateCode,
}

/// Why a gate is in its state; [`GateCode::as_str`] is the reason of the gate's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateCode {
    /// The budget or the burn state is unknown: the gate keeps its previous state.
    MissingData,
    /// A page-level burn-rate alert is active.
    FastBurn,
    /// The budget left is below the gate's threshold (or not yet back above it plus hysteresis).
    BudgetBelowThreshold,
    /// The budget left is above the gate's threshold.
    BudgetHealthy,
}

impl GateCode {
    /// The condition reason: `MissingData`, `FastBurn`, `BudgetBelowThreshold`, `BudgetHealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            GateCode::MissingData => "MissingData",
            GateCode::FastBurn => "FastBurn",
            GateCode::BudgetBelowThreshold => "BudgetBelowThreshold",
            GateCode::BudgetHealthy => "BudgetHealthy",
        }
    }
}

impl std::fmt::Display for GateCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Both gates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gates {
    /// Version changes are held back.
    pub freeze: GateState,
    /// Non-critical work is paused.
    pub degrade: GateState,
}

/// Decides both gates.
pub fn decide(input: &GateInput) -> Gates {
    Gates {
        freeze: gate(
            input,
            input.freeze_below,
            input.was_frozen,
            "rollouts",
            true,
        ),
        degrade: gate(
            input,
            input.degrade_below,
            input.was_degraded,
            "non-critical work",
            false,
        ),
    }
}

fn gate(
    input: &GateInput,
    below: f64,
    was_closed: bool,
    what: &str,
    page_closes: bool,
) -> GateState {
    let pct = |f: f64| format!("{:.1}%", f * 100.0);
    let (Some(remaining), Some(page)) = (input.budget_remaining, input.page_burn) else {
        return GateState {
            closed: was_closed,
            reason: format!(
                "SLI data missing: keeping {what} {} until the budget can be computed",
                if was_closed { "held back" } else { "allowed" }
            ),
            code: GateCode::MissingData,
        };
    };
    if page && page_closes {
        return GateState {
            closed: true,
            reason: format!(
                "a page-level burn-rate alert is active (budget {} left): {what} held back",
                pct(remaining)
            ),
            code: GateCode::FastBurn,
        };
    }
    let threshold = if was_closed {
        below + HYSTERESIS
    } else {
        below
    };
    if remaining < threshold {
        GateState {
            closed: true,
            reason: if was_closed && remaining >= below {
                format!(
                    "budget {} left has not yet recovered to {} ({} + hysteresis): {what} held back",
                    pct(remaining),
                    pct(threshold),
                    pct(below)
                )
            } else {
                format!(
                    "budget {} left is below the {} threshold: {what} held back",
                    pct(remaining),
                    pct(below)
                )
            },
            code: GateCode::BudgetBelowThreshold,
        }
    } else {
        GateState {
            closed: false,
            reason: format!(
                "budget {} left is above the {} threshold: {what} allowed",
                pct(remaining),
                pct(below)
            ),
            code: GateCode::BudgetHealthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(remaining: Option<f64>, page: Option<bool>, was: bool) -> GateInput {
        GateInput {
            budget_remaining: remaining,
            page_burn: page,
            freeze_below: 0.25,
            degrade_below: 0.10,
            was_frozen: was,
            was_degraded: was,
        }
    }

    #[test]
    fn freezes_below_threshold_and_on_fast_burn() {
        assert!(decide(&input(Some(0.20), Some(false), false)).freeze.closed);
        assert!(
            !decide(&input(Some(0.20), Some(false), false))
                .degrade
                .closed
        );
        assert!(
            decide(&input(Some(0.05), Some(false), false))
                .degrade
                .closed
        );
        let fast = decide(&input(Some(0.90), Some(true), false));
        assert!(fast.freeze.closed && fast.freeze.code == GateCode::FastBurn);
        assert!(
            !fast.degrade.closed,
            "a fast burn alone does not pause work"
        );
        assert!(!decide(&input(Some(0.90), Some(false), false)).freeze.closed);
    }

    #[test]
    fn unfreezes_only_after_recovering_past_the_hysteresis() {
        assert!(decide(&input(Some(0.26), Some(false), true)).freeze.closed);
        assert!(!decide(&input(Some(0.28), Some(false), true)).freeze.closed);
        assert!(!decide(&input(Some(0.26), Some(false), false)).freeze.closed);
    }

    #[test]
    fn codes_are_the_condition_reasons() {
        let all = [
            GateCode::MissingData,
            GateCode::FastBurn,
            GateCode::BudgetBelowThreshold,
            GateCode::BudgetHealthy,
        ];
        assert_eq!(
            all.map(GateCode::as_str),
            [
                "MissingData",
                "FastBurn",
                "BudgetBelowThreshold",
                "BudgetHealthy"
            ]
        );
        assert_eq!(GateCode::FastBurn.to_string(), "FastBurn");
    }

    #[test]
    fn missing_data_holds_the_previous_state() {
        for was in [true, false] {
            for (r, p) in [(None, Some(false)), (Some(0.01), None), (None, None)] {
                let g = decide(&input(r, p, was));
                assert_eq!(g.freeze.closed, was);
                assert_eq!(g.degrade.closed, was);
                assert_eq!(g.freeze.code, GateCode::MissingData);
            }
        }
    }

    proptest! {
        #[test]
        fn never_open_below_threshold_and_never_closed_well_above(r in 0.0f64..1.0, was: bool) {
            let g = decide(&input(Some(r), Some(false), was));
            if r < 0.25 { prop_assert!(g.freeze.closed); }
            if r >= 0.25 + HYSTERESIS { prop_assert!(!g.freeze.closed); }
            if r < 0.10 { prop_assert!(g.degrade.closed); }
        }

        #[test]
        fn noise_inside_the_hysteresis_band_never_flips(start in 0.2f64..0.3, noise in proptest::collection::vec(-0.009f64..0.009, 1..50)) {
            let mut was = decide(&input(Some(start), Some(false), false)).freeze.closed;
            let mut flips = 0;
            let mut r = start;
            for n in noise {
                r = (r + n).clamp(0.0, 1.0);
                let now = decide(&input(Some(r), Some(false), was)).freeze.closed;
                if now != was { flips += 1; }
                was = now;
            }
            // The band is 2 points wide; drifts below 1 point per step can cross it at most
            // a few times over 50 steps, each crossing needing the full band.
            prop_assert!(flips <= 50 / 2);
        }
    }
}
