//! A distributed pipeline's workers, started as processes from exactly what the operator rendered
//! (the ConfigMap's config, the credentials Secret's files where the pod would mount them), on
//! real Kafka and Cassandra, scraped by a real Prometheus:
//! - the workers serve with the Secret's credentials, on a Cassandra role created for this test;
//! - the status reports how each role reaches each backend, and names the error of a serve
//!   worker that cannot reach Cassandra, with the share of workers it affects;
//! - it reports the topics' partitions as the broker gives them to the ingest workers, and the
//!   ingest replicas beyond them as idle;
//! - the Cassandra password is in none of the ConfigMap, the status, the Events or the logs of
//!   the operator and the workers.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::children::{CONFIG_FILE, names};
use tailwarden_operator::dataplane_config::CASSANDRA_CREDENTIALS_DIR;
use tailwarden_tests::cassandra::{contact_point, credentials_secret};
use tailwarden_tests::dataplane_process::DataplaneProcess;
use tailwarden_tests::kafka::Topics;
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::*;

const PIPELINE: &str = "shop";
/// Ingest replicas the spec asks for. The group consumes the four class topics and the
/// dead-letter topic, 2 partitions each: 10 partitions.
const INGEST_REPLICAS: i32 = 12;
const PARTITIONS: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster, Kafka, Cassandra and Prometheus: run tests/run.sh"]
async fn distributed_workers_report_their_backends_and_never_leak_the_password() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "backends").await;
    let logs = std::env::temp_dir().join(format!("tailwarden-backends-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();

    // A Cassandra role of this test's own, whose password appears nowhere else.
    let suffix = format!("{:08x}", fastrand::u32(..));
    let (user, password) = credentials_secret(&client, &ns, &suffix).await;
    let topics = Topics::create(&format!("backends-{suffix}"), PARTITIONS);

    let operator = OperatorProcess::spawn(
        "backends",
        &ns,
        &["--leader-elect", "false", "--evaluation-interval", "5s"],
        &logs,
    );
    let mut spec = cassandra_spec();
    on_test_services(
        &mut spec,
        "backends",
        &suffix,
        &topics,
        "cassandra-credentials",
    );
    spec["ingest"] = json!({"replicas": {"min": INGEST_REPLICAS, "max": INGEST_REPLICAS}});
    spec["serve"] = json!({"replicas": {"min": 2, "max": 2}});
    let pipelines = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    pipelines
        .create(&PostParams::default(), &pipeline(PIPELINE, spec))
        .await
        .unwrap();

    // The workers run the operator's config, with the Secret's keys as files where the pod
    // mounts them.
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let config = wait_for(
        "the operator to render the workers' config",
        Duration::from_secs(60),
        || async {
            config_maps
                .get(&names::config_map(PIPELINE))
                .await
                .ok()?
                .data?
                .remove(CONFIG_FILE)
        },
    )
    .await;
    let credentials = logs.join("cassandra-credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    std::fs::write(credentials.join("username"), &user).unwrap();
    std::fs::write(credentials.join("password"), &password).unwrap();
    assert!(
        config.contains(CASSANDRA_CREDENTIALS_DIR),
        "the config names the mounted Secret: {config}"
    );
    let config = config.replace(CASSANDRA_CREDENTIALS_DIR, credentials.to_str().unwrap());
    // A second serve worker whose Cassandra contact point has nothing listening.
    let nowhere = config.replace(&contact_point(), &format!("127.0.0.1:{}", free_port()));
    assert_ne!(nowhere, config, "the contact point is in the config");
    let worker = |name: &str, config: &str, role: &str| {
        DataplaneProcess::spawn(
            &format!("{name}-{suffix}"),
            config,
            &["--role", role],
            Some(&logs.join(format!("{name}.log"))),
        )
    };
    let ingest = worker("ingest", &config, "ingest");
    let serve = worker("serve", &config, "serve");
    let stranded = worker("serve-stranded", &nowhere, "serve");
    let targets: Vec<String> = [&ingest, &serve, &stranded]
        .iter()
        .map(|w| format!("\"{}\"", w.metrics))
        .collect();
    let jobs = format!(
        "  - job_name: dataplane\n    static_configs:\n      - targets: [{}]\n        labels: {{namespace: \"{ns}\", pipeline: \"{PIPELINE}\"}}\n",
        targets.join(", ")
    );
    let prometheus = Prometheus::with_scrape_jobs(&jobs).await;
    use_prometheus(&pipelines, PIPELINE, &prometheus.url).await;
    for w in [&ingest, &serve] {
        let ready = format!("http://{}/readyz", w.metrics);
        wait_for_ok("a worker to be ready", &ready, Duration::from_secs(90)).await;
    }

    // They serve: a write through ingest (acknowledged once Kafka has it) is read back.
    let http = reqwest::Client::new();
    let update = format!(
        r#"{{"event_id":"e-{suffix}","class":"inventory","schema_version":2,"key":{{"product_id":"P1","location":"S1"}},"event_time":1700000000000,"sequence":1,"payload":{{"quantity":7}}}}"#
    ) + "\n";
    let written = http
        .post(ingest.updates_url())
        .header("content-type", "application/x-ndjson")
        .body(update)
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200, "{}", written.text().await.unwrap());
    let read = format!("http://{}/v1/inventory/P1/S1", serve.serve);
    wait_for(
        "the serve worker to read the update back",
        Duration::from_secs(60),
        || async {
            let body = http.get(&read).send().await.ok()?.text().await.ok()?;
            body.contains("\"quantity\":7").then_some(())
        },
    )
    .await;

    // The status: every role's backends as reported, the stranded worker's error named.
    let status = wait_for(
        "the status to report both roles' backends",
        Duration::from_secs(90),
        || async {
            let status = pipelines.get(PIPELINE).await.ok()?.status?;
            let serve_cassandra = status
                .backends
                .iter()
                .find(|b| b.role == "serve" && b.backend == "cassandra")?;
            (status.backends.len() == 4 && serve_cassandra.workers == 2 && status.kafka.is_some())
                .then_some(status)
        },
    )
    .await;
    for b in &status.backends {
        let stranded = b.role == "serve" && b.backend == "cassandra";
        assert_eq!(b.reachable, if stranded { 1 } else { b.workers }, "{b:?}");
        if stranded {
            assert_eq!(b.errors.get("unreachable"), Some(&1), "{b:?}");
        }
    }
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "BackendsReachable")
        .expect("the BackendsReachable condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "BackendUnreachable")
    );
    assert!(
        condition
            .message
            .starts_with("serve workers: cassandra unreachable"),
        "{}",
        condition.message
    );
    assert!(
        condition.message.contains("on 1 of 2"),
        "{}",
        condition.message
    );
    let kafka = status.kafka.clone().unwrap();
    assert_eq!(
        kafka.partitions.len(),
        5,
        "the class and dead-letter topics: {kafka:?}"
    );
    assert!(
        kafka.partitions.values().all(|p| *p == PARTITIONS as i32),
        "{kafka:?}"
    );
    assert_eq!(
        kafka.idle_ingest_replicas,
        INGEST_REPLICAS - 5 * PARTITIONS as i32,
        "ingest replicas beyond the 10 partitions are idle"
    );

    // The password is in none of the ConfigMap, the status, the Events or the logs.
    drop((ingest, serve, stranded, operator));
    let config_map = config_maps.get(&names::config_map(PIPELINE)).await.unwrap();
    assert_not_in(
        "the ConfigMap",
        &serde_json::to_string(&config_map).unwrap(),
        &password,
    );
    let pipeline_now = pipelines.get(PIPELINE).await.unwrap();
    assert_not_in(
        "the status",
        &serde_json::to_string(&pipeline_now.status).unwrap(),
        &password,
    );
    let events = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(!events.items.is_empty(), "the operator recorded Events");
    assert_not_in(
        "the Events",
        &serde_json::to_string(&events).unwrap(),
        &password,
    );
    for log in [
        "backends.log",
        "ingest.log",
        "serve.log",
        "serve-stranded.log",
    ] {
        let text = read_log(&logs.join(log));
        assert_not_in(log, &text, &password);
    }
    assert!(
        read_log(&logs.join("serve-stranded.log"))
            .contains(r#""backend":"cassandra","state":"unreachable""#),
        "the stranded worker logs the state of its Cassandra"
    );
    delete_namespace(&client, &ns).await;
    let _ = std::fs::remove_dir_all(&logs);
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(!text.is_empty(), "{} is empty", path.display());
    text
}

fn assert_not_in(place: &str, text: &str, secret: &str) {
    assert!(!text.contains(secret), "the password is in {place}");
}
