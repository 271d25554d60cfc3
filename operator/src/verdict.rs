//! What the SLO engine last concluded about each pipeline. The engine writes verdicts once per
//! evaluation; the reconciler reads them to act (replicas, freeze, degradation) and to report.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use tailwarden_crds::{BackendStatus, BudgetStatus, RetailPipeline, SliStatus};
use tailwarden_slo::gate::Gates;

use crate::reachability;

/// A replica decision for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// Replicas to run.
    pub replicas: i32,
    /// Why, with the numbers.
    pub reason: String,
}

/// The engine's conclusion about one pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Rollout freeze and degradation.
    pub gates: Gates,
    /// Serve replicas; None holds the current count.
    pub serve: Option<Scale>,
    /// Ingest replicas; None holds the current count.
    pub ingest: Option<Scale>,
    /// The SLIs, for the status.
    pub slis: SliStatus,
    /// The budget, for the status.
    pub budget: BudgetStatus,
    /// Budget left per SLO name, as a fraction, for the operator's per-pipeline metrics (the
    /// status names only the worst); SLOs without data are absent.
    pub slo_budgets: BTreeMap<String, f64>,
    /// SLIs with no data, each with why (empty when all were observed).
    pub missing: Vec<String>,
    /// The backends as each role's workers last reached them.
    pub backends: Vec<BackendStatus>,
    /// Partitions per consumed Kafka topic, as the ingest workers read them from the broker.
    pub kafka_partitions: BTreeMap<String, i32>,
    /// Decide and report, but do not act.
    pub dry_run: bool,
    /// When the engine evaluated, RFC 3339.
    pub evaluated_at: String,
}

/// SLI values and the numbers in reasons move every evaluation. A verdict whose decisions are
/// unchanged triggers a reconcile (and so a status write) at most this often, so a thousand quiet
/// pipelines do not cost a thousand status writes per interval; a changed decision triggers at once.
pub const STATUS_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Entry {
    verdict: Verdict,
    triggered: Instant,
}

/// The latest verdict per pipeline.
#[derive(Debug, Default, Clone)]
pub struct Verdicts(Arc<RwLock<HashMap<ObjectRef<RetailPipeline>, Entry>>>);

impl Verdicts {
    /// The latest verdict for a pipeline.
    pub fn get(&self, pipeline: &ObjectRef<RetailPipeline>) -> Option<Verdict> {
        self.0
            .read()
            .expect("verdict lock is never poisoned: writers do not panic")
            .get(pipeline)
            .map(|e| e.verdict.clone())
    }

    /// Stores a pipeline's verdict as of `now`; returns whether the pipeline should be reconciled:
    /// at once when a decision changed, and for changed values only every [`STATUS_REFRESH`].
    pub fn set(&self, pipeline: ObjectRef<RetailPipeline>, verdict: Verdict, now: Instant) -> bool {
        let mut map = self.0.write().expect("verdict lock is never poisoned");
        let trigger = match map.get(&pipeline) {
            None => true,
            Some(old) => {
                !same_decisions(&old.verdict, &verdict)
                    || (!same_values(&old.verdict, &verdict)
                        && now.saturating_duration_since(old.triggered) >= STATUS_REFRESH)
            }
        };
        let triggered = match map.get(&pipeline) {
            Some(old) if !trigger => old.triggered,
            _ => now,
        };
        map.insert(pipeline, Entry { verdict, triggered });
        trigger
    }

    /// Forgets pipelines that no longer exist.
    pub fn retain(&self, keep: impl Fn(&ObjectRef<RetailPipeline>) -> bool) {
        self.0
            .write()
            .expect("verdict lock is never poisoned")
            .retain(|pipeline, _| keep(pipeline));
    }
}

/// Whether two verdicts make the reconciler act the same: gates (state and reason code), replicas,
/// what is missing, whether every backend is reachable, and the dry-run switch. Numbers in
/// reasons and SLI values do not count.
fn same_decisions(a: &Verdict, b: &Verdict) -> bool {
    let gates = |v: &Verdict| {
        let g = &v.gates;
        (
            g.freeze.closed,
            g.freeze.code,
            g.degrade.closed,
            g.degrade.code,
        )
    };
    let replicas = |s: &Option<Scale>| s.as_ref().map(|s| s.replicas);
    gates(a) == gates(b)
        && replicas(&a.serve) == replicas(&b.serve)
        && replicas(&a.ingest) == replicas(&b.ingest)
        && a.missing == b.missing
        && reachability::condition(&a.backends).0 == reachability::condition(&b.backends).0
        && a.dry_run == b.dry_run
}

/// Whether two verdicts report the same in the status: neither the evaluation time nor the
/// per-SLO budgets, which the engine exports as metrics itself, count.
fn same_values(a: &Verdict, b: &Verdict) -> bool {
    let reported = |v: &Verdict| Verdict {
        evaluated_at: String::new(),
        slo_budgets: BTreeMap::new(),
        ..v.clone()
    };
    reported(a) == reported(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::verdict;
    use tailwarden_slo::gate::GateCode;

    fn p() -> ObjectRef<RetailPipeline> {
        ObjectRef::new("p").within("ns")
    }

    #[test]
    fn decisions_trigger_at_once_and_values_at_most_every_refresh() {
        let v = Verdicts::default();
        let t0 = Instant::now();
        assert!(
            v.set(p(), verdict(false, GateCode::BudgetHealthy), t0),
            "the first verdict"
        );
        let mut moved = verdict(false, GateCode::BudgetHealthy);
        moved.slis.freshness_lag = Some("7s".into());
        assert!(
            !v.set(p(), moved.clone(), t0 + Duration::from_secs(5)),
            "values alone wait"
        );
        assert_eq!(
            v.get(&p()).unwrap(),
            moved,
            "but are stored for the next reconcile"
        );
        assert!(
            v.set(
                p(),
                verdict(true, GateCode::FastBurn),
                t0 + Duration::from_secs(10)
            ),
            "a freeze is at once"
        );
        let mut later = verdict(true, GateCode::FastBurn);
        later.slis.freshness_lag = Some("9s".into());
        assert!(!v.set(p(), later.clone(), t0 + Duration::from_secs(30)));
        later.slis.freshness_lag = Some("11s".into());
        assert!(
            v.set(p(), later, t0 + Duration::from_secs(71)),
            "values refresh after a minute"
        );
    }
}
