//! The producer: `acks=all` and idempotence, so a record is acknowledged only once every in-sync
//! replica has it, and a retried send can neither duplicate nor reorder a partition's records.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::metrics::{Metrics, TopicLabel};
use crate::stream::StreamError;
use crate::stream::client::Connection;

/// One record to produce.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Partitioning key: records with equal keys keep their order.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub payload: &'a [u8],
}

/// Where a record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// An idempotent producer shared by the handlers of one process.
pub struct Producer {
    inner: FutureProducer,
    metrics: Arc<Metrics>,
}

impl Producer {
    /// A producer whose sends fail (unacknowledged) after `timeout` (`delivery.timeout.ms`).
    pub fn new(
        conn: &Connection,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StreamError> {
        let inner: FutureProducer = conn
            .config()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
            .create()?;
        Ok(Self { inner, metrics })
    }

    /// Produces one record; resolves once Kafka acknowledged it (or it failed for good).
    pub async fn send(&self, record: Record<'_>) -> Result<Acked, StreamError> {
        let mut acked = self.send_all(std::slice::from_ref(&record)).await?;
        Ok(acked.remove(0))
    }

    /// Produces records in order (so records of one key keep their order) and resolves once
    /// every one is acknowledged; an error means at least one was not (the others may have
    /// been: producers retry whole batches, and the versioned writes make that harmless).
    pub async fn send_all(&self, records: &[Record<'_>]) -> Result<Vec<Acked>, StreamError> {
        let mut pending: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
        let mut acked: Vec<Option<Acked>> = vec![None; records.len()];
        let mut first_error: Option<StreamError> = None;
        for (i, r) in records.iter().enumerate() {
            loop {
                match self.enqueue(r) {
                    Ok(f) => {
                        pending.push_back((i, f));
                        break;
                    }
                    // The local queue is full: wait for the oldest delivery, then retry this
                    // record (never skip ahead, which would reorder a key's records).
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        match pending.pop_front() {
                            Some((j, f)) => {
                                let result = self.settle(records[j].topic, f).await;
                                match result {
                                    Ok(a) => acked[j] = Some(a),
                                    Err(e) => {
                                        first_error.get_or_insert(e);
                                    }
                                }
                            }
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err(e) => {
                        self.count_error(r.topic);
                        // Nothing after a failed enqueue may be sent: it would overtake it.
                        first_error.get_or_insert(e.into());
                        break;
                    }
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        while let Some((j, f)) = pending.pop_front() {
            match self.settle(records[j].topic, f).await {
                Ok(a) => acked[j] = Some(a),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(acked
                .into_iter()
                .map(|a| a.expect("every record was settled"))
                .collect()),
        }
    }

    /// Enqueues without waiting for the acknowledgement (the change feed's publish, which runs
    /// on the writer thread). Failures are counted and logged by the returned future's owner, or
    /// here if enqueueing fails.
    pub fn send_detached(&self, record: Record<'_>) -> Result<DeliveryFuture, StreamError> {
        self.enqueue(&record).map_err(|e| {
            self.count_error(record.topic);
            e.into()
        })
    }

    /// Waits until every enqueued record is delivered or failed, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), StreamError> {
        use rdkafka::producer::Producer as _;
        self.inner.flush(Timeout::After(timeout))?;
        Ok(())
    }

    /// The metrics this producer counts its errors in.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Counts a record that was not acknowledged.
    pub(crate) fn count_error(&self, topic: &str) {
        self.metrics
            .kafka_producer_errors
            .get_or_create(&TopicLabel {
                topic: topic.to_owned(),
            })
            .inc();
    }

    fn enqueue(&self, r: &Record<'_>) -> Result<DeliveryFuture, KafkaError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(r.topic).payload(r.payload);
        if let Some(k) = r.key {
            record = record.key(k);
        }
        self.inner.send_result(record).map_err(|(e, _)| e)
    }

    async fn settle(&self, topic: &str, f: DeliveryFuture) -> Result<Acked, StreamError> {
        match f.await {
            Ok(Ok(d)) => Ok(Acked {
                partition: d.partition,
                offset: d.offset,
            }),
            Ok(Err((e, _))) => {
                self.count_error(topic);
                Err(e.into())
            }
            Err(_) => {
                self.count_error(topic);
                Err(StreamError::Other("the producer was dropped".into()))
            }
        }
    }
}
