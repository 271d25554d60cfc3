//! Replay: moving a consumer group's committed offsets back (or forth) to an offset or a time,
//! per topic or partition, so the group consumes again from there; and re-ingesting the
//! dead-letter topic with today's validation, like `POST /v1/deadletter/replay`.
//!
//! Offsets can only be moved while the group has no active members: a live member would commit
//! over the new offsets with its own. [`move_offsets`] refuses with
//! [`StreamError::GroupActive`] otherwise (scale the ingest workers to 0 first). The broker
//! refuses such a commit too when a member joins in between.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::ingest::Item;
use crate::schema::parse_record;
use crate::store::DeadLetter;
use crate::stream::StreamError;
use crate::stream::client::Connection;
use crate::stream::ingest::KafkaIngest;

/// Where to replay from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// This offset (clamped to what the partition still holds).
    Offset(i64),
    /// The first record with a timestamp at or after this time, epoch milliseconds (the end of
    /// the partition when there is none).
    Timestamp(i64),
    /// The oldest record the partition holds.
    Earliest,
}

/// The partitions of `topic` (all, or only `partition`).
fn partitions(
    consumer: &BaseConsumer,
    topic: &str,
    partition: Option<i32>,
    timeout: Duration,
) -> Result<Vec<i32>, StreamError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let all: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if all.is_empty() {
        return Err(StreamError::Other(format!(
            "topic {topic:?} does not exist"
        )));
    }
    match partition {
        None => Ok(all),
        Some(p) if all.contains(&p) => Ok(vec![p]),
        Some(p) => Err(StreamError::Other(format!(
            "topic {topic:?} has no partition {p}"
        ))),
    }
}

/// Resolves `from` to one offset per partition of `topic`.
fn resolve(
    consumer: &BaseConsumer,
    topic: &str,
    parts: &[i32],
    from: ReplayFrom,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, StreamError> {
    let mut out = Vec::with_capacity(parts.len());
    let by_time = match from {
        ReplayFrom::Timestamp(ms) => {
            let mut tpl = TopicPartitionList::new();
            for p in parts {
                tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
            }
            let found = consumer.offsets_for_times(tpl, timeout)?;
            let v: Vec<(i32, Offset)> = found
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect();
            drop(found);
            Some(v)
        }
        _ => None,
    };
    for p in parts {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        let offset = match from {
            ReplayFrom::Offset(o) => o.clamp(low, high),
            ReplayFrom::Earliest => low,
            ReplayFrom::Timestamp(_) => {
                match by_time
                    .as_ref()
                    .and_then(|v| v.iter().find(|(q, _)| q == p))
                    .map(|(_, o)| *o)
                {
                    Some(Offset::Offset(o)) => o.clamp(low, high),
                    _ => high,
                }
            }
        };
        out.push((*p, offset));
    }
    Ok(out)
}

/// Sets `group`'s committed offsets on `topic` (every partition, or only `partition`) to `from`,
/// and returns the new offsets. Refuses while the group has active members.
pub fn move_offsets(
    conn: &Connection,
    group: &str,
    topic: &str,
    partition: Option<i32>,
    from: ReplayFrom,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, StreamError> {
    let consumer: BaseConsumer = conn
        .config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let members = active_members(&consumer, group, timeout)?;
    if members > 0 {
        return Err(StreamError::GroupActive {
            group: group.to_owned(),
            members,
        });
    }
    let parts = partitions(&consumer, topic, partition, timeout)?;
    let offsets = resolve(&consumer, topic, &parts, from, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    tracing::info!(
        group,
        topic,
        ?partition,
        ?from,
        ?offsets,
        "kafka: group offsets moved"
    );
    Ok(offsets)
}

/// Members of `group` right now.
pub fn active_members(
    consumer: &BaseConsumer,
    group: &str,
    timeout: Duration,
) -> Result<usize, StreamError> {
    let list = consumer.fetch_group_list(Some(group), timeout)?;
    let n = list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .map(|g| g.members().len())
        .sum();
    Ok(n)
}

/// What a dead-letter replay did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetterReplay {
    /// Dead letters read from the topic.
    pub read: usize,
    /// Now valid: produced again to their class topic.
    pub replayed: usize,
    /// Still invalid (left on the topic, not produced again).
    pub still_rejected: usize,
    /// Per partition, the offset after the last dead letter read: where the next replay can
    /// start.
    pub next: Vec<(i32, i64)>,
}

/// Reads the dead-letter topic from `from` (every partition, or only `partition`) up to its end
/// as of now, at most `limit` records, re-validates each record with today's code and produces
/// those that now pass to their class topic through `ingest` (acknowledged when this returns).
pub async fn replay_dead_letters(
    conn: &Connection,
    ingest: &KafkaIngest,
    partition: Option<i32>,
    from: ReplayFrom,
    limit: usize,
    timeout: Duration,
) -> Result<DeadLetterReplay, StreamError> {
    let conn = conn.clone();
    let topic = ingest.topics().dead_letters.clone();
    let (letters, next) = tokio::task::spawn_blocking(move || {
        read_dead_letters(&conn, &topic, partition, from, limit, timeout)
    })
    .await
    .map_err(|e| StreamError::Other(e.to_string()))??;
    let mut report = DeadLetterReplay {
        read: letters.len(),
        next,
        ..Default::default()
    };
    let mut raw = Vec::new();
    let mut items = Vec::new();
    for dl in letters {
        match parse_record(dl.raw.as_bytes(), dl.source.mode()) {
            Ok(p) => {
                let start = raw.len();
                raw.extend_from_slice(dl.raw.as_bytes());
                items.push((start..raw.len(), Item::Update(p.update)));
            }
            Err(_) => report.still_rejected += 1,
        }
    }
    if !items.is_empty() {
        ingest.produce(&raw, &items).await?;
    }
    report.replayed = items.len();
    Ok(report)
}

type Letters = (Vec<DeadLetter>, Vec<(i32, i64)>);

fn read_dead_letters(
    conn: &Connection,
    topic: &str,
    partition: Option<i32>,
    from: ReplayFrom,
    limit: usize,
    timeout: Duration,
) -> Result<Letters, StreamError> {
    let consumer: BaseConsumer = conn
        .config()
        .set(
            "group.id",
            format!("tailwarden-dl-replay-{:016x}", fastrand::u64(..)),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let parts = partitions(&consumer, topic, partition, timeout)?;
    let starts = resolve(&consumer, topic, &parts, from, timeout)?;
    let mut ends = std::collections::BTreeMap::new();
    let mut positions = std::collections::BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, start) in &starts {
        let (_, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        positions.insert(*p, *start);
        if *start < high {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Offset(*start))?;
        }
    }
    let mut letters = Vec::new();
    if !ends.is_empty() {
        consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + timeout;
        while !ends.is_empty() && letters.len() < limit {
            if std::time::Instant::now() >= deadline {
                return Err(StreamError::Other(format!(
                    "reading {topic:?} timed out after {timeout:?}"
                )));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    let p = m.partition();
                    positions.insert(p, m.offset() + 1);
                    if ends.get(&p).is_some_and(|end| m.offset() + 1 >= *end) {
                        ends.remove(&p);
                    }
                    match m.payload().map(serde_json::from_slice::<DeadLetter>) {
                        Some(Ok(dl)) => letters.push(dl),
                        _ => tracing::warn!(offset = m.offset(), "kafka: unreadable dead letter"),
                    }
                }
            }
        }
    }
    drop(tpl);
    Ok((letters, positions.into_iter().collect()))
}
