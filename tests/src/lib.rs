//! Shared fixtures of the integration tests, which run against the real local control plane that
//! `tests/run.sh` starts (`tests/cluster/up.sh`): kube-apiserver with etcd, kube-controller-manager,
//! kube-scheduler and kwok.
//!
//! Tests that need the cluster are `#[ignore]`d so that a plain `cargo test` without one passes;
//! `tests/run.sh` runs them with `--include-ignored`.

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tailwarden_crds::RetailPipeline;

pub mod cassandra;
pub mod closed_loop;
pub mod dashboards;
pub mod dataplane_process;
pub mod freeze_policy;
pub mod helm;
pub mod kafka;
pub mod operator_process;
/// A test's own Kafka broker or Cassandra node, to stop and restart.
#[path = "../../dataplane/tests/support/services.rs"]
pub mod own_services;
pub mod prometheus;
pub mod real_node;
pub mod scrape_target;
pub mod worker_api;

/// A client for the test cluster, from `KUBECONFIG`.
pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("KUBECONFIG points at the test cluster: run the suite through tests/run.sh")
}

/// Polls `check` until it returns `Some`, or panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `url` until it answers 2xx, or panics naming `what` after `timeout`.
pub async fn wait_for_ok(what: &str, url: &str, timeout: Duration) {
    wait_for(what, timeout, || async {
        reqwest::get(url)
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await
}

/// Runs a command, panics with its output unless it succeeds, returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Installs the CRD (server-side apply, idempotent) and waits until it is Established.
pub async fn install_crd(client: &Client) -> CustomResourceDefinition {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(&tailwarden_crds::crd_yaml()).expect("the CRD YAML parses");
    api.patch(
        "retailpipelines.tailwarden.io",
        &PatchParams::apply("tailwarden-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD applies");
    wait_for(
        "the CRD to be Established",
        Duration::from_secs(30),
        || async {
            let crd = api.get("retailpipelines.tailwarden.io").await.ok()?;
            let established = crd
                .status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            // Discovery must serve the new resource before clients can use it.
            let served = Api::<RetailPipeline>::all(client.clone())
                .list(&Default::default())
                .await
                .is_ok();
            (established && served).then_some(crd)
        },
    )
    .await
}

/// Creates a fresh namespace named after the test.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", unique());
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("namespace creates");
    name
}

/// Deletes a namespace and does not wait for it.
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{}", nanos & 0xffff, N.fetch_add(1, Ordering::Relaxed))
}

/// A free TCP port on loopback, never handed out twice by this process.
///
/// Ports come from below the Linux ephemeral range (32768+): a port the kernel picked would
/// be free again at once, so outgoing connections (and other tests asking the kernel) could
/// take it before the server under test binds it.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = fastrand::u16(20000..32000);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

/// A RetailPipeline from a JSON spec.
pub fn pipeline(name: &str, mut spec: serde_json::Value) -> RetailPipeline {
    // Evaluated on every tick of the test operators' engines (5 s; the closed loop's 15 s)
    // unless the test says otherwise: the production default is 15 s.
    let autoscaling = &mut spec["autoscaling"];
    if autoscaling.get("evaluationInterval").is_none() {
        autoscaling["evaluationInterval"] = serde_json::json!("5s");
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "tailwarden.io/v1alpha1",
        "kind": "RetailPipeline",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("the test pipeline deserializes")
}

/// Points pipeline `name`'s SLO engine at the Prometheus at `url` (`spec.prometheus.url`).
pub async fn use_prometheus(api: &Api<RetailPipeline>, name: &str, url: &str) {
    let patch = serde_json::json!({"spec": {"prometheus": {"url": url}}});
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
}

/// A minimal valid spec, embedded storage.
pub fn minimal_spec() -> serde_json::Value {
    serde_json::json!({"dataplane": {"image": "example.com/tailwarden/dataplane", "version": "1.0.0"}})
}

/// A distributed spec: Cassandra storage, Kafka streams.
pub fn cassandra_spec() -> serde_json::Value {
    let mut spec = minimal_spec();
    spec["storage"] = serde_json::json!({"cassandra": {"contactPoints": ["cassandra:9042"], "keyspace": "retail"}});
    spec["streams"] = kafka_streams();
    spec
}

/// `spec` pointed at the test servers of tests/services: Cassandra (keyspace `<prefix>_<suffix>`,
/// credentials from the Secret `credentials`) and Kafka (`topics`, consumer group `<prefix>-<suffix>`).
pub fn on_test_services(
    spec: &mut serde_json::Value,
    prefix: &str,
    suffix: &str,
    topics: &kafka::Topics,
    credentials: &str,
) {
    spec["storage"]["cassandra"] = serde_json::json!({
        "contactPoints": [cassandra::contact_point()], "keyspace": format!("{prefix}_{suffix}"),
        "credentialsSecretRef": {"name": credentials},
    });
    let kafka = &mut spec["streams"]["kafka"];
    kafka["bootstrapServers"] = serde_json::json!([kafka::bootstrap()]);
    kafka["consumerGroup"] = serde_json::json!(format!("{prefix}-{suffix}"));
    for class in ["product", "pricing", "inventory", "fulfillment"] {
        kafka["topics"][class] = serde_json::json!(topics.name(class));
    }
    kafka["topics"]["changes"] = serde_json::json!(topics.name("changes"));
    kafka["topics"]["deadLetters"] = serde_json::json!(topics.name("dead-letters"));
}

/// `spec.streams` of a distributed pipeline (its change and dead-letter topics defaulted).
pub fn kafka_streams() -> serde_json::Value {
    serde_json::json!({"kafka": {
        "bootstrapServers": ["kafka:9092"], "consumerGroup": "retail-ingest",
        "topics": {"product": "product", "pricing": "pricing", "inventory": "inventory",
                   "fulfillment": "fulfillment"}}})
}

/// How often the in-process operator's SLO engine evaluates (the smallest interval allowed).
pub const ENGINE_INTERVAL: Duration = Duration::from_secs(5);

/// Starts one in-process operator for this test binary, watching all namespaces, without leader
/// election, with the SLO engine evaluating every [`ENGINE_INTERVAL`]. It lives on its own thread
/// and runtime, and dies with the test process.
pub fn start_operator() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async move {
                let client = client().await;
                install_crd(&client).await;
                let metrics = Arc::new(tailwarden_operator::metrics::Metrics::default());
                let ctx = Arc::new(tailwarden_operator::reconciler::Context::new(
                    client,
                    metrics,
                    "in-process-test-operator",
                ));
                ready_tx.send(()).expect("test thread waits");
                let engine = tailwarden_operator::engine::EngineConfig {
                    interval: ENGINE_INTERVAL,
                    ..Default::default()
                };
                tailwarden_operator::reconciler::run(
                    ctx,
                    None,
                    Some(engine),
                    std::future::pending(),
                )
                .await;
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the in-process operator starts");
    });
}

/// The `kubectl` built by the harness (`KUBECTL`), else the one on PATH.
pub fn kubectl() -> PathBuf {
    std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// The operator binary (`TAILWARDEN_OPERATOR_BIN`, else next to the test executable).
pub fn operator_bin() -> PathBuf {
    workspace_bin("TAILWARDEN_OPERATOR_BIN", "tailwarden-operator")
}

/// The data-plane binary (`TAILWARDEN_DATAPLANE_BIN`, else next to the test executable).
pub fn dataplane_bin() -> PathBuf {
    workspace_bin("TAILWARDEN_DATAPLANE_BIN", "tailwarden-dataplane")
}

/// The kubectl plugin (`TAILWARDEN_PLUGIN_BIN`, else next to the test executable).
pub fn plugin_bin() -> PathBuf {
    workspace_bin("TAILWARDEN_PLUGIN_BIN", "kubectl-tailwarden")
}

/// The load generator (`TAILWARDEN_LOADGEN_BIN`, else next to the test executable).
pub fn loadgen_bin() -> PathBuf {
    workspace_bin("TAILWARDEN_LOADGEN_BIN", "tailwarden-loadgen")
}

/// `render-rules`, which prints a pipeline's Prometheus rules (`TAILWARDEN_RENDER_RULES_BIN`, else
/// next to the test executable).
pub fn render_rules_bin() -> PathBuf {
    workspace_bin("TAILWARDEN_RENDER_RULES_BIN", "render-rules")
}

/// A binary of the workspace: `env` if set, else `name` in the target directory of this test.
fn workspace_bin(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    // A test runs from `<target>/debug/deps`, a binary of this crate (the demo) from
    // `<target>/debug`, where the workspace's binaries are.
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("target directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("target directory")
    } else {
        dir
    };
    dir.join(name)
}

/// A short-lived token (an hour) of the ServiceAccount `namespace/name`, from a TokenRequest.
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(
            name,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("a token for ServiceAccount {namespace}/{name}: {e}"))
        .status
        .expect("TokenRequest status")
        .token
}

/// A kubeconfig for the admin kubeconfig's cluster (server and CA) that authenticates with `token`,
/// in `namespace` by default.
pub fn kubeconfig_with_token(token: &str, namespace: &str) -> String {
    let admin = kube::config::Kubeconfig::read().expect("KUBECONFIG is readable");
    let context = admin
        .current_context
        .as_deref()
        .and_then(|c| admin.contexts.iter().find(|n| n.name == c))
        .and_then(|n| n.context.as_ref())
        .expect("the admin kubeconfig has a current context");
    let cluster = admin
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .expect("the current context's cluster");
    let mut test_cluster = serde_json::json!({"server": cluster.server});
    if let Some(data) = &cluster.certificate_authority_data {
        test_cluster["certificate-authority-data"] = serde_json::json!(data);
    }
    if let Some(file) = &cluster.certificate_authority {
        test_cluster["certificate-authority"] = serde_json::json!(file);
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": test_cluster}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {
            "cluster": "test", "user": "token", "namespace": namespace,
        }}],
        "current-context": "token",
    });
    serde_yaml::to_string(&config).unwrap()
}

/// A distributed pipeline `shop/web` with one latency objective (product: P95 120ms, P99 200ms),
/// as the SLO engine tests evaluate it.
pub fn shop_web_pipeline() -> RetailPipeline {
    let mut p = pipeline(
        "web",
        serde_json::json!({
            "dataplane": {"image": "example.com/tailwarden/dataplane", "version": "1.0.0"},
            "storage": {"cassandra": {"contactPoints": ["cassandra:9042"], "keyspace": "retail"}},
            "streams": kafka_streams(),
            "slos": {"readLatency": [{"queryClass": "product", "p95": "120ms", "p99": "200ms"}]},
        }),
    );
    p.metadata.namespace = Some("shop".into());
    p
}

/// A minimal stand-in for the Prometheus Operator's CRD of `plural`/`kind`: same group, version and
/// names, with an open schema.
pub fn monitoring_crd(plural: &str, kind: &str) -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"plural": plural, "kind": kind, "singular": kind.to_lowercase()},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))
    .unwrap()
}

/// The ingest policy, sized at `target_per_replica` records of backlog per replica, asks one
/// replica facing `backlog` for at least three, naming the backlog as the reason.
pub fn assert_ingest_scales_up(backlog: f64, target_per_replica: f64) {
    use tailwarden_slo::scaling::{
        Direction, IngestObservation, IngestPolicy, ScalingState, decide_ingest,
    };
    let mut policy = IngestPolicy::new(1, 10, Duration::from_secs(600), Duration::from_secs(105));
    policy.target_backlog_per_replica = target_per_replica;
    let obs = IngestObservation {
        lag_seconds: Some(0.0),
        backlog: Some(backlog),
        backlog_slope: Some(0.0),
        throughput: Some(0.0),
    };
    let (decision, _) = decide_ingest(
        &policy,
        &obs,
        1,
        &ScalingState::default(),
        jiff::Timestamp::now(),
    );
    assert_eq!(decision.direction, Direction::Up, "{decision:?}");
    assert!(decision.replicas >= 3, "backlog {backlog}: {decision:?}");
    assert!(decision.reason.contains("backlog"), "{}", decision.reason);
}
