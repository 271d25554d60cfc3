//! Which data-plane version to run, given the error-budget freeze: a pure function.
//!
//! While rollouts are frozen a version change in the spec is not rolled out: the workloads keep
//! the template of the version they run, and a rollout already in flight is paused. An override
//! annotation lets an emergency fix through; the reconciler records that in an Event.

/// Annotation that lets a version change through a freeze; its value says why.
pub const OVERRIDE_ANNOTATION: &str = "tailwarden.io/rollout-freeze-override";

/// What the reconciler knows when it plans a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutInput<'a> {
    /// The version the spec asks for.
    pub spec_version: &'a str,
    /// The version the live workloads' templates carry; None before the first apply.
    pub running_version: Option<&'a str>,
    /// Whether the live workloads are still replacing pods.
    pub in_flight: bool,
    /// Whether the error budget freezes rollouts.
    pub frozen: bool,
    /// The override annotation's value, if set.
    pub override_reason: Option<&'a str>,
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    /// The version to render into the workloads.
    pub version: String,
    /// Whether to pause the Deployments' rollout.
    pub paused: bool,
    /// The spec's version is held back by the freeze.
    pub held_back: bool,
    /// A freeze was overridden to let the spec's version through.
    pub overridden: bool,
}

/// Plans the rollout.
pub fn plan(input: &RolloutInput<'_>) -> RolloutPlan {
    let change_pending = input
        .running_version
        .is_some_and(|running| running != input.spec_version);
    let overridden = input.frozen && input.override_reason.is_some();
    if input.frozen && !overridden {
        if change_pending {
            return RolloutPlan {
                version: input
                    .running_version
                    .unwrap_or(input.spec_version)
                    .to_owned(),
                paused: false,
                held_back: true,
                overridden: false,
            };
        }
        return RolloutPlan {
            version: input.spec_version.to_owned(),
            paused: input.in_flight,
            held_back: false,
            overridden: false,
        };
    }
    RolloutPlan {
        version: input.spec_version.to_owned(),
        paused: false,
        held_back: false,
        overridden: overridden && (change_pending || input.in_flight),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        running: Option<&'static str>,
        in_flight: bool,
        frozen: bool,
        over: Option<&'static str>,
    ) -> RolloutInput<'static> {
        RolloutInput {
            spec_version: "2.0",
            running_version: running,
            in_flight,
            frozen,
            override_reason: over,
        }
    }

    #[test]
    fn unfrozen_runs_the_spec_version() {
        let p = plan(&input(Some("1.0"), false, false, None));
        assert_eq!(
            (p.version.as_str(), p.paused, p.held_back),
            ("2.0", false, false)
        );
    }

    #[test]
    fn frozen_holds_the_running_version() {
        let p = plan(&input(Some("1.0"), false, true, None));
        assert_eq!(
            (p.version.as_str(), p.paused, p.held_back),
            ("1.0", false, true)
        );
    }

    #[test]
    fn frozen_pauses_a_rollout_in_flight() {
        let p = plan(&input(Some("2.0"), true, true, None));
        assert_eq!(
            (p.version.as_str(), p.paused, p.held_back),
            ("2.0", true, false)
        );
        assert!(
            !plan(&input(Some("2.0"), false, true, None)).paused,
            "nothing to pause"
        );
    }

    #[test]
    fn a_new_pipeline_starts_on_the_spec_version_even_when_frozen() {
        let p = plan(&input(None, false, true, None));
        assert_eq!((p.version.as_str(), p.held_back), ("2.0", false));
    }

    #[test]
    fn the_override_lets_the_change_through_and_is_reported() {
        let p = plan(&input(Some("1.0"), false, true, Some("CVE fix")));
        assert_eq!(
            (p.version.as_str(), p.paused, p.held_back, p.overridden),
            ("2.0", false, false, true)
        );
        assert!(
            !plan(&input(Some("2.0"), false, true, Some("x"))).overridden,
            "nothing to override"
        );
    }
}
