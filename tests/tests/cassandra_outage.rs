//! Scenario 7 of the closed loop on real pods: the Cassandra node stops under load. Serve answers
//! what it has cached and fails the rest fast, the availability SLI burns, the write API keeps
//! acknowledging (Kafka holds the updates), the status names the unreachable backend, ingest does
//! not scale up, and once the node is back every acknowledged update is applied, without a
//! restarted pod. The node is the test's own (the shared one serves the other test binaries);
//! the bed: `tests/src/closed_loop.rs`.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use tailwarden_tests::closed_loop::*;
use tailwarden_tests::own_services::{OwnServices, Service};
use tailwarden_tests::wait_for;
use tailwarden_tests::worker_api::{get, inventory, post_updates, product, product_name, quantity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster with its real node and Kafka, and starts its own Cassandra: run tests/run.sh"]
async fn cassandra_stops_and_the_pipeline_recovers_by_itself() {
    let own = OwnServices::start("outage", &[Service::Cassandra]).await;
    let mut spec = spec();
    // Caches on (the default size): serve may answer from them while Cassandra is away. One
    // serve pod, so that the read through the Service reaches the pod whose cache holds the key
    // (in CI a cached read once got a 503, most likely from a second serve pod).
    let serve_spec = spec["serve"].as_object_mut().unwrap();
    serve_spec.remove("cacheMaxEntries");
    serve_spec.insert("replicas".into(), serde_json::json!({"min": 1, "max": 1}));
    let bed = Bed::start_on("outage", spec, &operator_args(), Some(&own.cassandra())).await;
    let writes = bed.writes().await;
    let reads = bed.reads("reads", CALM_READS).await;
    let ingest = format!("http://{}", bed.service("ingest").await);
    let serve = format!("http://{}", bed.service("serve").await);

    // Before: a product written and read once, so serve has it cached (products for 10 minutes).
    assert_eq!(
        post_updates(&ingest, None, product("c1-1", "C1", "before", 1)).await,
        200
    );
    wait_for("C1 to be readable", Duration::from_secs(60), || async {
        (product_name(&serve, "C1").await.as_deref() == Some("before")).then_some(())
    })
    .await;
    bed.wait_condition("BackendsReachable", "True", INTERVAL * 4)
        .await;

    // The node stops.
    own.down(Service::Cassandra).await;
    let down = Instant::now();
    let down_at = jiff::Timestamp::now();
    let (_, message) = bed
        .wait_condition("BackendsReachable", "False", INTERVAL * 4)
        .await;
    assert!(message.contains("cassandra"), "{message}");
    let (code, body, took) = get(&serve, "/v1/products/C1").await;
    assert_eq!(
        (code, body["name"].as_str()),
        (200, Some("before")),
        "C1 from the cache"
    );
    eprintln!("a cached read without Cassandra took {took:?}");
    let (code, _, took) = get(&serve, "/v1/products/U1").await;
    assert_eq!(code, 503, "an uncached read without Cassandra");
    // The read deadline is 100 ms; a pod on 150m of CPU can wait for its quota on top.
    assert!(
        took < Duration::from_secs(1),
        "an uncached read failed fast: {took:?}"
    );
    let unavailable = format!(
        r#"sum(rate(tailwarden_read_requests_total{{namespace="{}",pipeline="{PIPELINE}",code="503"}}[15s]))"#,
        bed.ns
    );
    wait_for(
        "the availability SLI to burn",
        Duration::from_secs(60),
        || async { (bed.prometheus.query(&unavailable).await? > 0.0).then_some(()) },
    )
    .await;

    // Acknowledged while the node is down: Kafka holds them.
    let while_down: String = (0..50)
        .map(|k| inventory(&format!("w{k}"), &format!("W{k}"), k, 2))
        .collect();
    assert!(
        post_updates(
            &ingest,
            None,
            while_down + &product("c1-3", "C1", "after", 3)
        )
        .await
            == 200,
        "the write API acknowledges while Cassandra is down"
    );

    // The node returns on its data; everything recovers by itself.
    own.up(Service::Cassandra, true).await;
    let up_at = jiff::Timestamp::now();
    let outage = down.elapsed();
    bed.wait_condition("BackendsReachable", "True", INTERVAL * 6)
        .await;
    wait_for(
        "every update acknowledged during the outage to be applied",
        Duration::from_secs(120),
        || async {
            for k in 0..50 {
                if quantity(&serve, &format!("W{k}")).await != Some(k) {
                    return None;
                }
            }
            (product_name(&serve, "C1").await.as_deref() == Some("after")).then_some(())
        },
    )
    .await;
    // More ingest workers could not have helped: ingest did not scale up while the node was
    // down. (Right after it returns the engine may still scale: its rate signals still show the
    // stalled window.)
    let scale_ups: Vec<_> = bed
        .decisions(tailwarden_crds::DecisionKind::ScaleIngest)
        .await
        .into_iter()
        .filter(|d| {
            let at: jiff::Timestamp = d.time.parse().expect("an RFC 3339 decision time");
            replicas_after(d) > d.inputs.replicas_before.unwrap_or(1) && at > down_at && at < up_at
        })
        .collect();
    assert!(
        scale_ups.is_empty(),
        "ingest scaled up during the outage: {scale_ups:?}"
    );
    let pods = Api::<Pod>::namespaced(bed.client.clone(), &bed.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    for pod in &pods.items {
        let restarts: i32 = pod
            .status
            .iter()
            .flat_map(|s| s.container_statuses.iter().flatten())
            .map(|c| c.restart_count)
            .sum();
        assert_eq!(
            restarts,
            0,
            "{} restarted",
            pod.metadata.name.as_deref().unwrap_or_default()
        );
    }
    eprintln!(
        "Cassandra down and back in {outage:?}; all applied {:?} after",
        down.elapsed() - outage
    );
    drop((writes, reads));
    bed.finish().await;
}
