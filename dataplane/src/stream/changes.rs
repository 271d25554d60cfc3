//! The change topic as a [`ChangeFeed`]: the writer publishes each durable batch's changed keys
//! (and `All` when a snapshot is activated or rolled back); every serve worker consumes the
//! topic with a group id of its own, from the latest offset, and invalidates its caches. The
//! local subscribers of the publishing process are called synchronously, as in-process.
//!
//! Delivery to other processes is asynchronous (a few milliseconds): the write is acknowledged
//! before remote caches dropped the key, and the cache TTLs bound how long a missed event (a
//! listener restarting, the topic unreachable) can leave a stale entry.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::feed::{ChangeEvent, ChangeFeed, InProcessFeed, Invalidate};
use crate::metrics::Metrics;
use crate::stream::StreamError;
use crate::stream::client::Connection;
use crate::stream::producer::{Producer, Record};

/// Events per message: keeps a message far below Kafka's 1 MB default limit.
const EVENTS_PER_MESSAGE: usize = 1000;
/// How long the delivery of one change message may take before it counts as an error.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes change events to the change topic (and to local subscribers).
pub struct KafkaChangeFeed {
    producer: Arc<Producer>,
    topic: String,
    local: InProcessFeed,
    deliveries: mpsc::Sender<rdkafka::producer::DeliveryFuture>,
}

impl KafkaChangeFeed {
    /// A feed producing to `topic`. Starts a thread that settles deliveries (and counts failed
    /// ones in `tailwarden_kafka_producer_errors_total`); it ends when the feed is dropped.
    pub fn new(conn: &Connection, topic: &str, metrics: Arc<Metrics>) -> Result<Self, StreamError> {
        let producer = Arc::new(Producer::new(conn, DELIVERY_TIMEOUT, metrics)?);
        let (tx, rx) = mpsc::channel::<rdkafka::producer::DeliveryFuture>();
        let settle = producer.clone();
        let owned = topic.to_owned();
        std::thread::Builder::new()
            .name("change-deliveries".into())
            .spawn(move || {
                for delivery in rx {
                    match futures::executor::block_on(delivery) {
                        Ok(Ok(_)) => {}
                        Ok(Err((e, _))) => {
                            settle.count_error(&owned);
                            tracing::warn!(error = %e, "kafka: change event not delivered");
                        }
                        Err(_) => settle.count_error(&owned),
                    }
                }
            })
            .map_err(|e| StreamError::Other(format!("starting the delivery thread: {e}")))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            local: InProcessFeed::default(),
            deliveries: tx,
        })
    }

    /// Waits until published events are delivered, at most `timeout` (call at shutdown).
    pub fn flush(&self, timeout: Duration) -> Result<(), StreamError> {
        self.producer.flush(timeout)
    }

    /// Consumes `topic` from its current end on a thread of its own and calls
    /// `subscriber.invalidate` for every event, until `stop` turns true. Every event published
    /// after this returns is delivered. Each call uses a unique consumer group id, so every serve
    /// worker sees every event.
    pub fn listen(
        conn: &Connection,
        topic: &str,
        subscriber: Arc<dyn Invalidate>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<std::thread::JoinHandle<()>, StreamError> {
        let group = format!(
            "tailwarden-changes-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        );
        let consumer: BaseConsumer = conn
            .config()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()?;
        let timeout = Duration::from_secs(10);
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(StreamError::Other(format!(
                "change topic {topic:?} does not exist"
            )));
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            // A topic created a moment ago may not have a leader yet: retry until the timeout.
            let deadline = std::time::Instant::now() + timeout;
            let high = loop {
                match consumer.fetch_watermarks(topic, p, timeout) {
                    Ok((_, high)) => break high,
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, "kafka: change topic not ready yet");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&tpl)?;
        drop(tpl);
        std::thread::Builder::new()
            .name("change-listener".into())
            .spawn(move || {
                while !*stop.borrow() {
                    match consumer.poll(Duration::from_millis(100)) {
                        None => {}
                        Some(Ok(m)) => {
                            let events: Result<Vec<ChangeEvent>, _> =
                                serde_json::from_slice(m.payload().unwrap_or_default());
                            match events {
                                Ok(events) if !events.is_empty() => subscriber.invalidate(&events),
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "kafka: unreadable change event")
                                }
                            }
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "kafka: change listener error"),
                    }
                }
            })
            .map_err(|e| StreamError::Other(format!("starting the change listener: {e}")))
    }
}

impl ChangeFeed for KafkaChangeFeed {
    fn publish(&self, events: &[ChangeEvent]) {
        self.local.publish(events);
        for chunk in events.chunks(EVENTS_PER_MESSAGE) {
            let payload = serde_json::to_vec(chunk).expect("change events encode");
            match self.producer.send_detached(Record {
                topic: &self.topic,
                key: None,
                payload: &payload,
            }) {
                Ok(delivery) => {
                    let _ = self.deliveries.send(delivery);
                }
                Err(e) => tracing::warn!(error = %e, "kafka: change event not enqueued"),
            }
        }
    }

    fn subscribe(&self, subscriber: Arc<dyn Invalidate>) {
        self.local.subscribe(subscriber);
    }
}
