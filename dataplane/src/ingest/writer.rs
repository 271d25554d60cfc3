//! The writer: one thread that group-commits jobs.
//!
//! Per batch (one or more jobs, up to `batch.maxRecords` records or `batch.linger`): dedup by
//! event id, defer non-critical updates when paused, order by partition, coalesce same-key
//! updates (one read and one write per key), then one atomic store commit with `fdatasync`.
//! Only after that commit are jobs acknowledged and change events published, so an ack always
//! means durable and a failed commit acknowledges nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::dedup::DedupWindow;
use crate::feed::{ChangeEvent, ChangeFeed};
use crate::ingest::{Item, Job, Next, Outcome, UpdateSource};
use crate::merge::{Applied, coalesce};
use crate::metrics::{ClassLabel, Metrics, RecordLabels};
use crate::model::{Entity, EntityKey, Update, now_ms, partition_of};
use crate::store::{Layer, Store, StoreError, WriteSet};

/// How often dead-letter retention is enforced.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Writer settings.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Most records per group commit (a single larger job is still committed whole).
    pub max_records: usize,
    /// Longest the first job of a batch waits for company.
    pub linger: Duration,
    /// Partitions for partition-aware ordering.
    pub partitions: u32,
    /// Dead-letter retention by count.
    pub dead_letter_max: u64,
    /// Dead-letter retention by age.
    pub dead_letter_retention: Duration,
}

/// The group-commit loop and its state.
pub struct Writer {
    store: Arc<dyn Store>,
    feed: Arc<dyn ChangeFeed>,
    metrics: Arc<Metrics>,
    dedup: DedupWindow,
    paused: Arc<AtomicBool>,
    config: WriterConfig,
    hot: HotEntities,
}

/// The stored state of recently written keys, so hot keys skip the store read and decode.
/// Two generations approximate LRU with a hard bound: when the young one fills, the old one is
/// dropped and the young one becomes old. Updated only after a successful commit, so it always
/// equals the store.
struct HotEntities {
    young: FxHashMap<EntityKey, Entity>,
    old: FxHashMap<EntityKey, Entity>,
    generation: usize,
}

impl HotEntities {
    fn new(max_entries: usize) -> Self {
        Self {
            young: FxHashMap::default(),
            old: FxHashMap::default(),
            generation: max_entries / 2,
        }
    }

    fn take(&mut self, key: &EntityKey) -> Option<Entity> {
        self.young.remove(key).or_else(|| self.old.remove(key))
    }

    fn put(&mut self, key: EntityKey, entity: Entity) {
        if self.generation == 0 {
            return;
        }
        if self.young.len() >= self.generation {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, entity);
    }
}

impl Writer {
    /// A writer over `store`, its dedup window restored.
    pub fn new(
        store: Arc<dyn Store>,
        feed: Arc<dyn ChangeFeed>,
        metrics: Arc<Metrics>,
        paused: Arc<AtomicBool>,
        config: WriterConfig,
        dedup_window: usize,
        hot_entities: usize,
    ) -> Result<Self, StoreError> {
        let (entries, next) = store.dedup_window(dedup_window)?;
        Ok(Self {
            dedup: DedupWindow::restore(entries, next, dedup_window),
            store,
            feed,
            metrics,
            paused,
            config,
            hot: HotEntities::new(hot_entities),
        })
    }

    /// Runs until the source closes, then returns after the last batch is durable.
    pub fn run(mut self, mut source: impl UpdateSource) {
        let mut last_housekeeping = Instant::now();
        loop {
            if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
                self.housekeeping();
                last_housekeeping = Instant::now();
            }
            let first = match source.next(HOUSEKEEPING_EVERY) {
                Next::Job(job) => job,
                Next::Idle => continue,
                Next::Closed => break,
            };
            let mut records = first.items.len();
            let mut jobs = vec![first];
            let deadline = Instant::now() + self.config.linger;
            let mut closed = false;
            while records < self.config.max_records {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match source.next(left) {
                    Next::Job(job) => {
                        records += job.items.len();
                        jobs.push(job);
                    }
                    Next::Idle => break,
                    Next::Closed => {
                        closed = true;
                        break;
                    }
                }
            }
            self.process(jobs);
            if closed {
                break;
            }
        }
        tracing::info!("writer drained and stopped");
    }

    /// Commits one batch and acknowledges its jobs.
    fn process(&mut self, jobs: Vec<Job>) {
        let paused = self.paused.load(Ordering::Relaxed);
        let mut set = WriteSet {
            durable: true,
            dedup_expired: self.dedup.take_expired(),
            ..Default::default()
        };
        let mut outcomes: Vec<Vec<Outcome>> = Vec::with_capacity(jobs.len());
        let mut seen = FxHashSet::default();
        // (job, item) positions of updates to apply.
        let mut to_apply: Vec<(usize, usize)> = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            let mut out = Vec::with_capacity(job.items.len());
            // Jobs replaying deferred updates are exempt from the pause they were deferred by.
            let defer = paused && job.deferred_ids.is_empty();
            for (i, item) in job.items.iter().enumerate() {
                out.push(match item {
                    Item::Rejected(dl) => {
                        set.dead_letters.push(dl.clone());
                        Outcome::Rejected
                    }
                    Item::Update(u) if defer && u.non_critical => {
                        set.deferred.push(u.clone());
                        Outcome::Deferred
                    }
                    Item::Update(u) => {
                        let h = u.version.event_hash;
                        if self.dedup.contains(h) || !seen.insert(h) {
                            Outcome::Deduplicated
                        } else {
                            to_apply.push((j, i));
                            Outcome::Accepted
                        }
                    }
                });
            }
            set.deferred_removed.extend(&job.deferred_ids);
            set.dead_letters_removed.extend(&job.dead_letter_ids);
            outcomes.push(out);
        }
        let update_at = |(j, i): (usize, usize)| match &jobs[j].items[i] {
            Item::Update(u) => u,
            Item::Rejected(_) => unreachable!("only updates are applied"),
        };
        // Partition-aware order: a stable sort keeps each key's arrival order.
        let partitions = self.config.partitions;
        to_apply.sort_by_cached_key(|&pos| partition_of(&update_at(pos).key.id, partitions));

        let result = self.stage(&to_apply, &update_at, &mut set, &mut outcomes);
        let (changed, unchanged) = match result {
            Ok(r) => r,
            Err(e) => return fail(jobs, &e),
        };
        let hashes: Vec<u64> = to_apply
            .iter()
            .map(|&pos| update_at(pos).version.event_hash)
            .collect();
        if !hashes.is_empty() {
            set.dedup = Some((self.dedup.next_id(), hashes.clone()));
        }
        let started = Instant::now();
        let written = match self.store.commit(&set) {
            Ok(n) => n,
            Err(e) => return fail(jobs, &e),
        };
        // A failed commit must not leave the hot states ahead of the store: they were taken
        // out for this batch and are put back only now.
        for (_, key, entity) in set.entities.drain(..) {
            self.hot.put(key, entity);
        }
        for (key, entity) in unchanged {
            self.hot.put(key, entity);
        }
        self.metrics
            .ingest_commit_duration
            .observe(started.elapsed().as_secs_f64());
        if !hashes.is_empty() {
            self.dedup.record(hashes);
        }
        // Durable: make it visible, then account and acknowledge.
        let events: Vec<ChangeEvent> = changed.into_iter().map(ChangeEvent::Entity).collect();
        if !events.is_empty() {
            self.feed.publish(&events);
        }
        self.account(&jobs, &outcomes, to_apply.len(), written, &set.dead_letters);
        for (job, out) in jobs.into_iter().zip(outcomes) {
            (job.ack)(Ok(out));
        }
    }

    /// Reads each touched key once, coalesces, and stages the new states; marks stale outcomes.
    /// Returns the keys whose state changed, and the states of touched keys that did not.
    #[allow(clippy::type_complexity)]
    fn stage<'a>(
        &mut self,
        to_apply: &[(usize, usize)],
        update_at: &impl Fn((usize, usize)) -> &'a Update,
        set: &mut WriteSet,
        outcomes: &mut [Vec<Outcome>],
    ) -> Result<(Vec<EntityKey>, Vec<(EntityKey, Entity)>), StoreError> {
        let keys: BTreeSet<&EntityKey> = to_apply.iter().map(|&p| &update_at(p).key).collect();
        let mut current: FxHashMap<&EntityKey, Entity> = FxHashMap::default();
        for key in keys {
            let entity = match self.hot.take(key) {
                Some(e) => e,
                None => self.store.get(Layer::Stream, key)?.unwrap_or_default(),
            };
            current.insert(key, entity);
        }
        let (states, applied) = coalesce(to_apply.iter().map(|&p| update_at(p)), |k| {
            current.remove(k).unwrap_or_default()
        });
        let mut changed = BTreeSet::new();
        for (&(j, i), a) in to_apply.iter().zip(applied) {
            match a {
                Applied::Changed => {
                    changed.insert(update_at((j, i)).key.clone());
                }
                Applied::Stale => outcomes[j][i] = Outcome::Stale,
            }
        }
        let mut unchanged = Vec::new();
        for (key, entity) in states {
            if changed.contains(&key) {
                set.entities.push((Layer::Stream, key, entity));
            } else {
                unchanged.push((key, entity));
            }
        }
        Ok((changed.into_iter().collect(), unchanged))
    }

    /// Updates the SLI metrics for a committed batch, one metric handle per label set.
    fn account(
        &self,
        jobs: &[Job],
        outcomes: &[Vec<Outcome>],
        applied: usize,
        written: u64,
        dead_letters: &[crate::store::DeadLetter],
    ) {
        let m = &self.metrics;
        let now = now_ms();
        let mut records: HashMap<(&'static str, &'static str), u64> = HashMap::new();
        let mut lags: HashMap<&'static str, (Vec<f64>, i64)> = HashMap::new();
        for (job, out) in jobs.iter().zip(outcomes) {
            for (item, outcome) in job.items.iter().zip(out) {
                let class = match item {
                    Item::Update(u) => u.key.class.as_str(),
                    Item::Rejected(dl) => dl.class.map_or("unknown", |c| c.as_str()),
                };
                *records.entry((class, outcome.as_str())).or_default() += 1;
                if let (Item::Update(u), Outcome::Accepted) = (item, outcome) {
                    let (values, newest) = lags.entry(class).or_insert((Vec::new(), i64::MIN));
                    values.push((now - u.version.event_time_ms).max(0) as f64 / 1000.0);
                    *newest = (*newest).max(u.version.event_time_ms);
                }
            }
        }
        for ((class, outcome), n) in records {
            m.ingest_records
                .get_or_create(&RecordLabels { class, outcome })
                .inc_by(n);
        }
        for (class, (values, newest)) in lags {
            let label = ClassLabel { class };
            let hist = m.ingest_lag.get_or_create(&label);
            for v in values {
                hist.observe(v);
            }
            drop(hist);
            let watermark = m.ingest_watermark.get_or_create(&label);
            let t = newest as f64 / 1000.0;
            if t > watermark.get() {
                watermark.set(t);
            }
        }
        for dl in dead_letters {
            m.dead_letters
                .get_or_create(&ClassLabel {
                    class: dl.class.map_or("unknown", |c| c.as_str()),
                })
                .inc();
        }
        m.logical_updates.inc_by(applied as u64);
        m.physical_writes.inc_by(written);
        m.dead_letters_stored
            .set(self.store.dead_letter_count() as i64);
        m.ingest_deferred.set(self.store.deferred_count() as i64);
    }

    /// Enforces dead-letter retention by count and age.
    fn housekeeping(&mut self) {
        let count = self.store.dead_letter_count();
        let over = count.saturating_sub(self.config.dead_letter_max) as usize;
        let cutoff = now_ms() - self.config.dead_letter_retention.as_millis() as i64;
        let oldest = match self.store.dead_letters(0, over.max(1000)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "dead-letter housekeeping failed");
                return;
            }
        };
        let expired: Vec<u64> = oldest
            .iter()
            .enumerate()
            .take_while(|(i, (_, dl))| *i < over || dl.received_at_ms < cutoff)
            .map(|(_, (id, _))| *id)
            .collect();
        if expired.is_empty() {
            return;
        }
        let set = WriteSet {
            dead_letters_removed: expired,
            ..Default::default()
        };
        if let Err(e) = self.store.commit(&set) {
            tracing::warn!(error = %e, "dead-letter housekeeping failed");
        }
        self.metrics
            .dead_letters_stored
            .set(self.store.dead_letter_count() as i64);
    }
}

/// Acknowledges nothing as durable: every job gets the error.
fn fail(jobs: Vec<Job>, e: &StoreError) {
    tracing::error!(error = %e, jobs = jobs.len(), "commit failed; batch not acknowledged");
    for job in jobs {
        (job.ack)(Err(e.to_string()));
    }
}
