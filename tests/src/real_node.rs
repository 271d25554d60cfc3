//! The real node that `tests/cluster/node-up.sh` joins to the test cluster (kubelet, containerd and
//! kube-proxy on this machine), and what tests need to run pods on it: a namespace whose pods land
//! there (and only there), our images' names, and Service URLs reachable from this host.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::monitoring::PodMonitor;

/// The node's name (`TAILWARDEN_REAL_NODE`, written by node-up.sh). Panics without one: these
/// tests must fail, not pass vacuously, when the harness did not start it.
pub fn node_name() -> String {
    std::env::var("TAILWARDEN_REAL_NODE")
        .expect("TAILWARDEN_REAL_NODE is unset: run the suite through tests/run.sh, which starts the real node")
}

/// The tag node-up.sh imported our images under (the chart's appVersion).
pub fn image_version() -> String {
    std::env::var("TAILWARDEN_IMAGE_VERSION").expect("TAILWARDEN_IMAGE_VERSION (node-up.sh)")
}

/// Our image `name` (tailwarden-operator, tailwarden-dataplane) without its tag.
pub fn image(name: &str) -> String {
    format!("docker.io/tailwarden/{name}")
}

/// Runs `ctr` against the node's containerd, in the namespace the kubelet uses.
pub fn ctr(args: &[&str]) -> String {
    let sock = std::env::var("TAILWARDEN_CONTAINERD_SOCK").expect("TAILWARDEN_CONTAINERD_SOCK");
    crate::run(
        Command::new("ctr")
            .args(["--address", &sock, "--namespace", "k8s.io"])
            .args(args),
    )
}

/// A fresh namespace whose pods run on the real node: the PodNodeSelector and
/// PodTolerationRestriction admission plugins add the node's label and taint toleration to every
/// pod. It enforces the restricted Pod Security Standard.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", crate::unique());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": "tailwarden.io/node=real",
                "scheduler.alpha.kubernetes.io/defaultTolerations":
                    r#"[{"key":"tailwarden.io/real-node","operator":"Exists","effect":"NoSchedule"}]"#,
            },
        },
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace creates");
    name
}

/// `http://<ClusterIP>:<port named port_name>` of a Service: reached through kube-proxy's rules.
pub async fn service_url(client: &Client, ns: &str, service: &str, port_name: &str) -> String {
    let svc = Api::<Service>::namespaced(client.clone(), ns)
        .get(service)
        .await
        .unwrap_or_else(|e| panic!("Service {ns}/{service}: {e}"));
    let spec = svc.spec.expect("a Service has a spec");
    let ip = spec.cluster_ip.expect("a ClusterIP");
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some(port_name))
        .unwrap_or_else(|| panic!("Service {service} has no port {port_name}"))
        .port;
    format!("http://{ip}:{port}")
}

/// The pods matching `selector` in `ns`.
pub async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(selector))
        .await
        .expect("pods list")
        .items
}

/// Whether the pod's Ready condition is True (the kubelet's readiness probes passed).
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pipeline's condition `type_` as (status, reason, message), once the operator has set it.
pub async fn condition(
    api: &Api<RetailPipeline>,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let status = api.get(name).await.ok()?.status?;
    let c = status.conditions.into_iter().find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

/// Waits until the pipeline's `Ready` condition has `status`, and returns its reason and message.
pub async fn wait_ready_status(
    api: &Api<RetailPipeline>,
    name: &str,
    status: &str,
    timeout: Duration,
) -> (String, String) {
    crate::wait_for(
        &format!("pipeline {name} Ready={status}"),
        timeout,
        || async {
            let (s, reason, message) = condition(api, name, "Ready").await?;
            (s == status).then_some((reason, message))
        },
    )
    .await
}

/// Metadata with only a name.
pub fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

/// The scrape job the Prometheus Operator would make of `monitor`, as a plain Prometheus config.
/// Debian's Prometheus is built without Kubernetes service discovery, so the selector is resolved
/// here: the pods it matches in the monitor's namespace, at their container port of the endpoint's
/// name, are written to `targets` (a `file_sd_configs` file, which Prometheus watches) with the
/// labels the relabelings give, plus `namespace` and `pod` as the Prometheus Operator adds them.
/// Call it again to follow pod changes. Scrapes every second.
pub async fn scrape_job(
    client: &Client,
    monitor: &PodMonitor,
    targets: &std::path::Path,
) -> String {
    let ns = monitor
        .metadata
        .namespace
        .clone()
        .expect("a namespaced PodMonitor");
    let selector = monitor
        .spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut groups = Vec::new();
    for pod in pods(client, &ns, &selector).await {
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) else {
            continue;
        };
        let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
        for endpoint in &monitor.spec.pod_metrics_endpoints {
            let port = pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(endpoint.port.as_str()));
            let Some(port) = port else { continue };
            let mut labels = serde_json::Map::new();
            for r in &endpoint.relabelings {
                let value = r
                    .source_labels
                    .iter()
                    .map(|source| {
                        let label = source
                            .strip_prefix("__meta_kubernetes_pod_label_")
                            .unwrap_or_else(|| {
                                panic!("relabeling from {source} is not translated")
                            });
                        pod_labels
                            .iter()
                            .find(|(k, _)| {
                                k.chars()
                                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                                    .eq(label.chars())
                            })
                            .map(|(_, v)| v.clone())
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>()
                    .join(";");
                labels.insert(r.target_label.clone(), value.into());
            }
            labels.insert("namespace".into(), ns.clone().into());
            labels.insert(
                "pod".into(),
                pod.metadata.name.clone().unwrap_or_default().into(),
            );
            groups.push(serde_json::json!({
                "targets": [format!("{ip}:{}", port.container_port)],
                "labels": labels,
            }));
        }
    }
    let tmp = targets.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&groups).unwrap()).unwrap();
    std::fs::rename(&tmp, targets).unwrap();
    format!(
        "  - job_name: podMonitor/{ns}/{name}\n    file_sd_configs:\n      - files: [{file:?}]\n",
        name = monitor.metadata.name.clone().unwrap_or_default(),
        file = targets.display().to_string(),
    )
}
