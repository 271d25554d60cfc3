//! The chart's ValidatingAdmissionPolicy makes the freeze annotations accountable: setting or
//! changing a manual freeze or a freeze override is admitted only with a `-by` annotation that
//! names the requesting user. Two users, alice and bob, are impersonated by the cluster's admin.
//!
//! The policy is cluster-wide in the chart; here its binding is narrowed to the test's namespace
//! ([`FreezePolicy`]).

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::freeze_policy::FreezePolicy;
use tailwarden_tests::*;

const T: Duration = Duration::from_secs(60);
const FREEZE: &str = "tailwarden.io/rollout-freeze";
const OVERRIDE: &str = "tailwarden.io/rollout-freeze-override";

/// A client that acts as `user`.
async fn as_user(user: &str) -> Client {
    let mut config = Config::infer()
        .await
        .expect("KUBECONFIG points at the test cluster");
    config.auth_info.impersonate = Some(user.into());
    Client::try_from(config).expect("an impersonating client")
}

/// The annotations of one freeze annotation: reason, expiry in an hour, actor.
fn mark(name: &str, reason: &str, by: &str) -> Value {
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let mut m = serde_json::Map::new();
    m.insert(name.into(), reason.into());
    m.insert(format!("{name}-until"), until.into());
    m.insert(format!("{name}-by"), by.into());
    Value::Object(m)
}

async fn annotate(api: &Api<RetailPipeline>, annotations: Value) -> Result<(), String> {
    let patch = json!({"metadata": {"annotations": annotations}});
    api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Asserts a denial by the policy whose message names the `-by` annotation `user` must set.
fn assert_denied(result: Result<(), String>, mark: &str, user: &str) {
    let err = result.expect_err("the policy denies it");
    assert!(
        err.contains(&format!("needs the annotation {mark}-by: {user}")),
        "{err}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn only_the_requesting_user_can_sign_a_freeze_annotation() {
    let admin = client().await;
    install_crd(&admin).await;
    let ns = namespace(&admin, "freeze-policy").await;
    let policy = FreezePolicy::install(&admin, &ns).await;

    // alice and bob may edit pipelines in the namespace.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "pipeline-editor"},
        "rules": [{"apiGroups": ["tailwarden.io"], "resources": ["retailpipelines"],
                   "verbs": ["get", "create", "patch", "update"]}],
    }))
    .unwrap();
    let role_binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "pipeline-editors"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pipeline-editor"},
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"},
        ],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &role_binding)
        .await
        .unwrap();
    let alice = Api::<RetailPipeline>::namespaced(as_user("alice").await, &ns);
    let bob = Api::<RetailPipeline>::namespaced(as_user("bob").await, &ns);
    Api::<RetailPipeline>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &pipeline("shop", minimal_spec()))
        .await
        .expect("the admin creates the pipeline");

    // The policy takes effect once the API server has loaded it: alice signing as bob is denied.
    let mut attempt = 0;
    let denied = wait_for("the policy to take effect", T, || {
        attempt += 1;
        let alice = alice.clone();
        async move {
            annotate(&alice, mark(OVERRIDE, &format!("try {attempt}"), "bob"))
                .await
                .err()
        }
    })
    .await;
    assert_denied(Err(denied), OVERRIDE, "alice");

    // Signed by the requesting user: admitted.
    annotate(&alice, mark(OVERRIDE, "hotfix for the 5xx burst", "alice"))
        .await
        .expect("alice signs her own override");
    // bob extends alice's override under her name: denied.
    let extend = json!({ (format!("{OVERRIDE}-until")): "2026-12-31T00:00:00Z" });
    assert_denied(annotate(&bob, extend).await, OVERRIDE, "bob");
    // bob freezes by hand under his own name: admitted; alice rewording it as bob: denied.
    annotate(&bob, mark(FREEZE, "peak sale", "bob"))
        .await
        .expect("bob signs his own freeze");
    assert_denied(
        annotate(&alice, json!({FREEZE: "peak sale, extended"})).await,
        FREEZE,
        "alice",
    );
    // Ending a freeze annotation needs no signature.
    annotate(
        &bob,
        json!({
            OVERRIDE: null,
            (format!("{OVERRIDE}-until")): null,
            (format!("{OVERRIDE}-by")): null,
        }),
    )
    .await
    .expect("removing an override is admitted");
    // Creating a pipeline that carries an unsigned override is denied too.
    let mut unsigned = pipeline("other", minimal_spec());
    unsigned.metadata.annotations = Some([(OVERRIDE.to_owned(), "x".to_owned())].into());
    let created = alice
        .create(&PostParams::default(), &unsigned)
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    assert_denied(created, OVERRIDE, "alice");
    // What was admitted is what the pipeline carries.
    let annotations = alice
        .get("shop")
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap();
    assert_eq!(annotations[&format!("{FREEZE}-by")], "bob");
    assert_eq!(annotations[FREEZE], "peak sale");
    assert!(!annotations.contains_key(OVERRIDE));

    policy.remove().await;
    delete_namespace(&admin, &ns).await;
}
