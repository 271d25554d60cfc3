//! Two operator processes share one Lease: only the holder acts, and when it dies the other takes
//! over within 15 seconds.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::*;

fn spawn(identity: &str, ns: &str, logs: &std::path::Path) -> OperatorProcess {
    OperatorProcess::spawn(
        identity,
        ns,
        &[
            "--leader-elect",
            "true",
            "--lease-namespace",
            ns,
            "--lease-name",
            "tailwarden-test",
        ],
        logs,
    )
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("tailwarden-test")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn only_the_lease_holder_acts_and_a_standby_takes_over() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "leader").await;
    let logs = std::env::temp_dir().join(format!("tailwarden-leader-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();
    let mut operators = vec![spawn("op-a", &ns, &logs), spawn("op-b", &ns, &logs)];
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let leader = wait_for("a leader", Duration::from_secs(30), || holder(&leases)).await;
    let leader_at = operators
        .iter()
        .position(|o| o.identity == leader)
        .expect("the leader is one of ours");
    let standby = operators[1 - leader_at].identity.clone();

    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &pipeline("shop", cassandra_spec()))
        .await
        .unwrap();
    let generation_reconciled = |generation: i64| {
        let api = api.clone();
        async move {
            let p = api.get("shop").await.ok()?;
            (p.status?.observed_generation == Some(generation)).then_some(())
        }
    };
    wait_for("the leader to reconcile", Duration::from_secs(60), || {
        generation_reconciled(1)
    })
    .await;

    // Only the holder wrote: every Event names it, and the standby has not reconciled at all.
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let reporters: std::collections::BTreeSet<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("tailwarden-operator"))
        .filter_map(|e| e.reporting_instance)
        .collect();
    assert_eq!(
        reporters,
        [leader.clone()].into(),
        "events come from the leader only"
    );
    let standby_op = &operators[1 - leader_at];
    assert_eq!(
        standby_op
            .metric("tailwarden_operator_reconciles_total")
            .await,
        Some(0.0)
    );
    assert_eq!(
        standby_op.metric("tailwarden_operator_leader").await,
        Some(0.0)
    );
    assert_eq!(
        operators[leader_at]
            .metric("tailwarden_operator_leader")
            .await,
        Some(1.0)
    );

    // Kill the leader outright: no chance to release the Lease.
    let killed = operators.remove(leader_at);
    drop(killed);
    let start = Instant::now();
    let next = wait_for(
        "the standby to take over",
        Duration::from_secs(15),
        || async { holder(&leases).await.filter(|h| *h == standby) },
    )
    .await;
    let takeover = start.elapsed();
    assert_eq!(next, standby);
    assert!(
        takeover <= Duration::from_secs(15),
        "takeover took {takeover:?}"
    );

    // The new leader acts on changes.
    let patch = json!({"spec": {"dataplane": {"version": "2.0.0"}}});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(
        "the new leader to reconcile generation 2",
        Duration::from_secs(60),
        || generation_reconciled(2),
    )
    .await;
    assert_eq!(
        operators[0].metric("tailwarden_operator_leader").await,
        Some(1.0)
    );
    eprintln!("takeover after SIGKILL of the leader: {takeover:?}");
    delete_namespace(&client, &ns).await;
}
