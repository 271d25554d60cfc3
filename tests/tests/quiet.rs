//! An unchanged pipeline is quiet: the operator's own status writes never trigger the next
//! reconcile, and a topology that cannot scale records no scaling decision.
//!
//! Before this held, one idle embedded pipeline was reconciled ~12 times a second, each time with a
//! false "ScaleServe 1 -> 2" decision and an Event.

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::*;

/// How long the pipelines are watched once settled.
const WINDOW: Duration = Duration::from_secs(60);
/// Reconciles allowed in [`WINDOW`] for both pipelines: a verdict refresh or a late child status
/// each, with room to spare; the hot loop made hundreds.
const MOST_RECONCILES: f64 = 6.0;

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn idle_pipelines_of_both_topologies_are_quiet() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "quiet").await;
    let logs = std::env::temp_dir().join(format!("tailwarden-quiet-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();
    // The SLO engine runs against a Prometheus that does not answer: every verdict is missing
    // data, which holds replicas; the standalone pipeline asks for more serve replicas than its
    // one worker, which is what used to be "decided" on every pass.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let operator = OperatorProcess::spawn(
        "quiet",
        &ns,
        &[
            "--leader-elect",
            "false",
            "--prometheus-url",
            &closed,
            "--evaluation-interval",
            "5s",
        ],
        &logs,
    );
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let mut embedded = minimal_spec();
    embedded["serve"] = serde_json::json!({"replicas": {"min": 2, "max": 4}});
    for (name, spec) in [("embedded", embedded), ("distributed", cassandra_spec())] {
        api.create(&PostParams::default(), &pipeline(name, spec))
            .await
            .unwrap();
    }
    // Settled: Ready, and evaluated by the engine at least once.
    for name in ["embedded", "distributed"] {
        wait_for(
            &format!("{name} to be Ready and evaluated"),
            Duration::from_secs(90),
            || async {
                let status = api.get(name).await.ok()?.status?;
                let is = |type_: &str, want: &str| {
                    status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == type_ && c.status == want)
                };
                (is("Ready", "True") && is("MetricsAvailable", "False")).then_some(())
            },
        )
        .await;
    }
    let reconciles = "tailwarden_operator_reconciles_total";
    let before = operator.metric(reconciles).await.expect("metrics answer");
    let start = Instant::now();
    while start.elapsed() < WINDOW {
        // Observe the whole window: a hot loop shows within seconds, so fail early.
        let now = operator.metric(reconciles).await.expect("metrics answer");
        assert!(
            now - before <= MOST_RECONCILES,
            "{} reconciles in {:?} of an idle window",
            now - before,
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let after = operator.metric(reconciles).await.expect("metrics answer");
    eprintln!(
        "reconciles of two idle pipelines in {WINDOW:?}: {}",
        after - before
    );
    assert!(after - before <= MOST_RECONCILES);
    for kind in ["ScaleServe", "ScaleIngest"] {
        assert_eq!(
            operator
                .metric(&format!(
                    "tailwarden_operator_decisions_total{{kind=\"{kind}\"}}"
                ))
                .await,
            Some(0.0),
            "no {kind} decision for idle pipelines"
        );
    }
    let embedded = api.get("embedded").await.unwrap().status.unwrap();
    assert!(
        embedded
            .decisions
            .iter()
            .all(|d| d.kind == tailwarden_crds::DecisionKind::Reconciled),
        "{:?}",
        embedded.decisions
    );
    delete_namespace(&client, &ns).await;
}
