//! Rough figures for the Cassandra store against a real node (not run by CI): connect +
//! migrate time, blind-write throughput, and single-key get latency.
//!
//! ```sh
//! . /tmp/svc-cass/env   # from tests/services/cassandra-up.sh
//! cargo run --release -p tailwarden-dataplane --example cassandra_bench -- 20000 500 4 2000
//! ```
//!
//! Arguments: entities, entities per commit, writer threads, gets.

use std::sync::Arc;
use std::time::Instant;

use tailwarden_contract::config::Storage;
use tailwarden_dataplane::model::{Class, Entity, EntityKey, Field, SubKey, Version};
use tailwarden_dataplane::store::cassandra::{CassandraSettings, CassandraStore};
use tailwarden_dataplane::store::{Layer, Store, WriteSet};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn key(i: usize) -> EntityKey {
    EntityKey {
        class: Class::Inventory,
        id: format!("P{i}"),
        sub: Some(SubKey::Code("S1".into())),
    }
}

fn entity(i: usize) -> Entity {
    let version = Version {
        event_time_ms: 1_700_000_000_000 + i as i64,
        sequence: i as u64,
        event_hash: i as u64,
    };
    let mut e = Entity::default();
    for (name, value) in [
        ("quantity", serde_json::json!(i % 100)),
        ("reserved", serde_json::json!(i % 7)),
        ("status", serde_json::json!("in_stock")),
    ] {
        e.fields.insert(name.into(), Field { value, version });
    }
    e
}

fn main() -> anyhow::Result<()> {
    let (entities, per_commit, threads, gets) =
        (arg(1, 20_000), arg(2, 500), arg(3, 4), arg(4, 2_000));
    let node = std::env::var("TAILWARDEN_CASSANDRA")
        .map_err(|_| anyhow::anyhow!("set TAILWARDEN_CASSANDRA (. DIR/env of tests/services)"))?;
    let dir = std::env::temp_dir().join(format!("tailwarden-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let credentials_dir = match (
        std::env::var("TAILWARDEN_CASSANDRA_USER"),
        std::env::var("TAILWARDEN_CASSANDRA_PASSWORD"),
    ) {
        (Ok(u), Ok(p)) => {
            std::fs::write(dir.join("username"), u)?;
            std::fs::write(dir.join("password"), p)?;
            Some(dir.clone())
        }
        _ => None,
    };
    let storage = Storage::Cassandra {
        contact_points: vec![node],
        keyspace: format!("tw_bench_{}", fastrand::u32(..)),
        consistency: "LOCAL_ONE".into(),
        credentials_dir,
    };
    let settings = CassandraSettings::from_storage(&storage)?.expect("cassandra settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let store: Arc<dyn Store> = Arc::new(rt.block_on(CassandraStore::connect(&settings))?);
    println!(
        "connect + migrate (new keyspace {}): {:.2} s",
        settings.keyspace,
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = store.clone();
            s.spawn(move || {
                let mine: Vec<usize> = (t..entities).step_by(threads).collect();
                for chunk in mine.chunks(per_commit) {
                    let set = WriteSet {
                        entities: chunk
                            .iter()
                            .map(|&i| (Layer::Stream, key(i), entity(i)))
                            .collect(),
                        durable: true,
                        ..Default::default()
                    };
                    store.commit(&set).expect("commit");
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {entities} entities (3 fields, one cell write each entity) in {per_commit}-entity \
         commits from {threads} threads: {secs:.2} s = {:.0} entities/s",
        entities as f64 / secs
    );

    // A restart: the keyspace and tables exist, the migration only checks them.
    let started = Instant::now();
    drop(rt.block_on(CassandraStore::connect(&settings))?);
    println!(
        "connect + migrate (existing keyspace): {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let mut hist = hdrhistogram::Histogram::<u64>::new(3)?;
    for _ in 0..gets {
        let i = fastrand::usize(..entities);
        let t = Instant::now();
        let got = store.get(Layer::Stream, &key(i))?;
        hist.record(t.elapsed().as_micros() as u64)?;
        assert_eq!(got, Some(entity(i)));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{gets} sequential gets: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0
    );

    // Leave the node as found: every table costs it heap.
    drop(store);
    rt.block_on(async {
        let mut builder = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&settings.contact_points);
        if let Some((user, password)) = &settings.credentials {
            builder = builder.user(user, password);
        }
        let session = builder.build().await?;
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", settings.keyspace), ())
            .await?;
        anyhow::Ok(())
    })
}
