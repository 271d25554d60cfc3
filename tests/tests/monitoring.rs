//! PrometheusRule and PodMonitor: skipped with a reason while the Prometheus Operator's CRDs are
//! missing, applied once they exist, and the applied rules are valid for a real promtool.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::monitoring::{PodMonitor, PrometheusRule};
use tailwarden_tests::*;

const T: Duration = Duration::from_secs(60);

async fn condition(api: &Api<RetailPipeline>, status: &str) -> String {
    wait_for(&format!("MonitoringConfigured={status}"), T, || async {
        let p = api.get("shop").await.ok()?;
        let c = p
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "MonitoringConfigured")?;
        (c.status == status).then_some(c.message)
    })
    .await
}

async fn crds_gone(client: &Client) {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for name in [
        "prometheusrules.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
    ] {
        let _ = crds.delete(name, &DeleteParams::default()).await;
        wait_for(&format!("{name} to be gone"), T, || async {
            crds.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn monitoring_objects_follow_the_prometheus_operator_crds() {
    start_operator();
    let client = client().await;
    install_crd(&client).await;
    crds_gone(&client).await;
    let ns = namespace(&client, "monitoring").await;
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &pipeline("shop", cassandra_spec()))
        .await
        .unwrap();
    let why = condition(&api, "False").await;
    assert!(
        why.contains("prometheusrules.monitoring.coreos.com"),
        "{why}"
    );

    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in [
        monitoring_crd("prometheusrules", "PrometheusRule"),
        monitoring_crd("podmonitors", "PodMonitor"),
    ] {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    // Any change to the pipeline reconciles it; the labels are the cheapest.
    let touch = json!({"metadata": {"labels": {"tailwarden.io/test": "monitoring"}}});
    let rules = Api::<PrometheusRule>::namespaced(client.clone(), &ns);
    let rule = wait_for("the PrometheusRule", T, || async {
        // CRD discovery takes a moment; keep nudging the pipeline until the rule appears.
        let _ = api
            .patch("shop", &PatchParams::default(), &Patch::Merge(&touch))
            .await;
        rules.get_opt("shop-slos").await.ok().flatten()
    })
    .await;
    condition(&api, "True").await;
    let monitor = Api::<PodMonitor>::namespaced(client.clone(), &ns)
        .get("shop-dataplane")
        .await
        .unwrap();
    assert_eq!(
        monitor.spec.pod_metrics_endpoints[0].relabelings[0].target_label,
        "pipeline"
    );

    // The rules as applied are a valid Prometheus rules file.
    let file = std::env::temp_dir().join(format!("tailwarden-{ns}-rules.yaml"));
    std::fs::write(
        &file,
        serde_yaml::to_string(&serde_json::json!({"groups": rule.spec.groups})).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS"), "{text}");

    crds_gone(&client).await;
    delete_namespace(&client, &ns).await;
}
