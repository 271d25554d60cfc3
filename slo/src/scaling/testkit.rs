//! Shared by the scaling tests: example observations, strategies, a simulated operator (every
//! decision is applied before the next evaluation) and the invariants every run must keep.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

/// `secs` after 2026-11-23T00:00:00Z.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_795_392_000).unwrap() + SignedDuration::from_secs(secs)
}

/// A healthy serve picture: P99 at `ratio` of a 200 ms bound, `rate` req/s, 90 % budget left.
pub fn serve_obs(ratio: f64, rate: f64) -> ServeObservation {
    ServeObservation {
        p99: Some(LatencyReading {
            p99_seconds: 0.2 * ratio,
            bound_seconds: 0.2,
        }),
        request_rate: Some(rate),
        page_burn: Some(false),
        budget_remaining: Some(0.9),
    }
}

pub fn ingest_obs(lag: f64, backlog: f64, slope: f64, tp: f64) -> IngestObservation {
    IngestObservation {
        lag_seconds: Some(lag),
        backlog: Some(backlog),
        backlog_slope: Some(slope),
        throughput: Some(tp),
    }
}

/// Runs serve every `every` seconds from t = 0 to `until`, applying each decision, and
/// returns the changes as (time, replicas).
pub fn run_serve(
    policy: &ServePolicy,
    obs: impl Fn(i64, u32) -> ServeObservation,
    mut current: u32,
    mut state: ScalingState,
    every: i64,
    until: i64,
) -> (Vec<(i64, u32)>, u32, ScalingState) {
    let mut changes = Vec::new();
    let mut t = 0;
    while t <= until {
        let (d, s) = decide_serve(policy, &obs(t, current), current, &state, at(t));
        if d.replicas != current {
            changes.push((t, d.replicas));
        }
        current = d.replicas;
        state = s;
        t += every;
    }
    (changes, current, state)
}

pub fn once_serve(policy: &ServePolicy, obs: ServeObservation, current: u32) -> ScaleDecision {
    decide_serve(policy, &obs, current, &ScalingState::default(), at(0)).0
}

pub fn once_ingest(policy: &IngestPolicy, obs: IngestObservation, current: u32) -> ScaleDecision {
    decide_ingest(policy, &obs, current, &ScalingState::default(), at(0)).0
}

pub fn valid(v: Option<f64>) -> bool {
    v.is_some_and(|x| x.is_finite() && x >= 0.0)
}

/// Judged here, independently of the implementation.
pub fn serve_complete(o: &ServeObservation) -> bool {
    o.p99.is_some_and(|r| valid(Some(r.p99_seconds)))
        && valid(o.request_rate)
        && o.page_burn.is_some()
        && valid(o.budget_remaining)
}

pub fn ingest_complete(o: &IngestObservation) -> bool {
    valid(o.lag_seconds)
        && valid(o.backlog)
        && o.backlog_slope.is_some_and(f64::is_finite)
        && valid(o.throughput)
}

pub fn serve_budget_blocks(p: &ServePolicy) -> impl Fn(&ServeObservation) -> bool + '_ {
    move |o| {
        o.page_burn != Some(false)
            || !valid(o.budget_remaining)
            || o.budget_remaining.unwrap() <= p.min_budget_remaining_for_scale_down
    }
}

/// One evaluation of a simulated run.
#[derive(Debug)]
pub struct Eval {
    pub t: i64,
    pub current: u32,
    pub decision: ScaleDecision,
    pub complete: bool,
    /// Scale-down is forbidden by the budget (serve only).
    pub budget_blocks: bool,
}

/// Runs the operator from an empty state over `steps`: each waits its seconds, `observe` turns
/// it into what the operator reads with the replicas then running (a closed loop keeps its own
/// state in the closure), and every decision is applied before the next evaluation.
pub fn simulate<S, O>(
    mut current: u32,
    steps: &[(i64, S)],
    mut observe: impl FnMut(i64, &S, u32) -> O,
    decide: impl Fn(&O, u32, &ScalingState, Timestamp) -> (ScaleDecision, ScalingState),
    complete: impl Fn(&O) -> bool,
    budget_blocks: impl Fn(&O) -> bool,
) -> Vec<Eval> {
    let mut state = ScalingState::default();
    let mut t = 0;
    let mut out = Vec::new();
    for (dt, step) in steps {
        t += dt;
        let o = observe(*dt, step, current);
        let (d, s) = decide(&o, current, &state, at(t));
        out.push(Eval {
            t,
            current,
            decision: d.clone(),
            complete: complete(&o),
            budget_blocks: budget_blocks(&o),
        });
        current = d.replicas;
        state = s;
    }
    out
}

/// For [`simulate`] on an open loop: the step is the observation, whatever runs.
pub fn observed<O: Copy>(_dt: i64, o: &O, _replicas: u32) -> O {
    *o
}

/// The ingest load model of the closed loops: records arrive at `arrival` per second (with a
/// jitter per step), each replica processes up to `capacity` per second, and the backlog and the
/// lag follow.
pub struct Queue {
    pub capacity: f64,
    pub arrival: f64,
    pub backlog: f64,
}

impl Queue {
    /// What the operator reads after `dt` seconds of `arrival × (1 + jitter)` on `replicas`.
    pub fn observe(&mut self, dt: i64, jitter: f64, replicas: u32) -> IngestObservation {
        let secs = dt as f64;
        let inflow = self.arrival * (1.0 + jitter);
        let processed =
            (f64::from(replicas) * self.capacity * secs).min(self.backlog + inflow * secs);
        let tp = processed / secs;
        let next = self.backlog + inflow * secs - processed;
        let o = IngestObservation {
            lag_seconds: Some(5.0 + next / tp),
            backlog: Some(next),
            backlog_slope: Some((next - self.backlog) / secs),
            throughput: Some(tp),
        };
        self.backlog = next;
        o
    }
}

/// The invariants every run must keep, whatever the signals.
pub fn check(limits: &Limits, evals: &[Eval]) -> Result<(), TestCaseError> {
    let up = limits.scale_up;
    let down = limits.scale_down;
    let mut last_up: Option<i64> = None;
    let mut last_down: Option<i64> = None;
    // Start of the current run of complete evaluations.
    let mut complete_from: Option<i64> = None;
    for e in evals {
        let d = &e.decision;
        let ctx = || format!("{e:?}");
        complete_from = if e.complete {
            complete_from.or(Some(e.t))
        } else {
            None
        };
        prop_assert!(
            d.replicas >= limits.min && d.replicas <= limits.max,
            "{}",
            ctx()
        );
        match d.direction {
            Direction::Hold => prop_assert_eq!(d.replicas, e.current, "{}", ctx()),
            Direction::Up => {
                prop_assert!(d.replicas > e.current, "{}", ctx());
                prop_assert!(d.replicas - e.current <= up.max_step, "{}", ctx());
                if let Some(l) = last_up {
                    prop_assert!(
                        e.t - l >= up.cooldown.as_secs() as i64,
                        "up cooldown: {}",
                        ctx()
                    );
                }
                last_up = Some(e.t);
            }
            Direction::Down => {
                prop_assert!(d.replicas < e.current, "{}", ctx());
                prop_assert!(e.current - d.replicas <= down.max_step, "{}", ctx());
                prop_assert!(e.complete, "scale-down on missing data: {}", ctx());
                prop_assert!(
                    !e.budget_blocks,
                    "scale-down on an unhealthy budget: {}",
                    ctx()
                );
                if let Some(l) = last_down {
                    prop_assert!(
                        e.t - l >= down.cooldown.as_secs() as i64,
                        "down cooldown: {}",
                        ctx()
                    );
                }
                if let Some(l) = last_up {
                    prop_assert!(
                        e.t - l > down.stabilization_window.as_secs() as i64,
                        "down within the window of an up: {}",
                        ctx()
                    );
                }
                // A full window of complete data since the (empty-state) start or a gap.
                let from = complete_from.unwrap_or(e.t);
                prop_assert!(
                    e.t - from >= down.stabilization_window.as_secs() as i64,
                    "scale-down without a full window of data: {}",
                    ctx()
                );
                last_down = Some(e.t);
            }
        }
        if !e.complete || e.budget_blocks {
            prop_assert!(d.replicas >= e.current, "{}", ctx());
        }
    }
    Ok(())
}

/// Direction changes between consecutive non-hold decisions.
pub fn reversals(evals: &[Eval]) -> usize {
    let dirs: Vec<_> = evals
        .iter()
        .map(|e| e.decision.direction)
        .filter(|d| *d != Direction::Hold)
        .collect();
    dirs.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Strategies for policies and observations.
pub mod arb {
    use super::*;

    pub fn behavior(
        max_window: u64,
        max_cooldown: u64,
        max_step: u32,
    ) -> impl Strategy<Value = Behavior> {
        (0..=max_window, 0..=max_cooldown, 1..=max_step).prop_map(|(w, c, s)| Behavior {
            stabilization_window: Duration::from_secs(w),
            cooldown: Duration::from_secs(c),
            max_step: s,
        })
    }

    pub fn limits() -> impl Strategy<Value = Limits> {
        (
            1u32..=5,
            0u32..=20,
            behavior(120, 120, 6),
            behavior(600, 300, 3),
        )
            .prop_map(|(min, extra, scale_up, scale_down)| Limits {
                min,
                max: min + extra,
                scale_up,
                scale_down,
            })
    }

    pub fn serve_policy() -> impl Strategy<Value = ServePolicy> {
        (
            limits(),
            50.0f64..95.0,
            1_000.0f64..10_000.0,
            0.6f64..0.95,
            0.0f64..0.5,
            1.0f64..2.0,
        )
            .prop_map(
                |(limits, target, per, headroom, floor, factor)| ServePolicy {
                    limits,
                    target_p99_percent_of_slo: target,
                    target_requests_per_replica: per,
                    scale_down_headroom: headroom,
                    min_budget_remaining_for_scale_down: floor,
                    burn_scale_up_factor: factor,
                },
            )
    }

    pub fn ingest_policy() -> impl Strategy<Value = IngestPolicy> {
        (
            limits(),
            30u64..1_800,
            20.0f64..90.0,
            5u64..300,
            prop::option::of(500.0f64..20_000.0),
        )
            .prop_map(|(limits, max_lag, target, horizon, cap)| IngestPolicy {
                limits,
                max_lag: Duration::from_secs(max_lag),
                target_lag_percent_of_slo: target,
                scale_down_lag_percent_of_slo: target / 2.0,
                target_backlog_per_replica: 100_000.0,
                breach_horizon: Duration::from_secs(horizon),
                throughput_per_replica: cap,
                scale_down_headroom: 0.8,
            })
    }

    /// A value, sometimes missing, sometimes garbage a query can return (NaN, ±∞, negative).
    pub fn maybe(range: std::ops::Range<f64>) -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            12 => range.prop_map(Some),
            1 => Just(None),
            1 => prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-1.0)
            ]
            .prop_map(Some),
        ]
    }

    pub fn serve_obs() -> impl Strategy<Value = ServeObservation> {
        (
            maybe(0.0..2.0),
            maybe(0.0..120_000.0),
            prop_oneof![6 => Just(Some(false)), 1 => Just(Some(true)), 1 => Just(None)],
            maybe(0.0..1.0),
        )
            .prop_map(|(ratio, rate, burn, budget)| ServeObservation {
                p99: ratio.map(|r| LatencyReading {
                    p99_seconds: 0.2 * r,
                    bound_seconds: 0.2,
                }),
                request_rate: rate,
                page_burn: burn,
                budget_remaining: budget,
            })
    }

    pub fn ingest_obs() -> impl Strategy<Value = IngestObservation> {
        (
            maybe(0.0..2_000.0),
            maybe(0.0..3_000_000.0),
            maybe(-50_000.0..50_000.0),
            maybe(0.0..100_000.0),
        )
            .prop_map(|(lag, backlog, slope, tp)| IngestObservation {
                lag_seconds: lag,
                backlog,
                backlog_slope: slope.map(|s| if s == -1.0 { -3.0 } else { s }),
                throughput: tp,
            })
    }
}
