//! The whole loop on real parts: a scrape target standing in for the workers, a real Prometheus
//! scraping it, the operator's SLO engine reading Prometheus, and the reconciler acting on the
//! real API server. Fast burns freeze a version change until the budget recovers, a P99 rise
//! scales serve up, a growing backlog scales ingest up, and losing Prometheus holds everything.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::scrape_target::{ScrapeTarget, Traffic};
use tailwarden_tests::*;

const T: Duration = Duration::from_secs(90);

struct Setup {
    client: Client,
    ns: String,
    api: Api<RetailPipeline>,
    deployments: Api<Deployment>,
    target: ScrapeTarget,
    prometheus: Prometheus,
}

/// A distributed pipeline whose SLIs come from a fresh Prometheus scraping a fresh target.
async fn setup(prefix: &str, spec_patch: serde_json::Value) -> Setup {
    start_operator();
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix).await;
    let target = ScrapeTarget::start(&ns, "shop").await;
    let prometheus = Prometheus::scraping(target.address).await;
    let mut spec = cassandra_spec();
    spec["prometheus"] = json!({"url": prometheus.url});
    spec["autoscaling"] = json!({"evaluationInterval": "5s"});
    merge(&mut spec, spec_patch);
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &pipeline("shop", spec))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let s = Setup {
        client,
        ns,
        api,
        deployments,
        target,
        prometheus,
    };
    wait_condition(&s.api, "MetricsAvailable", "True", None).await;
    s
}

fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// Waits until condition `type_` has `status` (and, if given, `reason`); returns its message.
async fn wait_condition(
    api: &Api<RetailPipeline>,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> String {
    wait_for(&format!("{type_}={status} {reason:?}"), T, || async {
        let p = api.get("shop").await.ok()?;
        let c = p
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == type_)?;
        (c.status == status && reason.is_none_or(|r| c.reason == r)).then_some(c.message)
    })
    .await
}

/// The note of the first Event with `reason` (every decision is published as one).
async fn event_note(s: &Setup, reason: &str) -> String {
    let events = Api::<Event>::namespaced(s.client.clone(), &s.ns);
    wait_for(&format!("a {reason} Event"), T, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))?
            .note
    })
    .await
}

async fn image(deployments: &Api<Deployment>, name: &str) -> Option<String> {
    deployments
        .get(name)
        .await
        .ok()?
        .spec?
        .template
        .spec?
        .containers[0]
        .image
        .clone()
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> Option<i32> {
    deployments.get(name).await.ok()?.spec?.replicas
}

#[tokio::test]
#[ignore = "needs the local cluster and Prometheus: run tests/run.sh"]
async fn a_fast_burn_freezes_a_version_change_until_the_budget_recovers() {
    // A 99 % target keeps the numbers quick: 20 % errors burn the budget 20x.
    let mut s = setup(
        "freeze",
        json!({"slos": {"availability": {"targetPercent": 99.0}}, "errorBudgetPolicy": {"freezeRolloutsBelowPercent": 1.0, "degradeBelowPercent": 0.5}}),
    )
    .await;
    wait_condition(&s.api, "RolloutFrozen", "False", None).await;

    s.target.set(Traffic {
        errors_per_sec: 50.0,
        ..Traffic::healthy()
    });
    let why = wait_condition(&s.api, "RolloutFrozen", "True", None).await;
    assert!(why.contains("burn") || why.contains("budget"), "{why}");

    // A version change while frozen is held back: the Deployments keep the running template.
    let patch = json!({"spec": {"dataplane": {"version": "2.0.0"}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for("the held-back version to be reported", T, || async {
        let p = s.api.get("shop").await.ok()?;
        let status = p.status?;
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "RolloutFrozen")?;
        (status.observed_generation == Some(2)
            && c.message.contains("held back: version 1.0.0 -> 2.0.0"))
        .then(|| c.message.clone())
    })
    .await;
    assert_eq!(
        image(&s.deployments, "shop-serve").await.as_deref(),
        Some("example.com/tailwarden/dataplane:1.0.0")
    );
    assert_eq!(
        image(&s.deployments, "shop-ingest").await.as_deref(),
        Some("example.com/tailwarden/dataplane:1.0.0")
    );
    let events = Api::<Event>::namespaced(s.client.clone(), &s.ns);
    let reasons: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "FreezeRollout"), "{reasons:?}");

    // Healthy traffic dilutes the burst: the budget recovers and the held version rolls out.
    s.target.set(Traffic {
        ok_per_sec: 5000.0,
        ..Traffic::healthy()
    });
    wait_condition(&s.api, "RolloutFrozen", "False", None).await;
    wait_for("version 2.0.0 to roll out", T, || async {
        (image(&s.deployments, "shop-serve").await? == "example.com/tailwarden/dataplane:2.0.0")
            .then_some(())
    })
    .await;

    // Prometheus goes away: the condition names the missing SLIs, nothing else moves.
    let serve_before = replicas(&s.deployments, "shop-serve").await;
    s.prometheus.stop();
    let missing = wait_condition(&s.api, "MetricsAvailable", "False", Some("MissingData")).await;
    assert!(missing.contains("query failed"), "{missing}");
    let p = s.api.get("shop").await.unwrap();
    let status = p.status.unwrap();
    let frozen = status
        .conditions
        .iter()
        .find(|c| c.type_ == "RolloutFrozen")
        .unwrap();
    assert_eq!(
        (frozen.status.as_str(), frozen.reason.as_str()),
        ("False", "MissingData"),
        "absent data never freezes"
    );
    assert_eq!(
        replicas(&s.deployments, "shop-serve").await,
        serve_before,
        "replicas are held"
    );
    delete_namespace(&s.client, &s.ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster and Prometheus: run tests/run.sh"]
async fn a_p99_rise_scales_serve_and_a_growing_backlog_scales_ingest() {
    let s = setup("scale", json!({"serve": {"replicas": {"min": 2, "max": 10}}, "ingest": {"replicas": {"min": 1, "max": 6}}})).await;
    assert_eq!(replicas(&s.deployments, "shop-serve").await, Some(2));
    assert_eq!(replicas(&s.deployments, "shop-ingest").await, Some(1));

    let start = Instant::now();
    s.target.set(Traffic {
        slow_reads: true,
        ..Traffic::healthy()
    });
    let serve = wait_for("serve to scale up", T, || async {
        replicas(&s.deployments, "shop-serve")
            .await
            .filter(|r| *r > 2)
    })
    .await;
    eprintln!(
        "P99 breach to serve {serve} replicas: {:?}",
        start.elapsed()
    );
    let why = event_note(&s, "ScaleServe").await;
    assert!(why.contains("P99") || why.contains("burn"), "{why}");

    // The backlog grows far faster than the workers drain it: ingest scales before freshness breaks.
    let start = Instant::now();
    s.target.set(Traffic {
        slow_reads: true,
        backlog_growth_per_sec: 50_000.0,
        ..Traffic::healthy()
    });
    let ingest = wait_for("ingest to scale up", T, || async {
        replicas(&s.deployments, "shop-ingest")
            .await
            .filter(|r| *r > 1)
    })
    .await;
    eprintln!(
        "backlog growth to ingest {ingest} replicas: {:?}",
        start.elapsed()
    );
    // The reconcile applies the Deployment first and reports it right after.
    let status = wait_for("the status to report the ingest decision", T, || async {
        let status = s.api.get("shop").await.ok()?.status?;
        (status.ingest.desired_replicas == ingest).then_some(status)
    })
    .await;
    let why = event_note(&s, "ScaleIngest").await;
    assert!(why.contains("ingest"), "{why}");
    let lag = status.slis.freshness_lag.unwrap_or_default();
    assert!(
        lag.trim_end_matches('s').parse::<f64>().unwrap_or(f64::MAX) < 600.0,
        "scaled before freshness broke: lag {lag}"
    );
    delete_namespace(&s.client, &s.ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster and Prometheus: run tests/run.sh"]
async fn a_dry_run_decides_and_reports_without_acting() {
    let s = setup(
        "dryrun",
        json!({"autoscaling": {"dryRun": true}, "slos": {"availability": {"targetPercent": 99.0}}}),
    )
    .await;
    s.target.set(Traffic {
        slow_reads: true,
        errors_per_sec: 50.0,
        ..Traffic::healthy()
    });
    let why = event_note(&s, "ScaleServe").await;
    assert!(why.starts_with("dry run, not acted on"), "{why}");
    let frozen = wait_condition(&s.api, "RolloutFrozen", "True", None).await;
    assert!(frozen.contains("dry run: not enforced"), "{frozen}");
    // Nothing was enforced: replicas stay, and a version change rolls out despite the burn.
    assert_eq!(replicas(&s.deployments, "shop-serve").await, Some(2));
    let patch = json!({"spec": {"dataplane": {"version": "2.0.0"}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for("version 2.0.0 to roll out in a dry run", T, || async {
        (image(&s.deployments, "shop-serve").await? == "example.com/tailwarden/dataplane:2.0.0")
            .then_some(())
    })
    .await;
    assert_eq!(replicas(&s.deployments, "shop-serve").await, Some(2));
    delete_namespace(&s.client, &s.ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster and Prometheus: run tests/run.sh"]
async fn the_freeze_holds_every_rollout_until_an_accountable_override_lets_it_through() {
    let s = setup(
        "override",
        json!({"slos": {"availability": {"targetPercent": 99.0}}}),
    )
    .await;
    s.target.set(Traffic {
        errors_per_sec: 50.0,
        ..Traffic::healthy()
    });
    wait_condition(&s.api, "RolloutFrozen", "True", None).await;
    let template_hash = || async {
        let d = s.deployments.get("shop-serve").await.ok()?;
        d.spec?
            .template
            .metadata?
            .annotations?
            .remove("tailwarden.io/config-hash")
    };
    let hash_before = template_hash()
        .await
        .expect("the serve template has a config hash");
    // A version and a config change while frozen: neither rolls, and the status lists both.
    let change = json!({"spec": {"dataplane": {"version": "1.0.1"}, "ingest": {"batch": {"linger": "40ms"}}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .unwrap();
    let held = wait_for(
        "the status to list what the freeze holds back",
        T,
        || async {
            let status = s.api.get("shop").await.ok()?.status?;
            (status.rollout.held_back.len() == 2).then_some(status.rollout.held_back)
        },
    )
    .await;
    assert_eq!(
        held,
        ["version 1.0.0 -> 1.0.1", "config ingest.batch.linger"]
    );
    assert_eq!(template_hash().await.as_deref(), Some(hash_before.as_str()));
    assert_eq!(
        image(&s.deployments, "shop-serve").await.as_deref(),
        Some("example.com/tailwarden/dataplane:1.0.0")
    );
    // An override without an expiry has no effect, and the status says so.
    let unsigned = json!({"metadata": {"annotations": {
        "tailwarden.io/rollout-freeze-override": "hotfix for the 5xx burst",
        "tailwarden.io/rollout-freeze-override-by": "alice",
    }}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&unsigned))
        .await
        .unwrap();
    wait_for(
        "the status to say why the override has no effect",
        T,
        || async {
            let status = s.api.get("shop").await.ok()?.status?;
            let state = status.rollout.freeze_override?.state;
            (state == tailwarden_crds::MarkState::NoExpiry).then_some(())
        },
    )
    .await;
    // With its expiry it lets both changes through, recorded with who and until when.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let expiry = json!({"metadata": {"annotations": {"tailwarden.io/rollout-freeze-override-until": until}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&expiry))
        .await
        .unwrap();
    wait_for("the fix to roll out through the freeze", T, || async {
        (image(&s.deployments, "shop-serve").await? == "example.com/tailwarden/dataplane:1.0.1")
            .then_some(())
    })
    .await;
    assert_ne!(template_hash().await.as_deref(), Some(hash_before.as_str()));
    let why = event_note(&s, "OverrideFreeze").await;
    assert!(why.contains("set by alice until"), "{why}");
    // The Event and the status are separate writes: wait for the status too.
    let decision = wait_for("the override in the decision history", T, || async {
        let status = s.api.get("shop").await.ok()?.status?;
        status
            .decisions
            .into_iter()
            .rev()
            .find(|d| d.kind == tailwarden_crds::DecisionKind::OverrideFreeze)
    })
    .await;
    assert_eq!(decision.inputs.actor.as_deref(), Some("alice"));
    assert_eq!(decision.inputs.until.as_deref(), Some(until.as_str()));
    delete_namespace(&s.client, &s.ns).await;
}
