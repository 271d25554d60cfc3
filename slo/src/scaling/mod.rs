//! Autoscaling decisions for the serve and ingest roles, as pure functions.
//!
//! Every evaluation the operator calls [`decide_serve`] or [`decide_ingest`] with the role's
//! policy, the observations it could read from Prometheus (each an `Option`: `None` is "no data
//! or the query failed"), the current replica count, the role's [`ScalingState`] and the time.
//! It gets back a [`ScaleDecision`] (replicas, direction, a human reason naming the signal and
//! its numbers) and the state to keep for the next evaluation.
//!
//! How a decision is made, in order:
//! 1. **Recommend** from the signals alone (the `recommend_*` functions): how many replicas the
//!    signals call for, with the reason.
//! 2. **Stabilize** as the HPA does: remember recommendations for a while; a scale-up goes to the
//!    *lowest* recommendation of the up window (0 s by default, so at once), a scale-down to the
//!    *highest* recommendation of the down window (5 min by default), so a single quiet sample
//!    never removes capacity.
//! 3. **Limit**: cooldown since the last change in that direction, at most `max_step` replicas
//!    per change, and always within `[min, max]`.
//!
//! Fail-safe rules, stricter than the HPA and KEDA:
//! - Missing data is never read as zero (KEDA's `ignoreNullValues` does, and has scaled production
//!   down during Prometheus outages). A missing, NaN or negative observation is *missing*; with
//!   any required signal missing the decision never scales down, and holds unless a signal that
//!   *is* present unambiguously calls for more replicas (P99 over target, request rate above
//!   capacity, a page-level burn, lag over target). More capacity on a partial picture is the
//!   cheap mistake; less capacity on a partial picture is the outage.
//! - The state lives only in the operator's memory (the HPA keeps its window in memory too). After
//!   a restart or failover it is empty, and the rule is explicit and tested: a scale-down needs a
//!   full down-stabilization window of evaluations with complete data first. A data gap resets
//!   that clock too.
//! - Serve never scales down while the error budget is at or below the caller's floor or a
//!   page-level burn alert is active.
//! - Hysteresis: a scale-down is sized so that the fewer replicas would still run at
//!   `scale_down_headroom` (80 %) of the target, so the load that remains after a step down does
//!   not cross the scale-up threshold again under ordinary noise.
//!
//! - Ingest has no CPU-style utilisation to size scale-down by, so it learns the per-replica
//!   capacity whenever the workers are visibly saturated (backlog growing, or a signal asking for
//!   more) and keeps enough replicas for the inflow at `scale_down_headroom` of that capacity.
//!   Without it an idle pipeline would drift to `min` and bounce back on the next peak.
//! - A clock that steps back never lets a scale-down through early: a last scale-down "in the
//!   future" keeps the down cooldown running (a scale-up is not blocked by it).
//!
//! Embedded (single StatefulSet) pipelines cannot scale horizontally; the operator simply does
//! not call these functions for them.

mod ingest;
mod serve;
mod stabilize;
#[cfg(test)]
mod testkit;

use std::fmt::{self, Write as _};

pub use ingest::{IngestObservation, IngestPolicy, SLOPE_TOLERANCE, decide_ingest, time_to_breach};
pub use serve::{LatencyReading, ServeObservation, ServePolicy, decide_serve};
pub use stabilize::{Behavior, Limits, ScalingState};

/// A signal a decision needs; named in reasons and in the operator's missing-data condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Worst serve P99 against its bound.
    P99,
    /// Serve request rate.
    RequestRate,
    /// Page-level burn alert state.
    PageBurn,
    /// Remaining error budget.
    BudgetRemaining,
    /// Freshness lag.
    Lag,
    /// Ingest backlog.
    Backlog,
    /// Ingest backlog slope.
    BacklogSlope,
    /// Ingest throughput.
    Throughput,
}

impl Signal {
    /// Short human name, as used in reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::P99 => "P99 latency",
            Signal::RequestRate => "request rate",
            Signal::PageBurn => "page burn alert",
            Signal::BudgetRemaining => "error budget remaining",
            Signal::Lag => "freshness lag",
            Signal::Backlog => "backlog",
            Signal::BacklogSlope => "backlog slope",
            Signal::Throughput => "ingest throughput",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a decision moves the replica count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// More replicas.
    Up,
    /// Fewer replicas.
    Down,
    /// Unchanged.
    Hold,
}

impl Direction {
    /// Label value for the operator's decisions metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Hold => "hold",
        }
    }
}

/// The outcome of one evaluation: what to set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleDecision {
    /// Replicas to run (equal to the current count when holding).
    pub replicas: u32,
    /// Up, down or hold, relative to the current count passed in.
    pub direction: Direction,
    /// Human reason naming the signal and its numbers, for the status, the Event and the log.
    pub reason: String,
    /// Required signals that were missing, for the missing-data condition (empty when complete).
    pub missing: Vec<Signal>,
}

/// What the signals alone call for, before stabilization and limits.
#[derive(Debug, Clone, PartialEq)]
struct Recommendation {
    /// Replicas called for, within `[min, max]` once settled.
    replicas: u32,
    /// Why, with the numbers.
    why: String,
    /// Every required signal was present.
    complete: bool,
    /// The missing ones.
    missing: Vec<Signal>,
    /// Remember it for stabilization (false for a hold on missing data or a bad policy).
    record: bool,
    /// Per-replica capacity measured now, to remember (ingest only).
    capacity: Option<f64>,
}

impl Recommendation {
    fn invalid(why: String, current: u32) -> Self {
        Self {
            replicas: current,
            why: format!("invalid scaling policy ({why})"),
            complete: false,
            missing: Vec::new(),
            record: false,
            capacity: None,
        }
    }

    fn missing_hold(missing: Vec<Signal>, current: u32) -> Self {
        let names: Vec<_> = missing.iter().map(|s| s.as_str()).collect();
        Self {
            replicas: current,
            why: format!("no data for {}", names.join(", ")),
            complete: false,
            missing,
            record: false,
            capacity: None,
        }
    }
}

/// One reason to want a given count.
struct Want {
    replicas: u32,
    why: String,
}

/// Picks the largest want, naming every signal that asked for more.
fn largest(wants: Vec<Want>, missing: Vec<Signal>) -> Recommendation {
    let replicas = wants.iter().map(|w| w.replicas).max().unwrap_or(0);
    let mut why = wants
        .iter()
        .map(|w| w.why.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if !missing.is_empty() {
        let names: Vec<_> = missing.iter().map(|s| s.as_str()).collect();
        let _ = write!(
            why,
            " (scaling up on the signals present; no data for {})",
            names.join(", ")
        );
    }
    Recommendation {
        replicas,
        why,
        complete: missing.is_empty(),
        missing,
        record: true,
        capacity: None,
    }
}

/// A finite, non-negative value, or missing.
fn nonneg(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite() && *x >= 0.0)
}

/// Replicas for a fractional need: rounded up, ignoring float noise (3.0000000001 is 3).
fn count(x: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        0
    } else if x >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        (x - 1e-9).ceil().max(0.0) as u32
    }
}

fn pct(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// Seconds as `172ms`, `45s`, `10m`, `2m30s`.
fn secs(s: f64) -> String {
    if !s.is_finite() {
        return "∞".into();
    }
    if s < 1.0 {
        return format!("{:.0}ms", s * 1000.0);
    }
    let whole = s.round() as u64;
    if s < 60.0 {
        return format!("{whole}s");
    }
    let (h, m, sec) = (whole / 3600, whole % 3600 / 60, whole % 60);
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if m > 0 {
        let _ = write!(out, "{m}m");
    }
    if sec > 0 {
        let _ = write!(out, "{sec}s");
    }
    out
}

/// A count with thousands separators: `27,000`, `-2,000`.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let r = x.round();
    let digits = format!("{:.0}", r.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if r < 0.0 {
        out.insert(0, '-');
    }
    out
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::testkit::*;
    use super::*;

    #[test]
    fn an_invalid_policy_holds() {
        let p = ServePolicy {
            target_requests_per_replica: 0.0,
            ..ServePolicy::default()
        };
        let d = once_serve(&p, serve_obs(0.99, 100_000.0), 3);
        assert_eq!((d.replicas, d.direction), (3, Direction::Hold));
        assert!(
            d.reason.starts_with("invalid scaling policy"),
            "{}",
            d.reason
        );
        let p = IngestPolicy {
            max_lag: Duration::ZERO,
            ..IngestPolicy::default()
        };
        assert_eq!(
            once_ingest(&p, ingest_obs(900.0, 1e7, 1e4, 1.0), 3).direction,
            Direction::Hold
        );
    }

    #[test]
    fn formatting() {
        assert_eq!(secs(0.172), "172ms");
        assert_eq!(secs(45.0), "45s");
        assert_eq!(secs(600.0), "10m");
        assert_eq!(secs(150.0), "2m30s");
        assert_eq!(secs(3_660.0), "1h1m");
        assert_eq!(num(27_000.0), "27,000");
        assert_eq!(num(-2_000.4), "-2,000");
        assert_eq!(num(999.0), "999");
        assert_eq!(num(1_234_567.0), "1,234,567");
        assert_eq!(count(3.000_000_000_1), 3);
        assert_eq!(count(3.2), 4);
        assert_eq!(count(f64::NAN), 0);
        assert_eq!(trim(1.5), "1.5");
        assert_eq!(trim(2.0), "2");
    }
}

/// Properties of both roles over random policies and signal histories.
#[cfg(test)]
mod props {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::testkit::{arb, at, ingest_complete, serve_complete};
    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Any bits at all in the observations and the policy: no panic, and with a valid range
        /// and a current count inside it, the result stays inside it.
        #[test]
        fn arbitrary_floats_never_panic(
            min in 0u32..50,
            extra in 0u32..50,
            current in 0u32..120,
            floats in prop::collection::vec(
                prop_oneof![
                    any::<f64>(),
                    -1.0f64..2.0,
                    0.0f64..100.0,
                    0.0f64..100_000.0,
                    Just(f64::NAN),
                    Just(f64::INFINITY),
                    Just(0.0)
                ],
                14,
            ),
            burn in prop::option::of(any::<bool>()),
            windows in prop::collection::vec(0u64..100_000, 4),
        ) {
            let f = |i: usize| floats[i];
            let o = |i: usize| (f(i).to_bits() % 5 != 0).then(|| f(i));
            let limits = Limits {
                min,
                max: min + extra,
                scale_up: Behavior { stabilization_window: Duration::from_secs(windows[0]), cooldown: Duration::from_secs(windows[1]), max_step: 3 },
                scale_down: Behavior { stabilization_window: Duration::from_secs(windows[2]), cooldown: Duration::from_secs(windows[3]), max_step: 0 },
            };
            let sp = ServePolicy {
                limits,
                target_p99_percent_of_slo: f(0),
                target_requests_per_replica: f(1),
                scale_down_headroom: f(2),
                min_budget_remaining_for_scale_down: f(3),
                burn_scale_up_factor: f(4),
            };
            let so = ServeObservation {
                p99: o(5).map(|p| LatencyReading { p99_seconds: p, bound_seconds: f(6) }),
                request_rate: o(7),
                page_burn: burn,
                budget_remaining: o(8),
            };
            let ip = IngestPolicy {
                limits,
                target_lag_percent_of_slo: f(9),
                throughput_per_replica: o(10),
                ..IngestPolicy::default()
            };
            let io = IngestObservation {
                lag_seconds: o(10),
                backlog: o(11),
                backlog_slope: o(12),
                throughput: o(13),
            };
            let mut ss = ScalingState::default();
            let mut si = ScalingState::default();
            for t in 0..5 {
                let (d, s) = decide_serve(&sp, &so, current, &ss, at(t * 15));
                if (min..=min + extra).contains(&current) {
                    prop_assert!(d.replicas >= min && d.replicas <= min + extra);
                    prop_assert!(d.replicas >= current || serve_complete(&so));
                }
                ss = s;
                let (d, s) = decide_ingest(&ip, &io, current, &si, at(t * 15));
                if (min..=min + extra).contains(&current) {
                    prop_assert!(d.replicas >= min && d.replicas <= min + extra);
                    prop_assert!(d.replicas >= current || ingest_complete(&io));
                }
                si = s;
            }
        }

        /// Same state, inputs and time: same decision and state. Replaying the evaluation with the
        /// returned state and the applied replicas does not move again (cooldowns ≥ 1 s).
        #[test]
        fn decisions_are_idempotent(
            mut p in arb::serve_policy(),
            mut ip in arb::ingest_policy(),
            start in 0u32..30,
            prefix in prop::collection::vec((1i64..=60, arb::serve_obs(), arb::ingest_obs()), 0..60),
            last in (1i64..=60, arb::serve_obs(), arb::ingest_obs()),
        ) {
            for l in [&mut p.limits, &mut ip.limits] {
                l.scale_up.cooldown = l.scale_up.cooldown.max(Duration::from_secs(1));
                l.scale_down.cooldown = l.scale_down.cooldown.max(Duration::from_secs(1));
            }
            let (mut cs, mut ci) = (p.limits.clamp(start), ip.limits.clamp(start));
            let (mut ss, mut si) = (ScalingState::default(), ScalingState::default());
            let mut t = 0;
            for (dt, so, io) in &prefix {
                t += dt;
                let (d, s) = decide_serve(&p, so, cs, &ss, at(t));
                (cs, ss) = (d.replicas, s);
                let (d, s) = decide_ingest(&ip, io, ci, &si, at(t));
                (ci, si) = (d.replicas, s);
            }
            let now = at(t + last.0);
            let a = decide_serve(&p, &last.1, cs, &ss, now);
            prop_assert_eq!(&a, &decide_serve(&p, &last.1, cs, &ss, now));
            let (d2, _) = decide_serve(&p, &last.1, a.0.replicas, &a.1, now);
            prop_assert_eq!(d2.replicas, a.0.replicas, "{:?} then {:?}", a.0, d2);
            prop_assert_eq!(d2.direction, Direction::Hold);

            let b = decide_ingest(&ip, &last.2, ci, &si, now);
            prop_assert_eq!(&b, &decide_ingest(&ip, &last.2, ci, &si, now));
            let (d2, _) = decide_ingest(&ip, &last.2, b.0.replicas, &b.1, now);
            prop_assert_eq!(d2.replicas, b.0.replicas, "{:?} then {:?}", b.0, d2);
            prop_assert_eq!(d2.direction, Direction::Hold);
        }
    }
}
