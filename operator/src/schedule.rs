//! When the SLO engine evaluates a pipeline: at the pipeline's own
//! `spec.autoscaling.evaluationInterval`, on the engine's ticks (`--evaluation-interval`), which
//! are the finest granularity. Pure, so the engine's clock (the `now` of a pass) drives it.

use std::time::Duration;

use jiff::Timestamp;
use tailwarden_crds::RetailPipelineSpec;

use crate::spec_error::{SpecError, duration};

/// The pipeline's own evaluation interval.
pub fn interval(spec: &RetailPipelineSpec) -> Result<Duration, SpecError> {
    duration(
        "spec.autoscaling.evaluationInterval",
        &spec.autoscaling.evaluation_interval,
    )
}

/// Whether a pipeline last evaluated at `last` (`None`: never) is due on the tick at `now`. Ticks
/// jitter, so an interval counts as elapsed half a tick early: an interval equal to the tick is
/// due on every tick, and one shorter than the tick too.
pub fn is_due(last: Option<Timestamp>, now: Timestamp, interval: Duration, tick: Duration) -> bool {
    let Some(last) = last else {
        return true;
    };
    // A wall clock stepped back must not stall the pipeline until it catches up.
    let Ok(elapsed) = Duration::try_from(now.duration_since(last)) else {
        return true;
    };
    elapsed + tick / 2 >= interval
}

/// How often [`is_due`] actually lets a pipeline be evaluated: the whole number of ticks (at least
/// one) its interval rounds to.
pub fn cadence(interval: Duration, tick: Duration) -> Duration {
    if tick.is_zero() {
        return interval;
    }
    let ticks = interval
        .saturating_sub(tick / 2)
        .as_nanos()
        .div_ceil(tick.as_nanos())
        .max(1);
    tick * u32::try_from(ticks).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::spec;

    const TICK: Duration = Duration::from_secs(15);

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    /// The ticks (of `TICK`, with `jitter` seconds added to odd ones) on which a pipeline of
    /// `interval` is evaluated, over `n` ticks.
    fn evaluated_ticks(interval: Duration, jitter: i64, n: i64) -> Vec<i64> {
        let mut last = None;
        let mut out = vec![];
        for i in 0..n {
            let now = t(i * TICK.as_secs() as i64 + if i % 2 == 1 { jitter } else { 0 });
            if is_due(last, now, interval, TICK) {
                last = Some(now);
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn never_evaluated_is_due() {
        assert!(is_due(None, t(0), Duration::from_secs(3600), TICK));
    }

    #[test]
    fn an_interval_equal_to_the_tick_is_due_every_tick_despite_jitter() {
        let every: Vec<i64> = (0..8).collect();
        assert_eq!(evaluated_ticks(TICK, 0, 8), every);
        assert_eq!(evaluated_ticks(TICK, -3, 8), every, "early ticks");
        assert_eq!(evaluated_ticks(TICK, 3, 8), every, "late ticks");
    }

    #[test]
    fn three_ticks_is_every_third_tick() {
        assert_eq!(evaluated_ticks(TICK * 3, 0, 10), [0, 3, 6, 9]);
        assert_eq!(evaluated_ticks(TICK * 3, -2, 10), [0, 3, 6, 9]);
    }

    #[test]
    fn an_interval_shorter_than_the_tick_is_every_tick() {
        assert_eq!(evaluated_ticks(Duration::from_secs(5), 0, 4), [0, 1, 2, 3]);
        assert_eq!(evaluated_ticks(Duration::ZERO, 0, 4), [0, 1, 2, 3]);
    }

    #[test]
    fn a_clock_stepped_back_does_not_stall_the_pipeline() {
        assert!(is_due(Some(t(60)), t(0), TICK * 3, TICK));
    }

    #[test]
    fn the_cadence_is_the_interval_rounded_to_whole_ticks() {
        let s = Duration::from_secs;
        assert_eq!(cadence(s(5), TICK), TICK, "never faster than the tick");
        assert_eq!(cadence(TICK, TICK), TICK);
        assert_eq!(cadence(s(20), TICK), TICK);
        assert_eq!(cadence(s(25), TICK), s(30));
        assert_eq!(cadence(s(45), TICK), s(45));
        for interval in [s(5), s(20), s(25), s(45), s(60)] {
            let ticks = evaluated_ticks(interval, 0, 13);
            let gap = (ticks[1] - ticks[0]) as u32;
            assert_eq!(cadence(interval, TICK), TICK * gap, "{interval:?}");
        }
    }

    #[test]
    fn the_interval_comes_from_the_spec() {
        let mut s = spec();
        assert_eq!(interval(&s), Ok(TICK), "the CRD default");
        s.autoscaling.evaluation_interval = "1m".into();
        assert_eq!(interval(&s), Ok(Duration::from_secs(60)));
        s.autoscaling.evaluation_interval = "soon".into();
        let err = interval(&s).unwrap_err();
        assert_eq!(err.field, "spec.autoscaling.evaluationInterval");
    }
}
