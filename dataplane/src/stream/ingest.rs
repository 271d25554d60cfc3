//! The write API in Kafka mode. Records are validated at the boundary exactly as in HTTP mode;
//! valid ones are produced, as received, to their class's topic keyed by their partition id
//! (`product_id`, `category_id`, ...), so one key's records stay in one partition and in order;
//! rejected ones are produced to the dead-letter topic with their reason. The response is sent
//! only once Kafka acknowledged every record (`acks=all`): a 200 means nothing can be lost, and
//! the consumer group makes it visible within the ingest lag.

use std::ops::Range;
use std::sync::Arc;

use crate::ingest::body::Format;
use crate::ingest::http::parse_records;
use crate::ingest::{Item, Outcome};
use crate::stream::producer::{Producer, Record};
use crate::stream::{StreamError, Topics, TopicsExt};

/// The Kafka sink of the write API.
pub struct KafkaIngest {
    producer: Producer,
    topics: Topics,
}

impl KafkaIngest {
    /// Produces with `producer` to `topics`.
    pub fn new(producer: Producer, topics: Topics) -> Self {
        Self { producer, topics }
    }

    /// The topics records go to.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Produces parsed records (`items` with their byte ranges in `bytes`) in order and returns
    /// once Kafka acknowledged all of them: `Accepted` for a produced update, `Rejected` for a
    /// dead letter produced to the dead-letter topic.
    pub async fn produce(
        &self,
        bytes: &[u8],
        items: &[(Range<usize>, Item)],
    ) -> Result<Vec<Outcome>, StreamError> {
        let dead: Vec<Option<Vec<u8>>> = items
            .iter()
            .map(|(_, item)| match item {
                Item::Rejected(dl) => Some(serde_json::to_vec(dl).expect("a dead letter encodes")),
                Item::Update(_) => None,
            })
            .collect();
        let records: Vec<Record<'_>> = items
            .iter()
            .zip(&dead)
            .map(|((range, item), dl)| match (item, dl) {
                (Item::Update(u), _) => Record {
                    topic: self.topics.for_class(u.key.class),
                    key: Some(u.key.id.as_bytes()),
                    payload: &bytes[range.clone()],
                },
                (Item::Rejected(d), Some(value)) => Record {
                    topic: &self.topics.dead_letters,
                    key: d.class.map(|c| c.as_str().as_bytes()),
                    payload: value,
                },
                (Item::Rejected(_), None) => unreachable!("every rejected item was encoded"),
            })
            .collect();
        self.producer.send_all(&records).await?;
        Ok(items
            .iter()
            .map(|(_, item)| match item {
                Item::Update(_) => Outcome::Accepted,
                Item::Rejected(_) => Outcome::Rejected,
            })
            .collect())
    }

    /// Validates and produces an NDJSON body exactly as `POST /v1/updates` does, without HTTP
    /// (the benchmark and tools).
    pub async fn produce_ndjson(&self, body: &[u8]) -> Result<Vec<Outcome>, StreamError> {
        let items = parse_records(body, Format::Ndjson, self.producer.metrics())
            .map_err(|e| StreamError::Other(e.to_string()))?;
        self.produce(body, &items).await
    }
}

/// Builds the sink (the lead's wiring: `RecordSink::Kafka(KafkaIngest::shared(...))`).
impl KafkaIngest {
    /// [`KafkaIngest::new`] behind an `Arc`.
    pub fn shared(producer: Producer, topics: Topics) -> Arc<Self> {
        Arc::new(Self::new(producer, topics))
    }
}
