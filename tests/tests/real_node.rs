//! Tests on the real node (kubelet, containerd, runc, kube-proxy; `tests/cluster/node-up.sh`):
//! our images run under the pod specs the operator and the chart generate, in namespaces that
//! enforce the restricted Pod Security Standard; traffic goes through ClusterIP Services from this
//! host; readiness is the kubelet's, from the real probes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use tailwarden_crds::{DecisionKind, RetailPipeline};
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::real_node::{self, named};
use tailwarden_tests::worker_api::{inventory, post_updates, quantity};
use tailwarden_tests::*;

const INGEST_TOKEN: &str = "real-node-ingest-token-5c1e";

/// One inventory update as an NDJSON line.
/// `spec` with small CPU and memory requests for its workers: the real node has 2 CPUs, and the
/// operator's defaults (500m each) would leave this file's pipelines unschedulable side by side.
fn small(mut spec: serde_json::Value) -> serde_json::Value {
    let resources = serde_json::json!({"requests": {"cpu": "10m", "memory": "64Mi"}});
    for role in ["ingest", "serve"] {
        spec[role]["resources"] = resources.clone();
    }
    spec
}

/// POSTs `body` until the answer is `want`, for at most 30 s; panics with the last answer.
/// Right after a Service appears its traffic is not yet routed to its pod: kube-proxy programs the
/// rules moments later, and until then connections fail (status 0). Once in CI the first answer
/// through a fresh ClusterIP was a 404, which our ingest listener never gives for this route (the
/// cause was not found; a reused ClusterIP still routed elsewhere is the suspect), so only the
/// wanted answer ends the wait.
async fn post_until(url: &str, token: Option<&str>, body: String, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = post_updates(url, token, body.clone()).await;
        if status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "POST {url}/v1/updates still answers {status}, not {want}, after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every acknowledged (product, quantity) reads back through the serve Service.
async fn assert_all_readable(serve: &str, acknowledged: &[(String, i64)], when: &str) {
    for (product, want) in acknowledged {
        let got = wait_for(
            &format!("{product} readable {when}"),
            Duration::from_secs(30),
            || async { quantity(serve, product).await },
        )
        .await;
        assert_eq!(got, *want, "{product} {when}");
    }
}

/// The standalone pod of pipeline `name`, once there is exactly one.
async fn standalone_pod(client: &kube::Client, ns: &str, name: &str) -> Option<Pod> {
    let selector = format!("app.kubernetes.io/instance={name}");
    let mut pods = real_node::pods(client, ns, &selector).await;
    (pods.len() == 1).then(|| pods.remove(0))
}

/// A fresh real-node namespace `prefix-…` with an operator process watching it (no leader
/// election; `args` added), logging under the temp dir. Returns the client, the namespace, the
/// log directory and the operator, which is killed when dropped.
async fn with_operator(
    prefix: &str,
    args: &[&str],
) -> (kube::Client, String, std::path::PathBuf, OperatorProcess) {
    let client = client().await;
    install_crd(&client).await;
    let ns = real_node::namespace(&client, prefix).await;
    let logs = std::env::temp_dir().join(format!("tailwarden-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();
    let mut all = vec!["--leader-elect", "false"];
    all.extend(args);
    let operator = OperatorProcess::spawn("rn-operator", &ns, &all, &logs);
    (client, ns, logs, operator)
}

#[tokio::test]
#[ignore = "needs the local cluster with its real node: run tests/run.sh"]
async fn embedded_pipeline_serves_through_its_services_and_keeps_acknowledged_updates() {
    let node = real_node::node_name();
    let (client, ns, _logs, _operator) = with_operator("rn-embedded", &[]).await;

    let secret = Secret {
        metadata: named("tokens"),
        data: Some(BTreeMap::from([(
            "ingest".to_string(),
            ByteString(INGEST_TOKEN.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let spec = serde_json::json!({"dataplane": {
        "image": real_node::image("tailwarden-dataplane"),
        "version": real_node::image_version(),
        "imagePullPolicy": "Never",
        "auth": {"ingestTokenSecretRef": {"name": "tokens", "key": "ingest"}},
    }});
    api.create(&PostParams::default(), &pipeline("shop", small(spec)))
        .await
        .unwrap();

    let (reason, message) =
        real_node::wait_ready_status(&api, "shop", "True", Duration::from_secs(180)).await;
    assert_eq!(reason, "WorkloadsAvailable", "{message}");
    let pod = standalone_pod(&client, &ns, "shop").await.expect("one pod");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    assert!(real_node::pod_ready(&pod), "Ready through its probe");
    let state = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(
        state.state.as_ref().unwrap().running.is_some(),
        "the worker process runs: {state:?}"
    );

    // Writes through the ingest Service, reads through the serve Service, from this host.
    let ingest = real_node::service_url(&client, &ns, "shop-ingest", "http").await;
    let serve = real_node::service_url(&client, &ns, "shop-serve", "http").await;
    // The write API needs the token from the Secret.
    post_until(&ingest, None, inventory("e-0", "P0", 1, 1), 401).await;
    let mut acknowledged = Vec::new();
    for i in 0..20i64 {
        let body = inventory(&format!("e-{i}"), &format!("P{i}"), 100 + i, 1);
        let status = post_updates(&ingest, Some(INGEST_TOKEN), body).await;
        assert!((200..300).contains(&status), "update {i} answered {status}");
        acknowledged.push((format!("P{i}"), 100 + i));
    }
    assert_all_readable(&serve, &acknowledged, "through the serve Service").await;

    // Deleting the pod sends SIGTERM: the worker drains and exits well within its grace period
    // (the pod would otherwise be killed after the full period), the StatefulSet recreates it on
    // the same PersistentVolume, and every acknowledged update is still there.
    let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .get("shop-standalone")
        .await
        .unwrap();
    let grace = sts
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .termination_grace_period_seconds;
    let grace = Duration::from_secs(grace.unwrap_or(30) as u64);
    let old_uid = pod.metadata.uid.clone().unwrap();
    let pod_name = pod.metadata.name.clone().unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let deleted_at = Instant::now();
    pods.delete(&pod_name, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the old pod to be gone", grace * 2, || async {
        match pods.get_opt(&pod_name).await.ok()? {
            Some(p) if p.metadata.uid.as_deref() == Some(old_uid.as_str()) => None,
            _ => Some(()),
        }
    })
    .await;
    let took = deleted_at.elapsed();
    assert!(
        took < grace,
        "the worker exited on SIGTERM after {took:?}, not killed at the end of its {grace:?} grace period"
    );
    wait_for("a new pod Ready", Duration::from_secs(120), || async {
        let p = standalone_pod(&client, &ns, "shop").await?;
        (p.metadata.uid.as_deref() != Some(old_uid.as_str()) && real_node::pod_ready(&p))
            .then_some(())
    })
    .await;
    assert_all_readable(&serve, &acknowledged, "after the pod's deletion").await;
    real_node::wait_ready_status(&api, "shop", "True", Duration::from_secs(60)).await;
    delete_namespace(&client, &ns).await;
}

/// `helm` with the test cluster's kubeconfig; panics with its output when it fails.
fn helm(args: &[&str]) -> String {
    run(std::process::Command::new(helm::helm()).args(args))
}

async fn lease_spec(
    leases: &Api<k8s_openapi::api::coordination::v1::Lease>,
) -> Option<k8s_openapi::api::coordination::v1::LeaseSpec> {
    leases.get_opt("tailwarden-operator").await.ok()??.spec
}

/// The operator Deployment's pods, once all `n` run `image` and are Ready.
async fn operator_pods_ready(
    client: &kube::Client,
    ns: &str,
    image: &str,
    n: usize,
) -> Option<Vec<String>> {
    let pods = real_node::pods(client, ns, "app.kubernetes.io/name=tailwarden").await;
    let live: Vec<_> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ok = live.len() == n
        && live.iter().all(|p| {
            real_node::pod_ready(p)
                && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image)
        });
    ok.then(|| {
        live.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    })
}

#[tokio::test]
#[ignore = "needs the local cluster with its real node: run tests/run.sh"]
async fn the_chart_runs_the_operator_image_which_leads_reconciles_rolls_and_uninstalls_cleanly() {
    let client = client().await;
    install_crd(&client).await;
    let node = real_node::node_name();
    let ns = real_node::namespace(&client, "rn-chart").await;
    // Named after the namespace: its cluster-scoped objects cannot collide with another run's.
    let release = ns.as_str();
    let version = real_node::image_version();
    let image = real_node::image("tailwarden-operator");
    let watch = format!("watchNamespace={ns}");
    let chart = helm::chart();
    let chart = chart.to_str().unwrap();
    let common = [
        "--namespace",
        &ns,
        "--set",
        &watch,
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "freezeAnnotationsPolicy.enabled=false",
        "--wait",
        "--timeout",
        "180s",
    ];

    // Install: both replicas Ready through their own probes, under the restricted standard.
    let mut install = vec!["install", release, chart];
    install.extend(common);
    helm(&install);
    let first = format!("{image}:{version}");
    let names = wait_for("2 operator pods Ready", Duration::from_secs(120), || {
        operator_pods_ready(&client, &ns, &first, 2)
    })
    .await;
    for name in &names {
        let pod = Api::<Pod>::namespaced(client.clone(), &ns)
            .get(name)
            .await
            .unwrap();
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some(node.as_str()));
    }

    // One of them holds the Lease the chart created, and reconciles a pipeline.
    let leases = Api::namespaced(client.clone(), &ns);
    let leader = wait_for("a leader", Duration::from_secs(60), || async {
        lease_spec(&leases).await?.holder_identity
    })
    .await;
    assert!(names.contains(&leader), "{leader} is one of {names:?}");
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let spec = serde_json::json!({"dataplane": {
        "image": real_node::image("tailwarden-dataplane"),
        "version": version,
        "imagePullPolicy": "Never",
    }});
    api.create(&PostParams::default(), &pipeline("shop", small(spec)))
        .await
        .unwrap();
    let (reason, message) =
        real_node::wait_ready_status(&api, "shop", "True", Duration::from_secs(180)).await;
    assert_eq!(reason, "WorkloadsAvailable", "{message}");

    // Deleting the leader's pod: it releases the Lease on SIGTERM, so another replica (the
    // standby, or the pod replacing the leader if it is quicker) takes it at its next attempt,
    // long before the Lease would have expired. A new generation of the pipeline arrives just
    // before, so its reconcile is due or running when the leader goes.
    let before = lease_spec(&leases).await.unwrap();
    let patch = serde_json::json!({"spec": {"slos": {"freshness": {"maxLag": "9m"}}}});
    let generation = api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap()
        .metadata
        .generation
        .unwrap();
    Api::<Pod>::namespaced(client.clone(), &ns)
        .delete(&leader, &DeleteParams::default())
        .await
        .unwrap();
    let after = wait_for(
        "another replica to take the Lease",
        Duration::from_secs(60),
        || async {
            let spec = lease_spec(&leases).await?;
            let holder = spec.holder_identity.clone()?;
            (holder != leader && holder.starts_with(&format!("{release}-tailwarden-")))
                .then_some(spec)
        },
    )
    .await;
    let duration = before.lease_duration_seconds.unwrap() as f64;
    let gap = (after.acquire_time.unwrap().0 - before.renew_time.unwrap().0)
        .total(jiff::Unit::Second)
        .unwrap();
    assert!(
        gap < duration,
        "the Lease was taken {gap:.1}s after the last renewal, not after the {duration}s expiry"
    );
    // The new generation is applied once: its decision is neither lost nor repeated.
    let status = wait_for(
        "the new generation to be reconciled",
        Duration::from_secs(60),
        || async {
            let status = api.get("shop").await.ok()?.status?;
            (status.observed_generation == Some(generation)).then_some(status)
        },
    )
    .await;
    let applied = format!("applied generation {generation} ");
    let recorded = status
        .decisions
        .iter()
        .filter(|d| d.kind == DecisionKind::Reconciled && d.reason.starts_with(&applied))
        .count();
    assert_eq!(recorded, 1, "{:?}", status.decisions);

    // Upgrade to a new tag: the Deployment rolls to it.
    let tag = format!("{version}-rolled");
    real_node::ctr(&[
        "images",
        "tag",
        "--force",
        &first,
        &format!("{image}:{tag}"),
    ]);
    let set_tag = format!("image.tag={tag}");
    let rolled = format!("{image}:{tag}");
    let mut upgrade = vec!["upgrade", release, chart, "--set", &set_tag];
    upgrade.extend(common);
    helm(&upgrade);
    wait_for(
        "2 pods of the new tag Ready",
        Duration::from_secs(120),
        || operator_pods_ready(&client, &ns, &rolled, 2),
    )
    .await;

    // Uninstall leaves no object of the release behind, cluster-wide objects and the Lease included.
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    helm(&[
        "uninstall",
        release,
        "--namespace",
        &ns,
        "--wait",
        "--timeout",
        "120s",
    ]);
    // The pods go with their ReplicaSets, through the garbage collector, after the release.
    let selector = format!("app.kubernetes.io/instance={release}");
    let kinds = "deployments,replicasets,pods,services,serviceaccounts,configmaps,roles,\
                 rolebindings,poddisruptionbudgets,leases,clusterroles,clusterrolebindings,\
                 validatingadmissionpolicies,validatingadmissionpolicybindings";
    let mut left = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        left = run(std::process::Command::new(kubectl()).args([
            "get",
            kinds,
            "--namespace",
            &ns,
            "--selector",
            &selector,
            "--output",
            "name",
        ]));
        if left.trim().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(left.trim(), "", "left behind by helm uninstall");
    assert!(lease_spec(&leases).await.is_none(), "the Lease is gone");
    delete_namespace(&client, &ns).await;
}

/// Polls the Ready condition of each pipeline until it has `reason` and its message contains
/// `cause`; fails at once if any of them ever reports Ready=True.
async fn wait_for_cause(
    api: &Api<RetailPipeline>,
    name: &str,
    reason: &str,
    cause: &str,
) -> String {
    wait_for(
        &format!("{name}: Ready=False {reason} naming {cause:?}"),
        Duration::from_secs(180),
        || async {
            let (status, got, message) = real_node::condition(api, name, "Ready").await?;
            assert_ne!(status, "True", "{name} claims Ready: {message}");
            (got == reason && message.contains(cause)).then_some(message)
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs the local cluster with its real node: run tests/run.sh"]
async fn the_status_names_why_workers_cannot_run_and_never_claims_ready() {
    let (client, ns, _logs, _operator) = with_operator("rn-truth", &[]).await;
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let dataplane = |version: &str| {
        serde_json::json!({
            "image": real_node::image("tailwarden-dataplane"),
            "version": version,
            "imagePullPolicy": "Never",
        })
    };
    let version = real_node::image_version();
    // An image that is not on the node (and may not be pulled).
    let missing = serde_json::json!({"dataplane": dataplane("no-such-tag")});
    // Workers that exit at start: their Cassandra credentials Secret has no `password` key.
    let half = Secret {
        metadata: named("half-credentials"),
        data: Some(BTreeMap::from([(
            "username".to_string(),
            ByteString(b"tailwarden".to_vec()),
        )])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &half)
        .await
        .unwrap();
    let mut crashing = cassandra_spec();
    crashing["dataplane"] = dataplane(&version);
    crashing["storage"]["cassandra"]["credentialsSecretRef"] =
        serde_json::json!({"name": "half-credentials"});
    // A worker that starts but never becomes ready (see below).
    let unready = serde_json::json!({"dataplane": dataplane(&version)});
    for (name, spec) in [
        ("missing", missing),
        ("crashing", crashing),
        ("unready", unready),
    ] {
        api.create(&PostParams::default(), &pipeline(name, small(spec)))
            .await
            .unwrap();
    }

    // Another field manager adds a setting the operator does not own, which keeps the worker's
    // readiness probe failing: a worker that runs, and never becomes ready.
    real_node::wait_ready_status(&api, "unready", "True", Duration::from_secs(180)).await;
    run(std::process::Command::new(kubectl()).args([
        "--namespace",
        &ns,
        "patch",
        "statefulset",
        "unready-standalone",
        "--field-manager=tailwarden-tests",
        "--type=strategic",
        "--patch",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"dataplane","env":[{"name":"TAILWARDEN_REQUIRE_SNAPSHOT","value":"true"}]}]}}}}"#,
    ]));

    let message = wait_for_cause(&api, "missing", "ImagePullFailed", "ErrImageNeverPull").await;
    assert!(message.contains("no-such-tag"), "{message}");
    let message = wait_for_cause(
        &api,
        "crashing",
        "WorkerCrashing",
        "storage.cassandra.credentialsDir",
    )
    .await;
    assert!(message.contains("exit code"), "{message}");
    let message = wait_for_cause(&api, "unready", "WorkerNotReady", "readiness probe").await;
    assert!(message.contains("unready-standalone-0"), "{message}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster with its real node and Prometheus: run tests/run.sh"]
async fn prometheus_scrapes_the_real_pods_and_the_slo_engine_reads_their_slis() {
    let (client, ns, logs, _operator) =
        with_operator("rn-scrape", &["--evaluation-interval", "5s"]).await;
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let version = real_node::image_version();
    let spec = serde_json::json!({
        "dataplane": {
            "image": real_node::image("tailwarden-dataplane"),
            "version": version,
            "imagePullPolicy": "Never",
        },
        "slos": {"readLatency": [{"queryClass": "inventory", "p95": "120ms", "p99": "200ms"}]},
    });
    api.create(&PostParams::default(), &pipeline("shop", small(spec)))
        .await
        .unwrap();
    real_node::wait_ready_status(&api, "shop", "True", Duration::from_secs(180)).await;

    // Prometheus finds the worker pods the way the operator's PodMonitor selects them.
    let live = api.get("shop").await.unwrap();
    let monitor = tailwarden_operator::monitoring::pod_monitor(&live, &version);
    let targets = logs.join("targets.json");
    let job = real_node::scrape_job(&client, &monitor, &targets).await;
    let prometheus = prometheus::Prometheus::with_scrape_jobs(&job).await;
    let up = format!(
        r#"count(up{{namespace="{ns}",pipeline="shop",pod="shop-standalone-0",instance=~"10\\.89\\..*"}} == 1)"#
    );
    wait_for(
        "Prometheus to scrape the pod",
        Duration::from_secs(60),
        || async { (prometheus.query(&up).await? == 1.0).then_some(()) },
    )
    .await;

    // Real traffic through the Services, and the SLO engine reading the SLIs it produced.
    use_prometheus(&api, "shop", &prometheus.url).await;
    let ingest = real_node::service_url(&client, &ns, "shop-ingest", "http").await;
    let serve = real_node::service_url(&client, &ns, "shop-serve", "http").await;
    for i in 0..10i64 {
        let body = inventory(&format!("s-{i}"), &format!("S{i}"), i, 1);
        post_until(&ingest, None, body, 200).await;
    }
    let slis = wait_for(
        "the engine to read SLIs of the real pods",
        Duration::from_secs(120),
        || async {
            for i in 0..50 {
                quantity(&serve, &format!("S{}", i % 10)).await;
            }
            let slis = api.get("shop").await.ok()?.status?.slis;
            (slis.read_p99.is_some() && slis.availability_percent.is_some()).then_some(slis)
        },
    )
    .await;
    assert_eq!(slis.availability_percent, Some(100.0), "{slis:?}");
    let reads = prometheus
        .query(&format!(
            r#"sum(tailwarden_read_requests_total{{namespace="{ns}",pipeline="shop"}})"#
        ))
        .await
        .unwrap_or(0.0);
    assert!(
        reads >= 50.0,
        "the reads reached the pod's counters: {reads}"
    );
    delete_namespace(&client, &ns).await;
}
