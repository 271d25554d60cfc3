//! A distributed pipeline as processes: ingest and serve workers of the real binary on real
//! Kafka and Cassandra (tests/services; `tests/run.sh` starts both and exports
//! `TAILWARDEN_KAFKA_BOOTSTRAP`, `TAILWARDEN_CASSANDRA` and its credentials). Each test creates
//! its own topics, consumer group and keyspace, and drops the keyspace at the end.
//!
//! ```sh
//! tests/services/kafka-up.sh /tmp/svc && TAILWARDEN_CASSANDRA_AUTH=1 tests/services/cassandra-up.sh /tmp/svc
//! . /tmp/svc/env && cargo test -p tailwarden-dataplane --test distributed -- --ignored
//! ```

mod support;

use std::time::Duration;

use serde_json::json;
use support::pipeline::{Pipeline, VISIBLE, cassandra, quantity, until_quantity};
use support::{backend_states, eventually, get_json, inventory, until_backend_state};

/// Writes pass through Kafka into Cassandra and are read by two serve processes; an update
/// reaches both even after they cached the old value (invalidation across processes over the
/// change topic, the cache TTL being an hour); a second ingest worker joins the group and takes
/// over when the first stops, and no acknowledged write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Kafka and Cassandra: tests/services (tests/run.sh starts them)"]
async fn distributed_workers_serve_invalidate_across_processes_and_rebalance() {
    let pipeline = Pipeline::create("dist").await;
    let mut ingest_1 = pipeline.start("ingest-1", "ingest").await;
    let serve_a = pipeline.start("serve-a", "serve").await;
    let serve_b = pipeline.start("serve-b", "serve").await;

    // A read before the write: a miss that must not stay cached either.
    assert_eq!(quantity(&serve_b, "D1").await, None);
    let (status, body) = ingest_1
        .post_updates(inventory("d1-1", "D1", "S1", 5, 1_000, 1))
        .await;
    assert_eq!(status, 200, "{body}");
    until_quantity(&serve_a, "D1", 5).await;
    until_quantity(&serve_b, "D1", 5).await;

    // Both caches hold 5 now; a newer write must replace it in both.
    let (status, body) = ingest_1
        .post_updates(inventory("d1-2", "D1", "S1", 7, 2_000, 1))
        .await;
    assert_eq!(status, 200, "{body}");
    until_quantity(&serve_a, "D1", 7).await;
    until_quantity(&serve_b, "D1", 7).await;
    // An older write arriving late loses to the newer one everywhere.
    let (status, _) = ingest_1
        .post_updates(inventory("d1-0", "D1", "S1", 3, 500, 1))
        .await;
    assert_eq!(status, 200);

    // A second ingest worker joins; the first leaves; writes keep being applied.
    let ingest_2 = pipeline.start("ingest-2", "ingest").await;
    let batch = |from: u32, to: u32, q: i64| -> String {
        (from..to)
            .map(|k| inventory(&format!("r{k}-{q}"), &format!("R{k}"), "S1", q, 10_000, 1))
            .collect()
    };
    let (status, body) = ingest_1.post_updates(batch(0, 40, 1)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ingest_1.terminate(), Some(0));
    let (status, body) = ingest_2.post_updates(batch(40, 80, 1)).await;
    assert_eq!(status, 200, "{body}");
    for k in 0..80 {
        until_quantity(&serve_a, &format!("R{k}"), 1).await;
    }
    assert_eq!(quantity(&serve_b, "D1").await, Some(json!(7)));

    drop((ingest_1, ingest_2, serve_a, serve_b));
    pipeline.drop_keyspace().await;
}

/// Forwards every connection accepted on `listener` to `target` (Cassandra appearing at an
/// address where nothing answered before).
fn forward(listener: tokio::net::TcpListener, target: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

/// A serve worker started while Cassandra does not answer is live but not Ready, and says why;
/// once Cassandra answers it becomes Ready and serves, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs Kafka and Cassandra: tests/services (tests/run.sh starts them)"]
async fn a_serve_worker_waits_for_cassandra_and_becomes_ready_without_a_restart() {
    // An address where nothing listens yet, on Cassandra's host: the driver keeps the node under
    // the address it reaches it at, which must be the node's own `rpc_address` host.
    let (real, _, _) = cassandra();
    let host = real.rsplit_once(':').expect("host:port").0;
    let silent = std::net::TcpListener::bind((host, 0)).unwrap();
    let addr = silent.local_addr().unwrap();
    drop(silent);
    let pipeline = Pipeline::create_at("late", &addr.to_string()).await;
    let mut serve = pipeline.spawn("serve", "serve").await;
    let readyz = format!("{}/readyz", serve.metrics);
    let answer = || async {
        let r = reqwest::get(&readyz).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    eventually(
        "the worker to say it waits for Cassandra",
        VISIBLE,
        || async {
            let (status, body) = answer().await;
            assert_eq!(status, 503, "ready without Cassandra: {body}");
            body.contains("waiting for Cassandra").then_some(())
        },
    )
    .await;
    let (status, _) = get_json(&format!("{}/healthz", serve.metrics)).await;
    assert_eq!(status, 200, "a worker waiting for its database is live");
    // Nothing listens at the address: the driver's connect is refused (an I/O error of the
    // connection pool), which is `unreachable`; each failed attempt sets the state.
    let waiting = until_backend_state(&serve, "cassandra", VISIBLE, |s| s != "reachable").await;
    assert_eq!(waiting, "unreachable");
    assert_eq!(
        backend_states(&serve, "cassandra").await,
        [("serve".to_owned(), "unreachable".to_owned())],
        "one series while it waits"
    );

    let proxy = forward(tokio::net::TcpListener::bind(addr).await.unwrap(), real);
    eventually(
        "the worker to become ready",
        Duration::from_secs(120),
        || async { (answer().await.0 == 200).then_some(()) },
    )
    .await;
    assert!(serve.child.try_wait().unwrap().is_none(), "it restarted");
    // Ready only after a connect that succeeded, which set the state: no wait needed.
    assert_eq!(
        backend_states(&serve, "cassandra").await,
        [("serve".to_owned(), "reachable".to_owned())],
        "the unreachable series is gone"
    );
    // Kafka mode: the probe asks for the topics' metadata at once after the start.
    until_backend_state(&serve, "kafka", VISIBLE, |s| s == "reachable").await;
    assert_eq!(
        backend_states(&serve, "kafka").await,
        [("serve".to_owned(), "reachable".to_owned())]
    );
    let (status, body) = get_json(&format!("{}/v1/inventory/NONE/S1", serve.serve)).await;
    assert_eq!(status, 404, "served from Cassandra: {body}");

    serve.terminate();
    // Through the proxy: the pipeline's contact point.
    pipeline.drop_keyspace().await;
    proxy.abort();
}
