//! Consumer lag per partition of the consumed topics: in records (high watermark minus the
//! group's committed offset) and in seconds (the age of the oldest uncommitted record, 0 without
//! backlog). Exported as `tailwarden_kafka_consumer_lag_records` / `_seconds`, which the SLO
//! engine counts as ingest backlog.
//!
//! The monitor reads the group's committed offsets without joining the group (its consumer only
//! ever `assign`s, never subscribes or commits), so it works while the group is empty too.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::metrics::{Metrics, PartitionLabels, TopicLabel};
use crate::model::now_ms;
use crate::stream::client::Connection;
use crate::stream::{StreamError, Topics, TopicsExt};

/// The lag of one partition.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset, if it committed one.
    pub committed: Option<i64>,
    /// The high watermark (offset of the next record).
    pub high: i64,
    /// Records not yet committed.
    pub records: i64,
    /// Age of the oldest uncommitted record, seconds (0 without backlog).
    pub seconds: f64,
}

/// Measures a group's lag over its topics.
pub struct LagMonitor {
    consumer: BaseConsumer,
    topics: Vec<String>,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl LagMonitor {
    /// A monitor of `group` over `topics`' consumed topics.
    pub fn new(
        conn: &Connection,
        group: &str,
        topics: &Topics,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StreamError> {
        let consumer: BaseConsumer = conn
            .config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Only the first record of each backlogged partition is read: answer fast.
            .set("fetch.wait.max.ms", "10")
            .set("fetch.max.bytes", "1048576")
            .set("max.partition.fetch.bytes", "65536")
            .set("queued.max.messages.kbytes", "1024")
            .create()?;
        Ok(Self {
            consumer,
            topics: topics.consumed().into_iter().map(str::to_owned).collect(),
            metrics,
            timeout: Duration::from_secs(10),
        })
    }

    /// Measures every partition now and updates the metrics.
    pub fn measure(&self) -> Result<Vec<PartitionLag>, StreamError> {
        let mut wanted = TopicPartitionList::new();
        for topic in &self.topics {
            let metadata = self.consumer.fetch_metadata(Some(topic), self.timeout)?;
            for t in metadata.topics() {
                if t.name() == topic && t.error().is_none() {
                    for p in t.partitions() {
                        wanted.add_partition(topic, p.id());
                    }
                    self.metrics
                        .kafka_topic_partitions
                        .get_or_create(&TopicLabel {
                            topic: topic.clone(),
                        })
                        .set(t.partitions().len() as i64);
                }
            }
        }
        let committed: Vec<(String, i32, Option<i64>)> = {
            let list = self.consumer.committed_offsets(wanted, self.timeout)?;
            let v = list
                .elements()
                .iter()
                .map(|e| {
                    let offset = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    };
                    (e.topic().to_owned(), e.partition(), offset)
                })
                .collect();
            // Dropped here, before the consumer can be (see the notes: a live list from
            // committed() makes dropping the consumer hang).
            drop(list);
            v
        };
        let mut measured = Vec::with_capacity(committed.len());
        for (topic, partition, committed) in committed {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&topic, partition, self.timeout)?;
            // Without a commit the group starts at the earliest record (auto.offset.reset).
            let start = committed.unwrap_or(low).max(low);
            measured.push((topic, partition, committed, start, high));
        }
        let backlog: Vec<(String, i32, i64)> = measured
            .iter()
            .filter(|(_, _, _, start, high)| high > start)
            .map(|(t, p, _, start, _)| (t.clone(), *p, *start))
            .collect();
        let ages = self.oldest_ages(&backlog)?;
        let mut out = Vec::with_capacity(measured.len());
        for (topic, partition, committed, start, high) in measured {
            let records = (high - start).max(0);
            let seconds = if records > 0 {
                ages.get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(0.0)
            } else {
                0.0
            };
            let labels = PartitionLabels {
                topic: topic.clone(),
                partition,
            };
            self.metrics
                .kafka_lag_records
                .get_or_create(&labels)
                .set(records);
            self.metrics
                .kafka_lag_seconds
                .get_or_create(&labels)
                .set(seconds);
            out.push(PartitionLag {
                topic,
                partition,
                committed,
                high,
                records,
                seconds,
            });
        }
        let _ = self.consumer.unassign();
        Ok(out)
    }

    /// The age of the record at each (topic, partition, offset), read with one plain
    /// assignment of all of them.
    fn oldest_ages(
        &self,
        at: &[(String, i32, i64)],
    ) -> Result<std::collections::HashMap<(String, i32), f64>, StreamError> {
        let mut ages = std::collections::HashMap::new();
        if at.is_empty() {
            return Ok(ages);
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in at {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        self.consumer.assign(&tpl)?;
        drop(tpl);
        let deadline = std::time::Instant::now() + self.timeout;
        while ages.len() < at.len() && std::time::Instant::now() < deadline {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = (m.topic().to_owned(), m.partition());
                    if !ages.contains_key(&key)
                        && let Some(t) = m.timestamp().to_millis()
                    {
                        ages.insert(key, ((now_ms() - t).max(0) as f64) / 1000.0);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        Ok(ages)
    }

    /// Measures every `every` until `stop` turns true (run it on a thread of its own).
    pub fn run(self, every: Duration, stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(e) = self.measure() {
                tracing::warn!(error = %e, "kafka: measuring consumer lag failed");
            }
            let deadline = std::time::Instant::now() + every;
            while !*stop.borrow() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
