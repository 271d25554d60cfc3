//! Routes in-process jobs to the partitioned writers: every key belongs to one writer thread
//! (`hash(product_id) % writers`), so a key's updates are applied by one thread in arrival
//! order and its hot state lives in that thread only.
//!
//! A job whose records span several writer partitions is split into one part per partition and
//! acknowledged once every part committed (each part's commit is durable, with its own
//! `fdatasync`, before the part acknowledges). If a part fails, the job fails although the other
//! parts may have committed: the client's retry is then safe, because the committed records are
//! reported `deduplicated` (event-id dedup) or `stale` (last-writer-wins), never applied twice.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::ingest::{Item, Job, JobResult, Outcome};
use crate::metrics::{Metrics, RecordLabels};
use crate::model::partition_of;

/// Why a job was not handed to the writers. Nothing of it was queued.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A writer's queue is full.
    #[error("writer queue is full")]
    Full,
    /// The writers have stopped (shutdown).
    #[error("the writer has stopped")]
    Stopped,
    /// Its deferred or dead-letter ids are not one per record, so they cannot follow their
    /// records to the writers (a caller's bug).
    #[error("a job's {what} ids ({ids}) do not match its {items} records")]
    Unaligned {
        /// `deferred` or `dead-letter`.
        what: &'static str,
        /// How many ids.
        ids: usize,
        /// How many records.
        items: usize,
    },
}

/// The senders to the writer threads, one per writer partition.
pub struct JobRouter {
    writers: Vec<SyncSender<Job>>,
    /// Held while a job's parts are queued, so that every writer sees jobs in the same order.
    order: Mutex<()>,
    metrics: Arc<Metrics>,
}

impl JobRouter {
    /// A router to `writers` writers, each with a queue of `queue_jobs` jobs; returns the queue
    /// each writer takes from, by writer partition.
    pub fn new(
        writers: usize,
        queue_jobs: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, Vec<Receiver<Job>>) {
        let (senders, receivers) = (0..writers.max(1))
            .map(|_| sync_channel(queue_jobs))
            .unzip();
        let router = Self {
            writers: senders,
            order: Mutex::new(()),
            metrics,
        };
        (router, receivers)
    }

    /// Queues `job`, split by writer partition. Once any part is queued this returns `Ok` and
    /// the job's ack reports the outcome (a failure if a later part could not be queued).
    pub fn send(&self, job: Job) -> Result<(), Refused> {
        let parts = self.split(job)?;
        let _order = self.order.lock();
        let mut queued = false;
        let mut refused = None;
        for (writer, part) in parts {
            let part = match refused {
                Some(_) => part,
                None => match self.writers[writer].try_send(part) {
                    Ok(()) => {
                        queued = true;
                        continue;
                    }
                    Err(TrySendError::Full(part)) => {
                        refused = Some(Refused::Full);
                        part
                    }
                    Err(TrySendError::Disconnected(part)) => {
                        refused = Some(Refused::Stopped);
                        part
                    }
                },
            };
            let why = refused
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            (part.ack)(Err(why));
        }
        match refused {
            Some(why) if !queued => Err(why),
            _ => Ok(()),
        }
    }

    /// One part per writer partition touched, by writer. Rejected records go with the job's
    /// first update; a later record with the event id of an earlier one in another partition is
    /// answered `deduplicated` here, as one writer would have, since the two parts race.
    fn split(&self, job: Job) -> Result<Vec<(usize, Job)>, Refused> {
        let writers = self.writers.len();
        if writers == 1 {
            return Ok(vec![(0, job)]);
        }
        let Job {
            items,
            deferred_ids,
            dead_letter_ids,
            ack,
        } = job;
        let aligned = |what, ids: &Vec<u64>| {
            if ids.is_empty() || ids.len() == items.len() {
                Ok(())
            } else {
                Err(Refused::Unaligned {
                    what,
                    ids: ids.len(),
                    items: items.len(),
                })
            }
        };
        aligned("deferred", &deferred_ids)?;
        aligned("dead-letter", &dead_letter_ids)?;
        let writer_of = |item: &Item| match item {
            Item::Update(u) => Some(partition_of(&u.key.id, writers as u32) as usize),
            Item::Rejected(_) => None,
        };
        let home = items.iter().find_map(writer_of).unwrap_or(0);
        let total = items.len();
        let mut parts: Vec<Part> = (0..writers).map(|_| Part::default()).collect();
        let mut first_seen: FxHashMap<u64, usize> = FxHashMap::default();
        let mut deduplicated = Vec::new();
        for (position, item) in items.into_iter().enumerate() {
            let writer = writer_of(&item).unwrap_or(home);
            if let Item::Update(u) = &item
                && *first_seen.entry(u.version.event_hash).or_insert(writer) != writer
            {
                deduplicated.push(u.key.class.as_str());
                continue;
            }
            let part = &mut parts[writer];
            part.positions.push(position);
            part.deferred_ids.extend(deferred_ids.get(position));
            part.dead_letter_ids.extend(dead_letter_ids.get(position));
            part.items.push(item);
        }
        let touched: Vec<usize> = (0..writers)
            .filter(|&w| !parts[w].items.is_empty())
            .collect();
        if touched.len() <= 1 && deduplicated.is_empty() {
            // One writer (or an empty job): no split, the job's own ack.
            let writer = touched.first().copied().unwrap_or(home);
            let part = std::mem::take(&mut parts[writer]);
            let job = Job {
                items: part.items,
                deferred_ids: part.deferred_ids,
                dead_letter_ids: part.dead_letter_ids,
                ack,
            };
            return Ok(vec![(writer, job)]);
        }
        let join = Arc::new(Mutex::new(Join {
            left: touched.len(),
            outcomes: vec![Outcome::Deduplicated; total],
            error: None,
            deduplicated,
            ack: Some(ack),
        }));
        Ok(touched
            .into_iter()
            .map(|writer| {
                let part = std::mem::take(&mut parts[writer]);
                let join = join.clone();
                let metrics = self.metrics.clone();
                let positions = part.positions;
                let job = Job {
                    items: part.items,
                    deferred_ids: part.deferred_ids,
                    dead_letter_ids: part.dead_letter_ids,
                    ack: Box::new(move |result| Join::settle(&join, &positions, result, &metrics)),
                };
                (writer, job)
            })
            .collect())
    }
}

/// One writer's share of a job, with the records' positions in the job.
#[derive(Default)]
struct Part {
    items: Vec<Item>,
    positions: Vec<usize>,
    deferred_ids: Vec<u64>,
    dead_letter_ids: Vec<u64>,
}

/// A split job waiting for its parts.
struct Join {
    left: usize,
    /// By position in the job; records answered by the router stay `Deduplicated`.
    outcomes: Vec<Outcome>,
    /// The first part's failure.
    error: Option<String>,
    /// Classes of the records the router answered, counted once the job succeeds (as a writer
    /// counts only committed batches).
    deduplicated: Vec<&'static str>,
    ack: Option<Box<dyn FnOnce(JobResult) + Send>>,
}

impl Join {
    /// Takes one part's result; the last part acknowledges the job.
    fn settle(join: &Mutex<Join>, positions: &[usize], result: JobResult, metrics: &Metrics) {
        let mut state = join.lock();
        match result {
            Ok(outcomes) => {
                for (&position, outcome) in positions.iter().zip(outcomes) {
                    state.outcomes[position] = outcome;
                }
            }
            Err(e) => {
                state.error.get_or_insert(e);
            }
        }
        state.left -= 1;
        if state.left > 0 {
            return;
        }
        let Some(ack) = state.ack.take() else {
            return;
        };
        let result = match state.error.take() {
            Some(e) => Err(e),
            None => {
                for &class in &state.deduplicated {
                    metrics
                        .ingest_records
                        .get_or_create(&RecordLabels {
                            class,
                            outcome: Outcome::Deduplicated.as_str(),
                        })
                        .inc();
                }
                Ok(std::mem::take(&mut state.outcomes))
            }
        };
        drop(state);
        ack(result);
    }
}
