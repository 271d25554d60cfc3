//! Kafka mode of the data plane (`streams.kafka`): the write API produces validated records to one
//! topic per class, a consumer group feeds the writer, change events travel on a change topic and
//! rejected records on a dead-letter topic. One concept per file:
//!
//! | file | what |
//! |---|---|
//! | `client.rs` | [`client::Connection`]: the shared client settings (bootstrap, SASL/PLAIN) |
//! | `producer.rs` | [`producer::Producer`]: idempotent, `acks=all`; a send resolves after the ack |
//! | `ingest.rs` | [`ingest::KafkaIngest`]: the HTTP write API's sink in Kafka mode |
//! | `consumer.rs` | [`consumer::KafkaSource`]: the consumer group as the writer's [`crate::ingest::UpdateSource`] |
//! | `changes.rs` | [`changes::KafkaChangeFeed`]: the change topic as a [`crate::feed::ChangeFeed`] |
//! | `lag.rs` | [`lag::LagMonitor`]: consumer lag per partition, in records and seconds |
//! | `probe.rs` | [`probe::KafkaProbe`]: the brokers' reachability, from a metadata request |
//! | `replay.rs` | moving a group's offsets; re-ingesting the dead-letter topic |
//! | `mode.rs` | [`mode::KafkaMode`]: the pieces above assembled for `app.rs` |
//!
//! See docs/dataplane.md, section "Kafka".

pub mod changes;
pub mod client;
pub mod consumer;
pub mod ingest;
pub mod lag;
pub mod mode;
pub mod probe;
pub mod producer;
pub mod replay;

use crate::model::Class;

/// Body limit of the write API in Kafka mode (`streams.kafka` has no `maxBodyBytes`).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A Kafka-side failure.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The client or broker failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// `credentialsDir` is unusable.
    #[error("kafka credentials: {0}")]
    Credentials(String),
    /// A replay was refused because the group has active members.
    #[error(
        "consumer group {group:?} has {members} active member(s); stop its consumers (scale the ingest workers to 0) before moving its offsets"
    )]
    GroupActive {
        /// The group.
        group: String,
        /// How many members it has.
        members: usize,
    },
    /// Anything else (a missing topic, a bad argument).
    #[error("kafka: {0}")]
    Other(String),
}

/// The topics of one pipeline: `streams.kafka.topics` as configured.
pub type Topics = crate::config::KafkaTopics;

/// What the data plane derives from its [`Topics`]. Product metadata updates also carry the
/// catalog classes (category, brand, attribute), which have no topic of their own.
pub trait TopicsExt {
    /// `<prefix>.product`, ... `<prefix>.changes`, `<prefix>.dead-letters`.
    fn with_prefix(prefix: &str) -> Self;
    /// The topic a record of `class` is produced to.
    fn for_class(&self, class: Class) -> &str;
    /// The topics the consumer group reads: the class topics and the dead-letter topic, each
    /// once (two classes may share a topic).
    fn consumed(&self) -> Vec<&str>;
}

impl TopicsExt for Topics {
    fn with_prefix(prefix: &str) -> Self {
        Self {
            product: format!("{prefix}.product"),
            pricing: format!("{prefix}.pricing"),
            inventory: format!("{prefix}.inventory"),
            fulfillment: format!("{prefix}.fulfillment"),
            changes: format!("{prefix}.changes"),
            dead_letters: format!("{prefix}.dead-letters"),
        }
    }

    fn for_class(&self, class: Class) -> &str {
        match class {
            Class::Pricing => &self.pricing,
            Class::Inventory => &self.inventory,
            Class::Fulfillment => &self.fulfillment,
            Class::Product | Class::Category | Class::Brand | Class::Attribute => &self.product,
        }
    }

    fn consumed(&self) -> Vec<&str> {
        let mut all = vec![
            self.product.as_str(),
            self.pricing.as_str(),
            self.inventory.as_str(),
            self.fulfillment.as_str(),
            self.dead_letters.as_str(),
        ];
        all.sort_unstable();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_classes_ride_on_the_product_topic_and_topics_are_consumed_once() {
        let t = Topics::with_prefix("shop");
        assert_eq!(t.for_class(Class::Pricing), "shop.pricing");
        assert_eq!(t.for_class(Class::Brand), "shop.product");
        assert_eq!(t.dead_letters, "shop.dead-letters");
        let shared = Topics {
            inventory: "shop.product".into(),
            ..t.clone()
        };
        let consumed = shared.consumed();
        assert_eq!(consumed.len(), 4, "{consumed:?}");
        assert!(
            !consumed.contains(&"shop.changes"),
            "the change topic is not ingested"
        );
    }
}
