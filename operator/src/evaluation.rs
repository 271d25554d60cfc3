//! One pipeline's evaluation: readings from Prometheus in, a [`Verdict`] out. Pure.
//!
//! The missing-data policy lives here: a reading that is absent never counts as good or bad. It
//! holds replicas (the scaling functions never scale down without data), holds the freeze and
//! degradation state (the gates keep their previous state), and is named in the verdict so the
//! status says which SLI is missing and why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use tailwarden_crds::{
    AlertHolds as SpecHolds, BudgetStatus, BurnRate, RetailPipelineSpec, SliStatus,
    WindowKind as SpecWindow,
};
use tailwarden_slo::budget::{self, ErrorRatios, burn_rate};
use tailwarden_slo::burn::prom_duration;
use tailwarden_slo::gate::{self, GateInput};
use tailwarden_slo::objective::{AlertHolds, LatencyObjective, Objectives, WindowKind, slos};
use tailwarden_slo::scaling::{
    Behavior, Direction, IngestObservation, IngestPolicy, LatencyReading, ScaleDecision,
    ScalingState, ServeObservation, ServePolicy, decide_ingest, decide_serve,
};
use tailwarden_slo::window::{budget_window, page_windows, period};

use crate::reachability::{self, BackendCounts};
use crate::spec_error::{SpecError, duration};
use crate::topology::Topology;
use crate::verdict::{Scale, Verdict};
use tailwarden_contract::backend::{Backend, Reachability};
use tailwarden_contract::config::Role;

/// What Prometheus said about one pipeline. Absent entries are missing data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Readings {
    /// Error ratio per SLO name and window.
    pub error_ratios: ErrorRatios,
    /// P95 latency in seconds per query class.
    pub p95: BTreeMap<String, f64>,
    /// P99 latency in seconds per query class.
    pub p99: BTreeMap<String, f64>,
    /// Read requests per second.
    pub request_rate: Option<f64>,
    /// Freshness lag in seconds: the stalest class's.
    pub freshness_lag: Option<f64>,
    /// Freshness lag per class in seconds (0 for an idle class).
    pub freshness_by_class: BTreeMap<String, f64>,
    /// Queued ingest records.
    pub backlog: Option<f64>,
    /// Backlog growth, records per second.
    pub backlog_slope: Option<f64>,
    /// Ingested records per second.
    pub throughput: Option<f64>,
    /// Queries that failed, with why; every SLI they feed counts as missing.
    pub failures: Vec<String>,
    /// (class, bound) pairs whose read histogram has no bucket at the bound.
    pub unbucketed: BTreeSet<(String, Duration)>,
    /// Workers per backend state, per role and backend.
    pub backends: BackendCounts,
    /// Partitions per consumed Kafka topic.
    pub kafka_partitions: BTreeMap<String, i32>,
}

/// Everything one evaluation needs besides the readings.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The pipeline's spec.
    pub spec: &'a RetailPipelineSpec,
    /// Serve and ingest replicas the workloads run now.
    pub serve_replicas: u32,
    /// See `serve_replicas`.
    pub ingest_replicas: u32,
    /// Whether rollouts were frozen before this evaluation.
    pub was_frozen: bool,
    /// Whether non-critical work was paused before this evaluation.
    pub was_degraded: bool,
    /// Autoscaler memory, per role.
    pub serve_state: &'a ScalingState,
    /// See `serve_state`.
    pub ingest_state: &'a ScalingState,
    /// How often this pipeline is evaluated (its own interval in whole engine ticks,
    /// [`crate::schedule::cadence`]), not the tick: the ingest breach horizon is a few of these,
    /// since the next chance to react comes that much later.
    pub interval: Duration,
    /// Now.
    pub now: Timestamp,
}

/// The outcome: the verdict and the autoscalers' new memory.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// New serve autoscaler state.
    pub serve_state: ScalingState,
    /// New ingest autoscaler state.
    pub ingest_state: ScalingState,
}

/// The pipeline's objectives, from its spec.
pub fn objectives(spec: &RetailPipelineSpec) -> Result<Objectives, SpecError> {
    let slos = &spec.slos;
    let latency = slos
        .read_latency
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Ok(LatencyObjective {
                query_class: l.query_class.as_str().into(),
                p95: duration(&format!("spec.slos.readLatency[{i}].p95"), &l.p95)?,
                p99: duration(&format!("spec.slos.readLatency[{i}].p99"), &l.p99)?,
            })
        })
        .collect::<Result<_, SpecError>>()?;
    Ok(Objectives {
        latency,
        freshness_max_lag: duration("spec.slos.freshness.maxLag", &slos.freshness.max_lag)?,
        availability_target: slos.availability.target_percent / 100.0,
        correctness_max_error: slos.correctness.max_error_percent / 100.0,
        window: duration("spec.slos.availability.window", &slos.availability.window)?,
        window_kind: match slos.availability.window_kind {
            SpecWindow::Rolling => WindowKind::Rolling,
            SpecWindow::CalendarMonth => WindowKind::CalendarMonth,
        },
        alert_holds: match slos.alerting.holds {
            SpecHolds::None => AlertHolds::None,
            SpecHolds::ShortWindowHalf => AlertHolds::ShortWindowHalf,
        },
    })
}

/// Why the ingest workers' store is out of reach, if any ingest worker reports Cassandra
/// unreachable, refusing its credentials or missing its tables: states no worker count fixes. A
/// timeout or an unavailable node can be load, which passes, so those do not count.
fn store_out_of_reach(backends: &BackendCounts) -> Option<String> {
    let states = backends.get(&(Role::Ingest, Backend::Cassandra))?;
    let out: u32 = states
        .iter()
        .filter(|(state, _)| {
            matches!(
                state,
                Reachability::Unreachable
                    | Reachability::AuthenticationFailed
                    | Reachability::Missing
            )
        })
        .map(|(_, n)| n)
        .sum();
    let all: u32 = states.values().sum();
    (out > 0).then(|| format!("Cassandra out of reach from {out} of {all} ingest workers"))
}

/// The latency objectives whose bound is not a bucket of the workers' read histogram, naming the
/// field: their SLI cannot be measured exactly, which must never pass for plain missing data.
fn unmeasurable_bounds(objectives: &Objectives, readings: &Readings) -> Vec<String> {
    let mut out = vec![];
    // The objectives keep the spec's order, so `i` indexes spec.slos.readLatency.
    for (i, slo) in objectives.latency.iter().enumerate() {
        for (field, bound) in [("p95", slo.p95), ("p99", slo.p99)] {
            if readings
                .unbucketed
                .contains(&(slo.query_class.clone(), bound))
            {
                out.push(format!(
                    "spec.slos.readLatency[{i}].{field} ({}ms) is not a bucket bound of the \
                     workers' read histogram, so its SLI cannot be measured exactly: run a \
                     data-plane version that reads serve.latencyBoundsSeconds",
                    bound.as_millis()
                ));
            }
        }
    }
    out
}

/// Evaluates one pipeline.
pub fn evaluate(ctx: &Context<'_>, readings: &Readings) -> Result<Outcome, SpecError> {
    let spec = ctx.spec;
    let objectives = objectives(spec)?;
    // Burn-rate windows scale with the nominal period; the budget counts over `budget_window`.
    let period = period(&objectives);
    let budget_window = budget_window(&objectives, ctx.now);
    let all_slos = slos(&objectives);
    let mut missing: Vec<String> = readings.failures.clone();

    // Budget and burn per SLO.
    let budget::Assessment {
        worst,
        remaining: budget_remaining,
        per_slo,
        page_burn,
        unknown,
    } = budget::assess(&all_slos, &readings.error_ratios, period, budget_window);
    for slo in unknown {
        missing.push(format!(
            "{} error ratio over {}: no data",
            slo.name,
            prom_duration(period)
        ));
    }
    missing.extend(unmeasurable_bounds(&objectives, readings));

    // Gates.
    let policy = &spec.error_budget_policy;
    let mut gates = gate::decide(&GateInput {
        budget_remaining,
        page_burn,
        freeze_below: policy.freeze_rollouts_below_percent / 100.0,
        degrade_below: policy.degrade_below_percent / 100.0,
        was_frozen: ctx.was_frozen,
        was_degraded: ctx.was_degraded,
    });
    // A freshness burn names the class that stalls, so the decision says where to look.
    if worst.is_some_and(|(slo, _)| slo.name == tailwarden_slo::promql::FRESHNESS_SLO)
        && let Some((class, lag)) = stalest_class(readings)
    {
        for gate in [&mut gates.freeze, &mut gates.degrade] {
            if gate.closed {
                gate.reason
                    .push_str(&format!("; stalest class {class} at {}", seconds(lag)));
            }
        }
    }

    // Scaling.
    let latency_reading = |class: &LatencyObjective| {
        readings
            .p99
            .get(&class.query_class)
            .map(|p| LatencyReading {
                p99_seconds: *p,
                bound_seconds: class.p99.as_secs_f64(),
            })
    };
    let serve_obs = ServeObservation {
        p99: LatencyReading::worst(objectives.latency.iter().map(latency_reading)),
        request_rate: readings.request_rate,
        page_burn,
        budget_remaining,
    };
    let ingest_obs = IngestObservation {
        lag_seconds: readings.freshness_lag,
        backlog: readings.backlog,
        backlog_slope: readings.backlog_slope,
        throughput: readings.throughput,
    };
    let scaling = &spec.autoscaling;
    let (serve, serve_state) = decide_serve(
        &serve_policy(spec)?,
        &serve_obs,
        ctx.serve_replicas,
        ctx.serve_state,
        ctx.now,
    );
    let horizon = ctx.interval * 3 + Duration::from_secs(60);
    let ingest_policy = IngestPolicy {
        target_lag_percent_of_slo: f64::from(scaling.ingest.target_lag_percent_of_slo),
        target_backlog_per_replica: scaling.ingest.target_backlog_per_replica as f64,
        ..IngestPolicy::new(
            spec.ingest.replicas.min as u32,
            spec.ingest.replicas.max as u32,
            objectives.freshness_max_lag,
            horizon,
        )
    };
    let ingest_policy = IngestPolicy {
        limits: limits(
            &spec.ingest.replicas,
            &scaling.ingest.scale_up,
            &scaling.ingest.scale_down,
            "ingest",
        )?,
        ..ingest_policy
    };
    let (ingest, ingest_state) = decide_ingest(
        &ingest_policy,
        &ingest_obs,
        ctx.ingest_replicas,
        ctx.ingest_state,
        ctx.now,
    );
    // More ingest workers cannot write to a store the workers cannot reach: while one reports
    // Cassandra out of reach, the backlog grows because of the outage, not for want of workers,
    // and new members would only rebalance the consumer group. Scale-ups wait; scale-downs not.
    let (ingest, ingest_state) = match store_out_of_reach(&readings.backends) {
        Some(why) if ingest.direction == Direction::Up => (
            ScaleDecision {
                replicas: ctx.ingest_replicas,
                direction: Direction::Hold,
                reason: format!(
                    "holding {} replicas: {why}; more workers cannot help ({} wanted)",
                    ctx.ingest_replicas, ingest.reason
                ),
                missing: ingest.missing,
            },
            ctx.ingest_state.clone(),
        ),
        _ => (ingest, ingest_state),
    };
    for signal in serve.missing.iter().chain(&ingest.missing) {
        let text = format!("{signal:?}: no data");
        if !missing.contains(&text) {
            missing.push(text);
        }
    }

    // Report.
    let pct = |f: f64| (f * 10_000.0).round() / 100.0;
    let worst_latency = |m: &BTreeMap<String, f64>| {
        m.values()
            .copied()
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    let ms = |s: f64| format!("{}ms", (s * 1000.0).round());
    // Over the budget window, which is what the engine reads: for calendar months that is the
    // month so far, not the nominal 30-day period.
    let ratio_of = |name: &str| {
        readings
            .error_ratios
            .get(name)
            .and_then(|r| r.get(&budget_window))
            .copied()
    };
    let burn_slo = worst.map(|(slo, _)| slo);
    let burn_rates = burn_slo
        .map(|slo| {
            page_windows(period)
                .into_iter()
                .filter_map(|w| {
                    let r = readings.error_ratios.get(&slo.name)?.get(&w)?;
                    Some(BurnRate {
                        window: prom_duration(w),
                        rate: (burn_rate(slo.target, *r) * 100.0).round() / 100.0,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    // Queries answer in any order: a stable list keeps an unchanged verdict unchanged, so it does
    // not trigger a reconcile on every pass.
    missing.sort();
    missing.dedup();
    // Only a topology that can scale gets replica decisions: the standalone worker is one pod.
    let scalable = Topology::of(spec) == Topology::Distributed;
    let verdict = Verdict {
        gates,
        serve: scalable.then(|| Scale {
            replicas: serve.replicas as i32,
            reason: format!("serve: {}", serve.reason),
        }),
        ingest: scalable.then(|| Scale {
            replicas: ingest.replicas as i32,
            reason: match stalest_class(readings) {
                Some((class, lag)) => format!(
                    "ingest: {}; stalest class {class} at {}",
                    ingest.reason,
                    seconds(lag)
                ),
                None => format!("ingest: {}", ingest.reason),
            },
        }),
        slis: SliStatus {
            read_p95: worst_latency(&readings.p95).map(ms),
            read_p99: worst_latency(&readings.p99).map(ms),
            freshness_lag: readings.freshness_lag.map(seconds),
            freshness_lag_by_class: readings
                .freshness_by_class
                .iter()
                .map(|(class, lag)| (class.clone(), seconds(*lag)))
                .collect(),
            availability_percent: ratio_of("availability").map(|r| pct(1.0 - r)),
            correctness_error_percent: ratio_of("correctness").map(pct),
        },
        budget: BudgetStatus {
            remaining: budget_remaining.map(|r| format!("{:.1}%", r * 100.0)),
            remaining_percent: budget_remaining.map(pct),
            worst_slo: burn_slo.map(|s| s.name.clone()),
            burn_rates,
        },
        slo_budgets: per_slo
            .into_iter()
            .map(|(slo, remaining)| (slo.name.clone(), remaining))
            .collect(),
        missing,
        backends: reachability::statuses(&readings.backends),
        kafka_partitions: readings.kafka_partitions.clone(),
        dry_run: scaling.dry_run,
        evaluated_at: ctx.now.to_string(),
    };
    Ok(Outcome {
        verdict,
        serve_state,
        ingest_state,
    })
}

fn seconds(s: f64) -> String {
    format!("{}s", s.round())
}

/// The class with the largest freshness lag, when one lags at all.
fn stalest_class(readings: &Readings) -> Option<(&str, f64)> {
    readings
        .freshness_by_class
        .iter()
        .filter(|(_, lag)| **lag > 0.0)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(class, lag)| (class.as_str(), *lag))
}

fn serve_policy(spec: &RetailPipelineSpec) -> Result<ServePolicy, SpecError> {
    let s = &spec.autoscaling.serve;
    Ok(ServePolicy {
        limits: limits(&spec.serve.replicas, &s.scale_up, &s.scale_down, "serve")?,
        target_p99_percent_of_slo: f64::from(s.target_p99_percent_of_slo),
        target_requests_per_replica: s.target_requests_per_replica as f64,
        min_budget_remaining_for_scale_down: spec.error_budget_policy.freeze_rollouts_below_percent
            / 100.0,
        ..ServePolicy::new(
            spec.serve.replicas.min as u32,
            spec.serve.replicas.max as u32,
        )
    })
}

fn limits(
    range: &tailwarden_crds::ReplicaRange,
    up: &tailwarden_crds::ScalingBehavior,
    down: &tailwarden_crds::ScalingBehavior,
    role: &str,
) -> Result<tailwarden_slo::scaling::Limits, SpecError> {
    let behavior = |b: &tailwarden_crds::ScalingBehavior,
                    dir: &str|
     -> Result<Behavior, SpecError> {
        let field = |f: &str| format!("spec.autoscaling.{role}.{dir}.{f}");
        Ok(Behavior {
            stabilization_window: duration(&field("stabilizationWindow"), &b.stabilization_window)?,
            cooldown: duration(&field("cooldown"), &b.cooldown)?,
            max_step: b.max_step.max(1) as u32,
        })
    };
    Ok(tailwarden_slo::scaling::Limits {
        min: range.min.max(0) as u32,
        max: range.max.max(0) as u32,
        scale_up: behavior(up, "scaleUp")?,
        scale_down: behavior(down, "scaleDown")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::spec;

    const DAY: u64 = 86_400;

    fn ctx<'a>(spec: &'a RetailPipelineSpec, state: &'a ScalingState) -> Context<'a> {
        Context {
            spec,
            serve_replicas: 2,
            ingest_replicas: 1,
            was_frozen: false,
            was_degraded: false,
            serve_state: state,
            ingest_state: state,
            interval: Duration::from_secs(15),
            now: Timestamp::from_second(1_800_000_000).unwrap(),
        }
    }

    /// Every SLO at `ratio` over every window, and healthy serve/ingest signals.
    fn readings(ratio: f64) -> Readings {
        let s = spec();
        let o = objectives(&s).unwrap();
        let period = period(&o);
        let mut all_windows = page_windows(period);
        all_windows.push(period);
        Readings {
            error_ratios: slos(&o)
                .into_iter()
                .map(|slo| (slo.name, all_windows.iter().map(|w| (*w, ratio)).collect()))
                .collect(),
            p95: o
                .latency
                .iter()
                .map(|l| (l.query_class.clone(), 0.05))
                .collect(),
            p99: o
                .latency
                .iter()
                .map(|l| (l.query_class.clone(), 0.08))
                .collect(),
            request_rate: Some(100.0),
            freshness_lag: Some(5.0),
            freshness_by_class: BTreeMap::from([("pricing".into(), 5.0)]),
            backlog: Some(0.0),
            backlog_slope: Some(0.0),
            throughput: Some(1000.0),
            failures: vec![],
            unbucketed: BTreeSet::new(),
            backends: BackendCounts::new(),
            kafka_partitions: BTreeMap::new(),
        }
    }

    #[test]
    fn the_reference_objectives_come_from_the_default_spec() {
        let o = objectives(&spec()).unwrap();
        assert_eq!(o.availability_target, 0.9995);
        assert!((o.correctness_max_error - 0.0001).abs() < 1e-12);
        assert_eq!(o.window, Duration::from_secs(30 * DAY));
        assert_eq!(o.latency.len(), 5);
        assert_eq!(o.freshness_max_lag, Duration::from_secs(600));
        assert_eq!(o, Objectives::reference());
    }

    #[test]
    fn alert_holds_come_from_the_spec() {
        assert_eq!(objectives(&spec()).unwrap().alert_holds, AlertHolds::None);
        let held: RetailPipelineSpec = serde_json::from_value(serde_json::json!({
            "dataplane": {"image": "example.com/tailwarden/dataplane", "version": "1.0.0"},
            "slos": {"alerting": {"holds": "ShortWindowHalf"}}
        }))
        .unwrap();
        let o = objectives(&held).unwrap();
        assert_eq!(o.alert_holds, AlertHolds::ShortWindowHalf);
        // Only the holds differ; the other SLO fields keep their defaults.
        assert_eq!(
            o,
            Objectives {
                alert_holds: AlertHolds::ShortWindowHalf,
                ..Objectives::reference()
            }
        );
    }

    #[test]
    fn a_healthy_pipeline_keeps_its_budget_and_rollouts() {
        let s = spec();
        let state = ScalingState::default();
        let out = evaluate(&ctx(&s, &state), &readings(0.0)).unwrap();
        let v = out.verdict;
        assert!(!v.gates.freeze.closed && !v.gates.degrade.closed);
        assert_eq!(v.budget.remaining_percent, Some(100.0));
        assert!(v.missing.is_empty(), "{:?}", v.missing);
        assert_eq!(v.slis.read_p99.as_deref(), Some("80ms"));
        assert_eq!(v.slis.availability_percent, Some(100.0));
    }

    #[test]
    fn a_fast_burn_freezes_and_an_exhausted_budget_degrades() {
        let s = spec();
        let state = ScalingState::default();
        // Every SLO burning its whole budget 20x over: page burn, budget gone.
        let mut r = readings(0.0);
        let o = objectives(&s).unwrap();
        for slo in slos(&o) {
            let ratio = (1.0 - slo.target) * 20.0;
            for v in r.error_ratios.get_mut(&slo.name).unwrap().values_mut() {
                *v = ratio;
            }
        }
        let v = evaluate(&ctx(&s, &state), &r).unwrap().verdict;
        assert!(v.gates.freeze.closed);
        assert!(v.gates.degrade.closed);
        assert_eq!(v.budget.remaining_percent, Some(0.0));
        let one_hour = v
            .budget
            .burn_rates
            .iter()
            .find(|b| b.window == "1h")
            .unwrap();
        assert_eq!(one_hour.rate, 20.0);
    }

    #[test]
    fn half_the_availability_budget_is_hand_computable() {
        let s = spec();
        let state = ScalingState::default();
        let mut r = readings(0.0);
        // 0.025 % errors over 30 days against a 0.05 % budget: half left.
        r.error_ratios
            .get_mut("availability")
            .unwrap()
            .insert(Duration::from_secs(30 * DAY), 0.00025);
        let v = evaluate(&ctx(&s, &state), &r).unwrap().verdict;
        assert_eq!(v.budget.remaining_percent, Some(50.0));
        assert_eq!(v.budget.worst_slo.as_deref(), Some("availability"));
        assert!((v.slo_budgets["availability"] - 0.5).abs() < 1e-9);
        assert_eq!(v.slo_budgets["correctness"], 1.0);
        assert_eq!(v.slo_budgets.len(), 13, "every SLO's own budget");
        assert_eq!(v.slis.availability_percent, Some(99.98));
        assert!(
            !v.gates.freeze.closed,
            "50 % left is above the 25 % freeze threshold"
        );
    }

    #[test]
    fn a_stalled_class_is_shown_and_named_in_the_decisions_it_causes() {
        let s = crate::test_support::cassandra_pipeline("p").spec;
        let state = ScalingState::default();
        let o = objectives(&s).unwrap();
        let mut r = readings(0.0);
        r.freshness_by_class =
            BTreeMap::from([("inventory".into(), 0.0), ("pricing".into(), 1230.0)]);
        r.freshness_lag = Some(1230.0);
        // Freshness burning its whole budget 20x over: page burn, budget gone.
        let fresh = slos(&o)
            .into_iter()
            .find(|s| s.name == "freshness")
            .unwrap();
        for v in r.error_ratios.get_mut("freshness").unwrap().values_mut() {
            *v = (1.0 - fresh.target) * 20.0;
        }
        let v = evaluate(&ctx(&s, &state), &r).unwrap().verdict;
        assert_eq!(v.slis.freshness_lag.as_deref(), Some("1230s"));
        assert_eq!(v.slis.freshness_lag_by_class["inventory"], "0s");
        assert_eq!(v.slis.freshness_lag_by_class["pricing"], "1230s");
        assert!(v.gates.freeze.closed);
        assert!(
            v.gates
                .freeze
                .reason
                .contains("stalest class pricing at 1230s"),
            "{}",
            v.gates.freeze.reason
        );
        assert!(
            v.ingest.unwrap().reason.contains("stalest class pricing"),
            "the ingest decision names the class"
        );
    }

    #[test]
    fn ingest_does_not_scale_up_while_its_store_is_out_of_reach() {
        let s = crate::test_support::cassandra_pipeline("p").spec;
        let state = ScalingState::default();
        let mut r = readings(0.0);
        // A backlog far beyond what one replica is sized for.
        r.backlog = Some(1_000_000.0);
        r.backlog_slope = Some(1_000.0);
        let up = evaluate(&ctx(&s, &state), &r).unwrap().verdict;
        assert!(
            up.ingest.unwrap().replicas > 1,
            "the backlog scales ingest up"
        );

        r.backends.insert(
            (Role::Ingest, Backend::Cassandra),
            BTreeMap::from([(Reachability::Unreachable, 1), (Reachability::Reachable, 1)]),
        );
        let held = evaluate(&ctx(&s, &state), &r).unwrap();
        let ingest = held.verdict.ingest.unwrap();
        assert_eq!(ingest.replicas, 1, "{}", ingest.reason);
        assert!(
            ingest
                .reason
                .contains("Cassandra out of reach from 1 of 2 ingest workers"),
            "{}",
            ingest.reason
        );
        assert_eq!(
            held.ingest_state, state,
            "the stabilizer does not count a held step"
        );

        // A timeout can be load: it does not hold.
        r.backends.insert(
            (Role::Ingest, Backend::Cassandra),
            BTreeMap::from([(Reachability::Timeout, 1)]),
        );
        let v = evaluate(&ctx(&s, &state), &r).unwrap().verdict;
        assert!(v.ingest.unwrap().replicas > 1);
    }

    #[test]
    fn missing_data_is_reported_the_same_whatever_order_queries_fail_in() {
        let s = spec();
        let state = ScalingState::default();
        let failing = |order: [&str; 2]| Readings {
            failures: order.iter().map(|q| format!("query failed: {q}")).collect(),
            ..Readings::default()
        };
        let a = evaluate(&ctx(&s, &state), &failing(["a", "b"]))
            .unwrap()
            .verdict;
        let b = evaluate(&ctx(&s, &state), &failing(["b", "a"]))
            .unwrap()
            .verdict;
        assert_eq!(a.missing, b.missing);
    }

    #[test]
    fn a_standalone_pipeline_gets_no_replica_decisions() {
        let s = spec();
        let state = ScalingState::default();
        let v = evaluate(&ctx(&s, &state), &readings(0.0)).unwrap().verdict;
        assert_eq!((v.serve, v.ingest), (None, None));
    }

    #[test]
    fn calendar_months_report_availability_and_correctness() {
        let mut s = spec();
        s.slos.availability.window_kind = SpecWindow::CalendarMonth;
        let state = ScalingState::default();
        let c = ctx(&s, &state);
        let o = objectives(&s).unwrap();
        // The engine reads the month so far, never the nominal 30 days.
        let mut all_windows = page_windows(period(&o));
        all_windows.push(budget_window(&o, c.now));
        let r = Readings {
            error_ratios: slos(&o)
                .into_iter()
                .map(|slo| (slo.name, all_windows.iter().map(|w| (*w, 0.0001)).collect()))
                .collect(),
            ..readings(0.0)
        };
        let v = evaluate(&c, &r).unwrap().verdict;
        assert_eq!(v.slis.availability_percent, Some(99.99));
        assert_eq!(v.slis.correctness_error_percent, Some(0.01));
        assert!(v.budget.remaining_percent.is_some());
    }

    #[test]
    fn missing_data_holds_state_and_is_named() {
        let s = crate::test_support::cassandra_pipeline("p").spec;
        let state = ScalingState::default();
        let mut c = ctx(&s, &state);
        c.was_frozen = true;
        let v = evaluate(&c, &Readings::default()).unwrap().verdict;
        assert!(v.gates.freeze.closed, "absent data never unfreezes");
        assert_eq!(v.gates.freeze.code.as_str(), "MissingData");
        assert_eq!(v.serve.as_ref().unwrap().replicas, 2, "replicas are held");
        assert_eq!(v.ingest.as_ref().unwrap().replicas, 1);
        assert!(
            v.missing.iter().any(|m| m.contains("availability")),
            "{:?}",
            v.missing
        );
        assert_eq!(v.budget.remaining_percent, None);
        assert!(v.slo_budgets.is_empty(), "no data, no budget");
    }

    #[test]
    fn a_bound_the_workers_cannot_measure_is_named_by_its_field() {
        let mut s = crate::test_support::cassandra_pipeline("p").spec;
        s.slos.read_latency[0].p99 = "250ms".into();
        let class = objectives(&s).unwrap().latency[0].query_class.clone();
        let state = ScalingState::default();
        let c = ctx(&s, &state);
        let mut readings = Readings::default();
        readings
            .unbucketed
            .insert((class, Duration::from_millis(250)));
        let v = evaluate(&c, &readings).unwrap().verdict;
        assert!(
            v.missing.iter().any(|m| m.starts_with(
                "spec.slos.readLatency[0].p99 (250ms) is not a bucket bound of the workers' read histogram"
            )),
            "{:?}",
            v.missing
        );
        let measured = evaluate(&c, &Readings::default()).unwrap().verdict;
        assert!(
            !measured.missing.iter().any(|m| m.contains("bucket bound")),
            "{:?}",
            measured.missing
        );
    }
}
