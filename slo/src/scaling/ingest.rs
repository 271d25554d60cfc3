//! Ingest (write) scaling: freshness lag and the backlog trend.

use std::fmt::Write as _;
use std::time::Duration;

use jiff::Timestamp;

use super::stabilize::settle;
use super::{
    Limits, Recommendation, ScaleDecision, ScalingState, Signal, Want, count, largest, nonneg, num,
    pct, secs,
};

/// Backlog growth below this share of the throughput counts as noise, not growth, when deciding
/// whether ingest may scale down (a `deriv()` of a steady queue jitters around zero).
pub const SLOPE_TOLERANCE: f64 = 0.05;

/// Ingest (write) scaling policy: freshness lag and backlog trend.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestPolicy {
    /// Bounds and damping.
    pub limits: Limits,
    /// The freshness SLO: largest acceptable event-time lag (`slos.freshness.maxLag`).
    pub max_lag: Duration,
    /// Scale up when the lag exceeds this percent of `max_lag` (CRD default 50).
    pub target_lag_percent_of_slo: f64,
    /// Scale down only while the lag is at most this percent of `max_lag` (25: half the target).
    pub scale_down_lag_percent_of_slo: f64,
    /// Waiting records (queued plus held by producers after a 429) one replica is sized for (CRD
    /// default 100000).
    pub target_backlog_per_replica: f64,
    /// Scale up when the freshness SLO would break sooner than this: a few evaluation intervals
    /// plus pod start-up, e.g. 3 × 15 s + 60 s. Also the time the backlog should drain in.
    pub breach_horizon: Duration,
    /// Records/s one worker sustains, if known (a benchmark). Without it the drain sizing uses
    /// the observed throughput per replica, and scale-down uses the capacity learned the last
    /// time the workers were saturated (see [`ScalingState::learned_capacity`]); before any
    /// saturation was seen, scale-down is sized by backlog alone.
    pub throughput_per_replica: Option<f64>,
    /// Scale down only to a count that keeps this fraction of headroom on backlog and capacity (0.8).
    pub scale_down_headroom: f64,
}

impl IngestPolicy {
    /// The CRD defaults for `[min, max]`, freshness bound `max_lag` and the breach `horizon`.
    pub fn new(min: u32, max: u32, max_lag: Duration, horizon: Duration) -> Self {
        Self {
            limits: Limits::new(min, max),
            max_lag,
            target_lag_percent_of_slo: 50.0,
            scale_down_lag_percent_of_slo: 25.0,
            target_backlog_per_replica: 100_000.0,
            breach_horizon: horizon,
            throughput_per_replica: None,
            scale_down_headroom: 0.8,
        }
    }

    fn invalid(&self) -> Option<String> {
        if self.max_lag.is_zero() {
            return Some("freshness maxLag is zero".into());
        }
        if self.breach_horizon.is_zero() {
            return Some("breach horizon is zero".into());
        }
        let t = self.target_lag_percent_of_slo;
        if !(t > 0.0 && t <= 100.0) {
            return Some(format!("targetLagPercentOfSlo {t} is not in (0, 100]"));
        }
        let d = self.scale_down_lag_percent_of_slo;
        if !(d >= 0.0 && d <= t) {
            return Some(format!(
                "scale-down lag percent {d} is not in [0, target {t}]"
            ));
        }
        if !(self.target_backlog_per_replica > 0.0 && self.target_backlog_per_replica.is_finite()) {
            return Some(format!(
                "targetBacklogPerReplica {} is not positive",
                self.target_backlog_per_replica
            ));
        }
        if let Some(c) = self.throughput_per_replica
            && !(c > 0.0 && c.is_finite())
        {
            return Some(format!("throughput per replica {c} is not positive"));
        }
        if !(self.scale_down_headroom > 0.0 && self.scale_down_headroom <= 1.0) {
            return Some(format!(
                "scale-down headroom {} is not in (0, 1]",
                self.scale_down_headroom
            ));
        }
        None
    }
}

impl Default for IngestPolicy {
    /// CRD defaults: 1..10 replicas, 10 min max lag, 105 s horizon (3 × 15 s + 60 s start-up).
    fn default() -> Self {
        Self::new(1, 10, Duration::from_secs(600), Duration::from_secs(105))
    }
}

/// What the operator read for ingest this evaluation. `None`: no data or the query failed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IngestObservation {
    /// Current freshness (event-time) lag, in seconds.
    pub lag_seconds: Option<f64>,
    /// Waiting records, summed over workers: queued, plus held by producers after a 429
    /// (`promql::ingest_backlog`).
    pub backlog: Option<f64>,
    /// Backlog growth in records/s (`deriv()`), negative while draining.
    pub backlog_slope: Option<f64>,
    /// Records/s processed, summed over workers.
    pub throughput: Option<f64>,
}

/// Decides the ingest replica count from freshness lag and the backlog trend.
///
/// Up, before freshness breaks: when the lag exceeds the target percent of `max_lag`, when the
/// estimated time to breach is shorter than `breach_horizon`, or when the backlog needs more
/// replicas than run; sized by backlog per replica and by the throughput that drains the backlog
/// within the horizon. Down (slow): only with complete data, lag at most the scale-down percent,
/// and the backlog not growing; sized by backlog (and capacity, when known) with headroom.
pub fn decide_ingest(
    policy: &IngestPolicy,
    obs: &IngestObservation,
    current: u32,
    state: &ScalingState,
    now: Timestamp,
) -> (ScaleDecision, ScalingState) {
    let rec = match policy.invalid() {
        Some(why) => Recommendation::invalid(why, current),
        None => recommend_ingest(policy, obs, current, state.learned_capacity()),
    };
    settle(&policy.limits, current, state, now, rec)
}

/// Time until the freshness SLO breaks, as [`decide_ingest`] estimates it, in seconds
/// (`f64::INFINITY` when the lag is not growing; 0 when already breached).
///
/// Two views, the more pessimistic wins: the lag now, and the queueing delay of the newest
/// queued record (`backlog / throughput`), which the watermark will show once that record is
/// processed. That delay grows by `slope / throughput` seconds per second. Nothing processed
/// while work waits means the watermark is stuck: the lag grows 1 s per second.
pub fn time_to_breach(
    lag_seconds: f64,
    max_lag_seconds: f64,
    backlog: f64,
    slope: f64,
    throughput: f64,
) -> f64 {
    let (projected, growth) = if throughput > 0.0 {
        (
            lag_seconds.max(backlog / throughput),
            slope.max(0.0) / throughput,
        )
    } else if backlog > 0.0 || slope > 0.0 {
        (lag_seconds, 1.0)
    } else {
        (lag_seconds, 0.0)
    };
    if projected >= max_lag_seconds {
        0.0
    } else if growth > 0.0 {
        (max_lag_seconds - projected) / growth
    } else {
        f64::INFINITY
    }
}

fn recommend_ingest(
    p: &IngestPolicy,
    o: &IngestObservation,
    current: u32,
    learned: Option<f64>,
) -> Recommendation {
    let cur = f64::from(current.max(1));
    let max_lag = p.max_lag.as_secs_f64();
    let horizon = p.breach_horizon.as_secs_f64();
    let target = p.target_lag_percent_of_slo / 100.0;
    let per_backlog = p.target_backlog_per_replica;

    let lag = nonneg(o.lag_seconds);
    let backlog = nonneg(o.backlog);
    let slope = o.backlog_slope.filter(|s| s.is_finite());
    let tp = nonneg(o.throughput);
    let mut missing = Vec::new();
    for (present, s) in [
        (lag.is_some(), Signal::Lag),
        (backlog.is_some(), Signal::Backlog),
        (slope.is_some(), Signal::BacklogSlope),
        (tp.is_some(), Signal::Throughput),
    ] {
        if !present {
            missing.push(s);
        }
    }

    // Replicas that drain the backlog within the horizon while keeping up with the inflow.
    let per_tp = p
        .throughput_per_replica
        .or(tp.filter(|t| *t > 0.0).map(|t| t / cur));
    let drain = match (backlog, slope, tp, per_tp) {
        (Some(b), Some(s), Some(t), Some(c)) => {
            let inflow = (t + s).max(0.0);
            Some((count((inflow + b / horizon) / c), inflow))
        }
        _ => None,
    };
    let n_backlog = backlog.map(|b| count(b / per_backlog));

    let mut wants = Vec::new();
    let mut notes = Vec::new();
    if let Some(l) = lag
        && l / max_lag > target
    {
        let what = format!(
            "lag {} is {} of the {} max (target {})",
            secs(l),
            pct(l / max_lag),
            secs(max_lag),
            pct(target)
        );
        match (drain, n_backlog) {
            (Some((n, _)), nb) if n.max(nb.unwrap_or(0)) <= current => notes.push(format!(
                "{what}, but {current} replicas drain the backlog within {}",
                secs(horizon)
            )),
            (d, nb) => {
                let sized = d.map(|(n, _)| n).max(nb);
                wants.push(Want {
                    replicas: sized
                        .unwrap_or(current.saturating_add(1))
                        .max(current.saturating_add(1)),
                    why: what,
                });
            }
        }
    }
    if let (Some(l), Some(b), Some(s), Some(t)) = (lag, backlog, slope, tp) {
        let ttb = time_to_breach(l, max_lag, b, s, t);
        if ttb < horizon {
            wants.push(Want {
                replicas: drain
                    .map(|(n, _)| n)
                    .max(n_backlog)
                    .unwrap_or(0)
                    .max(current.saturating_add(1)),
                why: format!(
                    "backlog {} grows {}/s against {}/s processed: freshness breaks {} in {} (horizon {})",
                    num(b),
                    num(s),
                    num(t),
                    secs(max_lag),
                    secs(ttb),
                    secs(horizon)
                ),
            });
        }
    }
    if let (Some(n), Some(b)) = (n_backlog, backlog)
        && n > current
    {
        wants.push(Want {
            replicas: n,
            why: format!(
                "backlog {} needs {n} replicas at {} per replica",
                num(b),
                num(per_backlog)
            ),
        });
    }
    if let Some(Want { why, .. }) = wants.first_mut()
        && !notes.is_empty()
    {
        let _ = write!(why, " ({})", notes.join("; "));
    }
    // Workers short of capacity (backlog growing beyond noise, or a signal asking for more) are
    // saturated: what they process per replica is what one replica can do.
    let saturated = match (slope, tp) {
        (Some(s), Some(t)) if t > 0.0 => s > SLOPE_TOLERANCE * t || !wants.is_empty(),
        _ => false,
    };
    let measured = saturated.then(|| tp.unwrap_or(0.0) / cur);
    if !wants.is_empty() {
        return Recommendation {
            capacity: measured,
            ..largest(wants, missing)
        };
    }
    if !missing.is_empty() {
        return Recommendation {
            capacity: measured,
            ..Recommendation::missing_hold(missing, current)
        };
    }
    let (Some(l), Some(b), Some(s), Some(t)) = (lag, backlog, slope, tp) else {
        return Recommendation::missing_hold(missing, current);
    };

    let state = format!(
        "lag {} ({} of the {} max), backlog {} at {}/s, {}/s processed",
        secs(l),
        pct(l / max_lag),
        secs(max_lag),
        num(b),
        num(s),
        num(t)
    );
    if let Some(note) = notes.pop() {
        return Recommendation {
            replicas: current,
            why: note,
            complete: true,
            missing,
            record: true,
            capacity: measured,
        };
    }
    let h = p.scale_down_headroom;
    let down_lag = p.scale_down_lag_percent_of_slo / 100.0;
    let projected = if t > 0.0 { l.max(b / t) } else { l };
    let (replicas, why) = if projected / max_lag > down_lag {
        (
            current,
            format!(
                "{state}: within target, not low enough to scale down (≤ {})",
                pct(down_lag)
            ),
        )
    } else if saturated {
        (current, format!("{state}: backlog growing, no scale-down"))
    } else if t <= 0.0 && b > 0.0 {
        (
            current,
            format!("{state}: nothing processed while records wait, no scale-down"),
        )
    } else {
        let by_backlog = count(b / (per_backlog * h));
        let capacity = p.throughput_per_replica.or(learned);
        let by_capacity = capacity
            .map(|c| count((t + s).max(0.0) / (c * h)))
            .unwrap_or(0);
        let n = by_backlog.max(by_capacity).max(1);
        if n >= current {
            (current, format!("{state}: within target"))
        } else {
            let what = match (p.throughput_per_replica, capacity) {
                (Some(c), _) => format!("backlog and capacity ({}/s per replica)", num(c)),
                (None, Some(c)) => {
                    format!("backlog and capacity (learned {}/s per replica)", num(c))
                }
                (None, None) => "backlog (capacity not yet seen)".into(),
            };
            (
                n,
                format!("{state}: {n} replicas keep {what} at {} of target", pct(h)),
            )
        }
    };
    Recommendation {
        replicas,
        why,
        complete: true,
        missing,
        record: true,
        capacity: measured,
    }
}

#[cfg(test)]
mod tests {
    use super::super::Direction;
    use super::super::testkit::*;
    use super::*;

    #[test]
    fn time_to_breach_hand_computed() {
        // Queue delay 200,000 / 10,000 = 20 s is below the 60 s lag; it grows 60,000 / 10,000
        // = 6 s per second: (600 − 60) / 6 = 90 s.
        assert_eq!(
            time_to_breach(60.0, 600.0, 200_000.0, 60_000.0, 10_000.0),
            90.0
        );
        // The queue delay is the worse view: 3,000,000 / 10,000 = 300 s; 2 s/s: 150 s.
        assert_eq!(
            time_to_breach(60.0, 600.0, 3_000_000.0, 20_000.0, 10_000.0),
            150.0
        );
        // Draining: never.
        assert_eq!(
            time_to_breach(60.0, 600.0, 200_000.0, -100.0, 10_000.0),
            f64::INFINITY
        );
        // Nothing processed while records wait: the watermark is stuck, 1 s/s.
        assert_eq!(time_to_breach(100.0, 600.0, 5.0, 0.0, 0.0), 500.0);
        // Already over.
        assert_eq!(time_to_breach(700.0, 600.0, 0.0, 0.0, 1.0), 0.0);
    }

    #[test]
    fn ingest_lag_over_target_sizes_by_backlog_and_drain() {
        // Lag 320 s of 600 s is 53 % (target 50 %). Backlog 450,000 / 100,000 = 4.5 → 5;
        // drain: 20,000/s on 3 replicas is 6,667 per replica, need 20,000 + 450,000 / 105 s
        // = 24,286/s → 3.64 → 4. The larger: 5.
        let d = once_ingest(
            &IngestPolicy::default(),
            ingest_obs(320.0, 450_000.0, 0.0, 20_000.0),
            3,
        );
        assert_eq!((d.replicas, d.direction), (5, Direction::Up));
        assert_eq!(
            d.reason,
            "lag 5m20s is 53% of the 10m max (target 50%); backlog 450,000 needs 5 replicas at \
             100,000 per replica: 3 → 5 replicas"
        );
    }

    #[test]
    fn ingest_scales_up_before_freshness_breaks() {
        // Lag only 60 s (10 %), but the backlog grows 60,000/s against 10,000/s processed:
        // breach in 90 s < 105 s horizon. Drain: 5,000 per replica, 70,000 + 200,000 / 105
        // = 71,905/s → 15, capped at the maximum 10; max step 4: 2 → 6.
        let p = IngestPolicy::default();
        let d = once_ingest(&p, ingest_obs(60.0, 200_000.0, 60_000.0, 10_000.0), 2);
        assert_eq!((d.replicas, d.direction), (6, Direction::Up));
        assert_eq!(
            d.reason,
            "backlog 200,000 grows 60,000/s against 10,000/s processed: freshness breaks 10m in \
             1m30s (horizon 1m45s): 2 → 6 replicas (wants 10, max step 4)"
        );
        // At 50,000/s the breach is 108 s away: not yet (next evaluation will see it).
        let d = once_ingest(&p, ingest_obs(60.0, 200_000.0, 50_000.0, 10_000.0), 2);
        assert_eq!(d.direction, Direction::Hold);
    }

    #[test]
    fn ingest_lag_over_target_while_draining_in_time_holds() {
        // 3 replicas process 30,000/s, the backlog shrinks 5,000/s: inflow 25,000/s plus
        // 100,000 / 105 s = 25,952/s fits in 3 × 10,000.
        let d = once_ingest(
            &IngestPolicy::default(),
            ingest_obs(320.0, 100_000.0, -5_000.0, 30_000.0),
            3,
        );
        assert_eq!((d.replicas, d.direction), (3, Direction::Hold));
        assert_eq!(
            d.reason,
            "lag 5m20s is 53% of the 10m max (target 50%), but 3 replicas drain the backlog \
             within 1m45s: hold at 3"
        );
    }

    #[test]
    fn ingest_scales_down_slowly_when_idle_and_never_when_stuck_or_growing() {
        let p = IngestPolicy::default();
        let mut state = ScalingState::default();
        let mut cur = 4;
        let mut changes = Vec::new();
        for t in (0..=600).step_by(15) {
            let (d, s) = decide_ingest(
                &p,
                &ingest_obs(30.0, 1_000.0, 0.0, 5_000.0),
                cur,
                &state,
                at(t),
            );
            if d.replicas != cur {
                changes.push((t, d.replicas));
            }
            cur = d.replicas;
            state = s;
        }
        assert_eq!(changes, vec![(300, 3), (420, 2), (540, 1)]);

        // Stuck workers (nothing processed, records waiting) or a growing backlog: no.
        for o in [
            ingest_obs(30.0, 1_000.0, 0.0, 0.0),
            ingest_obs(30.0, 1_000.0, 600.0, 5_000.0),
            ingest_obs(200.0, 1_000.0, 0.0, 5_000.0),
        ] {
            let mut state = ScalingState::default();
            for t in (0..=900).step_by(15) {
                let (d, s) = decide_ingest(&p, &o, 4, &state, at(t));
                assert!(d.replicas >= 4, "{o:?} at {t}: {}", d.reason);
                state = s;
            }
        }
    }

    #[test]
    fn ingest_missing_data_holds_but_lag_over_target_still_scales_up() {
        let p = IngestPolicy::default();
        let mut o = ingest_obs(30.0, 1_000.0, 0.0, 5_000.0);
        o.backlog_slope = None;
        let d = once_ingest(&p, o, 4);
        assert_eq!((d.replicas, d.direction), (4, Direction::Hold));
        assert_eq!(
            d.reason,
            "no data for backlog slope: hold at 4 (never scale down without data)"
        );
        // The lag alone over target: one more (nothing to size by).
        let o = IngestObservation {
            lag_seconds: Some(400.0),
            ..Default::default()
        };
        let d = once_ingest(&p, o, 4);
        assert_eq!((d.replicas, d.direction), (5, Direction::Up));
        assert_eq!(d.missing.len(), 3);
    }

    #[test]
    fn ingest_capacity_hint_sizes_drain_and_scale_down() {
        let p = IngestPolicy {
            throughput_per_replica: Some(4_000.0),
            ..IngestPolicy::default()
        };
        // Idle at 3,000/s on 6 replicas: capacity 3,000 / (4,000 × 0.8) → 1; backlog → 1.
        let (d, _) = (0..=20).fold(
            (
                once_ingest(&p, ingest_obs(10.0, 0.0, 0.0, 3_000.0), 6),
                ScalingState::default(),
            ),
            |(_, s), i| decide_ingest(&p, &ingest_obs(10.0, 0.0, 0.0, 3_000.0), 6, &s, at(i * 15)),
        );
        assert_eq!((d.replicas, d.direction), (5, Direction::Down));
        // Busy at 14,000/s: 14,000 / 3,200 = 4.4 → 5 on 6 replicas: down to 5 only.
        let o = ingest_obs(10.0, 0.0, 0.0, 14_000.0);
        let (d, _) = (0..=20).fold(
            (once_ingest(&p, o, 6), ScalingState::default()),
            |(_, s), i| decide_ingest(&p, &o, 6, &s, at(i * 15)),
        );
        assert_eq!(d.replicas, 5);
        let o = ingest_obs(10.0, 0.0, 0.0, 17_000.0);
        let (d, _) = (0..=20).fold(
            (once_ingest(&p, o, 6), ScalingState::default()),
            |(_, s), i| decide_ingest(&p, &o, 6, &s, at(i * 15)),
        );
        assert_eq!(d.replicas, 6, "{}", d.reason);
    }

    #[test]
    fn ingest_learns_capacity_when_saturated_and_sizes_scale_down_by_it() {
        let p = IngestPolicy::default();
        // The backlog grows 3,000/s against 12,000/s processed on 6 replicas (25 % > 5 %): the
        // workers are saturated at 2,000/s each. Not urgent yet: breach in (600 − 30) / 0.25 s.
        let (d, mut state) = decide_ingest(
            &p,
            &ingest_obs(30.0, 50_000.0, 3_000.0, 12_000.0),
            6,
            &ScalingState::default(),
            at(0),
        );
        assert_eq!(d.direction, Direction::Hold);
        assert!(
            d.reason.contains("backlog growing, no scale-down"),
            "{}",
            d.reason
        );
        assert_eq!(state.learned_capacity(), Some(2_000.0));
        // Then quiet at 6,000/s: 6,000 / (2,000 × 0.8) = 3.75 → 4 replicas, not 1.
        let mut cur = 6;
        let mut changes = Vec::new();
        for t in (15..=900).step_by(15) {
            let (d, s) =
                decide_ingest(&p, &ingest_obs(10.0, 0.0, 0.0, 6_000.0), cur, &state, at(t));
            if d.replicas != cur {
                changes.push((t, d.replicas, d.reason.clone()));
            }
            cur = d.replicas;
            state = s;
        }
        let when: Vec<_> = changes.iter().map(|(t, n, _)| (*t, *n)).collect();
        // The saturated evaluation at t = 0 recommended 6; it leaves the 5 min window after 300.
        assert_eq!(when, vec![(315, 5), (435, 4)]);
        assert!(
            changes[0].2.contains(
                "keep backlog and capacity (learned 2,000/s per replica) at 80% of target"
            ),
            "{}",
            changes[0].2
        );
    }
}

/// Properties over random ingest policies and signal histories.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::super::Direction;
    use super::super::testkit::*;
    use super::*;

    /// Ingest against the [`Queue`] of the closed loops, from `start` replicas; checks the
    /// invariants.
    fn closed_loop(
        p: &IngestPolicy,
        start: u32,
        mut queue: Queue,
        steps: &[(i64, f64)],
    ) -> Result<Vec<Eval>, TestCaseError> {
        let evals = simulate(
            p.limits.clamp(start),
            steps,
            |dt, &j, current| queue.observe(dt, j, current),
            |o, c, s, now| decide_ingest(p, o, c, s, now),
            ingest_complete,
            |_| false,
        );
        check(&p.limits, &evals)?;
        Ok(evals)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn ingest_invariants_hold_on_any_history(
            p in arb::ingest_policy(),
            start in 0u32..30,
            steps in prop::collection::vec((1i64..=60, arb::ingest_obs()), 1..120),
        ) {
            let current = p.limits.clamp(start);
            let evals = simulate(
                current,
                &steps,
                observed,
                |o, c, s, now| decide_ingest(&p, o, c, s, now),
                ingest_complete,
                |_| false,
            );
            check(&p.limits, &evals)?;
        }

        /// Ingest lag jittering ±5 % around its target, backlog and slope noisy around steady:
        /// never down, never a reversal.
        #[test]
        fn ingest_noise_around_the_target_never_flaps(
            p in arb::ingest_policy(),
            start in 0u32..30,
            backlog in 0.0f64..2_000_000.0,
            tp in 1_000.0f64..50_000.0,
            steps in prop::collection::vec((1i64..=60, -0.05f64..0.05, -0.05f64..0.05, -0.05f64..0.05), 1..200),
        ) {
            let current = p.limits.clamp(start);
            let lag_target = p.max_lag.as_secs_f64() * p.target_lag_percent_of_slo / 100.0;
            let steps: Vec<_> = steps
                .into_iter()
                .map(|(dt, j1, j2, j3)| {
                    (dt, IngestObservation {
                        lag_seconds: Some(lag_target * (1.0 + j1)),
                        backlog: Some(backlog * (1.0 + j2)),
                        backlog_slope: Some(tp * j3),
                        throughput: Some(tp),
                    })
                })
                .collect();
            let evals = simulate(
                current,
                &steps,
                observed,
                |o, c, s, now| decide_ingest(&p, o, c, s, now),
                ingest_complete,
                |_| false,
            );
            check(&p.limits, &evals)?;
            prop_assert!(evals.iter().all(|e| e.decision.direction != Direction::Down));
            prop_assert_eq!(reversals(&evals), 0);
        }

        /// Closed loop for ingest with a known per-replica capacity: records arrive at a noisy
        /// (±5 %) rate, workers process up to `replicas × capacity` per second, the backlog and
        /// the lag follow. Starting under-provisioned the autoscaler scales up (overshooting to
        /// drain the backlog), then back down; it never scales up again after a scale-down, so
        /// at most one direction change in the whole run.
        #[test]
        fn ingest_closed_loop_overshoots_once_at_most(
            mut p in arb::ingest_policy(),
            start in 0u32..30,
            capacity in 500.0f64..20_000.0,
            load in 0.1f64..30.0,
            initial_backlog in 0.0f64..1_000_000.0,
            steps in prop::collection::vec((5i64..=60, -0.05f64..0.05), 1..300),
        ) {
            p.throughput_per_replica = Some(capacity);
            let queue = Queue { capacity, arrival: capacity * load, backlog: initial_backlog };
            let evals = closed_loop(&p, start, queue, &steps)?;
            let first_down = evals.iter().position(|e| e.decision.direction == Direction::Down);
            if let Some(i) = first_down {
                prop_assert!(
                    evals[i..].iter().all(|e| e.decision.direction != Direction::Up),
                    "{:?}",
                    evals
                );
            }
            prop_assert!(reversals(&evals) <= 1);
        }

        /// The same loop without a configured capacity: before any saturation is seen the
        /// autoscaler may drift down (sized by backlog alone), then it learns the capacity at
        /// the first saturation, scales up, and settles. Shape: downs, ups, downs, at most.
        #[test]
        fn ingest_closed_loop_learns_capacity_and_settles(
            mut p in arb::ingest_policy(),
            start in 0u32..30,
            capacity in 500.0f64..20_000.0,
            load in 0.1f64..30.0,
            initial_backlog in 0.0f64..1_000_000.0,
            steps in prop::collection::vec((5i64..=60, -0.05f64..0.05), 1..300),
        ) {
            p.throughput_per_replica = None;
            let queue = Queue { capacity, arrival: capacity * load, backlog: initial_backlog };
            let evals = closed_loop(&p, start, queue, &steps)?;
            let mut shape: Vec<Direction> = evals
                .iter()
                .map(|e| e.decision.direction)
                .filter(|d| *d != Direction::Hold)
                .collect();
            shape.dedup();
            let allowed = [Direction::Down, Direction::Up, Direction::Down];
            let mut rest = allowed.iter();
            prop_assert!(
                shape.iter().all(|d| rest.any(|a| a == d)),
                "shape {:?}: {:?}",
                shape,
                evals
            );
        }
    }
}
