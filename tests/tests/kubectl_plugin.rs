//! The kubectl plugin (`kubectl-tailwarden`, built next to this test) against the real API server:
//! `status` and `why` print what the status subresource holds (set here as the operator would
//! write it), `freeze`, `override` and `unfreeze` set and clear the six annotations signed with
//! the user the API server sees (the chart's admission policy admits them), `rules` prints what
//! `render-rules` prints, and every failure says what went wrong in words: access denied, an
//! unknown pipeline with the close names, an unreachable cluster, a missing CRD.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::freeze_policy::FreezePolicy;
use tailwarden_tests::*;

const FREEZE: &str = "tailwarden.io/rollout-freeze";
const OVERRIDE: &str = "tailwarden.io/rollout-freeze-override";
/// All six annotations of the manual freeze and the override.
const MARK_KEYS: [&str; 6] = [
    FREEZE,
    "tailwarden.io/rollout-freeze-until",
    "tailwarden.io/rollout-freeze-by",
    OVERRIDE,
    "tailwarden.io/rollout-freeze-override-until",
    "tailwarden.io/rollout-freeze-override-by",
];

/// The plugin with `args`, as the admin of the test cluster (KUBECONFIG) or with `kubeconfig`.
fn plugin(kubeconfig: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(plugin_bin());
    if let Some(path) = kubeconfig {
        cmd.env("KUBECONFIG", path);
    }
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", plugin_bin().display()))
}

/// Stdout of a successful run.
fn ok(args: &[&str]) -> String {
    run(Command::new(plugin_bin()).args(args))
}

/// Stderr of a failed run, which must have a non-zero exit code and print nothing on stdout.
fn fails(kubeconfig: Option<&Path>, args: &[&str]) -> String {
    let out = plugin(kubeconfig, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{args:?} should fail, got {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    stderr
}

async fn create(client: &Client, ns: &str, name: &str) -> Api<RetailPipeline> {
    let api = Api::<RetailPipeline>::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &pipeline(name, minimal_spec()))
        .await
        .unwrap_or_else(|e| panic!("create {ns}/{name}: {e}"));
    api
}

/// Writes `status` through the status subresource, as the operator does.
async fn set_status(api: &Api<RetailPipeline>, name: &str, status: Value) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch the status of {name}: {e}"));
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, at: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": at})
}

/// A distributed pipeline with `remaining` percent of its budget left, as the SLO engine reports
/// it; below 25% the budget freezes rollouts and below 10% non-critical work is paused.
fn evaluated(remaining: f64) -> Value {
    let frozen = remaining < 25.0;
    let degraded = remaining < 10.0;
    let at = "2026-12-02T12:00:00Z";
    json!({
        "topology": "distributed",
        "ingest": {"desiredReplicas": 2, "readyReplicas": 2, "summary": "2/2"},
        "serve": {"desiredReplicas": 4, "readyReplicas": 3, "summary": "3/4"},
        "slis": {"readP95": "84ms", "readP99": "130ms", "freshnessLag": "42s"},
        "budget": {
            "remaining": format!("{remaining:.1}%"),
            "remainingPercent": remaining,
            "worstSlo": "availability",
            "burnRates": [{"window": "5m", "rate": 14.4}, {"window": "30m", "rate": 6.2},
                          {"window": "1h", "rate": 3.1}, {"window": "6h", "rate": 1.2}],
        },
        "rollout": {"budgetFrozen": frozen},
        "conditions": [
            condition("RolloutFrozen", if frozen { "True" } else { "False" },
                      if frozen { "BudgetBelowThreshold" } else { "BudgetHealthy" },
                      &format!("error budget {remaining:.1}% (freeze below 25%)"), at),
            condition("Degraded", if degraded { "True" } else { "False" },
                      if degraded { "BudgetBelowThreshold" } else { "BudgetHealthy" },
                      &format!("error budget {remaining:.1}% (degrade below 10%)"), at),
            condition("MetricsAvailable", "True", "AllRead", "every SLI was read", at),
        ],
    })
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn status_lists_pipelines_by_remaining_budget_as_a_table_json_and_yaml() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "plugin-status").await;
    for name in ["web", "search", "fresh"] {
        create(&client, &ns, name).await;
    }
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let mut web = evaluated(4.2);
    web["rollout"]["freezeOverride"] = json!({"state": "Active", "reason": "CVE fix",
        "by": "alice", "until": "2026-12-02T13:00:00Z"});
    set_status(&api, "web", web).await;
    set_status(&api, "search", evaluated(52.0)).await;

    let table = ok(&["status", "-n", &ns]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let columns = |line: &str| -> Vec<String> {
        line.split("   ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        columns(lines[0]),
        [
            "NAME",
            "BUDGET",
            "WORST SLO",
            "BURN SHORT/LONG",
            "INGEST",
            "SERVE",
            "FROZEN",
            "DEGRADED"
        ],
        "{table}"
    );
    assert_eq!(
        columns(lines[1]),
        [
            "web",
            "[----------] 4.2%",
            "availability",
            "14.4/1.2 (5m/6h)",
            "2/2",
            "3/4",
            "budget,overridden",
            "yes"
        ],
        "lowest budget first:\n{table}"
    );
    assert_eq!(
        columns(lines[2]),
        [
            "search",
            "[#####-----] 52.0%",
            "availability",
            "14.4/1.2 (5m/6h)",
            "2/2",
            "3/4",
            "no",
            "no"
        ],
        "{table}"
    );
    assert_eq!(
        columns(lines[3]),
        ["fresh", "-", "-", "-", "-", "-", "-", "-"],
        "no status yet: dashes, last:\n{table}"
    );
    eprintln!("kubectl tailwarden status -n {ns}:\n{table}");

    let json: Vec<Value> = serde_json::from_str(&ok(&["status", "-n", &ns, "-o", "json"]))
        .expect("status -o json prints a JSON array");
    let names: Vec<&str> = json.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["web", "search", "fresh"]);
    assert_eq!(json[0]["namespace"], ns.as_str());
    assert_eq!(json[0]["budgetRemainingPercent"], 4.2);
    assert_eq!(json[0]["burnRates"].as_array().unwrap().len(), 4);
    assert_eq!(json[0]["serve"], json!({"ready": 3, "desired": 4}));
    assert_eq!(
        json[0]["frozen"],
        json!({"budget": true, "manual": false, "overridden": true})
    );
    assert_eq!(json[0]["degraded"], true);
    assert_eq!(json[2]["budgetRemainingPercent"], Value::Null);
    let yaml: Vec<Value> = serde_yaml::from_str(&ok(&["status", "-n", &ns, "-o", "yaml"]))
        .expect("status -o yaml prints a YAML sequence");
    assert_eq!(yaml, json, "YAML and JSON say the same");

    // -A: every namespace, with a NAMESPACE column.
    let all = ok(&["status", "-A"]);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    let ours: Vec<&str> = all
        .lines()
        .filter(|l| l.starts_with(&format!("{ns} ")))
        .collect();
    assert_eq!(ours.len(), 3, "{all}");

    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn why_prints_the_decisions_oldest_first_and_the_conditions_behind_a_freeze() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "plugin-why").await;
    let api = create(&client, &ns, "web").await;
    let mut status = evaluated(4.2);
    status["decisions"] = json!([
        {"kind": "Reconciled", "reason": "generation 1 applied", "time": "2026-12-02T11:00:00Z"},
        {"kind": "ScaleServe", "reason": "serve: P99 130ms above 80% of the 150ms objective",
         "time": "2026-12-02T11:40:00Z",
         "inputs": {"replicasBefore": 3, "replicasAfter": 4, "readP99": "130ms"}},
        {"kind": "FreezeRollout", "reason": "error budget 4.2% is below 25%",
         "time": "2026-12-02T12:00:00Z",
         "inputs": {"budgetRemainingPercent": 4.2, "worstSlo": "availability",
                    "readP99": "130ms", "freshnessLag": "42s"}},
    ]);
    set_status(&api, "web", status).await;

    let why = ok(&["why", "web", "-n", &ns]);
    eprintln!("kubectl tailwarden why web -n {ns}:\n{why}");
    let at = |needle: &str| {
        why.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in:\n{why}"))
    };
    assert!(why.starts_with(&format!("Decisions on {ns}/web, oldest first:\n")));
    assert!(at("Reconciled") < at("ScaleServe") && at("ScaleServe") < at("FreezeRollout"));
    at("2026-12-02T12:00:00Z  FreezeRollout\n    error budget 4.2% is below 25%\n");
    at("inputs: budget 4.2%, worst SLO availability, read P99 130ms, freshness lag 42s");
    at("inputs: replicas 3 -> 4, read P99 130ms");
    assert!(at("FreezeRollout") < at("\nConditions:\n"));
    at("RolloutFrozen=True (BudgetBelowThreshold) since 2026-12-02T12:00:00Z\n    error budget");
    at("Degraded=True (BudgetBelowThreshold)");
    at("MetricsAvailable=True (AllRead)");

    // A pipeline the operator has not reached yet.
    create(&client, &ns, "fresh").await;
    assert_eq!(
        ok(&["why", "fresh", "-n", &ns]),
        format!("{ns}/fresh has no status yet: the operator has not reconciled it.\n")
    );
    delete_namespace(&client, &ns).await;
}

fn annotations(p: &RetailPipeline) -> BTreeMap<String, String> {
    p.metadata.annotations.clone().unwrap_or_default()
}

/// The user name kubectl says the API server sees.
fn whoami(kubeconfig: &Path) -> String {
    run(Command::new(kubectl()).env("KUBECONFIG", kubeconfig).args([
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]))
}

/// A ServiceAccount of `ns` with a Role of `verbs` on retailpipelines, and a kubeconfig with its
/// token.
async fn service_account(client: &Client, ns: &str, name: &str, verbs: &[&str]) -> PathBuf {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": name},
        "rules": [{"apiGroups": ["tailwarden.io"], "resources": ["retailpipelines"],
                   "verbs": verbs}],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let token = service_account_token(client, ns, name).await;
    let path = std::env::temp_dir().join(format!("tailwarden-plugin-{ns}-{name}.kubeconfig"));
    std::fs::write(&path, kubeconfig_with_token(&token, ns)).unwrap();
    path
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn freeze_override_and_unfreeze_sign_and_clear_the_annotations() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "plugin-freeze").await;
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let mut web = pipeline("web", minimal_spec());
    web.metadata.annotations = Some([("team".to_owned(), "storefront".to_owned())].into());
    api.create(&PostParams::default(), &web).await.unwrap();
    set_status(&api, "web", evaluated(4.2)).await;

    // The chart's admission policy: a -by that is not the requesting user is denied. It is loaded
    // once the admin's mis-signed annotation on another pipeline is refused.
    let policy = FreezePolicy::install(&client, &ns).await;
    create(&client, &ns, "probe").await;
    let mut attempt = 0;
    wait_for(
        "the freeze policy to take effect",
        Duration::from_secs(60),
        || {
            attempt += 1;
            let api = api.clone();
            async move {
                let mis_signed = json!({"metadata": {"annotations": {
                    OVERRIDE: format!("probe {attempt}"),
                    "tailwarden.io/rollout-freeze-override-by": "somebody-else"}}});
                api.patch("probe", &PatchParams::default(), &Patch::Merge(&mis_signed))
                    .await
                    .err()
            }
        },
    )
    .await;

    // A ServiceAccount that may read and patch pipelines signs as itself.
    let kubeconfig = service_account(&client, &ns, "oncall", &["get", "list", "patch"]).await;
    let user = whoami(&kubeconfig);
    assert_eq!(user, format!("system:serviceaccount:{ns}:oncall"));
    let as_oncall = |args: &[&str]| -> String {
        let out = plugin(Some(&kubeconfig), args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let dry = as_oncall(&["freeze", "web", "--reason", "peak sale", "--dry-run"]);
    assert!(
        dry.starts_with(&format!("Freezing rollouts of {ns}/web until ")),
        "{dry}"
    );
    assert!(
        dry.contains(&format!(
            " as {user}: peak sale. Budget freeze stays in force.\n"
        )),
        "{dry}"
    );
    assert!(dry.ends_with("Dry run: nothing changed.\n"), "{dry}");
    let before = annotations(&api.get("web").await.unwrap());
    assert!(
        MARK_KEYS.iter().all(|k| !before.contains_key(*k)),
        "{before:?}"
    );

    let started = jiff::Timestamp::now();
    let frozen = as_oncall(&["freeze", "web", "--reason", "peak sale", "--for", "2h"]);
    eprintln!("kubectl tailwarden freeze web --reason 'peak sale' --for 2h:\n{frozen}");
    let a = annotations(&api.get("web").await.unwrap());
    assert_eq!(a[FREEZE], "peak sale");
    assert_eq!(a["tailwarden.io/rollout-freeze-by"], user);
    let until: jiff::Timestamp = a["tailwarden.io/rollout-freeze-until"].parse().unwrap();
    let ahead = until.duration_since(started).as_secs();
    assert!((7190..=7210).contains(&ahead), "2h ahead, got {ahead}s");
    assert!(
        frozen.contains(&format!(
            "until {until} as {user}: peak sale. Budget freeze stays in force."
        )),
        "the plan names the written expiry: {frozen}"
    );

    let overridden = as_oncall(&["override", "web", "--reason", "CVE fix"]);
    let a = annotations(&api.get("web").await.unwrap());
    assert_eq!(a[OVERRIDE], "CVE fix");
    assert_eq!(a["tailwarden.io/rollout-freeze-override-by"], user);
    let until: jiff::Timestamp = a["tailwarden.io/rollout-freeze-override-until"]
        .parse()
        .unwrap();
    let ahead = until.duration_since(started).as_secs();
    assert!(
        (3590..=3610).contains(&ahead),
        "1h by default, got {ahead}s"
    );
    assert!(
        overridden.contains("still holds rollouts: an override does not lift it."),
        "{overridden}"
    );

    // Beyond 7 days is refused before anything is sent, naming the flag.
    let refused = fails(
        Some(&kubeconfig),
        &["override", "web", "--reason", "x", "--for", "8d"],
    );
    assert!(
        refused.contains("--for 8d: is more than 7 days"),
        "{refused}"
    );
    assert_eq!(
        annotations(&api.get("web").await.unwrap())[OVERRIDE],
        "CVE fix"
    );

    let cleared = as_oncall(&["unfreeze", "web"]);
    assert!(
        cleared.starts_with(&format!(
            "Unfreezing {ns}/web: removing the manual freeze (set by {user} until "
        )),
        "{cleared}"
    );
    let a = annotations(&api.get("web").await.unwrap());
    assert!(MARK_KEYS.iter().all(|k| !a.contains_key(*k)), "{a:?}");
    assert_eq!(a["team"], "storefront", "other annotations stay");

    policy.remove().await;
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn access_denied_names_the_verb_the_resource_and_the_namespace() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "plugin-denied").await;
    create(&client, &ns, "web").await;
    let kubeconfig = service_account(&client, &ns, "reader", &["get"]).await;

    let listed = fails(Some(&kubeconfig), &["status"]);
    assert!(
        listed.contains(&format!(
            "error: you may not list retailpipelines in namespace {ns}: "
        )),
        "{listed}"
    );
    let all = fails(Some(&kubeconfig), &["status", "-A"]);
    assert!(
        all.contains("you may not list retailpipelines in all namespaces"),
        "{all}"
    );
    // get is granted: why works; the freeze is denied at the patch.
    assert!(
        plugin(Some(&kubeconfig), &["why", "web"]).status.success(),
        "get is granted"
    );
    let patched = fails(Some(&kubeconfig), &["freeze", "web", "--reason", "x"]);
    assert!(
        patched.contains(&format!(
            "you may not patch retailpipelines in namespace {ns}"
        )),
        "{patched}"
    );
    assert!(
        patched.contains(&format!("kubectl auth can-i patch retailpipelines -n {ns}")),
        "{patched}"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn an_unknown_pipeline_is_named_with_the_close_names() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "plugin-unknown").await;
    for name in ["web", "webshop", "search"] {
        create(&client, &ns, name).await;
    }
    for args in [
        vec!["why", "wbe"],
        vec!["freeze", "wbe", "--reason", "x"],
        vec!["rules", "wbe"],
    ] {
        let args: Vec<&str> = args.into_iter().chain(["-n", &ns]).collect();
        let err = fails(None, &args);
        assert!(
            err.contains(&format!(
                "there is no RetailPipeline \"wbe\" in namespace {ns}; did you mean web? \
                 (kubectl tailwarden status -n {ns} lists them)"
            )),
            "{args:?}: {err}"
        );
    }
    let far = fails(None, &["why", "inventory", "-n", &ns]);
    assert!(
        far.contains(&format!(
            ": kubectl tailwarden status -n {ns} lists them, or pass -n for another namespace"
        )),
        "{far}"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn rules_prints_what_render_rules_prints() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "plugin-rules").await;
    let mut p = shop_web_pipeline();
    p.metadata.namespace = Some(ns.clone());
    Api::<RetailPipeline>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &p)
        .await
        .unwrap();
    let file = std::env::temp_dir().join(format!("tailwarden-plugin-{ns}.yaml"));
    std::fs::write(&file, serde_yaml::to_string(&p).unwrap()).unwrap();
    let file = file.to_str().unwrap();

    let expected = run(Command::new(render_rules_bin()).arg(file));
    assert!(expected.contains("tailwarden-slo-"), "{expected}");
    assert_eq!(ok(&["rules", "web", "-n", &ns]), expected);
    assert_eq!(ok(&["rules", "-f", file]), expected);
    delete_namespace(&client, &ns).await;
}

/// A kubeconfig for `server` with a token that no server checks.
fn kubeconfig_for(server: &str) -> PathBuf {
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "unused"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
        "current-context": "c",
    });
    let path = std::env::temp_dir().join(format!(
        "tailwarden-plugin-{}.kubeconfig",
        server.replace([':', '/'], "_")
    ));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

#[test]
#[ignore = "needs the kubectl-tailwarden binary: run tests/run.sh"]
fn an_unreachable_cluster_is_named_by_its_url() {
    // Nothing listens there: free_port() only hands out ports it could bind and released.
    let server = format!("https://127.0.0.1:{}", free_port());
    let kubeconfig = kubeconfig_for(&server);
    for args in [vec!["status"], vec!["why", "web"], vec!["unfreeze", "web"]] {
        let err = fails(Some(&kubeconfig), &args);
        assert!(
            err.starts_with(&format!("error: cannot reach the cluster at {server}: ")),
            "{args:?}: {err}"
        );
        assert!(err.contains("Connection refused"), "{err}");
    }
}

/// An API server that serves no RetailPipelines answers every request as the real one does for
/// an unknown group: 404 NotFound. (The test cluster cannot drop the CRD other tests use.)
#[tokio::test]
#[ignore = "needs the kubectl-tailwarden binary: run tests/run.sh"]
async fn a_cluster_without_the_crd_is_told_how_to_install_it() {
    use axum::Json;
    use axum::http::StatusCode;
    async fn not_found() -> (StatusCode, Json<Value>) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "the server could not find the requested resource",
            "reason": "NotFound", "details": {}, "code": 404});
        (StatusCode::NOT_FOUND, Json(status))
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(not_found);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let kubeconfig = kubeconfig_for(&server);
    for args in [vec!["status"], vec!["why", "web"]] {
        let kubeconfig = kubeconfig.clone();
        let err = tokio::task::spawn_blocking(move || fails(Some(&kubeconfig), &args))
            .await
            .unwrap();
        assert!(
            err.starts_with(&format!(
                "error: the RetailPipeline CRD is not installed in the cluster at {server}: \
                 kubectl apply --server-side -f crds/retailpipelines.tailwarden.io.yaml"
            )),
            "{err}"
        );
    }
}
