//! The operator reconciling real objects on a real API server, with kube-controller-manager,
//! kube-scheduler and kwok running the workloads.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::*;

const T: Duration = Duration::from_secs(60);

async fn setup(prefix: &str) -> (Client, String, Api<RetailPipeline>) {
    start_operator();
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix).await;
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    (client, ns, api)
}

async fn exists<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.ok().flatten()
}

/// Waits until the pipeline reports `Ready=True` for its current generation.
async fn wait_ready(api: &Api<RetailPipeline>, name: &str) -> RetailPipeline {
    wait_for(
        &format!("{name} to be Ready for its generation"),
        T,
        || async {
            let p = api.get(name).await.ok()?;
            let status = p.status.as_ref()?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "True" && status.observed_generation == p.metadata.generation)
                .then_some(p)
        },
    )
    .await
}

fn assert_locked_down(pod: &PodSpec, what: &str) {
    let c = &pod.containers[0];
    let sc = c
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: security context"));
    assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
    assert_eq!(sc.run_as_non_root, Some(true), "{what}");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
    assert_eq!(
        pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true),
        "{what}"
    );
    assert!(
        c.liveness_probe.is_some() && c.readiness_probe.is_some(),
        "{what}: probes"
    );
    assert!(
        c.resources.as_ref().unwrap().requests.is_some(),
        "{what}: resources"
    );
    // A worker failing at start leaves its last log lines as its termination message.
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError"),
        "{what}"
    );
}

fn assert_owned(meta: &kube::api::ObjectMeta, owner: &RetailPipeline) {
    let refs = meta.owner_references.as_ref().expect("owner references");
    assert_eq!(refs[0].uid, owner.uid().unwrap());
    assert_eq!(refs[0].controller, Some(true));
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["app.kubernetes.io/instance"], owner.name_any());
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "tailwarden-operator"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn embedded_pipeline_gets_all_children_and_becomes_ready() {
    let (client, ns, api) = setup("embedded").await;
    let p = api
        .create(&PostParams::default(), &pipeline("shop", minimal_spec()))
        .await
        .unwrap();

    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    let sts = wait_for("the standalone StatefulSet", T, || {
        exists(&sts_api, "shop-standalone")
    })
    .await;
    assert_owned(&sts.metadata, &p);
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_locked_down(spec.template.spec.as_ref().unwrap(), "standalone");
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let cm = wait_for("the ConfigMap", T, || exists(&cms, "shop-dataplane")).await;
    assert_owned(&cm.metadata, &p);
    let config = tailwarden_contract::config::Config::parse(&cm.data.unwrap()["config.yaml"])
        .expect("the data plane accepts the rendered config");
    assert!(matches!(
        config.storage,
        tailwarden_contract::config::Storage::Embedded { .. }
    ));
    let svc_api = Api::<Service>::namespaced(client.clone(), &ns);
    for name in ["shop-ingest", "shop-serve"] {
        let svc = wait_for(name, T, || exists(&svc_api, name)).await;
        assert_owned(&svc.metadata, &p);
        assert_eq!(
            svc.spec.unwrap().selector.unwrap()["app.kubernetes.io/component"],
            "standalone"
        );
    }
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns);
    let pdb = wait_for("the PDB", T, || exists(&pdbs, "shop-standalone")).await;
    assert_owned(&pdb.metadata, &p);

    let ready = wait_ready(&api, "shop").await;
    let status = ready.status.unwrap();
    assert_eq!(status.topology.as_deref(), Some("standalone"));
    assert!(
        status
            .horizontal_scaling
            .as_deref()
            .unwrap()
            .contains("distributed backend")
    );
    assert_eq!(status.serve.ready_replicas, 1);
    assert_eq!(
        status.last_decision().unwrap().kind,
        tailwarden_crds::DecisionKind::Reconciled
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn spec_changes_roll_through_and_generation_is_tracked() {
    let (client, ns, api) = setup("distributed").await;
    api.create(&PostParams::default(), &pipeline("shop", cassandra_spec()))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let ready = wait_ready(&api, "shop").await;
    let status = ready.status.unwrap();
    assert_eq!(status.topology.as_deref(), Some("distributed"));
    assert_eq!(
        (
            status.ingest.desired_replicas,
            status.serve.desired_replicas
        ),
        (1, 2),
        "the replica minimums"
    );
    let serve = deployments.get("shop-serve").await.unwrap();
    assert_locked_down(
        serve.spec.as_ref().unwrap().template.spec.as_ref().unwrap(),
        "serve",
    );

    // A new version and a higher serve minimum.
    let patch = json!({"spec": {"dataplane": {"version": "1.1.0"}, "serve": {"replicas": {"min": 3, "max": 5}}}});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let serve = wait_for("serve to run 1.1.0 on 3 replicas", T, || async {
        let d = deployments.get("shop-serve").await.ok()?;
        let spec = d.spec.as_ref()?;
        let image = spec.template.spec.as_ref()?.containers[0].image.clone()?;
        (image.ends_with(":1.1.0") && spec.replicas == Some(3)).then_some(d)
    })
    .await;
    assert_eq!(serve.labels()["app.kubernetes.io/version"], "1.1.0");
    let ready = wait_ready(&api, "shop").await;
    let status = ready.status.unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.current_version.as_deref(), Some("1.1.0"));
    assert_eq!(status.serve.ready_replicas, 3);
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn deleted_and_edited_children_are_repaired() {
    let (client, ns, api) = setup("drift").await;
    api.create(&PostParams::default(), &pipeline("shop", cassandra_spec()))
        .await
        .unwrap();
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let original = wait_for("the ConfigMap", T, || exists(&cms, "shop-dataplane")).await;
    cms.delete("shop-dataplane", &DeleteParams::default())
        .await
        .unwrap();
    let recreated = wait_for("the ConfigMap to come back", T, || async {
        let cm = exists(&cms, "shop-dataplane").await?;
        (cm.uid() != original.uid()).then_some(cm)
    })
    .await;
    assert_eq!(recreated.data, original.data);

    // Someone edits the serve Service by hand; the operator takes its fields back.
    let svcs = Api::<Service>::namespaced(client.clone(), &ns);
    wait_for("the serve Service", T, || exists(&svcs, "shop-serve")).await;
    let edit = json!({"spec": {"selector": {"app.kubernetes.io/component": "ingest"}}});
    svcs.patch(
        "shop-serve",
        &PatchParams::default(),
        &Patch::Strategic(&edit),
    )
    .await
    .unwrap();
    wait_for("the serve Service selector to be corrected", T, || async {
        let svc = svcs.get("shop-serve").await.ok()?;
        (svc.spec?.selector?["app.kubernetes.io/component"] == "serve").then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn switching_topology_prunes_the_old_workloads() {
    let (client, ns, api) = setup("switch").await;
    api.create(&PostParams::default(), &pipeline("shop", minimal_spec()))
        .await
        .unwrap();
    let sts_api = Api::<StatefulSet>::namespaced(client.clone(), &ns);
    wait_for("the StatefulSet", T, || exists(&sts_api, "shop-standalone")).await;
    let mut streams = kafka_streams();
    streams["http"] = Value::Null;
    let patch = json!({"spec": {
        "storage": {"embedded": null, "cassandra": {"contactPoints": ["cassandra:9042"], "keyspace": "retail"}},
        "streams": streams,
    }});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    wait_for("the Deployments", T, || async {
        exists(&deployments, "shop-ingest").await?;
        exists(&deployments, "shop-serve").await
    })
    .await;
    wait_for("the StatefulSet to be pruned", T, || async {
        match sts_api.get_opt("shop-standalone").await {
            Ok(None) => Some(()),
            Ok(Some(s)) if s.metadata.deletion_timestamp.is_some() => Some(()),
            _ => None,
        }
    })
    .await;
    let pdbs = Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns);
    wait_for("the standalone PDB to be pruned", T, || async {
        pdbs.get_opt("shop-standalone")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn deleting_the_pipeline_garbage_collects_its_children() {
    let (client, ns, api) = setup("gc").await;
    api.create(&PostParams::default(), &pipeline("shop", cassandra_spec()))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    wait_for("the serve Deployment", T, || {
        exists(&deployments, "shop-serve")
    })
    .await;
    api.delete("shop", &DeleteParams::background())
        .await
        .unwrap();
    // kube-controller-manager's garbage collector follows the owner references.
    wait_for("the children to be garbage-collected", T, || async {
        (matches!(deployments.get_opt("shop-serve").await, Ok(None))
            && matches!(deployments.get_opt("shop-ingest").await, Ok(None))
            && matches!(cms.get_opt("shop-dataplane").await, Ok(None)))
        .then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn a_stale_copy_of_the_pipeline_neither_loses_nor_repeats_decisions() {
    let (client, ns, api) = setup("stale").await;
    // The copy a reconcile could get from a store that lags behind: no status, first generation.
    let stale = api
        .create(&PostParams::default(), &pipeline("shop", minimal_spec()))
        .await
        .unwrap();
    wait_ready(&api, "shop").await;
    let patch = json!({"spec": {"dataplane": {"version": "1.1.0"}}});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let before = wait_ready(&api, "shop").await.status.unwrap().decisions;
    assert!(before.len() >= 2, "one decision per generation: {before:?}");

    let metrics = std::sync::Arc::new(tailwarden_operator::metrics::Metrics::default());
    let ctx = std::sync::Arc::new(tailwarden_operator::reconciler::Context::new(
        client.clone(),
        metrics,
        "stale-copy-test",
    ));
    tailwarden_operator::reconciler::reconcile(std::sync::Arc::new(stale), ctx)
        .await
        .expect("the reconcile starts over on a fresh copy");

    let after = wait_ready(&api, "shop").await.status.unwrap();
    assert_eq!(after.observed_generation, Some(2));
    for decision in &before {
        assert!(
            after.decisions.contains(decision),
            "{decision:?} is still in the history: {:?}",
            after.decisions
        );
    }
    let reconciled: Vec<_> = after
        .decisions
        .iter()
        .filter(|d| d.kind == tailwarden_crds::DecisionKind::Reconciled)
        .map(|d| d.reason.clone())
        .collect();
    let distinct: std::collections::BTreeSet<_> = reconciled.iter().collect();
    assert_eq!(
        distinct.len(),
        reconciled.len(),
        "no generation decided twice: {reconciled:?}"
    );
    delete_namespace(&client, &ns).await;
}
