//! The backends as the workers reach them, and the Kafka partitions they consume: from the
//! workers' own metrics to the status. Pure.
//!
//! Each worker exports `tailwarden_backend_state{role, backend, state} 1` for every backend it
//! uses; the SLO engine counts the workers per state. A role's backend is reachable when every
//! worker that reports it last reached it; otherwise the condition names the role, the backend,
//! the error and how many workers see it.

use std::collections::BTreeMap;

use tailwarden_contract::backend::{Backend, Reachability};
use tailwarden_contract::config::Role;
use tailwarden_crds::{BackendStatus, KafkaStatus, RetailPipelineSpec};

/// Workers per reachability state, per (role, backend).
pub type BackendCounts = BTreeMap<(Role, Backend), BTreeMap<Reachability, u32>>;

/// The condition type.
pub const BACKENDS_REACHABLE: &str = "BackendsReachable";

/// Whether a pipeline's workers use a backend that reports reachability (Cassandra or Kafka).
pub fn uses_remote_backends(spec: &RetailPipelineSpec) -> bool {
    spec.storage.cassandra.is_some() || spec.streams.kafka.is_some()
}

/// One status entry per (role, backend), ingest before serve.
pub fn statuses(counts: &BackendCounts) -> Vec<BackendStatus> {
    counts
        .iter()
        .map(|((role, backend), states)| {
            let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
            BackendStatus {
                role: role.as_str().into(),
                backend: backend.as_str().into(),
                workers: count(states.values().sum()),
                reachable: count(
                    states
                        .get(&Reachability::Reachable)
                        .copied()
                        .unwrap_or_default(),
                ),
                errors: states
                    .iter()
                    .filter(|(state, n)| **state != Reachability::Reachable && **n > 0)
                    .map(|(state, n)| (state.as_str().to_owned(), count(*n)))
                    .collect(),
            }
        })
        .collect()
}

/// The BackendsReachable condition's (status, reason, message). Without any report the
/// status is Unknown: the workers may not run yet, or Prometheus does not scrape them.
pub fn condition(backends: &[BackendStatus]) -> (&'static str, &'static str, String) {
    if backends.is_empty() {
        return (
            "Unknown",
            "NotReported",
            "no worker reports its backends yet (tailwarden_backend_state)".into(),
        );
    }
    let troubled: Vec<String> = backends
        .iter()
        .filter(|b| b.reachable < b.workers)
        .map(|b| {
            let errors: Vec<String> = b
                .errors
                .iter()
                .map(|(state, n)| {
                    let what = state
                        .parse::<Reachability>()
                        .map_or_else(|_| state.clone(), |r| r.describe().to_owned());
                    format!("{what} on {n} of {}", b.workers)
                })
                .collect();
            format!("{} workers: {} {}", b.role, b.backend, errors.join(", "))
        })
        .collect();
    if troubled.is_empty() {
        let all: Vec<String> = backends
            .iter()
            .map(|b| format!("{} {} {}/{}", b.role, b.backend, b.reachable, b.workers))
            .collect();
        (
            "True",
            "AllReachable",
            format!("every worker reaches its backends: {}", all.join(", ")),
        )
    } else {
        ("False", "BackendUnreachable", troubled.join("; "))
    }
}

/// The Kafka status: partitions per consumed topic and the ingest replicas beyond their sum,
/// which the consumer group leaves without a partition. None until a worker reports partitions.
pub fn kafka_status(
    partitions: &BTreeMap<String, i32>,
    ingest_replicas: i32,
) -> Option<KafkaStatus> {
    if partitions.is_empty() {
        return None;
    }
    let total: i32 = partitions.values().sum();
    Some(KafkaStatus {
        partitions: partitions.clone(),
        idle_ingest_replicas: (ingest_replicas - total).max(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(entries: &[(Role, Backend, Reachability, u32)]) -> BackendCounts {
        let mut c = BackendCounts::new();
        for &(role, backend, state, n) in entries {
            c.entry((role, backend)).or_default().insert(state, n);
        }
        c
    }

    #[test]
    fn every_worker_reachable_is_true_and_lists_each_role() {
        let s = statuses(&counts(&[
            (Role::Serve, Backend::Cassandra, Reachability::Reachable, 2),
            (Role::Ingest, Backend::Kafka, Reachability::Reachable, 1),
            (Role::Ingest, Backend::Cassandra, Reachability::Reachable, 1),
        ]));
        assert_eq!(s[0].role, "ingest", "ingest first: {s:?}");
        assert!(
            s.iter()
                .all(|b| b.errors.is_empty() && b.reachable == b.workers)
        );
        let (status, reason, message) = condition(&s);
        assert_eq!((status, reason), ("True", "AllReachable"));
        assert!(message.contains("serve cassandra 2/2"), "{message}");
        assert!(message.contains("ingest kafka 1/1"), "{message}");
    }

    #[test]
    fn an_unreachable_backend_names_the_role_the_error_and_the_share_of_workers() {
        let s = statuses(&counts(&[
            (Role::Serve, Backend::Cassandra, Reachability::Reachable, 1),
            (Role::Serve, Backend::Cassandra, Reachability::Timeout, 2),
            (Role::Ingest, Backend::Kafka, Reachability::Reachable, 1),
        ]));
        let serve = s.iter().find(|b| b.role == "serve").unwrap();
        assert_eq!((serve.workers, serve.reachable), (3, 1));
        assert_eq!(serve.errors.get("timeout"), Some(&2));
        let (status, reason, message) = condition(&s);
        assert_eq!((status, reason), ("False", "BackendUnreachable"));
        assert_eq!(message, "serve workers: cassandra timed out on 2 of 3");
    }

    #[test]
    fn no_report_is_unknown_not_healthy() {
        assert_eq!(condition(&[]).0, "Unknown");
    }

    #[test]
    fn ingest_replicas_beyond_the_partitions_are_idle() {
        let partitions = BTreeMap::from([("p.pricing".to_owned(), 2), ("p.inventory".into(), 1)]);
        assert_eq!(
            kafka_status(&partitions, 5).unwrap().idle_ingest_replicas,
            2
        );
        assert_eq!(
            kafka_status(&partitions, 3).unwrap().idle_ingest_replicas,
            0
        );
        assert_eq!(kafka_status(&BTreeMap::new(), 5), None);
    }
}
