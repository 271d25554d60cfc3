//! The writer: a thread that group-commits jobs. Without Kafka there are several, each owning
//! the keys of one writer partition (`ingest::router`); they share the dedup window.
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

use rustc_hash::FxHashMap;

use crate::dedup::{DedupWindow, SharedDedup};
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
    /// Event ids remembered for dedup.
    pub dedup_window: usize,
    /// Entity states kept in memory for hot keys.
    pub hot_entities: usize,
}

/// The group-commit loop and its state.
pub struct Writer {
    store: Arc<dyn Store>,
    feed: Arc<dyn ChangeFeed>,
    metrics: Arc<Metrics>,
    dedup: Arc<SharedDedup>,
    paused: Arc<AtomicBool>,
    failed: Arc<AtomicBool>,
    config: WriterConfig,
    hot: HotEntities,
    /// Whether this writer enforces dead-letter retention: only one of partitioned writers
    /// does, so that two never delete the same dead letters (and count them twice).
    housekeeping: bool,
    /// Bumped by the Kafka source on every rebalance: the hot states may then be stale (another
    /// worker may have written the keys of a partition that came back), so they are dropped.
    ownership: Option<(Arc<std::sync::atomic::AtomicU64>, u64)>,
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

    fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
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
        failed: Arc<AtomicBool>,
        config: WriterConfig,
    ) -> Result<Self, StoreError> {
        let (entries, next) = store.dedup_window(config.dedup_window)?;
        Ok(Self {
            dedup: Arc::new(SharedDedup::new(DedupWindow::restore(
                entries,
                next,
                config.dedup_window,
            ))),
            hot: HotEntities::new(config.hot_entities),
            housekeeping: true,
            ownership: None,
            store,
            feed,
            metrics,
            paused,
            failed,
            config,
        })
    }

    /// Drops the hot states whenever `epoch` changed since the last batch (see
    /// `stream::consumer::KafkaSource::ownership_epoch`): with a store shared by several
    /// writers, a key's state is only known while its partition stays assigned here.
    pub fn with_ownership_epoch(mut self, epoch: Arc<std::sync::atomic::AtomicU64>) -> Self {
        let seen = epoch.load(Ordering::Acquire);
        self.ownership = Some((epoch, seen));
        self
    }

    /// `writers` writers in place of this one, for disjoint sets of keys (`ingest::router`):
    /// they share its store, feed, dedup window and switches; each has hot states of its own,
    /// an equal share of `hot_entities` (the keys are disjoint, so the bound is unchanged).
    pub fn partitioned(self, writers: usize) -> Vec<Writer> {
        let writers = writers.max(1);
        let config = WriterConfig {
            hot_entities: self.config.hot_entities / writers,
            ..self.config.clone()
        };
        (0..writers)
            .map(|i| Writer {
                store: self.store.clone(),
                feed: self.feed.clone(),
                metrics: self.metrics.clone(),
                dedup: self.dedup.clone(),
                paused: self.paused.clone(),
                failed: self.failed.clone(),
                config: config.clone(),
                hot: HotEntities::new(config.hot_entities),
                housekeeping: i == 0,
                ownership: self.ownership.clone(),
            })
            .collect()
    }

    /// Runs until the source closes, then returns after the last batch is durable.
    pub fn run(mut self, mut source: impl UpdateSource) {
        let mut last_housekeeping = Instant::now();
        loop {
            if self.housekeeping && last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
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
        if let Some((epoch, seen)) = &mut self.ownership {
            let now = epoch.load(Ordering::Acquire);
            if now != *seen {
                *seen = now;
                self.hot.clear();
            }
        }
        let paused = self.paused.load(Ordering::Relaxed);
        let mut set = WriteSet {
            durable: true,
            ..Default::default()
        };
        let mut outcomes: Vec<Vec<Outcome>> = Vec::with_capacity(jobs.len());
        // (job, item) positions of updates to dedup, then of those to apply.
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
                    Item::Update(_) => {
                        to_apply.push((j, i));
                        Outcome::Accepted
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
        let (fresh, mut claim) = self.dedup.claim(
            to_apply
                .iter()
                .map(|&pos| update_at(pos).version.event_hash),
        );
        let mut fresh = fresh.into_iter();
        to_apply.retain(|&(j, i)| {
            let keep = fresh.next().unwrap_or(false);
            if !keep {
                outcomes[j][i] = Outcome::Deduplicated;
            }
            keep
        });
        set.dedup_expired = std::mem::take(&mut claim.expired);
        set.dedup = claim.id.map(|id| (id, claim.hashes.clone()));
        // Partition-aware order: a stable sort keeps each key's arrival order.
        let partitions = self.config.partitions;
        to_apply.sort_by_cached_key(|&pos| partition_of(&update_at(pos).key.id, partitions));

        let staged = self.stage(&to_apply, &update_at, &mut set, &mut outcomes);
        let started = Instant::now();
        let written = staged.and_then(|staged| Ok((staged, self.store.commit(&set)?)));
        self.dedup.settle(claim, written.is_ok());
        let ((changed, unchanged), written) = match written {
            Ok(r) => r,
            Err(e) => return self.fail(jobs, &e),
        };
        // A failed commit must not leave the hot states ahead of the store: they were taken
        // out for this batch and are put back only now.
        // Blind writes hold only the batch's fields, not the keys' states: not hot states.
        if !self.store.resolves_field_conflicts() {
            for (_, key, entity) in set.entities.drain(..) {
                self.hot.put(key, entity);
            }
        }
        for (key, entity) in unchanged {
            self.hot.put(key, entity);
        }
        self.metrics
            .ingest_commit_duration
            .observe(started.elapsed().as_secs_f64());
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
        // A store that resolves field conflicts itself gets the batch's fields blind: no read,
        // no hot states (they would hold only the fields this worker wrote). Updates beaten
        // inside the batch are still reported stale; those beaten in the store are not known.
        let blind = self.store.resolves_field_conflicts();
        let keys: BTreeSet<&EntityKey> = to_apply.iter().map(|&p| &update_at(p).key).collect();
        let mut current: FxHashMap<&EntityKey, Entity> = FxHashMap::default();
        for key in keys.into_iter().filter(|_| !blind) {
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
            if blind {
                // Only written, never remembered as the key's state.
                if changed.contains(&key) {
                    set.entities.push((Layer::Stream, key, entity));
                }
            } else if changed.contains(&key) {
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

    /// Acknowledges nothing as durable: every job gets the error. A failed commit may have left
    /// the engine poisoned (fjall refuses writes after a failed fsync), so the failure is also
    /// raised to liveness: a restart recovers from the journal. An unavailable backend (a
    /// remote store unreachable or timing out) is not raised: a restart would not bring it
    /// back, and the senders retry.
    fn fail(&self, jobs: Vec<Job>, e: &StoreError) {
        tracing::error!(error = %e, jobs = jobs.len(), "commit failed; batch not acknowledged");
        if !matches!(e, StoreError::Unavailable(_)) {
            self.failed.store(true, Ordering::Relaxed);
        }
        for job in jobs {
            (job.ack)(Err(e.to_string()));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{InProcessFeed, Invalidate};
    use crate::ingest::{ChannelSource, JobResult};
    use crate::model::{Class, SubKey, Version};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{DedupEntries, SnapshotMeta};
    use parking_lot::Mutex;

    /// A writer that commits at once, with small bounds.
    fn small_config() -> WriterConfig {
        WriterConfig {
            max_records: 100,
            linger: Duration::ZERO,
            partitions: 4,
            dead_letter_max: 10,
            dead_letter_retention: Duration::from_secs(60),
            dedup_window: 100,
            hot_entities: 100,
        }
    }

    /// A writer with [`small_config`], not paused.
    fn writer(store: Arc<dyn Store>, feed: Arc<dyn ChangeFeed>, failed: Arc<AtomicBool>) -> Writer {
        Writer::new(
            store,
            feed,
            Arc::new(Metrics::new()),
            Arc::new(AtomicBool::new(false)),
            failed,
            small_config(),
        )
        .unwrap()
    }

    /// A writer running on its own thread, fed jobs over a channel.
    struct Running {
        tx: std::sync::mpsc::SyncSender<Job>,
        close: tokio::sync::watch::Sender<bool>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Running {
        fn start(writer: Writer) -> Self {
            let (tx, rx) = std::sync::mpsc::sync_channel(4);
            let (close, closing) = tokio::sync::watch::channel(false);
            let thread =
                std::thread::spawn(move || writer.run(ChannelSource { jobs: rx, closing }));
            Self { tx, close, thread }
        }

        /// Submits one job and waits for its result.
        fn submit(&self, items: Vec<Item>) -> JobResult {
            let (job, result) = Job::new(items);
            self.tx.send(job).unwrap();
            result.blocking_recv().unwrap()
        }

        fn stop(self) {
            self.close.send(true).unwrap();
            drop(self.tx);
            self.thread.join().unwrap();
        }
    }

    /// The embedded store, except that commits fail while `broken` is set.
    /// Also, with `blind`, claims to resolve field conflicts itself and records what the writer
    /// reads and commits.
    struct FlakyStore {
        inner: EmbeddedStore,
        broken: AtomicBool,
        /// Commits fail as `Unavailable` rather than `Engine` while broken.
        unavailable: AtomicBool,
        blind: bool,
        reads: std::sync::atomic::AtomicU64,
        committed: Mutex<Vec<(EntityKey, Entity)>>,
    }

    impl FlakyStore {
        fn open(dir: &std::path::Path, broken: bool, blind: bool) -> Self {
            Self {
                inner: EmbeddedStore::open(dir, 1 << 20).unwrap(),
                broken: AtomicBool::new(broken),
                unavailable: AtomicBool::new(false),
                blind,
                reads: Default::default(),
                committed: Mutex::default(),
            }
        }
    }

    impl Store for FlakyStore {
        fn get(&self, layer: Layer, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.get(layer, key)
        }
        fn resolves_field_conflicts(&self) -> bool {
            self.blind
        }
        fn prices_at(
            &self,
            l: Layer,
            p: &str,
            at: i64,
            d: usize,
        ) -> Result<Vec<(EntityKey, Entity)>, StoreError> {
            self.inner.prices_at(l, p, at, d)
        }
        fn commit(&self, set: &WriteSet) -> Result<u64, StoreError> {
            if self.broken.load(Ordering::Relaxed) {
                if self.unavailable.load(Ordering::Relaxed) {
                    return Err(StoreError::Unavailable("node timed out".into()));
                }
                return Err(StoreError::Engine("disk on fire".into()));
            }
            let mut committed = self.committed.lock();
            for (_, key, entity) in &set.entities {
                committed.push((key.clone(), entity.clone()));
            }
            self.inner.commit(set)
        }
        fn dedup_window(&self, max: usize) -> Result<(DedupEntries, u64), StoreError> {
            self.inner.dedup_window(max)
        }
        fn dead_letters(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<(u64, crate::store::DeadLetter)>, StoreError> {
            self.inner.dead_letters(after, limit)
        }
        fn dead_letter_count(&self) -> u64 {
            self.inner.dead_letter_count()
        }
        fn remove_snapshot_dead_letters(&self, v: u64) -> Result<u64, StoreError> {
            self.inner.remove_snapshot_dead_letters(v)
        }
        fn deferred(&self, limit: usize) -> Result<Vec<(u64, Update)>, StoreError> {
            self.inner.deferred(limit)
        }
        fn deferred_count(&self) -> u64 {
            self.inner.deferred_count()
        }
        fn snapshots(&self) -> Result<Vec<SnapshotMeta>, StoreError> {
            self.inner.snapshots()
        }
        fn put_snapshot_meta(&self, m: &SnapshotMeta, a: bool) -> Result<(), StoreError> {
            self.inner.put_snapshot_meta(m, a)
        }
        fn set_active_snapshot(&self, v: u64) -> Result<(), StoreError> {
            self.inner.set_active_snapshot(v)
        }
        fn active_snapshot(&self) -> Result<Option<u64>, StoreError> {
            self.inner.active_snapshot()
        }
        fn discard_snapshot(&self, v: u64) -> Result<(), StoreError> {
            self.inner.discard_snapshot(v)
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<ChangeEvent>>);

    impl Invalidate for Recorder {
        fn invalidate(&self, events: &[ChangeEvent]) {
            self.0.lock().extend_from_slice(events);
        }
    }

    fn update(id: &str, qty: i64) -> Item {
        Item::Update(Update {
            event_id: id.into(),
            key: EntityKey {
                class: Class::Inventory,
                id: "P1".into(),
                sub: Some(SubKey::Code("S1".into())),
            },
            version: Version {
                event_time_ms: qty,
                sequence: 0,
                event_hash: crate::model::event_hash(id),
            },
            payload: [("quantity".to_string(), serde_json::json!(qty))].into(),
            non_critical: false,
        })
    }

    #[test]
    fn a_failed_commit_acknowledges_nothing_and_publishes_nothing() {
        let dir = std::env::temp_dir().join(format!("tailwarden-writer-{}", fastrand::u64(..)));
        let store = Arc::new(FlakyStore::open(&dir, true, false));
        let feed = Arc::new(InProcessFeed::default());
        let recorder = Arc::new(Recorder::default());
        feed.subscribe(recorder.clone());
        let failed = Arc::new(AtomicBool::new(false));
        let running = Running::start(writer(store.clone(), feed, failed.clone()));
        let submit = |items| running.submit(items);

        store.unavailable.store(true, Ordering::Relaxed);
        assert!(submit(vec![update("e0", 1)]).is_err());
        assert!(
            !failed.load(Ordering::Relaxed),
            "an unavailable backend is retried, not restarted"
        );
        store.unavailable.store(false, Ordering::Relaxed);
        assert!(submit(vec![update("e1", 1)]).is_err());
        assert!(
            failed.load(Ordering::Relaxed),
            "liveness must see the failure"
        );
        assert!(recorder.0.lock().is_empty(), "nothing may become visible");
        store.broken.store(false, Ordering::Relaxed);
        // The same event is not remembered as applied: its retry is accepted, not deduplicated.
        assert_eq!(
            submit(vec![update("e1", 1)]).unwrap(),
            vec![Outcome::Accepted]
        );
        assert_eq!(recorder.0.lock().len(), 1);

        running.stop();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Another worker writes a key while its partition is away; when the ownership epoch moved,
    /// this writer re-reads the key instead of merging into its stale hot state.
    #[test]
    fn a_new_ownership_epoch_drops_the_hot_states() {
        let dir = std::env::temp_dir().join(format!("tailwarden-writer-{}", fastrand::u64(..)));
        let store = Arc::new(EmbeddedStore::open(&dir, 1 << 20).unwrap());
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let new_writer = || {
            writer(
                store.clone(),
                Arc::new(InProcessFeed::default()),
                Arc::new(AtomicBool::new(false)),
            )
        };
        let mut here = new_writer().with_ownership_epoch(epoch.clone());
        let mut other = new_writer();
        let run = |w: &mut Writer, item| {
            let (job, rx) = Job::new(vec![item]);
            w.process(vec![job]);
            rx.blocking_recv().unwrap().unwrap()
        };
        let with_field = |id: &str, t: i64, field: &str| match update(id, t) {
            Item::Update(mut u) => {
                u.payload = [(field.to_string(), serde_json::json!(t))].into();
                Item::Update(u)
            }
            Item::Rejected(_) => unreachable!(),
        };
        run(&mut here, with_field("a", 1, "quantity"));
        // The partition moves away and back; meanwhile the other worker sets another field.
        run(&mut other, with_field("b", 2, "reserved"));
        epoch.fetch_add(2, Ordering::AcqRel);
        run(&mut here, with_field("c", 3, "quantity"));
        let key = match update("x", 0) {
            Item::Update(u) => u.key,
            Item::Rejected(_) => unreachable!(),
        };
        let state = store.get(Layer::Stream, &key).unwrap().unwrap();
        assert_eq!(state.get("quantity"), Some(&serde_json::json!(3)));
        assert_eq!(
            state.get("reserved"),
            Some(&serde_json::json!(2)),
            "the other worker's write was lost to a stale hot state"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// With a store that resolves field conflicts, the writer reads nothing and writes each
    /// key's newest fields of the batch only, never a state merged from earlier batches.
    #[test]
    fn a_store_resolving_conflicts_gets_blind_writes() {
        let dir = std::env::temp_dir().join(format!("tailwarden-writer-{}", fastrand::u64(..)));
        let store = Arc::new(FlakyStore::open(&dir, false, true));
        let running = Running::start(writer(
            store.clone(),
            Arc::new(InProcessFeed::default()),
            Arc::new(AtomicBool::new(false)),
        ));
        let submit = |items| running.submit(items);
        let quantity = |e: &Entity| e.get("quantity").cloned();

        assert_eq!(
            submit(vec![update("e1", 5), update("e2", 3), update("e1", 5)]).unwrap(),
            vec![Outcome::Accepted, Outcome::Stale, Outcome::Deduplicated],
            "stale within the batch, duplicate by the dedup window"
        );
        // Older than what the store holds: only the store can tell, so it is accepted and
        // written; the store's last-writer-wins keeps the newer value.
        assert_eq!(
            submit(vec![update("e3", 1)]).unwrap(),
            vec![Outcome::Accepted]
        );
        assert_eq!(store.reads.load(Ordering::Relaxed), 0, "no read-merge");
        let committed = store.committed.lock().clone();
        assert_eq!(committed.len(), 2);
        assert_eq!(quantity(&committed[0].1), Some(serde_json::json!(5)));
        assert_eq!(quantity(&committed[1].1), Some(serde_json::json!(1)));
        assert_eq!(committed[1].1.fields.len(), 1);

        running.stop();
        let _ = std::fs::remove_dir_all(dir);
    }
}
