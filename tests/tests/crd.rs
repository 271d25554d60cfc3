//! The CRD against a real API server: it installs, documents its fields, and rejects bad specs
//! with a message that names the field.

use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::*;

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn crd_installs_and_kubectl_explain_shows_field_docs() {
    let client = client().await;
    let crd = install_crd(&client).await;
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version.subresources.as_ref().unwrap().status.is_some(),
        "status subresource"
    );
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["rp".to_owned()][..])
    );

    // The API server publishes a new CRD's OpenAPI shortly after it is Established.
    let explain = |path: &'static str| async move {
        let out = std::process::Command::new(kubectl())
            .args(["explain", path])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let text = wait_for(
        "kubectl explain to know the CRD",
        std::time::Duration::from_secs(60),
        || explain("retailpipeline.spec.ingest.batch.linger"),
    )
    .await;
    assert!(
        text.contains("Longest an update waits for its batch to fill"),
        "{text}"
    );
    let text = explain("rp.spec.errorBudgetPolicy")
        .await
        .expect("kubectl explain answers");
    assert!(text.contains("freezeRolloutsBelowPercent"), "{text}");
    assert!(
        text.contains("What the operator does as the error budget runs out"),
        "{text}"
    );
}

/// Sets `path` (dotted, numeric segments index arrays) in a minimal valid spec.
fn with(path: &str, value: Value) -> Value {
    let mut spec = minimal_spec();
    let mut slot = &mut spec;
    for key in path.split('.') {
        slot = match key.parse::<usize>() {
            Ok(i) => {
                let arr = slot.as_array_mut().expect("an array on the path");
                while arr.len() <= i {
                    arr.push(json!({}));
                }
                &mut arr[i]
            }
            Err(_) => {
                if !slot.is_object() {
                    *slot = json!({});
                }
                slot.as_object_mut()
                    .unwrap()
                    .entry(key)
                    .or_insert(Value::Null)
            }
        };
    }
    *slot = value;
    spec
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn invalid_specs_are_rejected_with_the_field_named() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "invalid").await;
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    // Invalid specs cannot always be expressed in the Rust types, so they are sent untyped.
    let raw = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<RetailPipeline>(&()),
    );
    let untyped = |name: &str, spec: &Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "tailwarden.io/v1alpha1", "kind": "RetailPipeline",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap()
    };

    let latency = |p95: &str, p99: &str| json!([{"queryClass": "product", "p95": p95, "p99": p99}]);
    // (what the rule is, spec, text the API server's message must contain)
    let corpus: Vec<(&str, Value, &[&str])> = vec![
        (
            "ingest min <= max",
            with("ingest.replicas", json!({"min": 5, "max": 2})),
            &["spec.ingest.replicas.min", "min must not exceed max"],
        ),
        (
            "serve min <= max",
            with("serve.replicas", json!({"min": 3, "max": 1})),
            &["spec.serve.replicas.min", "min must not exceed max"],
        ),
        (
            "availability 0 < target < 100",
            with("slos.availability.targetPercent", json!(100.0)),
            &[
                "spec.slos.availability.targetPercent",
                "strictly between 0 and 100",
            ],
        ),
        (
            "fault injection 0..=100",
            with("dataplane.faultInjection", json!({"readErrorPercent": 150})),
            &["spec.dataplane.faultInjection.readErrorPercent"],
        ),
        (
            "correctness 0 < max < 100",
            with("slos.correctness.maxErrorPercent", json!(0.0)),
            &["spec.slos.correctness.maxErrorPercent"],
        ),
        (
            "exactly one storage backend",
            with(
                "storage",
                json!({"embedded": {}, "cassandra": {"contactPoints": ["c:9042"], "keyspace": "k"}}),
            ),
            &["spec.storage", "exactly one storage backend"],
        ),
        (
            "cassandra needs kafka",
            with(
                "storage",
                json!({"cassandra": {"contactPoints": ["c:9042"], "keyspace": "k"}}),
            ),
            &["spec.streams", "storage.cassandra needs streams.kafka"],
        ),
        (
            "no storage backend",
            with("storage", json!({})),
            &["spec.storage", "exactly one storage backend"],
        ),
        (
            "exactly one stream source",
            with(
                "streams",
                json!({"http": {}, "kafka": {"bootstrapServers": ["k:9092"], "consumerGroup": "g", "topics": {"product": "p", "pricing": "q", "inventory": "i", "fulfillment": "f"}}}),
            ),
            &["spec.streams", "exactly one stream source"],
        ),
        (
            "durations parse",
            with("ingest.batch.linger", json!("5 minutes")),
            &["spec.ingest.batch.linger"],
        ),
        (
            "p95 <= p99",
            with("slos.readLatency", latency("300ms", "200ms")),
            &["spec.slos.readLatency[0].p95", "p95 must not exceed p99"],
        ),
        (
            "degrade <= freeze",
            with(
                "errorBudgetPolicy",
                json!({"freezeRolloutsBelowPercent": 10.0, "degradeBelowPercent": 20.0}),
            ),
            &["spec.errorBudgetPolicy.degradeBelowPercent"],
        ),
        (
            "contact points present",
            with(
                "storage",
                json!({"cassandra": {"contactPoints": [], "keyspace": "k"}}),
            ),
            &["spec.storage.cassandra.contactPoints"],
        ),
        (
            "contact points are host:port",
            with(
                "storage",
                json!({"cassandra": {"contactPoints": ["cassandra"], "keyspace": "k"}}),
            ),
            &["spec.storage.cassandra.contactPoints[0]"],
        ),
        (
            "image has no tag",
            with("dataplane.image", json!("example.com/dataplane:1.0")),
            &["spec.dataplane.image"],
        ),
        (
            "evaluation interval >= 5s",
            with("autoscaling.evaluationInterval", json!("1s")),
            &["spec.autoscaling.evaluationInterval", "at least 5s"],
        ),
        (
            "partitions >= 1",
            with("ingest.partitions", json!(0)),
            &["spec.ingest.partitions"],
        ),
        (
            "prometheus URL is http(s)",
            with("prometheus", json!({"url": "ftp://prometheus:9090"})),
            &["spec.prometheus.url"],
        ),
        (
            "known query class",
            with(
                "slos.readLatency",
                json!([{"queryClass": "search", "p95": "1ms", "p99": "2ms"}]),
            ),
            &["spec.slos.readLatency[0].queryClass"],
        ),
        (
            "budget window in days or weeks",
            with("slos.availability.window", json!("30x")),
            &["spec.slos.availability.window"],
        ),
        (
            "max step >= 1",
            with(
                "autoscaling.serve.scaleUp",
                json!({"stabilizationWindow": "0s", "cooldown": "30s", "maxStep": 0}),
            ),
            &["spec.autoscaling.serve.scaleUp.maxStep"],
        ),
        (
            "freshness lag positive",
            with("slos.freshness.maxLag", json!("0s")),
            &["spec.slos.freshness.maxLag", "maxLag must be positive"],
        ),
        (
            "query classes unique",
            with(
                "slos.readLatency",
                json!([{"queryClass": "product", "p95": "1ms", "p99": "2ms"}, {"queryClass": "product", "p95": "1ms", "p99": "2ms"}]),
            ),
            &["spec.slos.readLatency[1]", "Duplicate value"],
        ),
        (
            "version is a tag",
            with("dataplane.version", json!("1.0 beta")),
            &["spec.dataplane.version"],
        ),
    ];
    assert!(corpus.len() >= 10);
    let mut failures = vec![];
    for (i, (rule, spec, expected)) in corpus.iter().enumerate() {
        let name = format!("bad-{i}");
        match raw
            .create(&PostParams::default(), &untyped(&name, spec))
            .await
        {
            Ok(_) => failures.push(format!("{rule}: accepted")),
            Err(kube::Error::Api(status)) => {
                if status.code != 422 {
                    failures.push(format!("{rule}: code {} ({})", status.code, status.message));
                }
                for text in *expected {
                    if !status.message.contains(text) {
                        failures.push(format!(
                            "{rule}: message lacks {text:?}: {}",
                            status.message
                        ));
                    }
                }
            }
            Err(other) => failures.push(format!("{rule}: {other}")),
        }
    }
    // The name rule sits on the root object.
    let long = "p".repeat(41);
    match api
        .create(&PostParams::default(), &pipeline(&long, minimal_spec()))
        .await
    {
        Err(kube::Error::Api(status)) if status.message.contains("metadata.name") => {}
        other => failures.push(format!("long name: {other:?}")),
    }
    // A valid spec is accepted, so the corpus is not passing by rejecting everything.
    api.create(&PostParams::default(), &pipeline("good", minimal_spec()))
        .await
        .expect("a minimal valid spec is accepted");
    let stored = api.get("good").await.unwrap();
    assert_eq!(
        stored.spec.slos.availability.target_percent, 99.95,
        "schema defaults are applied"
    );
    delete_namespace(&client, &ns).await;
    assert!(
        failures.is_empty(),
        "{} of {} rules misbehaved:\n{}",
        failures.len(),
        corpus.len() + 1,
        failures.join("\n")
    );
}
