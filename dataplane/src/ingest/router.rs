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
            let mut writer = writer_of(&item).unwrap_or(home);
            let mut duplicate = false;
            if let Item::Update(u) = &item {
                let first = *first_seen.entry(u.version.event_hash).or_insert(writer);
                if first != writer {
                    deduplicated.push(u.key.class.as_str());
                    (writer, duplicate) = (first, true);
                }
            }
            // A duplicate's deferred entry or dead letter is deleted with its first occurrence.
            let part = &mut parts[writer];
            part.deferred_ids.extend(deferred_ids.get(position));
            part.dead_letter_ids.extend(dead_letter_ids.get(position));
            if !duplicate {
                part.positions.push(position);
                part.items.push(item);
            }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::feed::InProcessFeed;
    use crate::ingest::ChannelSource;
    use crate::ingest::writer::{Writer, WriterConfig};
    use crate::model::{Class, Entity, EntityKey, SubKey, Update, Version, event_hash};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{DeadLetter, Layer, Store};

    /// Product ids of the generated updates: with 2 or 3 writers they fall in every partition.
    const PRODUCTS: usize = 8;

    fn key(product: usize) -> EntityKey {
        EntityKey {
            class: Class::Inventory,
            id: format!("P{product}"),
            sub: Some(SubKey::Code("S1".into())),
        }
    }

    fn update(event_id: &str, product: usize, field: u8, value: i64, t: i64, seq: u64) -> Item {
        Item::Update(Update {
            event_id: event_id.into(),
            key: key(product),
            version: Version {
                event_time_ms: t,
                sequence: seq,
                event_hash: event_hash(event_id),
            },
            payload: [(format!("f{field}"), serde_json::json!(value))].into(),
            non_critical: false,
        })
    }

    fn rejected() -> Item {
        Item::Rejected(DeadLetter::stream(
            crate::model::now_ms(),
            None,
            "key".into(),
            "bad".into(),
            b"{}",
        ))
    }

    /// A record to generate: a fresh update, a copy of an earlier record (a redelivery), an
    /// update that reuses an earlier record's event id for other content, or a rejected record.
    #[derive(Clone, Debug)]
    enum Gen {
        Fresh(usize, u8, i64, i64, u64),
        Copy(prop::sample::Index),
        Reuse(prop::sample::Index, usize, u8, i64),
        Rejected,
    }

    fn arb_gen(reuse: bool) -> impl Strategy<Value = Gen> {
        let fresh = (0..PRODUCTS, 0..3u8, 0..100i64, 0..4i64, 0..2u64)
            .prop_map(|(p, f, v, t, s)| Gen::Fresh(p, f, v, t, s));
        let reused = (any::<prop::sample::Index>(), 0..PRODUCTS, 0..3u8, 0..100i64)
            .prop_map(|(i, p, f, v)| Gen::Reuse(i, p, f, v));
        prop_oneof![
            6 => fresh,
            2 => any::<prop::sample::Index>().prop_map(Gen::Copy),
            if reuse { 1 } else { 0 } => reused,
            1 => Just(Gen::Rejected),
        ]
    }

    /// The generated records as items (rebuilt per run: items are not `Clone`).
    fn items(gens: &[Gen]) -> Vec<Item> {
        let mut made: Vec<Item> = Vec::new();
        for (n, g) in gens.iter().enumerate() {
            let earlier = |i: &prop::sample::Index| (!made.is_empty()).then(|| i.index(made.len()));
            let item = match g {
                Gen::Fresh(p, f, v, t, s) => update(&format!("e{n}"), *p, *f, *v, *t, *s),
                Gen::Copy(i) => match earlier(i).map(|i| &made[i]) {
                    Some(Item::Update(u)) => Item::Update(u.clone()),
                    _ => rejected(),
                },
                Gen::Reuse(i, p, f, v) => match earlier(i).map(|i| &made[i]) {
                    Some(Item::Update(u)) => {
                        let (t, s) = (u.version.event_time_ms, u.version.sequence);
                        update(&u.event_id.clone(), *p, *f, *v, t, s)
                    }
                    _ => rejected(),
                },
                Gen::Rejected => rejected(),
            };
            made.push(item);
        }
        made
    }

    /// Jobs of the records cut at `cuts`.
    fn jobs(gens: &[Gen], cuts: &[prop::sample::Index]) -> Vec<Vec<Item>> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(gens.len() + 1)).collect();
        at.extend([0, gens.len()]);
        at.sort_unstable();
        at.dedup();
        let mut items = items(gens).into_iter();
        at.windows(2)
            .map(|w| items.by_ref().take(w[1] - w[0]).collect())
            .collect()
    }

    /// `writers` writer threads behind a router, on a fresh embedded store.
    struct Harness {
        router: JobRouter,
        threads: Vec<std::thread::JoinHandle<()>>,
        close: tokio::sync::watch::Sender<bool>,
        store: Arc<EmbeddedStore>,
        dir: std::path::PathBuf,
    }

    impl Harness {
        fn start(writers: usize) -> Self {
            let dir = std::env::temp_dir().join(format!("tailwarden-router-{}", fastrand::u64(..)));
            let store = Arc::new(EmbeddedStore::open(&dir, 1 << 20).unwrap());
            let metrics = Arc::new(Metrics::new());
            let writer = Writer::new(
                store.clone(),
                Arc::new(InProcessFeed::default()),
                metrics.clone(),
                Arc::new(AtomicBool::new(false)),
                Arc::new(AtomicBool::new(false)),
                WriterConfig {
                    max_records: 50,
                    linger: Duration::from_millis(1),
                    partitions: 4,
                    dead_letter_max: 10_000,
                    dead_letter_retention: Duration::from_secs(3600),
                    dedup_window: 100_000,
                    hot_entities: 100,
                },
            )
            .unwrap();
            let (router, queues) = JobRouter::new(writers, 64, metrics);
            let (close, closing) = tokio::sync::watch::channel(false);
            let threads = writer
                .partitioned(writers)
                .into_iter()
                .zip(queues)
                .map(|(writer, jobs)| {
                    let closing = closing.clone();
                    std::thread::spawn(move || writer.run(ChannelSource { jobs, closing }))
                })
                .collect();
            Self {
                router,
                threads,
                close,
                store,
                dir,
            }
        }

        fn send(&self, items: Vec<Item>) -> tokio::sync::oneshot::Receiver<JobResult> {
            let (job, result) = Job::new(items);
            self.router.send(job).unwrap();
            result
        }

        /// Each job in turn, waiting for its outcome.
        fn one_by_one(&self, jobs: Vec<Vec<Item>>) -> Vec<JobResult> {
            jobs.into_iter()
                .map(|items| self.send(items).blocking_recv().unwrap())
                .collect()
        }

        /// Every job queued at once, then their outcomes.
        fn all_at_once(&self, jobs: Vec<Vec<Item>>) -> Vec<JobResult> {
            let pending: Vec<_> = jobs.into_iter().map(|items| self.send(items)).collect();
            pending
                .into_iter()
                .map(|r| r.blocking_recv().unwrap())
                .collect()
        }

        /// Stops the writers; returns every product's stored state and the dead letters.
        fn finish(self) -> (Vec<Option<Entity>>, u64) {
            self.close.send(true).unwrap();
            drop(self.router);
            for t in self.threads {
                t.join().unwrap();
            }
            let states = (0..PRODUCTS)
                .map(|p| self.store.get(Layer::Stream, &key(p)).unwrap())
                .collect();
            let dead_letters = self.store.dead_letter_count();
            drop(self.store);
            let _ = std::fs::remove_dir_all(&self.dir);
            (states, dead_letters)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Jobs sent one by one: the same outcomes, record by record, and the same store state
        /// as one writer, whatever the keys, versions, duplicates (redelivered or reused event
        /// ids) and job boundaries.
        #[test]
        fn partitioned_writers_match_one_writer(
            gens in prop::collection::vec(arb_gen(true), 1..60),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let one = Harness::start(1);
            let expected = one.one_by_one(jobs(&gens, &cuts));
            let expected_state = one.finish();
            let three = Harness::start(3);
            let got = three.one_by_one(jobs(&gens, &cuts));
            prop_assert_eq!(got, expected);
            prop_assert_eq!(three.finish(), expected_state);
        }

        /// Jobs sent all at once, so that the writers' batches interleave: the same store state
        /// as one writer taking them one by one (redeliveries only: which of two records that
        /// share an event id wins is arrival order, which concurrent jobs do not have).
        #[test]
        fn interleaved_partitioned_writers_reach_the_same_state(
            gens in prop::collection::vec(arb_gen(false), 1..60),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let one = Harness::start(1);
            one.one_by_one(jobs(&gens, &cuts));
            let expected = one.finish();
            let three = Harness::start(3);
            for result in three.all_at_once(jobs(&gens, &cuts)) {
                prop_assert!(result.is_ok());
            }
            prop_assert_eq!(three.finish(), expected);
        }
    }

    /// Otherwise the properties would not exercise split jobs.
    #[test]
    fn the_generated_products_fall_in_every_partition() {
        for writers in [2, 3] {
            let used: std::collections::BTreeSet<u32> = (0..PRODUCTS)
                .map(|p| partition_of(&key(p).id, writers))
                .collect();
            assert_eq!(used.len(), writers as usize, "{used:?}");
        }
    }

    /// A product of each of two writer partitions.
    fn two_partitions() -> (usize, usize) {
        let writer_of = |p: usize| partition_of(&key(p).id, 2);
        let a = (0..PRODUCTS).find(|&p| writer_of(p) == 0).unwrap();
        let b = (0..PRODUCTS).find(|&p| writer_of(p) == 1).unwrap();
        (a, b)
    }

    /// Replayed dead letters follow their records; a duplicate's goes with its first occurrence.
    #[test]
    fn ids_follow_their_records() {
        let (router, queues) = JobRouter::new(2, 4, Arc::new(Metrics::new()));
        let (a, b) = two_partitions();
        let (mut job, _result) = Job::new(vec![
            update("x", a, 0, 1, 1, 0),
            update("x", b, 0, 1, 1, 0),
            update("y", b, 0, 1, 1, 0),
        ]);
        job.dead_letter_ids = vec![1, 2, 3];
        router.send(job).unwrap();
        let first = queues[0].try_recv().unwrap();
        let second = queues[1].try_recv().unwrap();
        assert_eq!((first.items.len(), first.dead_letter_ids), (1, vec![1, 2]));
        assert_eq!((second.items.len(), second.dead_letter_ids), (1, vec![3]));
        let (mut job, _) = Job::new(vec![update("z", a, 0, 1, 1, 0)]);
        job.deferred_ids = vec![1, 2];
        assert!(matches!(
            router.send(job),
            Err(Refused::Unaligned {
                ids: 2,
                items: 1,
                ..
            })
        ));
    }

    /// A job over two partitions: outcomes come back in record order once both parts are
    /// acknowledged, and a failed part fails the whole job.
    #[test]
    fn a_split_job_joins_its_parts_and_fails_with_any() {
        let (router, queues) = JobRouter::new(2, 4, Arc::new(Metrics::new()));
        let (a, b) = two_partitions();
        for fail in [false, true] {
            let (job, result) = Job::new(vec![
                update("x", a, 0, 1, 1, 0),
                update("y", b, 0, 1, 1, 0),
                update("z", a, 0, 1, 1, 0),
            ]);
            router.send(job).unwrap();
            let first = queues[0].try_recv().unwrap();
            let second = queues[1].try_recv().unwrap();
            assert_eq!((first.items.len(), second.items.len()), (2, 1));
            (second.ack)(if fail {
                Err("disk on fire".into())
            } else {
                Ok(vec![Outcome::Stale])
            });
            let mut result = result;
            assert!(result.try_recv().is_err(), "acknowledged before every part");
            (first.ack)(Ok(vec![Outcome::Accepted, Outcome::Deduplicated]));
            let expected = if fail {
                Err("disk on fire".to_string())
            } else {
                Ok(vec![
                    Outcome::Accepted,
                    Outcome::Stale,
                    Outcome::Deduplicated,
                ])
            };
            assert_eq!(result.try_recv().unwrap(), expected);
        }
    }
}
