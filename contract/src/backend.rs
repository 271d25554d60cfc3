//! Backend reachability, as each worker exports it and the operator reads it from Prometheus.
//!
//! A worker exports one series per backend it uses,
//! `tailwarden_backend_state{role, backend, state} 1`, whose `state` is the outcome of its last
//! contact with that backend. The states are a closed set, so the label stays bounded while
//! still naming the error; the full error text goes to the worker's log and `/readyz`.

use std::fmt;
use std::str::FromStr;

/// The metric name, without the exporter's `tailwarden_` prefix.
pub const STATE_METRIC: &str = "backend_state";
/// The metric as Prometheus stores it.
pub const STATE_SERIES: &str = "tailwarden_backend_state";

/// A backend a distributed worker depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// Cassandra or ScyllaDB: entity state, snapshots, dead letters.
    Cassandra,
    /// Kafka: the update, change and dead-letter topics.
    Kafka,
}

/// The outcome of a worker's last contact with a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reachability {
    /// It answered.
    Reachable,
    /// No connection: refused, no route, name not resolved, or every broker down.
    Unreachable,
    /// Connected, but no answer within the deadline.
    Timeout,
    /// The backend refused the credentials.
    AuthenticationFailed,
    /// The backend answered but cannot do the work now: too few replicas alive, overloaded or
    /// still starting.
    Unavailable,
    /// Something the worker needs is missing on the backend: a topic, a keyspace or a table.
    Missing,
    /// Any other error.
    Failed,
}

macro_rules! labelled {
    ($ty:ident { $($variant:ident => $label:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &[$ty] = &[$($ty::$variant),+];

            /// The metric label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $label),+
                }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownLabel;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($label => Ok($ty::$variant),)+
                    other => Err(UnknownLabel(other.to_owned())),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

labelled!(Backend {
    Cassandra => "cassandra",
    Kafka => "kafka",
});

labelled!(Reachability {
    Reachable => "reachable",
    Unreachable => "unreachable",
    Timeout => "timeout",
    AuthenticationFailed => "authentication_failed",
    Unavailable => "unavailable",
    Missing => "missing",
    Failed => "failed",
});

impl Reachability {
    /// What the state means, for status messages.
    pub fn describe(self) -> &'static str {
        match self {
            Reachability::Reachable => "reachable",
            Reachability::Unreachable => "unreachable (connection refused, no route or no broker)",
            Reachability::Timeout => "timed out",
            Reachability::AuthenticationFailed => "refused the credentials",
            Reachability::Unavailable => {
                "unavailable (too few replicas alive, overloaded or starting)"
            }
            Reachability::Missing => "missing a topic, keyspace or table the worker needs",
            Reachability::Failed => "failed (see the worker's log)",
        }
    }
}

/// A label value outside the closed set (a worker of another version, or a typo).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown label value {0:?}")]
pub struct UnknownLabel(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_are_distinct() {
        let labels: Vec<_> = Reachability::ALL.iter().map(|r| r.as_str()).collect();
        for r in Reachability::ALL {
            assert_eq!(r.as_str().parse::<Reachability>(), Ok(*r));
        }
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        for b in Backend::ALL {
            assert_eq!(b.as_str().parse::<Backend>(), Ok(*b));
        }
        assert_eq!(
            "down".parse::<Reachability>(),
            Err(UnknownLabel("down".into()))
        );
    }

    #[test]
    fn the_series_name_is_the_prefixed_metric_name() {
        assert_eq!(STATE_SERIES, format!("tailwarden_{STATE_METRIC}"));
    }
}
