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

use std::fmt::{self, Write as _};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Backlog growth below this share of the throughput counts as noise, not growth, when deciding
/// whether ingest may scale down (a `deriv()` of a steady queue jitters around zero).
pub const SLOPE_TOLERANCE: f64 = 0.05;

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
    fn bounds(&self) -> (u32, u32) {
        (self.min, self.max.max(self.min))
    }

    fn clamp(&self, n: u32) -> u32 {
        let (lo, hi) = self.bounds();
        n.clamp(lo, hi)
    }
}

/// Serve (read) scaling policy: P99 headroom, request rate and the error budget.
#[derive(Debug, Clone, PartialEq)]
pub struct ServePolicy {
    /// Bounds and damping.
    pub limits: Limits,
    /// Scale up when the worst P99 exceeds this percent of its SLO bound (CRD default 80).
    pub target_p99_percent_of_slo: f64,
    /// Requests per second one replica is sized for (CRD default 5000).
    pub target_requests_per_replica: f64,
    /// Scale down only to a count that would run at this fraction of both targets (0.8), so a
    /// step down does not land back above the scale-up threshold.
    pub scale_down_headroom: f64,
    /// Scale down only while the remaining error budget (a fraction, 0..1) is above this, e.g.
    /// the rollout freeze threshold (CRD `freezeBelow` 25 % → 0.25).
    pub min_budget_remaining_for_scale_down: f64,
    /// On a page-level burn, ask for `current × factor` replicas (at least one more) (1.5).
    pub burn_scale_up_factor: f64,
}

impl ServePolicy {
    /// The CRD defaults for `[min, max]` (the CRD's own default range is 2..20).
    pub fn new(min: u32, max: u32) -> Self {
        Self {
            limits: Limits::new(min, max),
            target_p99_percent_of_slo: 80.0,
            target_requests_per_replica: 5000.0,
            scale_down_headroom: 0.8,
            min_budget_remaining_for_scale_down: 0.25,
            burn_scale_up_factor: 1.5,
        }
    }

    fn invalid(&self) -> Option<String> {
        let t = self.target_p99_percent_of_slo;
        if !(t > 0.0 && t <= 100.0) {
            return Some(format!("targetP99PercentOfSlo {t} is not in (0, 100]"));
        }
        if !(self.target_requests_per_replica > 0.0 && self.target_requests_per_replica.is_finite())
        {
            return Some(format!(
                "targetRequestsPerReplica {} is not positive",
                self.target_requests_per_replica
            ));
        }
        if !(self.scale_down_headroom > 0.0 && self.scale_down_headroom <= 1.0) {
            return Some(format!(
                "scale-down headroom {} is not in (0, 1]",
                self.scale_down_headroom
            ));
        }
        if !(self.burn_scale_up_factor >= 1.0 && self.burn_scale_up_factor.is_finite()) {
            return Some(format!(
                "burn scale-up factor {} is below 1",
                self.burn_scale_up_factor
            ));
        }
        if self.min_budget_remaining_for_scale_down.is_nan() {
            return Some("scale-down budget floor is NaN".into());
        }
        None
    }
}

impl Default for ServePolicy {
    fn default() -> Self {
        Self::new(2, 20)
    }
}

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
    /// Queued records one replica is sized for (CRD default 100000).
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

/// The worst P99 of the serve query classes, with the bound of the class it belongs to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyReading {
    /// Observed P99, in seconds (as `histogram_quantile` returns it).
    pub p99_seconds: f64,
    /// That class's P99 SLO bound, in seconds.
    pub bound_seconds: f64,
}

impl LatencyReading {
    /// P99 as a fraction of its bound; `None` for NaN, negative or a zero bound (no data).
    pub fn ratio(&self) -> Option<f64> {
        let (p, b) = (self.p99_seconds, self.bound_seconds);
        (p.is_finite() && p >= 0.0 && b.is_finite() && b > 0.0).then(|| p / b)
    }

    /// The reading with the highest ratio. One missing class makes the worst unknown (it could be
    /// the missing one), so any `None` or unusable reading, or none at all, gives `None`.
    pub fn worst(readings: impl IntoIterator<Item = Option<LatencyReading>>) -> Option<Self> {
        let mut worst: Option<(f64, Self)> = None;
        for r in readings {
            let r = r?;
            let ratio = r.ratio()?;
            if worst.is_none_or(|(w, _)| ratio > w) {
                worst = Some((ratio, r));
            }
        }
        worst.map(|(_, r)| r)
    }
}

/// What the operator read for serve this evaluation. `None`: no data or the query failed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServeObservation {
    /// Worst P99 across query classes (see [`LatencyReading::worst`]).
    pub p99: Option<LatencyReading>,
    /// Total read requests per second across replicas.
    pub request_rate: Option<f64>,
    /// Whether a page-level (fast) burn alert is active for a serve SLO.
    pub page_burn: Option<bool>,
    /// Remaining error budget of the serve SLOs, a fraction 0..1 (the lowest of them).
    pub budget_remaining: Option<f64>,
}

/// What the operator read for ingest this evaluation. `None`: no data or the query failed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IngestObservation {
    /// Current freshness (event-time) lag, in seconds.
    pub lag_seconds: Option<f64>,
    /// Queued records, summed over workers.
    pub backlog: Option<f64>,
    /// Backlog growth in records/s (`deriv()`), negative while draining.
    pub backlog_slope: Option<f64>,
    /// Records/s processed, summed over workers.
    pub throughput: Option<f64>,
}

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
    recommendations: Vec<(DateTime<Utc>, u32)>,
    /// Start of the current unbroken run of evaluations with every required signal present.
    complete_since: Option<DateTime<Utc>>,
    /// When replicas were last raised.
    last_scale_up: Option<DateTime<Utc>>,
    /// When replicas were last lowered.
    last_scale_down: Option<DateTime<Utc>>,
    /// Ingest only: records/s per replica measured the last time the workers were saturated.
    learned_capacity: Option<f64>,
}

/// The learned capacity is only ever stored finite, so equality is reflexive.
impl Eq for ScalingState {}

impl ScalingState {
    /// When replicas were last raised by a decision, if since the operator started.
    pub fn last_scale_up(&self) -> Option<DateTime<Utc>> {
        self.last_scale_up
    }

    /// When replicas were last lowered by a decision, if since the operator started.
    pub fn last_scale_down(&self) -> Option<DateTime<Utc>> {
        self.last_scale_down
    }

    /// Ingest only: records/s one replica processed the last time the workers were saturated
    /// (backlog growing, or a signal asking for more). Sizes scale-down so that the remaining
    /// replicas keep up with the inflow; forgotten on restart, like the rest of the state.
    pub fn learned_capacity(&self) -> Option<f64> {
        self.learned_capacity
    }

    /// Since when every required signal has been present without a gap, if it is now.
    pub fn complete_since(&self) -> Option<DateTime<Utc>> {
        self.complete_since
    }
}

/// Decides the serve replica count from P99 headroom, request rate and the error budget.
///
/// Up (fast, up window 0 s): when the worst P99 is above the target percent of its bound, the
/// request rate needs more replicas than run, or a page-level burn alert is active; sized by the
/// largest of `current × ratio / target`, `rate / per-replica` and `current × burn factor`.
/// Down (slow): only with complete data, the budget above its floor and no page burn, sized so
/// that both P99 and rate would sit at `scale_down_headroom` of their targets.
pub fn decide_serve(
    policy: &ServePolicy,
    obs: &ServeObservation,
    current: u32,
    state: &ScalingState,
    now: DateTime<Utc>,
) -> (ScaleDecision, ScalingState) {
    let rec = match policy.invalid() {
        Some(why) => Recommendation::invalid(why, current),
        None => recommend_serve(policy, obs, current),
    };
    settle(&policy.limits, current, state, now, rec)
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
    now: DateTime<Utc>,
) -> (ScaleDecision, ScalingState) {
    let rec = match policy.invalid() {
        Some(why) => Recommendation::invalid(why, current),
        None => recommend_ingest(policy, obs, current, state.learned_capacity),
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

fn recommend_serve(p: &ServePolicy, o: &ServeObservation, current: u32) -> Recommendation {
    let cur = f64::from(current.max(1));
    let target = p.target_p99_percent_of_slo / 100.0;
    let per = p.target_requests_per_replica;

    let latency = o.p99.and_then(|r| r.ratio().map(|ratio| (r, ratio)));
    let rate = nonneg(o.request_rate);
    let budget = nonneg(o.budget_remaining);
    let mut missing = Vec::new();
    if latency.is_none() {
        missing.push(Signal::P99);
    }
    if rate.is_none() {
        missing.push(Signal::RequestRate);
    }
    if o.page_burn.is_none() {
        missing.push(Signal::PageBurn);
    }
    if budget.is_none() {
        missing.push(Signal::BudgetRemaining);
    }

    // Up: any present signal that asks for more is enough.
    let mut wants = Vec::new();
    if let Some((r, ratio)) = latency
        && ratio > target
    {
        wants.push(Want {
            replicas: count(cur * ratio / target).max(current.saturating_add(1)),
            why: format!(
                "P99 {} is {} of the {} SLO (target {})",
                secs(r.p99_seconds),
                pct(ratio),
                secs(r.bound_seconds),
                pct(target)
            ),
        });
    }
    if let Some(q) = rate {
        let n = count(q / per);
        if n > current {
            wants.push(Want {
                replicas: n,
                why: format!(
                    "{} req/s needs {n} replicas at {} per replica",
                    num(q),
                    num(per)
                ),
            });
        }
    }
    if o.page_burn == Some(true) {
        wants.push(Want {
            replicas: count(cur * p.burn_scale_up_factor).max(current.saturating_add(1)),
            why: format!(
                "page-level burn alert active: ×{} capacity",
                trim(p.burn_scale_up_factor)
            ),
        });
    }
    if !wants.is_empty() {
        return largest(wants, missing);
    }
    if !missing.is_empty() {
        return Recommendation::missing_hold(missing, current);
    }
    let (Some((r, ratio)), Some(q), Some(budget)) = (latency, rate, budget) else {
        return Recommendation::missing_hold(missing, current);
    };

    // Nothing asks for more. Down only with a healthy budget, to the count that keeps headroom.
    let h = p.scale_down_headroom;
    let n_lat = count(cur * ratio / (target * h));
    let n_rate = count(q / (per * h));
    let n = n_lat.max(n_rate).max(1);
    let state = format!(
        "P99 {} is {} of the {} SLO (target {}), {} req/s",
        secs(r.p99_seconds),
        pct(ratio),
        secs(r.bound_seconds),
        pct(target),
        num(q)
    );
    let floor = p.min_budget_remaining_for_scale_down;
    let (replicas, why) = if n >= current {
        (current, format!("{state}: within target"))
    } else if budget <= floor {
        (
            current,
            format!(
                "{state}, but only {} of the error budget is left (scale-down floor {}): no scale-down",
                pct(budget),
                pct(floor)
            ),
        )
    } else {
        (
            n,
            format!(
                "{state}, budget {} left: {n} replicas keep P99 and rate at {} of target",
                pct(budget),
                pct(h)
            ),
        )
    };
    Recommendation {
        replicas,
        why,
        complete: true,
        missing,
        record: true,
        capacity: None,
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

/// Stabilizes, rate-limits and bounds a recommendation; returns the decision and the new state.
fn settle(
    limits: &Limits,
    current: u32,
    state: &ScalingState,
    now: DateTime<Utc>,
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
        .map(|since| seconds(now - since))
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
    last: Option<DateTime<Utc>>,
    cooldown: Duration,
    now: DateTime<Utc>,
    block_if_future: bool,
) -> Option<f64> {
    let elapsed = seconds(now - last?);
    let total = cooldown.as_secs_f64();
    if elapsed < 0.0 {
        return block_if_future.then_some(total);
    }
    (elapsed < total).then_some(total - elapsed)
}

/// `now − window`, saturating at the earliest representable time for absurd windows.
fn window_start(now: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn seconds(d: TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
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
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    /// A healthy serve picture: P99 at `ratio` of a 200 ms bound, `rate` req/s, 90 % budget left.
    fn serve_obs(ratio: f64, rate: f64) -> ServeObservation {
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

    fn ingest_obs(lag: f64, backlog: f64, slope: f64, tp: f64) -> IngestObservation {
        IngestObservation {
            lag_seconds: Some(lag),
            backlog: Some(backlog),
            backlog_slope: Some(slope),
            throughput: Some(tp),
        }
    }

    /// Runs serve every `every` seconds from t = 0 to `until`, applying each decision, and
    /// returns the changes as (time, replicas).
    fn run_serve(
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

    fn once_serve(policy: &ServePolicy, obs: ServeObservation, current: u32) -> ScaleDecision {
        decide_serve(policy, &obs, current, &ScalingState::default(), at(0)).0
    }

    fn once_ingest(policy: &IngestPolicy, obs: IngestObservation, current: u32) -> ScaleDecision {
        decide_ingest(policy, &obs, current, &ScalingState::default(), at(0)).0
    }

    #[test]
    fn serve_p99_over_target_scales_up_by_headroom() {
        // 172 ms of 200 ms is 86 % against 80 %: 3 × 0.86 / 0.80 = 3.225 → 4.
        let d = once_serve(&ServePolicy::default(), serve_obs(0.86, 10_000.0), 3);
        assert_eq!(d.replicas, 4);
        assert_eq!(d.direction, Direction::Up);
        assert_eq!(
            d.reason,
            "P99 172ms is 86% of the 200ms SLO (target 80%): 3 → 4 replicas"
        );
        assert!(d.missing.is_empty());
        // 190 ms (95 %) on 10 replicas: 10 × 0.95 / 0.8 = 11.875 → 12.
        let d = once_serve(&ServePolicy::default(), serve_obs(0.95, 10_000.0), 10);
        assert_eq!(d.replicas, 12);
    }

    #[test]
    fn serve_request_rate_sizes_up_and_the_larger_need_wins() {
        // 27,000 req/s at 5,000 per replica: 5.4 → 6. P99 is fine.
        let d = once_serve(&ServePolicy::default(), serve_obs(0.5, 27_000.0), 3);
        assert_eq!(d.replicas, 6);
        assert_eq!(
            d.reason,
            "27,000 req/s needs 6 replicas at 5,000 per replica: 3 → 6 replicas"
        );
        // Both: P99 asks for 4, rate for 6: 6, and both are named.
        let d = once_serve(&ServePolicy::default(), serve_obs(0.86, 27_000.0), 3);
        assert_eq!(d.replicas, 6);
        assert!(d.reason.contains("P99 172ms") && d.reason.contains("27,000 req/s"));
    }

    #[test]
    fn serve_up_is_limited_by_step_and_maximum() {
        // 45,000 req/s wants 9; max step 4 from 3 gives 7.
        let d = once_serve(&ServePolicy::default(), serve_obs(0.5, 45_000.0), 3);
        assert_eq!(d.replicas, 7);
        assert!(
            d.reason.ends_with("3 → 7 replicas (wants 9, max step 4)"),
            "{}",
            d.reason
        );
        // Max 5: 4 → 5 and says so.
        let p = ServePolicy::new(2, 5);
        let d = once_serve(&p, serve_obs(0.5, 45_000.0), 4);
        assert_eq!(d.replicas, 5);
        assert!(d.reason.contains("(at the maximum 5)"), "{}", d.reason);
        // Already at the maximum: hold, and say why.
        let d = once_serve(&p, serve_obs(0.5, 45_000.0), 5);
        assert_eq!((d.replicas, d.direction), (5, Direction::Hold));
        assert!(
            d.reason.contains("hold at 5 (at the maximum 5)"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn serve_fast_burn_scales_up_even_with_good_latency() {
        let mut o = serve_obs(0.5, 10_000.0);
        o.page_burn = Some(true);
        o.budget_remaining = Some(0.1);
        // 4 × 1.5 = 6.
        let d = once_serve(&ServePolicy::default(), o, 4);
        assert_eq!(d.replicas, 6);
        assert!(
            d.reason.starts_with("page-level burn alert active"),
            "{}",
            d.reason
        );
        // 2 × 1.5 = 3; the factor always adds at least one: 1 × 1.5 → 2.
        assert_eq!(once_serve(&ServePolicy::new(1, 20), o, 1).replicas, 2);
    }

    #[test]
    fn serve_scales_down_slowly_after_a_full_window() {
        // Quiet: P99 at 30 %, 8,000 req/s on 6 replicas, budget healthy.
        // Down sizing with 80 % headroom: P99 6 × 0.30 / 0.64 = 2.81 → 3; rate 8,000 / 4,000 = 2.
        let p = ServePolicy::default();
        let (changes, _, _) = run_serve(
            &p,
            |_, _| serve_obs(0.3, 8_000.0),
            6,
            ScalingState::default(),
            15,
            1200,
        );
        // Nothing for the first 5 minutes (empty state = a restart), then one replica per
        // 2 min cooldown. At 4 replicas the recommendation drops to 2 (4 × 0.3 / 0.64 = 1.9), but
        // the evaluation at t = 420 still saw 5 replicas and recommended 3 (5 × 0.3 / 0.64 =
        // 2.34), so that 3 stays in the window until t = 720 and 3 → 2 waits for t = 735.
        assert_eq!(changes, vec![(300, 5), (420, 4), (540, 3), (735, 2)]);
    }

    #[test]
    fn serve_never_scales_down_on_an_unhealthy_budget_or_a_burn() {
        let p = ServePolicy::default();
        let mut o = serve_obs(0.3, 8_000.0);
        o.budget_remaining = Some(0.2);
        let (changes, _, state) = run_serve(&p, |_, _| o, 6, ScalingState::default(), 15, 1200);
        assert!(changes.is_empty(), "{changes:?}");
        let (d, _) = decide_serve(&p, &o, 6, &state, at(1215));
        assert!(
            d.reason
                .contains("only 20% of the error budget is left (scale-down floor 25%)"),
            "{}",
            d.reason
        );
        // At exactly the floor: still no.
        o.budget_remaining = Some(0.25);
        let (changes, _, _) = run_serve(&p, |_, _| o, 6, ScalingState::default(), 15, 1200);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn serve_missing_data_holds_and_names_the_signal() {
        let p = ServePolicy::default();
        // Warm state that wants to scale down.
        let (_, cur, state) = run_serve(
            &p,
            |_, _| serve_obs(0.3, 30_000.0),
            8,
            ScalingState::default(),
            15,
            600,
        );
        assert_eq!(cur, 8);
        let mut o = serve_obs(0.3, 8_000.0);
        o.p99 = None;
        let (d, _) = decide_serve(&p, &o, 8, &state, at(615));
        assert_eq!((d.replicas, d.direction), (8, Direction::Hold));
        assert_eq!(d.missing, vec![Signal::P99]);
        assert_eq!(
            d.reason,
            "no data for P99 latency: hold at 8 (never scale down without data)"
        );
        // An empty query that a KEDA-style scaler would read as 0 req/s: NaN or absent.
        for rate in [None, Some(f64::NAN), Some(-1.0)] {
            let mut o = serve_obs(0.3, 0.0);
            o.request_rate = rate;
            let (d, _) = decide_serve(&p, &o, 8, &state, at(615));
            assert_eq!(d.replicas, 8, "{rate:?}");
            assert_eq!(d.missing, vec![Signal::RequestRate]);
        }
        // A NaN P99 (histogram_quantile on no samples) is missing too.
        let mut o = serve_obs(0.3, 8_000.0);
        o.p99 = Some(LatencyReading {
            p99_seconds: f64::NAN,
            bound_seconds: 0.2,
        });
        assert_eq!(decide_serve(&p, &o, 8, &state, at(615)).0.replicas, 8);
    }

    #[test]
    fn serve_scales_up_on_an_unambiguous_partial_picture() {
        // Page burn active while P99 is missing: more capacity is the safe side.
        let o = ServeObservation {
            p99: None,
            request_rate: None,
            page_burn: Some(true),
            budget_remaining: None,
        };
        let d = once_serve(&ServePolicy::default(), o, 4);
        assert_eq!((d.replicas, d.direction), (6, Direction::Up));
        assert_eq!(
            d.missing,
            vec![Signal::P99, Signal::RequestRate, Signal::BudgetRemaining]
        );
        assert!(
            d.reason
                .contains("no data for P99 latency, request rate, error budget remaining"),
            "{}",
            d.reason
        );
        // P99 over target with the budget query failing.
        let mut o = serve_obs(0.9, 1_000.0);
        o.budget_remaining = None;
        assert_eq!(once_serve(&ServePolicy::default(), o, 4).replicas, 5);
    }

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
    fn worst_latency_is_unknown_when_a_class_is_missing() {
        let r = |p: f64, b: f64| {
            Some(LatencyReading {
                p99_seconds: p,
                bound_seconds: b,
            })
        };
        let w = LatencyReading::worst([r(0.1, 0.2), r(0.3, 0.5), r(0.15, 0.2)]).unwrap();
        assert_eq!(w.p99_seconds, 0.15);
        assert_eq!(LatencyReading::worst([r(0.1, 0.2), None]), None);
        assert_eq!(LatencyReading::worst([r(f64::NAN, 0.2)]), None);
        assert_eq!(LatencyReading::worst(Vec::new()), None);
    }

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

/// Properties over random policies and signal histories; the operator is simulated by applying
/// every decision before the next evaluation.
#[cfg(test)]
mod props {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap() + TimeDelta::seconds(secs)
    }

    fn behavior(
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

    fn limits() -> impl Strategy<Value = Limits> {
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

    fn serve_policy() -> impl Strategy<Value = ServePolicy> {
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

    fn ingest_policy() -> impl Strategy<Value = IngestPolicy> {
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
    fn maybe(range: std::ops::Range<f64>) -> impl Strategy<Value = Option<f64>> {
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

    fn serve_obs() -> impl Strategy<Value = ServeObservation> {
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

    fn ingest_obs() -> impl Strategy<Value = IngestObservation> {
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

    fn valid(v: Option<f64>) -> bool {
        v.is_some_and(|x| x.is_finite() && x >= 0.0)
    }

    /// Judged here, independently of the implementation.
    fn serve_complete(o: &ServeObservation) -> bool {
        o.p99.is_some_and(|r| valid(Some(r.p99_seconds)))
            && valid(o.request_rate)
            && o.page_burn.is_some()
            && valid(o.budget_remaining)
    }

    fn ingest_complete(o: &IngestObservation) -> bool {
        valid(o.lag_seconds)
            && valid(o.backlog)
            && o.backlog_slope.is_some_and(f64::is_finite)
            && valid(o.throughput)
    }

    /// One evaluation of a simulated run.
    #[derive(Debug)]
    struct Eval {
        t: i64,
        current: u32,
        decision: ScaleDecision,
        complete: bool,
        /// Scale-down is forbidden by the budget (serve only).
        budget_blocks: bool,
    }

    fn simulate<O: Copy>(
        mut current: u32,
        steps: &[(i64, O)],
        decide: impl Fn(&O, u32, &ScalingState, DateTime<Utc>) -> (ScaleDecision, ScalingState),
        complete: impl Fn(&O) -> bool,
        budget_blocks: impl Fn(&O) -> bool,
    ) -> Vec<Eval> {
        let mut state = ScalingState::default();
        let mut t = 0;
        let mut out = Vec::new();
        for (dt, o) in steps {
            t += dt;
            let (d, s) = decide(o, current, &state, at(t));
            out.push(Eval {
                t,
                current,
                decision: d.clone(),
                complete: complete(o),
                budget_blocks: budget_blocks(o),
            });
            current = d.replicas;
            state = s;
        }
        out
    }

    /// The invariants every run must keep, whatever the signals.
    fn check(limits: &Limits, evals: &[Eval]) -> Result<(), TestCaseError> {
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
    fn reversals(evals: &[Eval]) -> usize {
        let dirs: Vec<_> = evals
            .iter()
            .map(|e| e.decision.direction)
            .filter(|d| *d != Direction::Hold)
            .collect();
        dirs.windows(2).filter(|w| w[0] != w[1]).count()
    }

    fn serve_budget_blocks(p: &ServePolicy) -> impl Fn(&ServeObservation) -> bool + '_ {
        move |o| {
            o.page_burn != Some(false)
                || !valid(o.budget_remaining)
                || o.budget_remaining.unwrap() <= p.min_budget_remaining_for_scale_down
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn serve_invariants_hold_on_any_history(
            p in serve_policy(),
            start in 0u32..30,
            steps in prop::collection::vec((1i64..=60, serve_obs()), 1..120),
        ) {
            let current = p.limits.clamp(start);
            let evals = simulate(
                current,
                &steps,
                |o, c, s, now| decide_serve(&p, o, c, s, now),
                serve_complete,
                serve_budget_blocks(&p),
            );
            check(&p.limits, &evals)?;
        }

        #[test]
        fn ingest_invariants_hold_on_any_history(
            p in ingest_policy(),
            start in 0u32..30,
            steps in prop::collection::vec((1i64..=60, ingest_obs()), 1..120),
        ) {
            let current = p.limits.clamp(start);
            let evals = simulate(
                current,
                &steps,
                |o, c, s, now| decide_ingest(&p, o, c, s, now),
                ingest_complete,
                |_| false,
            );
            check(&p.limits, &evals)?;
        }

        /// Mostly quiet signals (that want a scale-down) with occasional gaps: the gaps and the
        /// empty start must each delay any scale-down by a full window.
        #[test]
        fn serve_quiet_with_gaps_waits_a_window_after_each_gap(
            p in serve_policy(),
            start in 0u32..30,
            steps in prop::collection::vec((1i64..=30, 0.0f64..0.3, prop::bool::weighted(0.05)), 1..150),
        ) {
            let current = p.limits.clamp(start);
            let steps: Vec<_> = steps
                .into_iter()
                .map(|(dt, ratio, gap)| {
                    let o = ServeObservation {
                        p99: (!gap).then_some(LatencyReading { p99_seconds: 0.2 * ratio, bound_seconds: 0.2 }),
                        request_rate: Some(100.0),
                        page_burn: Some(false),
                        budget_remaining: Some(0.99),
                    };
                    (dt, o)
                })
                .collect();
            let evals = simulate(
                current,
                &steps,
                |o, c, s, now| decide_serve(&p, o, c, s, now),
                serve_complete,
                serve_budget_blocks(&p),
            );
            check(&p.limits, &evals)?;
        }

        /// P99 jittering ±5 % around the target: scale up at most, never down, never a reversal.
        #[test]
        fn serve_noise_around_the_target_never_flaps(
            p in serve_policy(),
            start in 0u32..30,
            steps in prop::collection::vec((1i64..=60, -0.05f64..0.05), 1..200),
        ) {
            let current = p.limits.clamp(start);
            let target = p.target_p99_percent_of_slo / 100.0;
            let steps: Vec<_> = steps
                .into_iter()
                .map(|(dt, j)| {
                    let o = ServeObservation {
                        p99: Some(LatencyReading { p99_seconds: 0.2 * target * (1.0 + j), bound_seconds: 0.2 }),
                        request_rate: Some(0.0),
                        page_burn: Some(false),
                        budget_remaining: Some(0.99),
                    };
                    (dt, o)
                })
                .collect();
            let evals = simulate(
                current,
                &steps,
                |o, c, s, now| decide_serve(&p, o, c, s, now),
                serve_complete,
                serve_budget_blocks(&p),
            );
            check(&p.limits, &evals)?;
            prop_assert!(evals.iter().all(|e| e.decision.direction != Direction::Down));
            prop_assert_eq!(reversals(&evals), 0);
        }

        /// Closed loop: P99 proportional to load per replica, and a request rate, both with ±5 %
        /// noise around a fixed load. The system settles with no direction change at all: a
        /// step down lands at most at headroom × target × 1.05 / 0.95 < target, and a step up
        /// leaves the load above headroom × target.
        #[test]
        fn serve_closed_loop_settles_without_reversals(
            p in serve_policy(),
            start in 0u32..30,
            load in 0.2f64..25.0,
            rate_load in 0.0f64..25.0,
            steps in prop::collection::vec((1i64..=60, -0.05f64..0.05, -0.05f64..0.05), 1..250),
        ) {
            // The ±5 % argument needs headroom × 1.05 / 0.95 < 1.
            prop_assume!(p.scale_down_headroom < 0.9);
            let target = p.target_p99_percent_of_slo / 100.0;
            let per = p.target_requests_per_replica;
            let mut current = p.limits.clamp(start);
            let mut state = ScalingState::default();
            let mut t = 0;
            let mut evals = Vec::new();
            for (dt, j1, j2) in steps {
                t += dt;
                let ratio = target * load * (1.0 + j1) / f64::from(current);
                let o = ServeObservation {
                    p99: Some(LatencyReading { p99_seconds: 0.2 * ratio, bound_seconds: 0.2 }),
                    request_rate: Some(per * rate_load * (1.0 + j2)),
                    page_burn: Some(false),
                    budget_remaining: Some(0.99),
                };
                let (d, s) = decide_serve(&p, &o, current, &state, at(t));
                evals.push(Eval { t, current, decision: d.clone(), complete: true, budget_blocks: false });
                current = d.replicas;
                state = s;
            }
            check(&p.limits, &evals)?;
            prop_assert_eq!(reversals(&evals), 0, "{:?}", evals);
        }

        /// Ingest lag jittering ±5 % around its target, backlog and slope noisy around steady:
        /// never down, never a reversal.
        #[test]
        fn ingest_noise_around_the_target_never_flaps(
            p in ingest_policy(),
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
            mut p in ingest_policy(),
            start in 0u32..30,
            capacity in 500.0f64..20_000.0,
            load in 0.1f64..30.0,
            initial_backlog in 0.0f64..1_000_000.0,
            steps in prop::collection::vec((5i64..=60, -0.05f64..0.05), 1..300),
        ) {
            p.throughput_per_replica = Some(capacity);
            let arrival = capacity * load;
            let mut current = p.limits.clamp(start);
            let mut backlog = initial_backlog;
            let mut state = ScalingState::default();
            let mut t = 0;
            let mut evals = Vec::new();
            for (dt, j) in steps {
                t += dt;
                let secs = dt as f64;
                let inflow = arrival * (1.0 + j);
                let processed = (f64::from(current) * capacity * secs).min(backlog + inflow * secs);
                let tp = processed / secs;
                let next = backlog + inflow * secs - processed;
                let o = IngestObservation {
                    lag_seconds: Some(5.0 + next / tp),
                    backlog: Some(next),
                    backlog_slope: Some((next - backlog) / secs),
                    throughput: Some(tp),
                };
                backlog = next;
                let (d, s) = decide_ingest(&p, &o, current, &state, at(t));
                evals.push(Eval { t, current, decision: d.clone(), complete: true, budget_blocks: false });
                current = d.replicas;
                state = s;
            }
            check(&p.limits, &evals)?;
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
            mut p in ingest_policy(),
            start in 0u32..30,
            capacity in 500.0f64..20_000.0,
            load in 0.1f64..30.0,
            initial_backlog in 0.0f64..1_000_000.0,
            steps in prop::collection::vec((5i64..=60, -0.05f64..0.05), 1..300),
        ) {
            p.throughput_per_replica = None;
            let arrival = capacity * load;
            let mut current = p.limits.clamp(start);
            let mut backlog = initial_backlog;
            let mut state = ScalingState::default();
            let mut t = 0;
            let mut evals = Vec::new();
            for (dt, j) in steps {
                t += dt;
                let secs = dt as f64;
                let inflow = arrival * (1.0 + j);
                let processed = (f64::from(current) * capacity * secs).min(backlog + inflow * secs);
                let tp = processed / secs;
                let next = backlog + inflow * secs - processed;
                let o = IngestObservation {
                    lag_seconds: Some(5.0 + next / tp),
                    backlog: Some(next),
                    backlog_slope: Some((next - backlog) / secs),
                    throughput: Some(tp),
                };
                backlog = next;
                let (d, s) = decide_ingest(&p, &o, current, &state, at(t));
                evals.push(Eval { t, current, decision: d.clone(), complete: true, budget_blocks: false });
                current = d.replicas;
                state = s;
            }
            check(&p.limits, &evals)?;
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
            mut p in serve_policy(),
            mut ip in ingest_policy(),
            start in 0u32..30,
            prefix in prop::collection::vec((1i64..=60, serve_obs(), ingest_obs()), 0..60),
            last in (1i64..=60, serve_obs(), ingest_obs()),
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

        /// After a restart (empty state), however long the operator ran before and whatever it
        /// decided, no scale-down happens before one full down-stabilization window.
        #[test]
        fn no_scale_down_within_a_window_of_a_restart(
            p in serve_policy(),
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
