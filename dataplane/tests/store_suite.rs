//! One behavioural suite for every `Store` backend: each test body takes a [`Harness`] and runs
//! against the embedded store (a temp dir) and against Cassandra (a fresh keyspace for tests of
//! keyspace-wide state, one shared keyspace for tests that only touch their own entities).
//!
//! The Cassandra variants are ignored by default; `tests/run.sh` starts a node (tests/services),
//! exports `TAILWARDEN_CASSANDRA` (and `_USER` / `_PASSWORD`) and runs with `--include-ignored`.
//! By hand:
//!
//! ```sh
//! TAILWARDEN_SKIP_BUILD=1 TAILWARDEN_CASSANDRA_AUTH=1 tests/services/cassandra-up.sh /tmp/svc
//! . /tmp/svc/env
//! cargo test -p tailwarden-dataplane --test store_suite -- --include-ignored
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tailwarden_contract::backend::Reachability;
use tailwarden_contract::config::Storage;
use tailwarden_dataplane::merge;
use tailwarden_dataplane::model::{Class, Entity, EntityKey, Field, SubKey, Update, Version};
use tailwarden_dataplane::store::cassandra::{CassandraSettings, CassandraStore};
use tailwarden_dataplane::store::embedded::EmbeddedStore;
use tailwarden_dataplane::store::{
    DeadLetter, DeadLetterSource, Layer, SnapshotMeta, SnapshotState, Store, StoreError, WriteSet,
};

/// One store under test, and what keeps it alive.
struct Harness {
    store: Arc<dyn Store>,
    backend: Backend,
    dir: Option<PathBuf>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Clone)]
enum Backend {
    Embedded,
    /// The keyspace, and whether this test made it (and drops it).
    Cassandra {
        keyspace: String,
        owned: bool,
    },
}

impl Drop for Harness {
    /// Removes what the test made. A test keyspace is dropped: every table costs the node heap,
    /// and a 512 MiB node (tests/services) ran out of it after ~60 leftover keyspaces.
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let (
            Backend::Cassandra {
                keyspace: ks,
                owned: true,
            },
            Some(rt),
        ) = (&self.backend, &self.runtime)
        {
            let (node, credentials) = cassandra_env();
            let dropped = rt.block_on(async {
                let mut builder =
                    scylla::client::session_builder::SessionBuilder::new().known_node(node);
                if let Some((user, password)) = credentials {
                    builder = builder.user(user, password);
                }
                let session = builder.build().await.map_err(|e| e.to_string())?;
                session
                    .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                    .await
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = dropped {
                eprintln!("dropping test keyspace {ks}: {e}");
            }
        }
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tailwarden-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn embedded() -> Harness {
    let dir = temp_dir("store-suite");
    Harness {
        store: Arc::new(EmbeddedStore::open(&dir, 1 << 20).unwrap()),
        backend: Backend::Embedded,
        dir: Some(dir),
        runtime: None,
    }
}

/// The node from tests/services, or a clear panic.
fn cassandra_env() -> (String, Option<(String, String)>) {
    let node = std::env::var("TAILWARDEN_CASSANDRA").unwrap_or_else(|_| {
        panic!(
            "TAILWARDEN_CASSANDRA is not set: start a node with tests/services/cassandra-up.sh \
             DIR and `. DIR/env` (tests/run.sh does both)"
        )
    });
    let user = std::env::var("TAILWARDEN_CASSANDRA_USER").ok();
    let password = std::env::var("TAILWARDEN_CASSANDRA_PASSWORD").ok();
    (node, user.zip(password))
}

/// Settings as the service builds them: from `storage.cassandra`, credentials from files.
fn settings(keyspace: &str, credentials: Option<(String, String)>) -> (CassandraSettings, PathBuf) {
    let (node, _) = cassandra_env();
    let dir = temp_dir("cassandra-credentials");
    let credentials_dir = credentials.map(|(user, password)| {
        std::fs::write(dir.join("username"), format!("{user}\n")).unwrap();
        std::fs::write(dir.join("password"), format!("{password}\n")).unwrap();
        dir.clone()
    });
    let storage = Storage::Cassandra {
        contact_points: vec![node],
        keyspace: keyspace.into(),
        consistency: "LOCAL_ONE".into(),
        credentials_dir,
    };
    (
        CassandraSettings::from_storage(&storage).unwrap().unwrap(),
        dir,
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn connect(keyspace: &str) -> (Arc<dyn Store>, tokio::runtime::Runtime) {
    let rt = runtime();
    let (settings, dir) = settings(keyspace, cassandra_env().1);
    let store = rt.block_on(CassandraStore::connect(&settings)).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (Arc::new(store), rt)
}

/// A fresh keyspace of its own: for tests of keyspace-wide state (dedup window, queues,
/// snapshot pointer).
fn cassandra() -> Harness {
    let keyspace = format!("tw_test_{}_{}", std::process::id(), fastrand::u32(..));
    let (store, rt) = connect(&keyspace);
    Harness {
        store,
        backend: Backend::Cassandra {
            keyspace,
            owned: true,
        },
        dir: None,
        runtime: Some(rt),
    }
}

/// One keyspace for all tests that only touch entities under ids of their own: creating a
/// keyspace (15 schema changes) is most of a test's time. Left on the node (one per run).
fn cassandra_shared() -> Harness {
    static SHARED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let keyspace = shared
        .get_or_insert_with(|| {
            format!(
                "tw_test_shared_{}_{}",
                std::process::id(),
                fastrand::u32(..)
            )
        })
        .clone();
    // Connected under the lock: concurrent CREATE TABLE of one table can leave the schema
    // disagreeing.
    let (store, rt) = connect(&keyspace);
    drop(shared);
    Harness {
        store,
        backend: Backend::Cassandra {
            keyspace,
            owned: false,
        },
        dir: None,
        runtime: Some(rt),
    }
}

impl Harness {
    /// A second store on the same data: another worker. Only shared backends have one.
    fn second_worker(&self) -> Option<(Arc<dyn Store>, tokio::runtime::Runtime)> {
        match &self.backend {
            Backend::Embedded => None,
            Backend::Cassandra { keyspace, .. } => Some(connect(keyspace)),
        }
    }
}

fn version(t: i64, s: u64, e: u64) -> Version {
    Version {
        event_time_ms: t,
        sequence: s,
        event_hash: e,
    }
}

fn entity(fields: &[(&str, serde_json::Value, Version)]) -> Entity {
    let mut e = Entity::default();
    for (name, value, version) in fields {
        e.fields.insert(
            (*name).into(),
            Field {
                value: value.clone(),
                version: *version,
            },
        );
    }
    e
}

fn key(class: Class, id: &str, sub: Option<SubKey>) -> EntityKey {
    EntityKey {
        class,
        id: id.into(),
        sub,
    }
}

fn sample_key(class: Class, id: &str) -> EntityKey {
    let sub = match class {
        Class::Pricing => Some(SubKey::Time(1_700_000_000_000)),
        Class::Inventory => Some(SubKey::Code("S1".into())),
        Class::Fulfillment => Some(SubKey::Code("EU".into())),
        _ => None,
    };
    key(class, id, sub)
}

fn commit_entities(store: &dyn Store, entities: Vec<(Layer, EntityKey, Entity)>) {
    store
        .commit(&WriteSet {
            entities,
            durable: true,
            ..Default::default()
        })
        .unwrap();
}

/// Applies updates one commit each, as the writer does: blind for a store that resolves field
/// conflicts, read-merge-write otherwise.
fn apply_updates(store: &dyn Store, updates: &[Update]) {
    for u in updates {
        let mut e = if store.resolves_field_conflicts() {
            Entity::default()
        } else {
            store
                .get(Layer::Stream, &u.key)
                .unwrap()
                .unwrap_or_default()
        };
        merge::apply(&mut e, u);
        commit_entities(store, vec![(Layer::Stream, u.key.clone(), e)]);
    }
}

/// Updates over 3 keys x 3 fields with colliding event times, so that ties are broken by
/// sequence and event hash (in Cassandra: by the cell value's version prefix).
fn updates(prefix: &str, n: usize, seed: u64) -> Vec<Update> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-p{}", rng.u8(0..3));
            let event_id = format!("{prefix}-e{i}");
            Update {
                key: key(Class::Inventory, &id, Some(SubKey::Code("S1".into()))),
                version: version(
                    1_700_000_000_000 + rng.i64(0..4),
                    rng.u64(0..3),
                    tailwarden_dataplane::model::event_hash(&event_id),
                ),
                event_id,
                payload: [(format!("f{}", rng.u8(0..3)), serde_json::json!(i))].into(),
                non_critical: false,
            }
        })
        .collect()
}

fn expected(updates: &[Update]) -> BTreeMap<EntityKey, Entity> {
    let mut out: BTreeMap<EntityKey, Entity> = BTreeMap::new();
    for u in updates {
        merge::apply(out.entry(u.key.clone()).or_default(), u);
    }
    out
}

fn assert_state(store: &dyn Store, expected: &BTreeMap<EntityKey, Entity>) {
    for (k, e) in expected {
        assert_eq!(
            store.get(Layer::Stream, k).unwrap().as_ref(),
            Some(e),
            "state of {k:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Test bodies.

fn round_trip_every_class(h: &Harness) {
    let store = &*h.store;
    let v = version(1_700_000_000_123, 4, 99);
    let mut entities = Vec::new();
    for class in Class::ALL {
        let e = entity(&[
            (
                "name",
                serde_json::json!({"en": "Kettle", "n": [1, 2.5]}),
                v,
            ),
            ("cleared", serde_json::Value::Null, version(-5, 0, 1)),
        ]);
        entities.push((Layer::Stream, sample_key(class, "K1"), e.clone()));
        entities.push((
            Layer::Baseline(3),
            sample_key(class, "K1"),
            entity(&[("only_baseline", serde_json::json!(true), v)]),
        ));
    }
    commit_entities(store, entities.clone());
    for (layer, k, e) in &entities {
        assert_eq!(
            store.get(*layer, k).unwrap().as_ref(),
            Some(e),
            "{layer:?} {k:?}"
        );
    }
    for class in Class::ALL {
        assert_eq!(
            store.get(Layer::Stream, &sample_key(class, "K2")).unwrap(),
            None
        );
        assert_eq!(
            store
                .get(Layer::Baseline(4), &sample_key(class, "K1"))
                .unwrap(),
            None,
            "baselines of other versions are separate"
        );
    }
    let other_sub = key(Class::Inventory, "K1", Some(SubKey::Code("S2".into())));
    assert_eq!(store.get(Layer::Stream, &other_sub).unwrap(), None);
}

fn last_writer_wins_under_reordering_and_duplication(h: &Harness) {
    let store = &*h.store;
    for round in 0..3_u64 {
        let prefix = format!("lww{round}");
        let updates = updates(&prefix, 60, 7);
        let want = expected(&updates);
        let mut shuffled = updates.clone();
        // Duplicates of a third of the updates, then any order.
        shuffled.extend(updates.iter().step_by(3).cloned());
        fastrand::Rng::with_seed(round).shuffle(&mut shuffled);
        apply_updates(store, &shuffled);
        assert_state(store, &want);
    }
}

fn workers_blind_writing_concurrently_converge(h: &Harness) {
    let (second, _rt) = h
        .second_worker()
        .expect("only shared backends have workers");
    let first = h.store.clone();
    let updates = updates("conc", 400, 11);
    let want = expected(&updates);
    // Each worker gets two thirds of the updates (overlapping), in its own order.
    let mut a: Vec<Update> = updates.iter().take(270).cloned().collect();
    let mut b: Vec<Update> = updates.iter().skip(130).cloned().collect();
    fastrand::Rng::with_seed(1).shuffle(&mut a);
    fastrand::Rng::with_seed(2).shuffle(&mut b);
    std::thread::scope(|s| {
        s.spawn(|| apply_updates(&*first, &a));
        s.spawn(|| apply_updates(&*second, &b));
    });
    assert_state(&*h.store, &want);
    assert_state(&*second, &want);
}

fn prices_at_is_bounded_and_newest_first(h: &Harness) {
    let store = &*h.store;
    let price = |id: &str, from: i64| {
        (
            Layer::Stream,
            key(Class::Pricing, id, Some(SubKey::Time(from))),
            entity(&[("amount", serde_json::json!(from), version(from, 0, 0))]),
        )
    };
    commit_entities(
        store,
        vec![
            price("P1", -10),
            price("P1", 10),
            price("P1", 20),
            price("P1", 30),
            price("P10", 15),
            price("P", 25),
        ],
    );
    let times = |at: i64, depth: usize| -> Vec<i64> {
        store
            .prices_at(Layer::Stream, "P1", at, depth)
            .unwrap()
            .into_iter()
            .map(|(k, e)| {
                let Some(SubKey::Time(t)) = k.sub else {
                    panic!("price key without time")
                };
                assert_eq!(e.get("amount"), Some(&serde_json::json!(t)));
                t
            })
            .collect()
    };
    assert_eq!(times(25, 8), vec![20, 10, -10]);
    assert_eq!(
        times(30, 8),
        vec![30, 20, 10, -10],
        "valid_from is inclusive"
    );
    assert_eq!(times(30, 2), vec![30, 20], "depth bounds the scan");
    assert_eq!(times(-11, 8), Vec::<i64>::new());
    assert_eq!(times(i64::MAX, 0), Vec::<i64>::new());
    assert!(
        store
            .prices_at(Layer::Baseline(1), "P1", 30, 8)
            .unwrap()
            .is_empty()
    );
}

fn meta(version: u64) -> SnapshotMeta {
    SnapshotMeta {
        version,
        state: SnapshotState::Complete,
        as_of_ms: 1_700_000_000_000 + version as i64,
        completed_at_ms: Some(1_700_000_000_500),
        records: 10 * version,
        rejected: 0,
    }
}

fn baselines_discard_and_active_pointer(h: &Harness) {
    let store = &*h.store;
    let k = sample_key(Class::Pricing, "B1");
    let e = |n: i64| entity(&[("amount", serde_json::json!(n), version(n, 0, 0))]);
    assert_eq!(store.active_snapshot().unwrap(), None);
    commit_entities(
        store,
        vec![
            (Layer::Baseline(1), k.clone(), e(1)),
            (Layer::Baseline(2), k.clone(), e(2)),
            (Layer::Stream, k.clone(), e(3)),
        ],
    );
    store.put_snapshot_meta(&meta(1), true).unwrap();
    assert_eq!(store.active_snapshot().unwrap(), Some(1));
    let mut loading = meta(2);
    loading.state = SnapshotState::Loading;
    store.put_snapshot_meta(&loading, false).unwrap();
    assert_eq!(
        store.active_snapshot().unwrap(),
        Some(1),
        "loading is not active"
    );
    store.put_snapshot_meta(&meta(2), true).unwrap();
    assert_eq!(store.active_snapshot().unwrap(), Some(2));
    assert_eq!(store.snapshots().unwrap(), vec![meta(1), meta(2)]);
    // Rollback.
    store.set_active_snapshot(1).unwrap();
    assert_eq!(store.active_snapshot().unwrap(), Some(1));

    store.discard_snapshot(2).unwrap();
    assert_eq!(store.get(Layer::Baseline(2), &k).unwrap(), None);
    assert!(
        store
            .prices_at(Layer::Baseline(2), "B1", i64::MAX, 4)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.get(Layer::Baseline(1), &k).unwrap(), Some(e(1)));
    assert_eq!(store.get(Layer::Stream, &k).unwrap(), Some(e(3)));
    assert_eq!(store.snapshots().unwrap(), vec![meta(1)]);

    // The same version number loaded again after its discard is visible, not shadowed.
    commit_entities(store, vec![(Layer::Baseline(2), k.clone(), e(22))]);
    assert_eq!(store.get(Layer::Baseline(2), &k).unwrap(), Some(e(22)));
}

fn dead_letter(source: DeadLetterSource, raw: &str) -> DeadLetter {
    DeadLetter {
        received_at_ms: 1_700_000_000_000,
        source,
        class: Some(Class::Product),
        field: "payload.name".into(),
        reason: "must be a string".into(),
        raw: raw.into(),
    }
}

fn dead_letters_list_and_remove(h: &Harness) {
    let store = &*h.store;
    let snap = |line| DeadLetterSource::Snapshot {
        version: 7,
        as_of_ms: 1,
        line,
    };
    let letters = vec![
        dead_letter(DeadLetterSource::Stream, "a"),
        dead_letter(snap(1), "b"),
        dead_letter(snap(2), "c"),
        dead_letter(DeadLetterSource::Stream, "d"),
    ];
    store
        .commit(&WriteSet {
            dead_letters: letters.clone(),
            durable: true,
            ..Default::default()
        })
        .unwrap();
    let listed = store.dead_letters(0, 100).unwrap();
    let raws: Vec<&str> = listed.iter().map(|(_, d)| d.raw.as_str()).collect();
    assert_eq!(raws, ["a", "b", "c", "d"], "oldest first");
    assert_eq!(listed[1].1, letters[1]);
    assert_eq!(store.dead_letter_count(), 4);
    let after_first = store.dead_letters(listed[0].0, 2).unwrap();
    assert_eq!(after_first.len(), 2);
    assert_eq!(after_first[0].1.raw, "b");

    store
        .commit(&WriteSet {
            dead_letters_removed: vec![listed[0].0],
            durable: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(store.dead_letters(0, 100).unwrap().len(), 3);
    assert_eq!(store.dead_letter_count(), 3);
    assert_eq!(store.remove_snapshot_dead_letters(7).unwrap(), 2);
    let left: Vec<String> = store
        .dead_letters(0, 100)
        .unwrap()
        .into_iter()
        .map(|(_, d)| d.raw)
        .collect();
    assert_eq!(left, ["d"]);
    assert_eq!(store.dead_letter_count(), 1);
}

fn deferred_updates(h: &Harness) {
    let store = &*h.store;
    let deferred = updates("deferred", 3, 5);
    store
        .commit(&WriteSet {
            deferred: deferred.clone(),
            durable: true,
            ..Default::default()
        })
        .unwrap();
    let got = store.deferred(10).unwrap();
    assert_eq!(
        got.iter().map(|(_, u)| u.clone()).collect::<Vec<_>>(),
        deferred,
        "oldest first"
    );
    assert_eq!(store.deferred_count(), 3);
    assert_eq!(store.deferred(2).unwrap().len(), 2);
    store
        .commit(&WriteSet {
            deferred_removed: vec![got[0].0, got[2].0],
            durable: true,
            ..Default::default()
        })
        .unwrap();
    let left = store.deferred(10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1, deferred[1]);
    assert_eq!(store.deferred_count(), 1);
}

fn dedup_window(h: &Harness) {
    let store = &*h.store;
    assert_eq!(store.dedup_window(10).unwrap(), (vec![], 1));
    for (id, hashes) in [(1, vec![10, 11]), (2, vec![20]), (3, vec![30, 31])] {
        store
            .commit(&WriteSet {
                dedup: Some((id, hashes)),
                durable: true,
                ..Default::default()
            })
            .unwrap();
    }
    assert_eq!(
        store.dedup_window(10).unwrap(),
        (vec![(3, vec![30, 31]), (2, vec![20]), (1, vec![10, 11])], 4),
        "newest first"
    );
    store
        .commit(&WriteSet {
            dedup_expired: vec![1],
            durable: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        store.dedup_window(10).unwrap().0,
        vec![(3, vec![30, 31]), (2, vec![20])]
    );
    // Beyond the window: trimmed, for good.
    assert_eq!(store.dedup_window(2).unwrap().0, vec![(3, vec![30, 31])]);
    assert_eq!(store.dedup_window(10).unwrap().0, vec![(3, vec![30, 31])]);
}

fn wrong_password_is_refused(h: &Harness) {
    let Backend::Cassandra { keyspace: ks, .. } = &h.backend else {
        return;
    };
    let (user, _) = cassandra_env()
        .1
        .expect("needs a node with authentication (TAILWARDEN_CASSANDRA_AUTH=1)");
    let (settings, dir) = settings(ks, Some((user, "not-the-password".into())));
    let rt = h.runtime.as_ref().unwrap();
    let result = rt.block_on(CassandraStore::open(&settings));
    let _ = std::fs::remove_dir_all(dir);
    let Err(e) = result else {
        panic!("a wrong password must be refused");
    };
    assert_eq!(e.state, Reachability::AuthenticationFailed, "{e}");
    match e.error {
        StoreError::Config { key, why } => {
            assert_eq!(key, "storage.cassandra.credentialsDir");
            assert!(why.contains("refused the credentials"), "{why}");
        }
        e => panic!("expected a credentials error, got {e}"),
    }
}

/// Runs a real writer over `store` on its own thread and feeds it `updates` in jobs of 25.
/// Returns how many outcomes were not `accepted`.
fn run_writer(store: Arc<dyn Store>, updates: Vec<Update>) -> usize {
    use std::sync::atomic::AtomicBool;
    use tailwarden_dataplane::ingest::writer::{Writer, WriterConfig};
    use tailwarden_dataplane::ingest::{ChannelSource, Item, Job, Outcome};

    let writer = Writer::new(
        store,
        Arc::new(tailwarden_dataplane::feed::InProcessFeed::default()),
        Arc::new(tailwarden_dataplane::metrics::Metrics::new()),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        WriterConfig {
            max_records: 100,
            linger: std::time::Duration::ZERO,
            partitions: 4,
            dead_letter_max: 1000,
            dead_letter_retention: std::time::Duration::from_secs(3600),
            dedup_window: 10_000,
            hot_entities: 1000,
        },
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    let (close, closing) = tokio::sync::watch::channel(false);
    let thread = std::thread::spawn(move || writer.run(ChannelSource { jobs: rx, closing }));
    let mut not_accepted = 0;
    for chunk in updates.chunks(25) {
        let (job, result) = Job::new(chunk.iter().cloned().map(Item::Update).collect());
        tx.send(job).unwrap();
        let outcomes = result.blocking_recv().unwrap().unwrap();
        not_accepted += outcomes.iter().filter(|o| **o != Outcome::Accepted).count();
    }
    close.send(true).unwrap();
    drop(tx);
    thread.join().unwrap();
    not_accepted
}

/// Two workers, each a real writer on its own connection, blind-writing overlapping shuffled
/// parts of the same updates (with duplicates) at the same time: the store ends in the state
/// of an in-memory merge of all of them.
fn writers_of_two_workers_converge(h: &Harness) {
    let (second, _rt) = h
        .second_worker()
        .expect("only shared backends have workers");
    let updates = updates("writers", 500, 13);
    let want = expected(&updates);
    let mut a: Vec<Update> = updates.iter().take(350).cloned().collect();
    let mut b: Vec<Update> = updates.iter().skip(150).cloned().collect();
    a.extend(updates.iter().step_by(5).cloned());
    fastrand::Rng::with_seed(3).shuffle(&mut a);
    fastrand::Rng::with_seed(4).shuffle(&mut b);
    let first = h.store.clone();
    let (skipped_a, skipped_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| run_writer(first, a));
        let tb = s.spawn(|| run_writer(second.clone(), b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    // Worker a got 70 updates twice (every fifth of the first 350): the second copy is
    // deduplicated by its window (or stale in its batch), never applied twice.
    assert!(skipped_a >= 70, "worker a skipped {skipped_a}");
    assert!(skipped_b < 350, "worker b skipped {skipped_b} of 350");
    assert_state(&*h.store, &want);
}

/// The trait is synchronous: the store must also work when called on a runtime worker thread
/// (it bridges with `block_in_place`), not only from plain threads.
fn usable_from_runtime_workers(h: &Harness) {
    let Some(rt) = &h.runtime else {
        return;
    };
    let store = h.store.clone();
    let k = sample_key(Class::Product, "RT1");
    let e = entity(&[("name", serde_json::json!("x"), version(1, 0, 0))]);
    let (k2, e2) = (k.clone(), e.clone());
    let got = rt
        .block_on(rt.spawn(async move {
            commit_entities(&*store, vec![(Layer::Stream, k2.clone(), e2)]);
            store.get(Layer::Stream, &k2)
        }))
        .unwrap()
        .unwrap();
    assert_eq!(got, Some(e));
}

// ---------------------------------------------------------------------------------------------

/// `entities`: both backends, Cassandra in the shared keyspace; `keyspace_wide`: both
/// backends, Cassandra in a keyspace of its own; `cassandra_only`: shared keyspace.
macro_rules! suite {
    (
        entities: $($entities:ident),* ;
        keyspace_wide: $($wide:ident),* ;
        cassandra_only: $($only:ident),*
    ) => {
        mod embedded {
            $(#[test] fn $entities() { super::$entities(&super::embedded()) })*
            $(#[test] fn $wide() { super::$wide(&super::embedded()) })*
        }
        mod cassandra {
            $(
                #[test]
                #[ignore = "needs Cassandra: tests/services (tests/run.sh starts it)"]
                fn $entities() { super::$entities(&super::cassandra_shared()) }
            )*
            $(
                #[test]
                #[ignore = "needs Cassandra: tests/services (tests/run.sh starts it)"]
                fn $wide() { super::$wide(&super::cassandra()) }
            )*
            $(
                #[test]
                #[ignore = "needs Cassandra: tests/services (tests/run.sh starts it)"]
                fn $only() { super::$only(&super::cassandra_shared()) }
            )*
        }
    };
}

suite!(
    entities: round_trip_every_class,
        last_writer_wins_under_reordering_and_duplication,
        prices_at_is_bounded_and_newest_first;
    keyspace_wide: baselines_discard_and_active_pointer,
        dead_letters_list_and_remove,
        deferred_updates,
        dedup_window;
    cassandra_only: workers_blind_writing_concurrently_converge,
        wrong_password_is_refused,
        usable_from_runtime_workers,
        writers_of_two_workers_converge
);

/// An unreachable node is `Unavailable` (back off and retry), not a configuration error.
#[test]
fn an_unreachable_node_is_unavailable() {
    let storage = Storage::Cassandra {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        contact_points: vec!["127.0.0.1:1".into()],
        keyspace: "tw_unreachable".into(),
        consistency: "ONE".into(),
        credentials_dir: None,
    };
    let settings = CassandraSettings::from_storage(&storage).unwrap().unwrap();
    let Err(e) = runtime().block_on(CassandraStore::open(&settings)) else {
        panic!("nothing listens on 127.0.0.1:1");
    };
    assert_eq!(e.state, Reachability::Unreachable, "{e}");
    match e.error {
        StoreError::Unavailable(why) => assert!(!why.is_empty()),
        e => panic!("expected Unavailable, got {e}"),
    }
}

#[test]
fn an_unknown_consistency_level_names_the_field() {
    let storage = Storage::Cassandra {
        contact_points: vec!["127.0.0.1:9042".into()],
        keyspace: "tw".into(),
        consistency: "MOSTLY_QUORUM".into(),
        credentials_dir: None,
    };
    match CassandraSettings::from_storage(&storage) {
        Err(StoreError::Config { key, why }) => {
            assert_eq!(key, "storage.cassandra.consistency");
            assert!(why.contains("MOSTLY_QUORUM"), "{why}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    let embedded = Storage::default();
    assert!(
        CassandraSettings::from_storage(&embedded)
            .unwrap()
            .is_none()
    );
}
