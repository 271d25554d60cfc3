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
use kube::api::{DeleteParams, PostParams};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::real_node::{self, named};
use tailwarden_tests::*;

const INGEST_TOKEN: &str = "real-node-ingest-token-5c1e";

/// One inventory update as an NDJSON line.
fn inventory(event_id: &str, product: &str, quantity: i64, seq: u64) -> String {
    format!(
        r#"{{"event_id":"{event_id}","class":"inventory","schema_version":2,"key":{{"product_id":"{product}","location":"S1"}},"event_time":{},"sequence":{seq},"payload":{{"quantity":{quantity}}}}}"#,
        1_700_000_000_000i64 + seq as i64
    ) + "\n"
}

async fn post_updates(url: &str, token: Option<&str>, body: String) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{url}/v1/updates"))
        .header("content-type", "application/x-ndjson")
        .timeout(Duration::from_secs(10))
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn quantity(serve: &str, product: &str) -> Option<i64> {
    let r = reqwest::Client::new()
        .get(format!("{serve}/v1/inventory/{product}/S1"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json::<serde_json::Value>().await.ok()?["quantity"].as_i64()
}

/// The standalone pod of pipeline `name`, once there is exactly one.
async fn standalone_pod(client: &kube::Client, ns: &str, name: &str) -> Option<Pod> {
    let selector = format!("app.kubernetes.io/instance={name}");
    let mut pods = real_node::pods(client, ns, &selector).await;
    (pods.len() == 1).then(|| pods.remove(0))
}

#[tokio::test]
#[ignore = "needs the local cluster with its real node: run tests/run.sh"]
async fn embedded_pipeline_serves_through_its_services_and_keeps_acknowledged_updates() {
    let client = client().await;
    install_crd(&client).await;
    let node = real_node::node_name();
    let ns = real_node::namespace(&client, "rn-embedded").await;
    let logs = std::env::temp_dir().join(format!("tailwarden-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();
    let _operator = OperatorProcess::spawn("rn-operator", &ns, &["--leader-elect", "false"], &logs);

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
    api.create(&PostParams::default(), &pipeline("shop", spec))
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
    assert_eq!(
        post_updates(&ingest, None, inventory("e-0", "P0", 1, 1)).await,
        401,
        "the write API needs the token from the Secret"
    );
    let mut acknowledged = Vec::new();
    for i in 0..20i64 {
        let body = inventory(&format!("e-{i}"), &format!("P{i}"), 100 + i, 1);
        let status = post_updates(&ingest, Some(INGEST_TOKEN), body).await;
        assert!((200..300).contains(&status), "update {i} answered {status}");
        acknowledged.push((format!("P{i}"), 100 + i));
    }
    for (product, want) in &acknowledged {
        let got = wait_for(
            &format!("{product} readable through the serve Service"),
            Duration::from_secs(30),
            || async { quantity(&serve, product).await },
        )
        .await;
        assert_eq!(got, *want, "{product}");
    }

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
    for (product, want) in &acknowledged {
        let got = wait_for(
            &format!("{product} after the restart"),
            Duration::from_secs(30),
            || async { quantity(&serve, product).await },
        )
        .await;
        assert_eq!(got, *want, "{product} survived the pod's deletion");
    }
    real_node::wait_ready_status(&api, "shop", "True", Duration::from_secs(60)).await;
    delete_namespace(&client, &ns).await;
}
