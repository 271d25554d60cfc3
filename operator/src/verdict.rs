//! What the SLO engine last concluded about each pipeline. The engine writes verdicts once per
//! evaluation; the reconciler reads them to act (replicas, freeze, degradation) and to report.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tailwarden_crds::{BudgetStatus, SliStatus};
use tailwarden_slo::gate::Gates;

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
    /// SLIs with no data, each with why (empty when all were observed).
    pub missing: Vec<String>,
    /// Decide and report, but do not act.
    pub dry_run: bool,
    /// When the engine evaluated, RFC 3339.
    pub evaluated_at: String,
}

/// The latest verdict per pipeline, keyed by (namespace, name).
#[derive(Debug, Default, Clone)]
pub struct Verdicts(Arc<RwLock<HashMap<(String, String), Verdict>>>);

impl Verdicts {
    /// The latest verdict for a pipeline.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Verdict> {
        self.0
            .read()
            .expect("verdict lock is never poisoned: writers do not panic")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Replaces a pipeline's verdict; returns whether it changed.
    pub fn set(&self, namespace: &str, name: &str, verdict: Verdict) -> bool {
        let mut map = self.0.write().expect("verdict lock is never poisoned");
        let key = (namespace.to_owned(), name.to_owned());
        let changed = map
            .get(&key)
            .is_none_or(|old| !same_decision(old, &verdict));
        map.insert(key, verdict);
        changed
    }

    /// Forgets pipelines that no longer exist.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        self.0
            .write()
            .expect("verdict lock is never poisoned")
            .retain(|(ns, name), _| keep(ns, name));
    }
}

/// Whether two verdicts would make the reconciler do or report anything different (the
/// evaluation time alone does not count).
fn same_decision(a: &Verdict, b: &Verdict) -> bool {
    Verdict {
        evaluated_at: String::new(),
        ..a.clone()
    } == Verdict {
        evaluated_at: String::new(),
        ..b.clone()
    }
}
