//! Kafka's reachability: what an rdkafka error says of it, the `state` of
//! `tailwarden_backend_state{backend="kafka"}`, and a probe that asks the brokers for the
//! metadata of the pipeline's topics.

use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tailwarden_contract::backend::Reachability;

use crate::backend_probe::Unreached;
use crate::stream::client::Connection;
use crate::stream::{StreamError, Topics, TopicsExt};

/// What an rdkafka error says of the brokers' reachability.
pub fn reachability(e: &KafkaError) -> Reachability {
    e.rdkafka_error_code()
        .map_or(Reachability::Failed, code_reachability)
}

fn code_reachability(code: RDKafkaErrorCode) -> Reachability {
    use RDKafkaErrorCode as C;
    match code {
        C::AllBrokersDown
        | C::BrokerTransportFailure
        | C::Resolve
        | C::NetworkException
        | C::BrokerNotAvailable => Reachability::Unreachable,
        C::OperationTimedOut | C::RequestTimedOut | C::MessageTimedOut | C::TimedOutQueue => {
            Reachability::Timeout
        }
        C::Authentication | C::SaslAuthenticationFailed => Reachability::AuthenticationFailed,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::UnknownTopicId => {
            Reachability::Missing
        }
        C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::PreferredLeaderNotAvailable => Reachability::Unavailable,
        _ => Reachability::Failed,
    }
}

/// Asks for the metadata of the pipeline's topics (a missing topic is
/// [`Reachability::Missing`]). A metadata request only times out when no broker answers; the
/// client's own error events (every broker down, a transport failure, refused credentials) name
/// the cause, so a timeout preceded by one of them reports that instead.
pub struct KafkaProbe {
    /// Without a `group.id`: it never joins a group, and its queue carries the client's error
    /// events.
    consumer: BaseConsumer,
    topics: Vec<String>,
    /// The last telling error event since the last successful probe.
    seen: Mutex<Option<RDKafkaErrorCode>>,
}

impl KafkaProbe {
    /// A probe of `topics` (every one of the pipeline, the change topic included).
    pub fn new(conn: &Connection, topics: &Topics) -> Result<Self, StreamError> {
        let mut names: Vec<String> = topics
            .consumed()
            .into_iter()
            .chain([topics.changes.as_str()])
            .map(str::to_owned)
            .collect();
        names.sort_unstable();
        names.dedup();
        Ok(Self {
            consumer: conn.config().create()?,
            topics: names,
            seen: Mutex::new(None),
        })
    }

    /// One metadata request per topic, each answered within `deadline`; stops at the first
    /// failure. Blocks: run it on a blocking thread.
    pub fn probe(&self, deadline: Duration) -> Result<(), Unreached> {
        let outcome = self.topics.iter().try_for_each(|topic| {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), deadline)
                .map_err(|e| (reachability(&e), e.to_string()))?;
            match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) => match t.error() {
                    Some(e) => {
                        let code = RDKafkaErrorCode::from(e);
                        Err((code_reachability(code), format!("topic {topic}: {code}")))
                    }
                    None => Ok(()),
                },
                None => Err((Reachability::Missing, format!("topic {topic}: not listed"))),
            }
        });
        let mut seen = self.seen.lock();
        // Serves the client's queued events: errors only, as nothing is assigned.
        while let Some(event) = self.consumer.poll(Duration::ZERO) {
            if let Err(e) = event
                && let Some(code) = e.rdkafka_error_code()
                && code_reachability(code) != Reachability::Failed
            {
                *seen = Some(code);
            }
        }
        match outcome {
            Ok(()) => {
                *seen = None;
                Ok(())
            }
            Err((Reachability::Timeout, error)) if seen.is_some() => {
                let code = seen.expect("checked");
                Err(Unreached {
                    state: code_reachability(code),
                    error: format!("{error} (the client reported {code})"),
                })
            }
            Err((state, error)) => Err(Unreached { state, error }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_name_the_state() {
        let cases = [
            (
                KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown),
                Reachability::Unreachable,
            ),
            (
                KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                Reachability::Unreachable,
            ),
            (
                KafkaError::Global(RDKafkaErrorCode::Resolve),
                Reachability::Unreachable,
            ),
            (
                KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
                Reachability::Timeout,
            ),
            (
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
                Reachability::Timeout,
            ),
            (
                KafkaError::Global(RDKafkaErrorCode::SaslAuthenticationFailed),
                Reachability::AuthenticationFailed,
            ),
            (
                KafkaError::Global(RDKafkaErrorCode::Authentication),
                Reachability::AuthenticationFailed,
            ),
            (
                KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
                Reachability::Missing,
            ),
            (
                KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas),
                Reachability::Unavailable,
            ),
            (
                KafkaError::MetadataFetch(RDKafkaErrorCode::LeaderNotAvailable),
                Reachability::Unavailable,
            ),
            (
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                Reachability::Failed,
            ),
            (
                KafkaError::ClientCreation("bad config".into()),
                Reachability::Failed,
            ),
        ];
        for (error, state) in cases {
            assert_eq!(reachability(&error), state, "{error}");
        }
    }

    /// Nothing listens on the address: the probe fails within its deadline and says the broker
    /// is not reachable (never `reachable`, never an unnamed failure).
    #[test]
    fn a_broker_nobody_answers_for_is_not_reachable() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        drop(silent);
        let conn = Connection::new(&[addr], None).unwrap();
        let probe = KafkaProbe::new(&conn, &Topics::with_prefix("probe")).unwrap();
        let started = std::time::Instant::now();
        let mut states = Vec::new();
        for _ in 0..2 {
            states.push(probe.probe(Duration::from_millis(500)).unwrap_err().state);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(states[1], Reachability::Unreachable, "{states:?}");
        assert!(
            states
                .iter()
                .all(|s| matches!(s, Reachability::Unreachable | Reachability::Timeout)),
            "{states:?}"
        );
    }
}
