//! Whether workers may be rolled, given the error budget's freeze and the freeze annotations: a
//! pure function.
//!
//! While rollouts are frozen nothing that restarts workers rolls out (version, config, pod
//! template): the workloads keep what they run, and a rollout already in flight is paused. Replica
//! changes and degradation still apply, as they are the remedy. A manual freeze holds whatever the
//! budget says; an override lets rollouts through the budget's freeze only.

/// What the reconciler knows when it plans a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutInput<'a> {
    /// The version the spec asks for.
    pub spec_version: &'a str,
    /// The version the live workloads' templates carry; None before the first apply.
    pub running_version: Option<&'a str>,
    /// Whether the live workloads are still replacing pods.
    pub in_flight: bool,
    /// Whether the error budget's freeze is enforced.
    pub budget_frozen: bool,
    /// Whether a manual freeze annotation is in effect.
    pub manual_freeze: bool,
    /// Whether a freeze override annotation is in effect.
    pub override_active: bool,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    /// The version to render into the workloads.
    pub version: String,
    /// Whether to pause the Deployments' rollout.
    pub paused: bool,
    /// Rollouts are frozen: the workloads keep their live pod templates and config.
    pub hold: bool,
    /// The override lets rollouts through the budget's freeze.
    pub overridden: bool,
}

/// Plans the rollout.
pub fn plan(input: &RolloutInput<'_>) -> RolloutPlan {
    let overridden = input.budget_frozen && input.override_active && !input.manual_freeze;
    let hold = input.manual_freeze || (input.budget_frozen && !input.override_active);
    if hold {
        return RolloutPlan {
            version: input
                .running_version
                .unwrap_or(input.spec_version)
                .to_owned(),
            paused: input.in_flight,
            hold,
            overridden,
        };
    }
    RolloutPlan {
        version: input.spec_version.to_owned(),
        paused: false,
        hold,
        overridden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(running: Option<&'static str>, in_flight: bool) -> RolloutInput<'static> {
        RolloutInput {
            spec_version: "2.0",
            running_version: running,
            in_flight,
            budget_frozen: false,
            manual_freeze: false,
            override_active: false,
        }
    }

    fn budget_frozen(i: RolloutInput<'static>) -> RolloutInput<'static> {
        RolloutInput {
            budget_frozen: true,
            ..i
        }
    }

    #[test]
    fn unfrozen_runs_the_spec_version() {
        let p = plan(&input(Some("1.0"), false));
        assert_eq!(
            (p.version.as_str(), p.paused, p.hold),
            ("2.0", false, false)
        );
    }

    #[test]
    fn frozen_holds_the_running_version() {
        let p = plan(&budget_frozen(input(Some("1.0"), false)));
        assert_eq!((p.version.as_str(), p.paused, p.hold), ("1.0", false, true));
    }

    #[test]
    fn frozen_pauses_a_rollout_in_flight() {
        let p = plan(&budget_frozen(input(Some("2.0"), true)));
        assert_eq!((p.version.as_str(), p.paused, p.hold), ("2.0", true, true));
        assert!(
            !plan(&budget_frozen(input(Some("2.0"), false))).paused,
            "nothing to pause"
        );
    }

    #[test]
    fn a_new_pipeline_starts_on_the_spec_version_even_when_frozen() {
        let p = plan(&budget_frozen(input(None, false)));
        assert_eq!(p.version.as_str(), "2.0");
    }

    #[test]
    fn the_override_lets_changes_through_the_budgets_freeze_only() {
        let over = RolloutInput {
            override_active: true,
            ..budget_frozen(input(Some("1.0"), false))
        };
        let p = plan(&over);
        assert_eq!(
            (p.version.as_str(), p.paused, p.hold, p.overridden),
            ("2.0", false, false, true)
        );
        let manual = RolloutInput {
            manual_freeze: true,
            ..over
        };
        let p = plan(&manual);
        assert_eq!(
            (p.version.as_str(), p.hold, p.overridden),
            ("1.0", true, false),
            "a manual freeze is lifted by removing it, not by the override"
        );
        let idle = RolloutInput {
            override_active: true,
            ..input(Some("1.0"), false)
        };
        assert!(
            !plan(&idle).overridden,
            "an override without a budget freeze overrides nothing"
        );
    }

    #[test]
    fn a_manual_freeze_holds_with_a_healthy_budget() {
        let p = plan(&RolloutInput {
            manual_freeze: true,
            ..input(Some("1.0"), true)
        });
        assert_eq!((p.version.as_str(), p.paused, p.hold), ("1.0", true, true));
    }
}
