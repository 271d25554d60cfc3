//! Stabilization, rate limits and bounds: from a recommendation to a decision.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::{Direction, Recommendation, ScaleDecision, secs};

/// Damping of scaling in one direction: the CRD's `ScalingBehavior`, with durations parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behavior {
    /// A change goes only as far as every recommendation of this window agrees on.
    pub stabilization_window: Duration,
    /// Least time between two changes in this direction.
    pub cooldown: Duration,
    /// Most replicas added or removed in one change (0 is read as 1).
    pub max_step: u32,
}

impl Behavior {
    /// The CRD default for scaling up: no window, 30 s cooldown, up to 4 replicas at a time.
    pub const fn default_up() -> Self {
        Self {
            stabilization_window: Duration::ZERO,
            cooldown: Duration::from_secs(30),
            max_step: 4,
        }
    }

    /// The CRD default for scaling down: 5 min window, 2 min cooldown, one replica at a time.
    pub const fn default_down() -> Self {
        Self {
            stabilization_window: Duration::from_secs(300),
            cooldown: Duration::from_secs(120),
            max_step: 1,
        }
    }

    fn step(&self) -> u32 {
        self.max_step.max(1)
    }
}

/// Replica bounds and damping of one role (the CRD's `ReplicaRange` and scale-up/down behaviors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fewest replicas; a current count below it is raised to it.
    pub min: u32,
    /// Most replicas; a current count above it is lowered to it (the user's explicit order).
    pub max: u32,
    /// How fast replicas are added.
    pub scale_up: Behavior,
    /// How slowly replicas are removed.
    pub scale_down: Behavior,
}

impl Limits {
    /// `[min, max]` with the CRD's default behaviors.
    pub const fn new(min: u32, max: u32) -> Self {
        Self {
            min,
            max,
            scale_up: Behavior::default_up(),
            scale_down: Behavior::default_down(),
        }
    }

    /// Bounds that are usable even if the caller passed `min > max`: `max` wins no less than `min`.
    pub(super) fn bounds(&self) -> (u32, u32) {
        (self.min, self.max.max(self.min))
    }

    pub(super) fn clamp(&self, n: u32) -> u32 {
        let (lo, hi) = self.bounds();
        n.clamp(lo, hi)
    }
}

/// The in-memory memory of one role's autoscaler: recent recommendations and last changes.
///
/// Owned by the operator, one per pipeline and role, passed in and returned by every decision.
/// It is deliberately not persisted: starting from [`ScalingState::default`] after a restart is
/// safe, because a scale-down first needs a full down-stabilization window of complete data.
/// If applying a decision fails, keep the *previous* state so the next evaluation retries (the
/// returned one starts the cooldown as if the change had happened). In dry-run, do keep the
/// returned state: the report then shows what the autoscaler would do, including scale-downs,
/// which need the recommendation history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScalingState {
    /// Recommendations (time, replicas), oldest first, pruned to the longer stabilization window.
    recommendations: Vec<(Timestamp, u32)>,
    /// Start of the current unbroken run of evaluations with every required signal present.
    complete_since: Option<Timestamp>,
    /// When replicas were last raised.
    last_scale_up: Option<Timestamp>,
    /// When replicas were last lowered.
    last_scale_down: Option<Timestamp>,
    /// Ingest only: records/s per replica measured the last time the workers were saturated.
    learned_capacity: Option<f64>,
}

/// The learned capacity is only ever stored finite, so equality is reflexive.
impl Eq for ScalingState {}

impl ScalingState {
    /// When replicas were last raised by a decision, if since the operator started.
    pub fn last_scale_up(&self) -> Option<Timestamp> {
        self.last_scale_up
    }

    /// When replicas were last lowered by a decision, if since the operator started.
    pub fn last_scale_down(&self) -> Option<Timestamp> {
        self.last_scale_down
    }

    /// Ingest only: records/s one replica processed the last time the workers were saturated
    /// (backlog growing, or a signal asking for more). Sizes scale-down so that the remaining
    /// replicas keep up with the inflow; forgotten on restart, like the rest of the state.
    pub fn learned_capacity(&self) -> Option<f64> {
        self.learned_capacity
    }

    /// Since when every required signal has been present without a gap, if it is now.
    pub fn complete_since(&self) -> Option<Timestamp> {
        self.complete_since
    }
}

/// Stabilizes, rate-limits and bounds a recommendation; returns the decision and the new state.
pub(super) fn settle(
    limits: &Limits,
    current: u32,
    state: &ScalingState,
    now: Timestamp,
    rec: Recommendation,
) -> (ScaleDecision, ScalingState) {
    let (min, max) = limits.bounds();
    let up = limits.scale_up;
    let down = limits.scale_down;
    let mut next = state.clone();

    // Remember this evaluation.
    if rec.complete {
        next.complete_since.get_or_insert(now);
    } else {
        next.complete_since = None;
    }
    if let Some(c) = rec.capacity.filter(|c| c.is_finite() && *c > 0.0) {
        next.learned_capacity = Some(c);
    }
    let wanted = rec.replicas;
    let rec_n = limits.clamp(wanted);
    if rec.record {
        next.recommendations.retain(|(t, _)| *t != now);
        next.recommendations.push((now, rec_n));
        next.recommendations.sort_by_key(|(t, _)| *t);
    }
    let keep = window_start(now, up.stabilization_window.max(down.stabilization_window));
    next.recommendations.retain(|(t, _)| *t >= keep);

    let decide = |replicas: u32, direction: Direction, reason: String| ScaleDecision {
        replicas,
        direction,
        reason,
        missing: rec.missing.clone(),
    };

    // The range is the user's order, whatever the signals say.
    if current < min {
        next.last_scale_up = Some(now);
        let reason = format!("{current} replicas is below the minimum {min}: {current} → {min}");
        return (decide(min, Direction::Up, reason), next);
    }
    if current > max {
        next.last_scale_down = Some(now);
        let reason = format!("{current} replicas is above the maximum {max}: {current} → {max}");
        return (decide(max, Direction::Down, reason), next);
    }

    let why = &rec.why;
    let hold = |because: String| {
        decide(
            current,
            Direction::Hold,
            format!("{why}: hold at {current}{because}"),
        )
    };
    if !rec.record {
        let because = if rec.missing.is_empty() {
            String::new()
        } else {
            " (never scale down without data)".into()
        };
        return (hold(because), next);
    }

    // HPA-style: up to the lowest recommendation of the up window, down to the highest of the
    // down window. The recommendation just recorded is in both, so it decides the direction.
    let in_window = |w: Duration| {
        let from = window_start(now, w);
        next.recommendations
            .iter()
            .filter(move |(t, _)| *t >= from)
            .map(|(_, n)| *n)
    };
    let up_rec = in_window(up.stabilization_window).min().unwrap_or(rec_n);
    let down_rec = in_window(down.stabilization_window).max().unwrap_or(rec_n);

    if rec_n > current {
        if up_rec <= current {
            let because = format!(
                " (stabilizing: lowest recommendation of the last {} is {up_rec})",
                secs(up.stabilization_window.as_secs_f64())
            );
            return (hold(because), next);
        }
        if let Some(left) = cooldown_left(state.last_scale_up, up.cooldown, now, false) {
            let because = format!(
                " (wants {up_rec}; scale-up cooldown {}, {} left)",
                secs(up.cooldown.as_secs_f64()),
                secs(left)
            );
            return (hold(because), next);
        }
        let to = up_rec.min(current.saturating_add(up.step())).min(max);
        let mut reason = format!("{why}: {current} → {to} replicas");
        if to < up_rec {
            let _ = write!(reason, " (wants {up_rec}, max step {})", up.step());
        }
        if to == max && wanted > max {
            let _ = write!(reason, " (at the maximum {max})");
        }
        next.last_scale_up = Some(now);
        return (decide(to, Direction::Up, reason), next);
    }
    if rec_n == current {
        let because = if wanted > max && current == max {
            format!(" (at the maximum {max})")
        } else {
            String::new()
        };
        return (hold(because), next);
    }

    // rec_n < current: only after a full window of complete data (restart, data gaps).
    let seen = next
        .complete_since
        .map(|since| seconds(now, since))
        .unwrap_or(0.0);
    if seen < down.stabilization_window.as_secs_f64() {
        let because = format!(
            " (wants {rec_n}; only {} of complete data since start or the last gap, scale-down needs {})",
            secs(seen.max(0.0)),
            secs(down.stabilization_window.as_secs_f64())
        );
        return (hold(because), next);
    }
    if down_rec >= current {
        let because = format!(
            " (stabilizing: highest recommendation of the last {} is {down_rec})",
            secs(down.stabilization_window.as_secs_f64())
        );
        return (hold(because), next);
    }
    if let Some(left) = cooldown_left(state.last_scale_down, down.cooldown, now, true) {
        let because = format!(
            " (wants {down_rec}; scale-down cooldown {}, {} left)",
            secs(down.cooldown.as_secs_f64()),
            secs(left)
        );
        return (hold(because), next);
    }
    let to = down_rec.max(current.saturating_sub(down.step())).max(min);
    let mut reason = format!("{why}: {current} → {to} replicas");
    if to > down_rec {
        let _ = write!(reason, " (wants {down_rec}, max step {})", down.step());
    }
    next.last_scale_down = Some(now);
    (decide(to, Direction::Down, reason), next)
}

/// Seconds of cooldown left, if any. A last change in the future (the clock stepped back) keeps
/// a scale-down cooling (the safe side) but does not block a scale-up.
fn cooldown_left(
    last: Option<Timestamp>,
    cooldown: Duration,
    now: Timestamp,
    block_if_future: bool,
) -> Option<f64> {
    let elapsed = seconds(now, last?);
    let total = cooldown.as_secs_f64();
    if elapsed < 0.0 {
        return block_if_future.then_some(total);
    }
    (elapsed < total).then_some(total - elapsed)
}

/// `now − window`, saturating at the earliest representable time for absurd windows.
fn window_start(now: Timestamp, window: Duration) -> Timestamp {
    SignedDuration::try_from(window)
        .ok()
        .and_then(|w| now.checked_sub(w).ok())
        .unwrap_or(Timestamp::MIN)
}

/// Seconds from `since` to `now`, to the millisecond (negative if `since` is later).
fn seconds(now: Timestamp, since: Timestamp) -> f64 {
    now.duration_since(since).as_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{ServeObservation, ServePolicy, decide_serve};
    use super::*;

    #[test]
    fn a_data_gap_restarts_the_scale_down_clock() {
        let p = ServePolicy::default();
        let quiet = serve_obs(0.3, 8_000.0);
        let (changes, _, _) = run_serve(
            &p,
            |t, _| {
                let mut o = quiet;
                if t == 600 {
                    o.budget_remaining = None;
                }
                o
            },
            6,
            ScalingState::default(),
            15,
            1200,
        );
        // Down at 300 and 420 as usual; 540 → 3 too; the gap at 600 means the next needs
        // complete data from 615 to 915.
        assert_eq!(changes, vec![(300, 5), (420, 4), (540, 3), (915, 2)]);
    }

    #[test]
    fn a_restart_forgets_nothing_unsafe() {
        let p = ServePolicy::default();
        let quiet = |_, _| serve_obs(0.3, 8_000.0);
        let (_, cur, _) = run_serve(&p, quiet, 6, ScalingState::default(), 15, 330);
        assert_eq!(cur, 5);
        // The operator restarts: empty state. No scale-down for another full window.
        let (changes, _, _) = run_serve(&p, quiet, cur, ScalingState::default(), 15, 600);
        assert_eq!(changes.first(), Some(&(300, 4)));
    }

    #[test]
    fn scale_up_respects_its_cooldown_and_window() {
        let p = ServePolicy::default();
        // P99 stays at 86 % (the new replicas are not ready yet): 3 → 4, then 4 × 1.075 → 5
        // only after the 30 s cooldown.
        let (changes, _, _) = run_serve(
            &p,
            |_, _| serve_obs(0.86, 1_000.0),
            3,
            ScalingState::default(),
            15,
            60,
        );
        assert_eq!(changes, vec![(0, 4), (30, 5), (60, 6)]);
        let mut state = ScalingState::default();
        let (_, s) = decide_serve(&p, &serve_obs(0.86, 1_000.0), 3, &state, at(0));
        let (d, _) = decide_serve(&p, &serve_obs(0.86, 1_000.0), 4, &s, at(15));
        assert_eq!(d.direction, Direction::Hold);
        assert!(
            d.reason.contains("scale-up cooldown 30s, 15s left"),
            "{}",
            d.reason
        );

        // With a 60 s up window a single spike is ignored; a sustained rise is not.
        let mut p = ServePolicy::default();
        p.limits.scale_up.stabilization_window = Duration::from_secs(60);
        let (changes, _, s) = run_serve(
            &p,
            |t, _| serve_obs(if t == 30 { 1.2 } else { 0.7 }, 1_000.0),
            3,
            state.clone(),
            15,
            120,
        );
        assert!(changes.is_empty(), "{changes:?}");
        state = s;
        let (d, _) = decide_serve(&p, &serve_obs(1.2, 1_000.0), 3, &state, at(135));
        assert!(
            d.reason
                .contains("stabilizing: lowest recommendation of the last 1m is 3")
        );
        // Quiet, then P99 at 90 % from t = 135: the up window is full of 4s at t = 195.
        let (changes, _, _) = run_serve(
            &p,
            |t, _| serve_obs(if t < 135 { 0.7 } else { 0.9 }, 1_000.0),
            3,
            ScalingState::default(),
            15,
            300,
        );
        assert_eq!(changes.first(), Some(&(195, 4)));
    }

    #[test]
    fn out_of_range_current_moves_to_the_range() {
        let p = ServePolicy::new(2, 10);
        let d = once_serve(&p, serve_obs(0.5, 1_000.0), 0);
        assert_eq!((d.replicas, d.direction), (2, Direction::Up));
        let d = once_serve(&p, ServeObservation::default(), 14);
        assert_eq!((d.replicas, d.direction), (10, Direction::Down));
        assert_eq!(d.reason, "14 replicas is above the maximum 10: 14 → 10");
    }

    #[test]
    fn absurd_windows_and_counts_do_not_panic() {
        let mut p = ServePolicy::new(1, u32::MAX);
        p.limits.scale_down.stabilization_window = Duration::from_secs(u64::MAX);
        p.limits.scale_up.stabilization_window = Duration::from_secs(1 << 50);
        p.limits.scale_up.max_step = u32::MAX;
        let (d, s) = decide_serve(
            &p,
            &serve_obs(1.5, 1e300),
            u32::MAX - 1,
            &ScalingState::default(),
            at(0),
        );
        assert_eq!(d.replicas, u32::MAX);
        let (d, _) = decide_serve(&p, &serve_obs(0.0, 0.0), u32::MAX, &s, at(60));
        assert_eq!(d.direction, Direction::Hold);
    }
}

/// Restart safety over random serve policies.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::super::testkit::*;
    use super::super::{Direction, LatencyReading, ServeObservation, decide_serve};
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// After a restart (empty state), however long the operator ran before and whatever it
        /// decided, no scale-down happens before one full down-stabilization window.
        #[test]
        fn no_scale_down_within_a_window_of_a_restart(
            p in arb::serve_policy(),
            start in 0u32..30,
            steps in prop::collection::vec((1i64..=60, 0.0f64..0.2), 1..100),
        ) {
            let mut current = p.limits.clamp(start);
            let mut state = ScalingState::default();
            let mut t = 0;
            let window = p.limits.scale_down.stabilization_window.as_secs() as i64;
            for (dt, ratio) in steps {
                t += dt;
                let o = ServeObservation {
                    p99: Some(LatencyReading { p99_seconds: 0.2 * ratio, bound_seconds: 0.2 }),
                    request_rate: Some(0.0),
                    page_burn: Some(false),
                    budget_remaining: Some(1.0),
                };
                let (d, s) = decide_serve(&p, &o, current, &state, at(t));
                if t < window {
                    prop_assert!(d.direction != Direction::Down, "at {}s of {}s: {}", t, window, d.reason);
                }
                current = d.replicas;
                state = s;
            }
        }
    }
}
