//! The consumer group as the writer's second [`UpdateSource`] (beside the in-process
//! [`crate::ingest::ChannelSource`], merged by [`crate::ingest::MergedSource`]).
//!
//! * **Commit after durable.** Offsets are committed (synchronously, `enable.auto.commit=false`)
//!   only after the writer acknowledged the job that carried them, that is after its batch was
//!   committed durably to the store. A crash between the two replays those records: at least
//!   once, and the versioned, deduplicated writes make a replay a no-op (effectively once).
//! * **One job in flight.** Kafka is polled only when no job is waiting for its ack; while one is,
//!   [`KafkaSource::next`] waits and yields nothing. So every record handed to the writer is
//!   committed before the next poll, and a rebalance (whose callbacks run inside poll) never
//!   finds applied-but-uncommitted records: revoking loses nothing and hands nothing applied to
//!   the next owner.
//! * **Order.** A job holds the records of a poll in partition order; the writer keeps each key's
//!   order (stable sort by partition), and the producer keyed every record by its partition id.
//! * **Store failure.** A failed job pauses its partitions, seeks them back to the job's first
//!   records and resumes them after a backoff (1 s doubling to 30 s): nothing is dropped, nothing
//!   committed past an unapplied record.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::ingest::{Item, Job, JobResult, Next, UpdateSource};
use crate::metrics::{CommitLabel, CommitResult, Metrics, RebalanceKind, RebalanceLabel};
use crate::model::now_ms;
use crate::schema::{Mode, parse_record};
use crate::store::DeadLetter;
use crate::stream::client::Connection;
use crate::stream::{StreamError, Topics, TopicsExt};

/// A topic and partition.
pub type Partition = (String, i32);

/// The ingest group's `session.timeout.ms`: how long a member that died without leaving (SIGKILL,
/// a lost node) keeps its partitions before the group rebalances them to the others. 10 s
/// instead of librdkafka's 45 s: a stall of at most ~10 s on those partitions, while a member
/// still has to miss three heartbeats (below) in a row before it is dropped. The broker's
/// `group.min.session.timeout.ms` (6 s by default) allows it. Measured by
/// `dataplane/tests/faults.rs` (an ingest worker killed mid-batch).
pub const SESSION_TIMEOUT_MS: &str = "10000";
/// The ingest group's `heartbeat.interval.ms` (a third of the session timeout, as Kafka advises).
pub const HEARTBEAT_INTERVAL_MS: &str = "3000";

/// Tuning of the consumer.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Most records in one job (the writer's `batch.maxRecords` is a good value).
    pub max_job_records: usize,
    /// First pause after a failed job; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
    /// Timeout of offset commits, seeks and pauses.
    pub request_timeout: Duration,
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            max_job_records: 5000,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Rebalance callbacks: they run inside `poll`, on the writer thread.
pub struct SourceContext {
    metrics: Arc<Metrics>,
    revoked: Mutex<Vec<Partition>>,
    epoch: Arc<AtomicU64>,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let kind = match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "kafka: partitions assigned");
                RebalanceKind::Assign
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "kafka: partitions revoked");
                self.revoked.lock().extend(
                    tpl.elements()
                        .iter()
                        .map(|e| (e.topic().to_owned(), e.partition())),
                );
                RebalanceKind::Revoke
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "kafka: rebalance failed");
                RebalanceKind::Error
            }
        };
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics
            .kafka_rebalances
            .get_or_create(&RebalanceLabel { kind })
            .inc();
    }
}

/// The job handed to the writer and not yet acknowledged.
struct InFlight {
    id: u64,
    /// First offset per partition in the job (where to seek back to on failure).
    first: BTreeMap<Partition, i64>,
    /// Next offset per partition (what to commit on success).
    next: BTreeMap<Partition, i64>,
}

/// The consumer group over the class topics and the dead-letter topic.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    dead_letter_topic: String,
    closing: tokio::sync::watch::Receiver<bool>,
    config: SourceConfig,
    metrics: Arc<Metrics>,
    acks_tx: mpsc::Sender<(u64, JobResult)>,
    acks_rx: mpsc::Receiver<(u64, JobResult)>,
    inflight: Option<InFlight>,
    next_id: u64,
    paused: HashSet<Partition>,
    resume_at: Option<Instant>,
    backoff: Duration,
}

impl KafkaSource {
    /// Joins `group` and subscribes to `topics`' class and dead-letter topics. Closes once
    /// `closing` turns true and the job in flight (if any) is acknowledged and committed.
    pub fn new(
        conn: &Connection,
        group: &str,
        topics: &Topics,
        closing: tokio::sync::watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        config: SourceConfig,
    ) -> Result<Self, StreamError> {
        let context = SourceContext {
            metrics: metrics.clone(),
            revoked: Mutex::new(Vec::new()),
            epoch: Arc::new(AtomicU64::new(0)),
        };
        let mut client = conn.config();
        // A member that dies without leaving (SIGKILL, a lost node) holds its partitions until the
        // session times out; librdkafka's default (45 s) is a long stall of those partitions for
        // a freshness SLO. The connection's own setting (e.g. a test's) wins.
        for (key, value) in [
            ("session.timeout.ms", SESSION_TIMEOUT_MS),
            ("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS),
        ] {
            if client.get(key).is_none() {
                client.set(key, value);
            }
        }
        let consumer: BaseConsumer<SourceContext> = client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .create_with_context(context)?;
        consumer.subscribe(&topics.consumed())?;
        let (acks_tx, acks_rx) = mpsc::channel();
        Ok(Self {
            consumer,
            dead_letter_topic: topics.dead_letters.clone(),
            closing,
            backoff: config.backoff,
            config,
            metrics,
            acks_tx,
            acks_rx,
            inflight: None,
            next_id: 0,
            paused: HashSet::new(),
            resume_at: None,
        })
    }

    /// Bumped on every rebalance, before any record of the new assignment is handed out: give it
    /// to `Writer::with_ownership_epoch` so that the writer's hot states never outlive a
    /// partition's ownership (with a store shared by several ingest workers).
    pub fn ownership_epoch(&self) -> Arc<AtomicU64> {
        self.consumer.context().epoch.clone()
    }

    /// The partitions currently paused after a failed job.
    pub fn paused(&self) -> Vec<Partition> {
        let mut v: Vec<Partition> = self.paused.iter().cloned().collect();
        v.sort();
        v
    }

    /// Settles the job in flight if its ack arrived: commit, or pause and rewind.
    fn settle(&mut self) {
        while let Ok((id, result)) = self.acks_rx.try_recv() {
            let Some(job) = self.inflight.take_if(|j| j.id == id) else {
                continue;
            };
            match result {
                Ok(_) => {
                    self.commit(&job.next);
                    self.backoff = self.config.backoff;
                }
                Err(e) => self.rewind(&job.first, &e),
            }
        }
    }

    fn commit(&self, next: &BTreeMap<Partition, i64>) {
        if next.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::warn!(error = %e, "kafka: bad offset to commit");
            }
        }
        let result = match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                CommitResult::Ok
            }
            Err(e) => {
                // The records are applied; another owner (after a rebalance) or a restart reads
                // them again, and the writer deduplicates them.
                tracing::warn!(error = %e, "kafka: offset commit failed");
                CommitResult::Error
            }
        };
        self.metrics
            .kafka_offset_commits
            .get_or_create(&CommitLabel { result })
            .inc();
    }

    fn rewind(&mut self, first: &BTreeMap<Partition, i64>, why: &str) {
        tracing::warn!(
            error = why,
            partitions = first.len(),
            backoff_ms = self.backoff.as_millis() as u64,
            "kafka: job not committed; pausing its partitions"
        );
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in first.keys() {
            tpl.add_partition(topic, *partition);
        }
        if let Err(e) = self.consumer.pause(&tpl) {
            tracing::warn!(error = %e, "kafka: pausing partitions failed");
        }
        for ((topic, partition), offset) in first {
            if let Err(e) = self.consumer.seek(
                topic,
                *partition,
                Offset::Offset(*offset),
                self.config.request_timeout,
            ) {
                tracing::warn!(error = %e, topic, partition, "kafka: seeking back failed");
            }
            self.paused.insert((topic.clone(), *partition));
        }
        self.resume_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(self.config.max_backoff);
    }

    fn resume_if_due(&mut self) {
        if self.resume_at.is_none_or(|t| Instant::now() < t) {
            return;
        }
        self.resume_at = None;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in self.paused.drain() {
            tpl.add_partition(&topic, partition);
        }
        tracing::info!(
            partitions = tpl.count(),
            "kafka: resuming paused partitions"
        );
        if let Err(e) = self.consumer.resume(&tpl) {
            tracing::warn!(error = %e, "kafka: resuming partitions failed");
        }
    }

    /// Forgets pause state of partitions revoked by a rebalance (the next owner starts from the
    /// committed offset) and returns them. A revoked partition that was paused is resumed: the
    /// client (librdkafka) keeps a partition's pause across a rebalance, so one assigned back here
    /// (in this poll or a later one) would otherwise stay paused with nothing left to resume it,
    /// and its records would never be applied.
    fn take_revoked(&mut self) -> HashSet<Partition> {
        let revoked: HashSet<Partition> =
            std::mem::take(&mut *self.consumer.context().revoked.lock())
                .into_iter()
                .collect();
        let mut unpause = TopicPartitionList::new();
        for p in &revoked {
            if self.paused.remove(p) {
                unpause.add_partition(&p.0, p.1);
            }
        }
        if unpause.count() > 0 {
            tracing::info!(
                partitions = unpause.count(),
                "kafka: resuming paused partitions the rebalance took"
            );
            if let Err(e) = self.consumer.resume(&unpause) {
                tracing::warn!(error = %e, "kafka: resuming partitions failed");
            }
        }
        if self.paused.is_empty() {
            self.resume_at = None;
        }
        revoked
    }

    /// Records dropped because their partition was revoked during the poll: if the partition
    /// came straight back (assigned again in the same poll), its fetch position is already past
    /// them, so seek back to the first dropped one.
    fn reposition(&self, dropped: BTreeMap<Partition, i64>) {
        if dropped.is_empty() {
            return;
        }
        let assigned: HashSet<Partition> = match self.consumer.assignment() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect(),
            Err(_) => return,
        };
        for ((topic, partition), offset) in dropped {
            if assigned.contains(&(topic.clone(), partition))
                && let Err(e) = self.consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    self.config.request_timeout,
                )
            {
                tracing::warn!(error = %e, topic, partition, "kafka: seeking back failed");
            }
        }
    }

    fn item(&self, topic: &str, payload: Option<&[u8]>) -> Item {
        let received_at_ms = now_ms();
        let Some(payload) = payload else {
            return Item::Rejected(DeadLetter::stream(
                received_at_ms,
                None,
                String::new(),
                format!("empty Kafka message on {topic}"),
                &[],
            ));
        };
        if topic == self.dead_letter_topic {
            return Item::Rejected(
                serde_json::from_slice::<DeadLetter>(payload).unwrap_or_else(|e| {
                    DeadLetter::stream(
                        received_at_ms,
                        None,
                        String::new(),
                        format!("unreadable dead letter: {e}"),
                        payload,
                    )
                }),
            );
        }
        // Validated by the producing worker; a worker of another schema version may still
        // disagree, and then the record is dead-lettered here.
        match parse_record(payload, Mode::Stream) {
            Ok(p) => Item::Update(p.update),
            Err(e) => Item::Rejected(DeadLetter::stream(
                received_at_ms,
                e.class,
                e.field,
                e.message,
                payload,
            )),
        }
    }

    /// Polls up to `max_job_records` records, waiting at most `timeout` for the first.
    fn poll_job(&mut self, timeout: Duration) -> Option<Job> {
        let mut items: Vec<(Partition, i64, Item)> = Vec::new();
        let mut wait = timeout;
        while items.len() < self.config.max_job_records {
            let Some(polled) = self.consumer.poll(wait) else {
                break;
            };
            wait = Duration::ZERO;
            match polled {
                Ok(m) => {
                    let item = self.item(m.topic(), m.payload());
                    items.push(((m.topic().to_owned(), m.partition()), m.offset(), item));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "kafka: consumer error");
                    break;
                }
            }
        }
        // A rebalance during this poll: records of revoked partitions belong to the next owner,
        // which reads them from the committed offset.
        let revoked = self.take_revoked();
        if !revoked.is_empty() {
            let mut dropped: BTreeMap<Partition, i64> = BTreeMap::new();
            items.retain(|(p, offset, _)| {
                if revoked.contains(p) {
                    dropped.entry(p.clone()).or_insert(*offset);
                    false
                } else {
                    true
                }
            });
            self.reposition(dropped);
        }
        if items.is_empty() {
            return None;
        }
        let mut first = BTreeMap::new();
        let mut next = BTreeMap::new();
        for (p, offset, _) in &items {
            first.entry(p.clone()).or_insert(*offset);
            next.insert(p.clone(), offset + 1);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.inflight = Some(InFlight { id, first, next });
        let tx = self.acks_tx.clone();
        Some(Job {
            items: items.into_iter().map(|(_, _, item)| item).collect(),
            deferred_ids: Vec::new(),
            dead_letter_ids: Vec::new(),
            ack: Box::new(move |r| {
                let _ = tx.send((id, r));
            }),
        })
    }
}

impl UpdateSource for KafkaSource {
    fn next(&mut self, timeout: Duration) -> Next {
        self.settle();
        if self.inflight.is_some() {
            // The writer is still gathering the batch that holds our job: nothing more until
            // it is committed (see the module docs), but do not spin either.
            std::thread::sleep(timeout.min(Duration::from_millis(5)));
            return Next::Idle;
        }
        if *self.closing.borrow() {
            return Next::Closed;
        }
        self.resume_if_due();
        match self.poll_job(timeout) {
            Some(job) => Next::Job(job),
            None => Next::Idle,
        }
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        // Leave the group now rather than at the session timeout, so the partitions move on.
        self.consumer.unsubscribe();
    }
}
