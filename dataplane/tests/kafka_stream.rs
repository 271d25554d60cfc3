//! Kafka mode against a real broker (tests/services; `tests/run.sh` starts one and exports
//! `TAILWARDEN_KAFKA_BOOTSTRAP`). Every test creates its own uniquely named topics and groups.
//!
//! ```sh
//! tests/services/kafka-up.sh /tmp/svc-kafka && . /tmp/svc-kafka/env
//! cargo test -p tailwarden-dataplane --test kafka_stream -- --ignored
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tailwarden_contract::backend::Reachability;
use tailwarden_dataplane::feed::{ChangeEvent, ChangeFeed, Invalidate};
use tailwarden_dataplane::ingest::writer::{Writer, WriterConfig};
use tailwarden_dataplane::ingest::{Item, Next, UpdateSource};
use tailwarden_dataplane::metrics::Metrics;
use tailwarden_dataplane::model::{Class, EntityKey, now_ms};
use tailwarden_dataplane::store::embedded::EmbeddedStore;
use tailwarden_dataplane::store::{DeadLetter, DeadLetterSource, Layer, Store};
use tailwarden_dataplane::stream::changes::KafkaChangeFeed;
use tailwarden_dataplane::stream::consumer::{KafkaSource, SourceConfig};
use tailwarden_dataplane::stream::ingest::KafkaIngest;
use tailwarden_dataplane::stream::lag::LagMonitor;
use tailwarden_dataplane::stream::probe::KafkaProbe;
use tailwarden_dataplane::stream::producer::{Producer, Record};
use tailwarden_dataplane::stream::replay::{self, ReplayFrom};
use tailwarden_dataplane::stream::{StreamError, Topics};

mod support;

use support::kafka::{conn, topics, unique};

const NEEDS: &str = "needs Kafka: tests/services (tests/run.sh starts it)";
const WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds; panics with `what` after [`WAIT`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn wait_until_async(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(id: &str, seq: u64) -> String {
    json!({
        "event_id": format!("{id}-{seq}"),
        "class": "product",
        "schema_version": 2,
        "key": {"product_id": id},
        "event_time": 1_700_000_000_000_i64 + seq as i64,
        "sequence": seq,
        "payload": {"name": format!("v{seq}")}
    })
    .to_string()
}

fn ndjson(records: &[String]) -> Vec<u8> {
    records.join("\n").into_bytes()
}

/// A test's own topics, metrics and Kafka sink.
struct Pipeline {
    t: Topics,
    metrics: Arc<Metrics>,
    ingest: KafkaIngest,
}

impl Pipeline {
    /// Fresh topics named after `name`, `partitions` partitions each.
    async fn create(name: &str, partitions: i32) -> Self {
        let t = topics(name, partitions).await;
        let metrics = Arc::new(Metrics::new());
        let producer = Producer::new(&conn(), Duration::from_secs(30), metrics.clone()).unwrap();
        let ingest = KafkaIngest::new(producer, t.clone());
        Self { t, metrics, ingest }
    }
}

/// Sum of high watermarks of `topic`.
fn produced(topic: &str) -> i64 {
    let c: BaseConsumer = conn().config().create().unwrap();
    let m = c.fetch_metadata(Some(topic), WAIT).unwrap();
    let parts: Vec<i32> = m.topics()[0].partitions().iter().map(|p| p.id()).collect();
    parts
        .into_iter()
        .map(|p| c.fetch_watermarks(topic, p, WAIT).unwrap().1)
        .sum()
}

fn store(name: &str) -> Arc<EmbeddedStore> {
    let dir = std::env::temp_dir().join(format!("tw-kafka-{name}-{:08x}", fastrand::u32(..)));
    Arc::new(EmbeddedStore::open(&dir, 1 << 22).unwrap())
}

fn name_of(store: &dyn Store, id: &str) -> Option<Value> {
    let key = EntityKey {
        class: Class::Product,
        id: id.into(),
        sub: None,
    };
    store
        .get(Layer::Stream, &key)
        .unwrap()
        .and_then(|e| e.get("name").cloned())
}

fn source(
    t: &Topics,
    group: &str,
    closing: tokio::sync::watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
    max_job_records: usize,
) -> KafkaSource {
    KafkaSource::new(
        &conn(),
        group,
        t,
        closing,
        metrics.clone(),
        SourceConfig {
            max_job_records,
            backoff: Duration::from_millis(300),
            max_backoff: Duration::from_secs(1),
            ..SourceConfig::default()
        },
    )
    .unwrap()
}

/// A writer thread over `store` fed by a Kafka source, and the switch that closes the source.
struct Running {
    close: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Starts a writer fed by `source(closing)`.
    fn start(
        store: Arc<dyn Store>,
        feed: Arc<dyn ChangeFeed>,
        metrics: &Arc<Metrics>,
        source: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> KafkaSource,
    ) -> Self {
        let (close, closing) = tokio::sync::watch::channel(false);
        let source = source(closing);
        let w = Writer::new(
            store,
            feed,
            metrics.clone(),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            WriterConfig {
                max_records: 5000,
                linger: Duration::from_millis(2),
                partitions: 16,
                dead_letter_max: 1_000_000,
                dead_letter_retention: Duration::from_secs(3600),
                dedup_window: 100_000,
                hot_entities: 10_000,
            },
        )
        .unwrap()
        .with_ownership_epoch(source.ownership_epoch());
        let thread = std::thread::spawn(move || w.run(source));
        Self { close, thread }
    }

    /// Closes the source and waits for the writer to finish.
    async fn stop(self) {
        self.close.send(true).unwrap();
        tokio::task::spawn_blocking(move || self.thread.join().unwrap())
            .await
            .unwrap();
    }
}

/// Records of `group` not yet committed, over all consumed topics.
fn lag(t: &Topics, group: &str) -> i64 {
    let m = LagMonitor::new(&conn(), group, t, Arc::new(Metrics::new())).unwrap();
    m.measure().unwrap().iter().map(|p| p.records).sum()
}

struct NoFeed;
impl ChangeFeed for NoFeed {
    fn publish(&self, _: &[ChangeEvent]) {}
    fn subscribe(&self, _: Arc<dyn Invalidate>) {}
}

/// The HTTP sink: 200 only after Kafka acknowledged every record; the consumer group then
/// writes them to the store and commits, and the final state is what was sent last per key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn http_records_are_acked_by_kafka_then_written_and_committed() {
    let _ = NEEDS;
    let Pipeline { t, metrics, ingest } = Pipeline::create("http", 3).await;
    let st = store("http");
    let dyn_store: Arc<dyn Store> = st.clone();
    let feed: Arc<dyn ChangeFeed> = Arc::new(NoFeed);
    let snapshots = Arc::new(
        tailwarden_dataplane::snapshot::Snapshots::open(
            dyn_store.clone(),
            feed.clone(),
            metrics.clone(),
            tailwarden_dataplane::snapshot::InterruptedLoads::Keep,
        )
        .unwrap(),
    );
    let (jobs, _unused) =
        tailwarden_dataplane::ingest::router::JobRouter::new(1, 1, metrics.clone());
    let state = Arc::new(tailwarden_dataplane::ingest::http::IngestState {
        sink: tailwarden_dataplane::ingest::http::RecordSink::Kafka(Arc::new(ingest)),
        store: dyn_store.clone(),
        metrics: metrics.clone(),
        admission: tailwarden_dataplane::ingest::admission::Admission::new(
            100_000,
            8,
            metrics.ingest_queue_depth.clone(),
            metrics.ingest_refused_records.clone(),
        ),
        jobs,
        max_body_bytes: tailwarden_dataplane::stream::MAX_BODY_BYTES,
        queue_capacity: 100_000,
        paused: Arc::new(AtomicBool::new(false)),
        snapshots,
        spool_dir: std::env::temp_dir(),
        import_dir: None,
    });
    let router = tailwarden_dataplane::ingest::http::router(
        state,
        &tailwarden_dataplane::auth::Guards::open(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut body = Vec::new();
    for seq in 1..=20 {
        for id in ["A", "B", "C", "D", "E"] {
            body.push(record(id, seq));
        }
    }
    body.push(r#"{"class":"product","schema_version":2,"key":{}}"#.into());
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/updates"))
        .header("content-type", "application/x-ndjson")
        .body(ndjson(&body))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 100, "{answer}");
    assert_eq!(answer["rejected"], 1, "{answer}");
    assert_eq!(answer["durable"], "kafka");
    // Acknowledged means in Kafka: every record is below the high watermarks already.
    assert_eq!(produced(&t.product), 100);
    assert_eq!(produced(&t.dead_letters), 1);

    let group = unique("g-http");
    let w = Running::start(dyn_store.clone(), feed, &metrics, |closing| {
        source(&t, &group, closing, &metrics, 7)
    });
    let t2 = t.clone();
    let g2 = group.clone();
    tokio::task::spawn_blocking(move || wait_until("group lag 0", || lag(&t2, &g2) == 0))
        .await
        .unwrap();
    for id in ["A", "B", "C", "D", "E"] {
        assert_eq!(name_of(st.as_ref(), id), Some(json!("v20")), "{id}");
    }
    assert_eq!(
        st.dead_letter_count(),
        1,
        "the dead letter reached the store"
    );
    let text = metrics.encode();
    assert!(
        text.contains("tailwarden_kafka_offset_commits_total{result=\"ok\"}"),
        "{text}"
    );
    w.stop().await;
}

/// Records reach the writer in offset order within each partition, and a job's records of one
/// key are in the order they were produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn per_partition_order_is_kept() {
    let Pipeline { t, metrics, ingest } = Pipeline::create("order", 4).await;
    let ids: Vec<String> = (0..12).map(|i| format!("K{i}")).collect();
    let mut body = Vec::new();
    for seq in 1..=50 {
        for id in &ids {
            body.push(record(id, seq));
        }
    }
    ingest.produce_ndjson(&ndjson(&body)).await.unwrap();
    let (_close, closing) = tokio::sync::watch::channel(false);
    let mut src = source(&t, &unique("g-order"), closing, &metrics, 37);
    let seen = tokio::task::spawn_blocking(move || {
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut n = 0;
        let deadline = Instant::now() + WAIT;
        while n < 600 {
            assert!(
                Instant::now() < deadline,
                "only {n} of 600 records consumed"
            );
            if let Next::Job(job) = src.next(Duration::from_millis(200)) {
                for item in &job.items {
                    let Item::Update(u) = item else {
                        panic!("unexpected dead letter")
                    };
                    let prev = last.insert(u.key.id.clone(), u.version.sequence);
                    assert!(
                        prev.is_none_or(|p| p + 1 == u.version.sequence),
                        "key {} went from {prev:?} to {}",
                        u.key.id,
                        u.version.sequence
                    );
                    n += 1;
                }
                (job.ack)(Ok(Vec::new()));
            }
        }
        last
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 12);
    assert!(seen.values().all(|s| *s == 50), "{seen:?}");
}

/// A second member joins mid-stream: partitions move, nothing is lost and nothing is applied
/// twice (every event id once), and the group ends with every offset committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn a_rebalance_loses_nothing_and_applies_nothing_twice() {
    let Pipeline { t, metrics, ingest } = Pipeline::create("rebalance", 4).await;
    let total = 4000;
    let body: Vec<String> = (0..total)
        .map(|i| record(&format!("R{}", i % 97), i))
        .collect();
    ingest.produce_ndjson(&ndjson(&body)).await.unwrap();
    let group = unique("g-rebalance");
    let applied: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let (close, closing) = tokio::sync::watch::channel(false);
    // Each member applies a job (counting event ids), then lets it be committed.
    let member =
        |name: &'static str, mut src: KafkaSource, applied: Arc<Mutex<HashMap<String, usize>>>| {
            std::thread::spawn(move || {
                let mut mine = 0;
                loop {
                    match src.next(Duration::from_millis(100)) {
                        Next::Job(job) => {
                            {
                                let mut a = applied.lock();
                                for item in &job.items {
                                    if let Item::Update(u) = item {
                                        *a.entry(u.event_id.clone()).or_default() += 1;
                                        mine += 1;
                                    }
                                }
                            }
                            // Slow enough that the second member joins while records remain.
                            std::thread::sleep(Duration::from_millis(5));
                            (job.ack)(Ok(Vec::new()));
                        }
                        Next::Idle => {}
                        Next::Closed => return (name, mine),
                    }
                }
            })
        };
    let first = member(
        "first",
        source(&t, &group, closing.clone(), &metrics, 50),
        applied.clone(),
    );
    let a2 = applied.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("first member consumed some", || a2.lock().len() >= 200)
    })
    .await
    .unwrap();
    let second = member(
        "second",
        source(&t, &group, closing.clone(), &metrics, 50),
        applied.clone(),
    );
    let (t2, g2) = (t.clone(), group.clone());
    let a3 = applied.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("all applied and committed", || {
            a3.lock().len() == total as usize && lag(&t2, &g2) == 0
        })
    })
    .await
    .unwrap();
    close.send(true).unwrap();
    let (_, n1) = first.join().unwrap();
    let (_, n2) = second.join().unwrap();
    let twice: Vec<(String, usize)> = applied
        .lock()
        .iter()
        .filter(|(_, n)| **n != 1)
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    assert_eq!(n1 + n2, total as usize);
    let text = metrics.encode();
    assert!(
        text.contains("tailwarden_kafka_rebalances_total{kind=\"revoke\"}"),
        "no revoke seen:\n{text}"
    );
    assert!(n2 > 0, "the second member got no partition");
}

/// A failed job (the store refused the batch) pauses its partitions and rewinds them; nothing is
/// committed or dropped, and after the backoff the same records come again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn a_store_failure_pauses_and_resumes_without_dropping() {
    let Pipeline { t, metrics, ingest } = Pipeline::create("pause", 1).await;
    let body: Vec<String> = (0..40).map(|i| record(&format!("S{}", i % 5), i)).collect();
    ingest.produce_ndjson(&ndjson(&body)).await.unwrap();
    let group = unique("g-pause");
    let (_close, closing) = tokio::sync::watch::channel(false);
    let mut src = source(&t, &group, closing, &metrics, 1000);
    let (t2, g2) = (t.clone(), group.clone());
    tokio::task::spawn_blocking(move || {
        let ids = |job: &tailwarden_dataplane::ingest::Job| -> Vec<String> {
            job.items
                .iter()
                .map(|i| match i {
                    Item::Update(u) => u.event_id.clone(),
                    Item::Rejected(_) => panic!("dead letter"),
                })
                .collect()
        };
        let mut first = Vec::new();
        wait_until("records polled", || {
            if let Next::Job(job) = src.next(Duration::from_millis(100)) {
                first.extend(ids(&job));
                (job.ack)(Err("disk on fire".into()));
            }
            !first.is_empty()
        });
        // The ack is settled on the next call: partitions pause, nothing is handed out.
        let started = Instant::now();
        assert!(matches!(src.next(Duration::ZERO), Next::Idle));
        assert!(!src.paused().is_empty(), "no partition paused");
        while started.elapsed() < Duration::from_millis(200) {
            assert!(
                matches!(src.next(Duration::from_millis(20)), Next::Idle),
                "a paused partition delivered records"
            );
        }
        assert_eq!(lag(&t2, &g2), 40, "nothing may be committed");
        // After the backoff the same records come again, from the first failed one.
        let mut again = Vec::new();
        wait_until("records after resume", || {
            if let Next::Job(job) = src.next(Duration::from_millis(100)) {
                again.extend(ids(&job));
                (job.ack)(Ok(Vec::new()));
            }
            again.len() >= 40
        });
        assert!(src.paused().is_empty());
        for id in &first {
            assert!(again.contains(id), "{id} was dropped");
        }
        src.next(Duration::ZERO);
        assert_eq!(lag(&t2, &g2), 0);
    })
    .await
    .unwrap();
}

#[derive(Default)]
struct Recorder(Mutex<Vec<ChangeEvent>>);

impl Invalidate for Recorder {
    fn invalidate(&self, events: &[ChangeEvent]) {
        self.0.lock().extend_from_slice(events);
    }
}

/// A change published by one process's feed reaches another process's listener (a serve
/// worker's cache), and the publisher's local subscribers synchronously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn change_events_reach_a_listener_in_another_process() {
    let t = topics("changes", 2).await;
    let metrics = Arc::new(Metrics::new());
    let feed = KafkaChangeFeed::new(&conn(), &t.changes, metrics.clone()).unwrap();
    let local = Arc::new(Recorder::default());
    feed.subscribe(local.clone());
    let remote = Arc::new(Recorder::default());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let listener = KafkaChangeFeed::listen(&conn(), &t.changes, remote.clone(), stopping).unwrap();
    let key = |id: &str| EntityKey {
        class: Class::Inventory,
        id: id.into(),
        sub: Some(tailwarden_dataplane::model::SubKey::Code("DC1".into())),
    };
    let events = vec![
        ChangeEvent::Entity(key("P1")),
        ChangeEvent::Entity(key("P2")),
        ChangeEvent::All,
    ];
    feed.publish(&events);
    assert_eq!(*local.0.lock(), events, "local subscribers are synchronous");
    let r = remote.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("remote invalidation", || r.0.lock().len() >= 3)
    })
    .await
    .unwrap();
    assert_eq!(*remote.0.lock(), events);
    stop.send(true).unwrap();
    tokio::task::spawn_blocking(move || listener.join().unwrap())
        .await
        .unwrap();
}

/// Rejected records go to the dead-letter topic with their reason (and from there into the
/// store's dead letters); replaying the topic re-ingests those that pass today's validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn dead_letters_reach_the_topic_and_replay_reingests() {
    let Pipeline { t, metrics, ingest } = Pipeline::create("dl", 1).await;
    let bad = r#"{"event_id":"x1","class":"product","schema_version":2,"key":{"product_id":"D1"},"sequence":1,"payload":{}}"#;
    let outcomes = ingest
        .produce_ndjson(&ndjson(&[bad.into(), record("D0", 1)]))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    // Read the dead-letter topic back.
    let reader: BaseConsumer = conn()
        .config()
        .set("group.id", unique("reader"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.dead_letters, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&tpl).unwrap();
    let mut letter = None;
    wait_until("dead letter on the topic", || {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            letter = Some(serde_json::from_slice::<DeadLetter>(m.payload().unwrap()).unwrap());
        }
        letter.is_some()
    });
    let letter = letter.unwrap();
    assert_eq!(letter.field, "event_time");
    assert!(letter.reason.contains("required"), "{letter:?}");
    assert_eq!(letter.raw, bad);
    drop(tpl);
    drop(reader);

    // A record an older worker rejected but today's code accepts, as it sits on the topic.
    let producer = Producer::new(&conn(), Duration::from_secs(30), metrics.clone()).unwrap();
    let fixed = DeadLetter {
        received_at_ms: now_ms(),
        source: DeadLetterSource::Stream,
        class: Some(Class::Product),
        field: "payload".into(),
        reason: "unknown field (old worker)".into(),
        raw: record("D2", 7),
    };
    let value = serde_json::to_vec(&fixed).unwrap();
    producer
        .send(Record {
            topic: &t.dead_letters,
            key: None,
            payload: &value,
        })
        .await
        .unwrap();
    let before = produced(&t.product);
    let report =
        replay::replay_dead_letters(&conn(), &ingest, None, ReplayFrom::Earliest, 1000, WAIT)
            .await
            .unwrap();
    assert_eq!(report.read, 2);
    assert_eq!(report.replayed, 1);
    assert_eq!(report.still_rejected, 1);
    assert_eq!(report.next, vec![(0, 2)]);
    assert_eq!(
        produced(&t.product),
        before + 1,
        "re-ingested to the class topic"
    );

    // The consumer group writes both dead letters to the store and the replayed record.
    let st = store("dl");
    let w = Running::start(st.clone(), Arc::new(NoFeed), &metrics, |closing| {
        source(&t, &unique("g-dl"), closing, &metrics, 100)
    });
    let s2 = st.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("store has the replayed record", || {
            name_of(s2.as_ref(), "D2").is_some() && s2.dead_letter_count() == 2
        })
    })
    .await
    .unwrap();
    assert_eq!(name_of(st.as_ref(), "D2"), Some(json!("v7")));
    w.stop().await;
}

/// Moving a group's offsets (to an offset, to a time) works on an empty group and is refused
/// while a member is active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn replay_moves_offsets_and_refuses_while_members_are_active() {
    let Pipeline { t, metrics, ingest } = Pipeline::create("replay", 1).await;
    let first: Vec<String> = (0..10).map(|i| record("Q1", i)).collect();
    ingest.produce_ndjson(&ndjson(&first)).await.unwrap();
    let between = now_ms();
    // Records produced strictly after `between` (millisecond timestamps).
    wait_until_async("clock moved", || now_ms() > between + 1).await;
    let second: Vec<String> = (10..15).map(|i| record("Q1", i)).collect();
    ingest.produce_ndjson(&ndjson(&second)).await.unwrap();

    let group = unique("g-replay");
    let (_close, closing) = tokio::sync::watch::channel(false);
    let mut src = source(&t, &group, closing, &metrics, 1000);
    let (t2, g2) = (t.clone(), group.clone());
    let src = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        wait_until("consumed all", || {
            if let Next::Job(job) = src.next(Duration::from_millis(100)) {
                n += job.items.len();
                (job.ack)(Ok(Vec::new()));
            }
            n >= 15 && {
                src.next(Duration::ZERO);
                lag(&t2, &g2) == 0
            }
        });
        src
    })
    .await
    .unwrap();

    let refused = replay::move_offsets(
        &conn(),
        &group,
        &t.product,
        None,
        ReplayFrom::Offset(3),
        WAIT,
    );
    assert!(
        matches!(refused, Err(StreamError::GroupActive { members: 1, .. })),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().to_string().contains("active member"));
    drop(src); // leaves the group
    let probe: BaseConsumer = conn().config().create().unwrap();
    let g3 = group.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("group empty", || {
            replay::active_members(&probe, &g3, WAIT).unwrap() == 0
        })
    })
    .await
    .unwrap();

    let moved = replay::move_offsets(
        &conn(),
        &group,
        &t.product,
        Some(0),
        ReplayFrom::Offset(3),
        WAIT,
    )
    .unwrap();
    assert_eq!(moved, vec![(0, 3)]);
    assert_eq!(lag(&t, &group), 12);
    let moved = replay::move_offsets(
        &conn(),
        &group,
        &t.product,
        None,
        ReplayFrom::Timestamp(between + 1),
        WAIT,
    )
    .unwrap();
    assert_eq!(moved, vec![(0, 10)], "the first record after the time");
    assert_eq!(lag(&t, &group), 5);
}

/// The lag metric shows a backlog (records and age), then drains to 0 once the group consumed
/// and committed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn lag_reports_a_backlog_then_drains_to_zero() {
    let Pipeline { t, metrics, ingest } = Pipeline::create("lag", 2).await;
    let body: Vec<String> = (0..300)
        .map(|i| record(&format!("L{}", i % 11), i))
        .collect();
    ingest.produce_ndjson(&ndjson(&body)).await.unwrap();
    let produced_at = now_ms();
    wait_until_async("clock moved", || now_ms() > produced_at + 5).await;
    let group = unique("g-lag");
    let monitor = LagMonitor::new(&conn(), &group, &t, metrics.clone()).unwrap();
    let before = monitor.measure().unwrap();
    let backlog: i64 = before.iter().map(|p| p.records).sum();
    assert_eq!(backlog, 300);
    let oldest = before.iter().map(|p| p.seconds).fold(0.0, f64::max);
    assert!(oldest > 0.0, "{before:?}");
    let text = metrics.encode();
    let per_partition: BTreeMap<i32, i64> = before
        .iter()
        .filter(|p| p.topic == t.product)
        .map(|p| (p.partition, p.records))
        .collect();
    for (p, n) in &per_partition {
        let line = format!(
            "tailwarden_kafka_consumer_lag_records{{topic=\"{}\",partition=\"{p}\"}} {n}",
            t.product
        );
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }
    let partitions = format!(
        "tailwarden_kafka_topic_partitions{{topic=\"{}\"}} 2",
        t.product
    );
    assert!(
        text.contains(&partitions),
        "missing {partitions} in\n{text}"
    );

    let st = store("lag");
    let w = Running::start(st.clone(), Arc::new(NoFeed), &metrics, |closing| {
        source(&t, &group, closing, &metrics, 100)
    });
    let after = tokio::task::spawn_blocking(move || {
        let mut last = Vec::new();
        wait_until("lag drained", || {
            last = monitor.measure().unwrap();
            last.iter().all(|p| p.records == 0 && p.seconds == 0.0)
        });
        last
    })
    .await
    .unwrap();
    assert!(after.iter().any(|p| p.committed.is_some()));
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            "tailwarden_kafka_consumer_lag_records{{topic=\"{}\",partition=\"0\"}} 0",
            t.product
        )),
        "{text}"
    );
    w.stop().await;
}

/// The reachability probe finds a pipeline's topics, and names a topic that does not exist
/// `missing` (the probe's client never creates topics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka: tests/services (tests/run.sh starts it)"]
async fn the_probe_finds_the_topics_and_names_a_missing_one() {
    let t = topics("probe", 1).await;
    let absent = Topics {
        changes: unique("absent"),
        ..t.clone()
    };
    tokio::task::spawn_blocking(move || {
        let deadline = Duration::from_secs(5);
        KafkaProbe::new(&conn(), &t)
            .unwrap()
            .probe(deadline)
            .unwrap();
        let e = KafkaProbe::new(&conn(), &absent)
            .unwrap()
            .probe(deadline)
            .unwrap_err();
        assert_eq!(e.state, Reachability::Missing, "{e}");
        assert!(e.error.contains(&absent.changes), "{e}");
    })
    .await
    .unwrap();
}
