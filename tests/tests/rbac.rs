//! The Helm chart's RBAC is exactly enough for the operator: the operator binary, running with a
//! token of the chart's ServiceAccount and nothing else, takes a pipeline through its lifecycle
//! (create, two topology switches, delete) without a denied request, the apiserver's audit log
//! (`tests/cluster/up.sh` writes it) shows that it called every verb the chart grants (but the one
//! in [`NOT_A_REQUEST`]), and that ServiceAccount can do nothing beyond what the operator calls. Also: the chart lints and renders
//! the expected rules, and `helm install` of it passes the `restricted` Pod Security Standard.
//!
//! helm comes from `$TAILWARDEN_CACHE/bin/helm` (built by `tests/helm/build.sh`, which
//! `tests/run.sh` calls).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::Scope;
use kube::{Api, Client, Resource};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::helm::{chart, helm, render};
use tailwarden_tests::*;

const T: Duration = Duration::from_secs(90);
const LEASE: &str = "tailwarden-operator";

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Every rule of every Role and ClusterRole, as (kind/name, rule).
fn all_rules(objects: &[Value]) -> Vec<(String, Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
        .flat_map(|o| {
            let who = format!("{}/{}", o["kind"], o["metadata"]["name"]);
            o["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |r| (who.clone(), r))
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules the operator needs on namespaced resources: (apiGroup, resource, verbs).
const NAMESPACED_RULES: &[(&str, &str, &[&str])] = &[
    // Read afresh by each reconcile (get): the controller's cache can lag behind its own writes.
    (
        "tailwarden.io",
        "retailpipelines",
        &["get", "list", "watch"],
    ),
    ("tailwarden.io", "retailpipelines/status", &["patch"]),
    ("tailwarden.io", "retailpipelines/finalizers", &["update"]),
    ("apps", "deployments", PRUNED_CHILD_VERBS),
    ("apps", "statefulsets", PRUNED_CHILD_VERBS),
    ("policy", "poddisruptionbudgets", PRUNED_CHILD_VERBS),
    ("", "services", KEPT_CHILD_VERBS),
    ("", "configmaps", READ_CHILD_VERBS),
    // Listed while a workload is not available, for the cause the Ready condition names.
    ("", "pods", &["list"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("monitoring.coreos.com", "prometheusrules", APPLIED_VERBS),
    ("monitoring.coreos.com", "podmonitors", APPLIED_VERBS),
];
/// Children that a topology switch deletes, read (get) before.
const PRUNED_CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];
/// Children that both topologies keep: watched and applied, never read by name or deleted.
const KEPT_CHILD_VERBS: &[&str] = &["list", "watch", "create", "patch"];
/// The ConfigMap: kept like the Services, and read by name for the live config a freeze keeps.
const READ_CHILD_VERBS: &[&str] = &["get", "list", "watch", "create", "patch"];
/// Objects that are only server-side applied.
const APPLIED_VERBS: &[&str] = &["create", "patch"];
/// The two Prometheus Operator CRDs, the only ones the operator reads (by name).
const MONITORING_CRDS: [&str; 2] = [
    "prometheusrules.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
];

/// The cluster-wide grants: `get` of the two monitoring CRDs, by name.
fn cluster_grants() -> BTreeSet<(String, String, String, Vec<String>)> {
    // In the chart's order: grants() keeps a rule's resourceNames as listed.
    let rule_names = MONITORING_CRDS.iter().map(|n| n.to_string()).collect();
    BTreeSet::from([(
        "apiextensions.k8s.io".to_owned(),
        "customresourcedefinitions".to_owned(),
        "get".to_owned(),
        rule_names,
    )])
}

/// Flattens rules into (apiGroup, resource, verb, resourceNames) grants.
fn grants(rules: &[&Value]) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in strings(&r["apiGroups"]) {
            for res in strings(&r["resources"]) {
                for v in strings(&r["verbs"]) {
                    out.insert((g.clone(), res.clone(), v, strings(&r["resourceNames"])));
                }
            }
        }
    }
    out
}

fn expected(table: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String, Vec<String>)> {
    table
        .iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string(), vec![]))
        })
        .collect()
}

fn rules_of<'a>(objects: &'a [Value], kind: &str, name: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart renders {kind} {name}"))["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .collect()
}

#[test]
#[ignore = "needs helm from tests/helm/build.sh: run tests/run.sh"]
fn chart_lints_and_grants_exactly_the_operators_verbs() {
    for set in [vec![], vec!["watchNamespace=shop"]] {
        let mut cmd = Command::new(helm());
        cmd.args(["lint", "--strict"]).arg(chart());
        for s in &set {
            cmd.args(["--set", s]);
        }
        let out = run(&mut cmd);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
    // values.schema.json rejects what the operator or the API server would refuse.
    for bad in [
        "evaluationInterval=15",
        "watchNamespace=Not_A_Namespace",
        "replicas=-1",
        "prometheusUrl=prometheus:9090",
    ] {
        assert!(
            tailwarden_tests::helm::refuses(bad),
            "the chart renders with {bad}"
        );
    }

    // All namespaces: one ClusterRole with everything.
    let cluster = render("tw", "tailwarden-system", &[]);
    let mut want = expected(NAMESPACED_RULES);
    want.extend(cluster_grants());
    assert_eq!(
        grants(&rules_of(&cluster, "ClusterRole", "tw-tailwarden")),
        want
    );
    assert!(
        of_kind(&cluster, "RoleBinding").len() == 1,
        "only the Lease RoleBinding"
    );
    // One namespace: the namespaced rules in a Role there, only CRD reads cluster-wide.
    let single = render("tw", "tailwarden-system", &["watchNamespace=shop"]);
    assert_eq!(
        grants(&rules_of(&single, "ClusterRole", "tw-tailwarden-crds")),
        cluster_grants()
    );
    let role = of_kind(&single, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "tw-tailwarden")
        .expect("the watched namespace's Role");
    assert_eq!(role["metadata"]["namespace"], "shop");
    assert_eq!(
        grants(&role["rules"].as_array().unwrap().iter().collect::<Vec<_>>()),
        expected(NAMESPACED_RULES)
    );
    assert!(of_kind(&single, "ClusterRole").len() == 1);

    for objects in [&cluster, &single] {
        // The Lease: get/update of the release's own (the chart creates it), nothing else.
        let lease = rules_of(objects, "Role", "tw-tailwarden-leader-election");
        let mut lease_want = BTreeSet::new();
        for v in ["get", "update"] {
            lease_want.insert((
                "coordination.k8s.io".into(),
                "leases".into(),
                v.into(),
                vec![LEASE.into()],
            ));
        }
        assert_eq!(grants(&lease), lease_want);
        for (who, rule) in all_rules(objects) {
            let text = rule.to_string();
            assert!(!text.contains('*'), "{who} has a wildcard: {text}");
            assert!(!text.contains("secrets"), "{who} grants secrets: {text}");
            assert!(rule.get("nonResourceURLs").is_none(), "{who}: {text}");
        }

        // The Deployment: two replicas, locked down, identity from the downward API, probes.
        let deployment = of_kind(objects, "Deployment")[0];
        assert_eq!(deployment["spec"]["replicas"], 2);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(pod["serviceAccountName"], "tw-tailwarden");
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        let env = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("env {name}"))
        };
        assert_eq!(
            env("POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.name"
        );
        assert_eq!(
            env("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert!(c["resources"]["requests"].is_object());
        let args = strings(&c["args"]);
        assert!(
            args.contains(&"--evaluation-interval=15s".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--metrics-addr=0.0.0.0:8080".to_owned()),
            "{args:?}"
        );
        assert!(
            args.contains(&"--status-addr=0.0.0.0:8081".to_owned()),
            "{args:?}"
        );
        assert_eq!(c["ports"][1]["name"], "status");
        let pdb = of_kind(objects, "PodDisruptionBudget")[0];
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        let services = of_kind(objects, "Service");
        let ports: Vec<&Value> = services
            .iter()
            .map(|s| &s["spec"]["ports"][0]["name"])
            .collect();
        assert_eq!(
            ports,
            ["metrics", "status"],
            "the metrics and status-page Services"
        );
    }
    let watching =
        of_kind(&single, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
            .clone();
    assert!(
        strings(&watching).contains(&"--watch-namespace=shop".to_owned()),
        "{watching}"
    );
    let with_prometheus = render(
        "tw",
        "tailwarden-system",
        &["prometheusUrl=http://prometheus:9090"],
    );
    let args = strings(
        &of_kind(&with_prometheus, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert!(
        args.contains(&"--prometheus-url=http://prometheus:9090".to_owned()),
        "{args:?}"
    );
    assert!(
        !args.iter().any(|a| a.contains("--prometheus-ca-file")),
        "no Prometheus access flags unless asked: {args:?}"
    );
    assert!(
        of_kind(&with_prometheus, "Deployment")[0]["spec"]["template"]["spec"]["volumes"].is_null()
    );

    // Prometheus behind TLS and basic auth: the files come from the user's ConfigMap and Secrets,
    // mounted read-only as whole directories (a subPath mount would never see a rotation).
    let with_auth = render(
        "tw",
        "tailwarden-system",
        &[
            "prometheusUrl=https://prometheus:9090",
            "prometheusAuth.ca.configMap=prom-ca",
            "prometheusAuth.clientCert.secret=prom-client",
            "prometheusAuth.basicAuth.secret=prom-basic",
        ],
    );
    let pod = &of_kind(&with_auth, "Deployment")[0]["spec"]["template"]["spec"];
    let args = strings(&pod["containers"][0]["args"]);
    for flag in [
        "--prometheus-ca-file=/etc/tailwarden/prometheus/ca/ca.crt",
        "--prometheus-cert-file=/etc/tailwarden/prometheus/client/tls.crt",
        "--prometheus-key-file=/etc/tailwarden/prometheus/client/tls.key",
        "--prometheus-basic-auth-username-file=/etc/tailwarden/prometheus/basic/username",
        "--prometheus-basic-auth-password-file=/etc/tailwarden/prometheus/basic/password",
    ] {
        assert!(args.contains(&flag.to_owned()), "{flag} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.contains("bearer")), "{args:?}");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name}: {volumes:?}"))
    };
    assert_eq!(volume("prometheus-ca")["configMap"]["name"], "prom-ca");
    assert_eq!(
        volume("prometheus-client-cert")["secret"]["secretName"],
        "prom-client"
    );
    assert_eq!(
        volume("prometheus-basic-auth")["secret"]["secretName"],
        "prom-basic"
    );
    let mounts = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("volumeMounts");
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    for m in mounts {
        assert_eq!(m["readOnly"], true, "{m}");
        assert!(m.get("subPath").is_none(), "{m}");
    }
    // A bearer token and basic auth exclude each other, in the chart as in the operator.
    let out = Command::new(helm())
        .args(["template", "tw"])
        .arg(chart())
        .args(["--set", "prometheusAuth.bearerToken.secret=a"])
        .args(["--set", "prometheusAuth.basicAuth.secret=b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not both"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An operator process, killed when dropped; its log is printed if the test is failing.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- operator log {} ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

/// Server-side applies one rendered object (dry run only when `dry_run`), strict field validation.
async fn apply(client: &Client, object: &Value, default_ns: &str, dry_run: bool) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let kind = object["kind"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(default_ns),
            &ar,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    let name = object["metadata"]["name"].as_str().unwrap();
    let mut pp = PatchParams::apply("tailwarden-tests")
        .force()
        .validation_strict();
    if dry_run {
        pp = pp.dry_run();
    }
    api.patch(name, &pp, &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
}

/// Whether the ServiceAccount may do `verb` on `resource` (SubjectAccessReview, as the admin).
async fn can(
    client: &Client,
    sa: (&str, &str),
    verb: &str,
    group: &str,
    resource: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (ns, name_of_sa) = sa;
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{ns}:{name_of_sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource,
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .expect("SubjectAccessReview status")
        .allowed
}

async fn ready_for(api: &Api<RetailPipeline>, name: &str, generation: i64) -> Option<()> {
    let p = api.get(name).await.ok()?;
    let status = p.status.as_ref()?;
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True"
        && status.observed_generation == Some(generation)
        && p.metadata.generation == Some(generation))
    .then_some(())
}

async fn exists<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.ok().flatten()
}

async fn gone<K>(api: &Api<K>, name: &str) -> Option<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_opt(name).await {
        Ok(None) => Some(()),
        Ok(Some(o)) if o.meta().deletion_timestamp.is_some() => Some(()),
        _ => None,
    }
}

/// Tests holding the stand-in monitoring CRDs; the last one out deletes them (monitoring.rs expects
/// a cluster without them).
static MONITORING_USERS: std::sync::Mutex<u32> = std::sync::Mutex::new(0);

/// Holds the stand-ins of the Prometheus Operator's CRDs while alive.
struct MonitoringCrds;

/// Creates the stand-in monitoring CRDs (unless they exist) and waits until they are established.
async fn monitoring_crds(admin: &Client) -> MonitoringCrds {
    *MONITORING_USERS.lock().unwrap() += 1;
    let guard = MonitoringCrds;
    let crds = Api::<CustomResourceDefinition>::all(admin.clone());
    for (plural, kind) in [
        ("prometheusrules", "PrometheusRule"),
        ("podmonitors", "PodMonitor"),
    ] {
        match crds
            .create(&PostParams::default(), &monitoring_crd(plural, kind))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("create the {plural} CRD: {e}"),
        }
        let name = format!("{plural}.monitoring.coreos.com");
        wait_for(&format!("{name} to be established"), T, || async {
            let crd = crds.get_opt(&name).await.ok()??;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
    }
    guard
}

impl Drop for MonitoringCrds {
    fn drop(&mut self) {
        // Held until the CRDs are gone, so that no other test re-creates one that is terminating.
        let mut users = MONITORING_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users > 0 {
            return;
        }
        let cleanup = std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let crds = Api::<CustomResourceDefinition>::all(client().await);
                for name in MONITORING_CRDS {
                    let _ = crds.delete(name, &DeleteParams::default()).await;
                }
                for name in MONITORING_CRDS {
                    wait_for(&format!("{name} to be gone"), T, || async {
                        crds.get_opt(name).await.ok()?.is_none().then_some(())
                    })
                    .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Deletes the test's ClusterRole, ClusterRoleBinding and namespaces when dropped, also when the
/// test fails (on a thread of its own, since `Drop` cannot await).
struct Cleanup {
    cluster_scoped: Vec<(String, String)>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let cluster_scoped = std::mem::take(&mut self.cluster_scoped);
        let namespaces = std::mem::take(&mut self.namespaces);
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = client().await;
                let dp = DeleteParams::default();
                for (kind, name) in &cluster_scoped {
                    let _ = match kind.as_str() {
                        "ClusterRole" => Api::<ClusterRole>::all(admin.clone())
                            .delete(name, &dp)
                            .await
                            .map(|_| ()),
                        _ => Api::<ClusterRoleBinding>::all(admin.clone())
                            .delete(name, &dp)
                            .await
                            .map(|_| ()),
                    };
                }
                for ns in &namespaces {
                    delete_namespace(&admin, ns).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Installs the chart's ServiceAccount and RBAC (the rest is validated with a server-side dry
/// run), runs the operator binary with only that ServiceAccount's token, and checks that it
/// reconciles a pipeline through both topologies without a single forbidden request, and that the
/// ServiceAccount is denied what the operator never does.
async fn operator_runs_with_only_the_charts_permissions(prefix: &str, single_namespace: bool) {
    let admin = client().await;
    install_crd(&admin).await;
    let system = namespace(&admin, &format!("{prefix}-sys")).await;
    let watched = namespace(&admin, prefix).await;
    let release = system.clone();
    let sa = format!("{release}-tailwarden");
    let watch_set = format!("watchNamespace={watched}");
    let mut set = vec!["disableSloEngine=true"];
    if single_namespace {
        set.push(&watch_set);
    }
    let objects = render(&release, &system, &set);
    let rbac_kinds = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let cluster_scoped: Vec<(String, String)> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding")
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        cluster_scoped.len(),
        2,
        "one ClusterRole and its binding: {cluster_scoped:?}"
    );
    let _cleanup = Cleanup {
        cluster_scoped,
        namespaces: vec![watched.clone(), system.clone()],
    };
    for object in &objects {
        let kind = object["kind"].as_str().unwrap();
        // RBAC and the Lease really, the rest (the operator's own Deployment...) as a dry run.
        let really = rbac_kinds.contains(&kind) || kind == "Lease";
        apply(&admin, object, &system, !really).await;
    }

    // A short-lived token of the chart's ServiceAccount (TokenRequest), in a kubeconfig of its own.
    let token = service_account_token(&admin, &system, &sa).await;
    let dir = std::env::temp_dir().join(format!("tailwarden-rbac-{watched}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, kubeconfig_with_token(&token, &system)).unwrap();

    let log = dir.join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let identity = format!("{prefix}-operator");
    let child = Command::new(operator_bin())
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "info,kube=info")
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_NAME")
        .args(["--lease-namespace", &system, "--watch-namespace", &watched])
        .args(["--identity", &identity, "--disable-slo-engine"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--status-addr", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", operator_bin().display()));
    let operator = Operator { child, log };

    // Leader election works with the Lease Role.
    let leases = Api::<Lease>::namespaced(admin.clone(), &system);
    let taken = wait_for("the operator to take the Lease", T, || async {
        let spec = leases.get_opt(LEASE).await.ok()??.spec?;
        (spec.holder_identity? == identity).then_some(spec.renew_time)
    })
    .await;

    // The Prometheus Operator's CRDs exist, so the operator applies a PrometheusRule and PodMonitor.
    let _monitoring = monitoring_crds(&admin).await;

    // The distributed topology: Deployments, Services, ConfigMap, PDBs; Ready; Events.
    let api = Api::<RetailPipeline>::namespaced(admin.clone(), &watched);
    api.create(&PostParams::default(), &pipeline("shop", cassandra_spec()))
        .await
        .unwrap();
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &watched);
    let services = Api::<Service>::namespaced(admin.clone(), &watched);
    let config_maps = Api::<ConfigMap>::namespaced(admin.clone(), &watched);
    let pdbs = Api::<PodDisruptionBudget>::namespaced(admin.clone(), &watched);
    let stateful_sets = Api::<StatefulSet>::namespaced(admin.clone(), &watched);
    wait_for("the distributed children", T, || async {
        exists(&deployments, "shop-ingest").await?;
        exists(&deployments, "shop-serve").await?;
        exists(&services, "shop-ingest").await?;
        exists(&services, "shop-serve").await?;
        exists(&config_maps, "shop-dataplane").await?;
        exists(&pdbs, "shop-ingest").await?;
        exists(&pdbs, "shop-serve").await
    })
    .await;
    wait_for("generation 1 to be Ready", T, || ready_for(&api, "shop", 1)).await;
    let events = Api::<Event>::namespaced(admin.clone(), &watched);
    wait_for("the operator's Events", T, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reporting_instance.as_deref() == Some(identity.as_str())
                    && e.reason.as_deref() == Some("Reconciled")
            })
            .then_some(())
    })
    .await;

    // Switching to the embedded topology creates a StatefulSet and deletes the Deployments.
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"storage": null}})),
    )
    .await
    .unwrap();
    wait_for("the StatefulSet", T, || {
        exists(&stateful_sets, "shop-standalone")
    })
    .await;
    wait_for("the Deployments to be pruned", T, || async {
        gone(&deployments, "shop-ingest").await?;
        gone(&deployments, "shop-serve").await
    })
    .await;
    wait_for("generation 2 to be Ready", T, || ready_for(&api, "shop", 2)).await;

    // Back to the distributed topology: the StatefulSet and its PDB are pruned. (Without storage
    // the CRD defaulted `embedded`, which must go for `cassandra` to be the only backend.)
    let mut storage = cassandra_spec()["storage"].clone();
    storage["embedded"] = Value::Null;
    let mut streams = cassandra_spec()["streams"].clone();
    streams["http"] = Value::Null;
    api.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"storage": storage, "streams": streams}})),
    )
    .await
    .unwrap();
    wait_for("the Deployments again", T, || async {
        exists(&deployments, "shop-ingest").await?;
        exists(&deployments, "shop-serve").await
    })
    .await;
    wait_for("the StatefulSet to be pruned", T, || {
        gone(&stateful_sets, "shop-standalone")
    })
    .await;
    wait_for("generation 3 to be Ready", T, || ready_for(&api, "shop", 3)).await;
    let rules = Api::<DynamicObject>::namespaced_with(
        admin.clone(),
        &watched,
        &kube::api::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "PrometheusRule"),
            "prometheusrules",
        ),
    );
    wait_for("the PrometheusRule", T, || exists(&rules, "shop-slos")).await;

    // Deleting the pipeline: garbage collection removes the children, the operator lets go.
    api.delete("shop", &DeleteParams::default()).await.unwrap();
    wait_for("the children to be collected", T, || async {
        gone(&deployments, "shop-ingest").await?;
        gone(&config_maps, "shop-dataplane").await?;
        gone(&api, "shop").await
    })
    .await;
    // A renewal (the Lease update) happens every few seconds; a fast lifecycle can end before one.
    wait_for("the operator to renew the Lease", T, || async {
        let renewed = leases.get_opt(LEASE).await.ok()??.spec?.renew_time;
        (renewed != taken).then_some(())
    })
    .await;

    let text = operator.log();
    assert!(
        !text.to_lowercase().contains("forbidden"),
        "the operator was denied something:\n{text}"
    );
    assert!(
        text.contains("acquired leadership"),
        "the operator log:\n{text}"
    );
    drop(operator);
    let _ = std::fs::remove_dir_all(&dir);

    // The apiserver's audit log of the run: every granted verb was called, nothing was denied.
    let user = format!("system:serviceaccount:{system}:{sa}");
    let calls = audited(&user);
    assert!(
        calls.denied.is_empty(),
        "{user} was denied: {:#?}",
        calls.denied
    );
    let mut unused = vec![];
    for (group, resource, verb, _names) in grants(
        &all_rules(&objects)
            .iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>(),
    ) {
        let grant = (group, resource, verb);
        let allowed_unused = NOT_A_REQUEST.iter().any(|(g, r, v, _why)| {
            (*g, *r, *v) == (grant.0.as_str(), grant.1.as_str(), grant.2.as_str())
        });
        if !calls.used.contains(&grant) && !allowed_unused {
            unused.push(format!("{} {}/{}", grant.2, grant.0, grant.1));
        }
    }
    let called: Vec<_> = calls
        .used
        .iter()
        .map(|(g, r, v)| format!("{v} {g}/{r}"))
        .collect();
    assert!(
        unused.is_empty(),
        "granted to {user} but never called in the whole lifecycle: {unused:?}\ncalled: {called:?}"
    );

    // Least privilege: what the operator never does is denied.
    let who = (system.as_str(), sa.as_str());
    let ns = Some(watched.as_str());
    for (verb, group, resource, namespace, name) in [
        ("get", "", "secrets", ns, None),
        ("list", "", "secrets", ns, None),
        ("get", "", "secrets", Some(system.as_str()), None),
        ("list", "", "secrets", None, None),
        ("delete", "tailwarden.io", "retailpipelines", ns, None),
        ("create", "tailwarden.io", "retailpipelines", ns, None),
        (
            "update",
            "tailwarden.io",
            "retailpipelines/status",
            ns,
            None,
        ),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            None,
        ),
        (
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            ns,
            None,
        ),
        ("create", "", "pods", ns, None),
        ("get", "", "pods", ns, None),
        ("watch", "", "pods", ns, None),
        ("delete", "", "pods", ns, None),
        ("get", "", "pods/log", ns, None),
        (
            "create",
            "coordination.k8s.io",
            "leases",
            Some(system.as_str()),
            None,
        ),
        (
            "create",
            "",
            "serviceaccounts/token",
            Some(system.as_str()),
            None,
        ),
        ("update", "apps", "deployments", ns, None),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some(system.as_str()),
            Some("other"),
        ),
        ("get", "coordination.k8s.io", "leases", ns, Some(LEASE)),
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
        ),
        (
            "delete",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
        ),
        // Granted before the audit log showed the operator never calls them.
        ("patch", "tailwarden.io", "retailpipelines", ns, None),
        ("get", "tailwarden.io", "retailpipelines/status", ns, None),
        ("delete", "", "services", ns, None),
        ("delete", "", "configmaps", ns, None),
        ("get", "monitoring.coreos.com", "prometheusrules", ns, None),
        ("list", "monitoring.coreos.com", "podmonitors", ns, None),
        ("delete", "monitoring.coreos.com", "podmonitors", ns, None),
        (
            "list",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
        ),
        (
            "get",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            Some("retailpipelines.tailwarden.io"),
        ),
    ] {
        assert!(
            !can(&admin, who, verb, group, resource, namespace, name).await,
            "{sa} may {verb} {group}/{resource} in {namespace:?} ({name:?})"
        );
    }
    // ... and what it does is allowed, where the chart says it is.
    for (verb, group, resource, namespace, name) in [
        ("get", "tailwarden.io", "retailpipelines", ns, None),
        ("patch", "tailwarden.io", "retailpipelines/status", ns, None),
        ("create", "apps", "deployments", ns, None),
        ("create", "events.k8s.io", "events", ns, None),
        ("list", "", "pods", ns, None),
        (
            "create",
            "monitoring.coreos.com",
            "prometheusrules",
            ns,
            None,
        ),
        ("patch", "monitoring.coreos.com", "podmonitors", ns, None),
        ("delete", "apps", "statefulsets", ns, None),
        (
            "get",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            Some(MONITORING_CRDS[0]),
        ),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some(system.as_str()),
            Some(LEASE),
        ),
    ] {
        assert!(
            can(&admin, who, verb, group, resource, namespace, name).await,
            "{sa} may not {verb} {group}/{resource} in {namespace:?} ({name:?})"
        );
    }
    // With one watched namespace, nothing namespaced is granted anywhere else.
    assert_eq!(
        can(
            &admin,
            who,
            "create",
            "apps",
            "deployments",
            Some("default"),
            None
        )
        .await,
        !single_namespace
    );
    assert_eq!(
        can(
            &admin,
            who,
            "list",
            "tailwarden.io",
            "retailpipelines",
            None,
            None
        )
        .await,
        !single_namespace
    );
}

/// Grants that no request of the operator's own can show in an audit log, and why each is needed.
const NOT_A_REQUEST: &[(&str, &str, &str, &str)] = &[(
    "tailwarden.io",
    "retailpipelines/finalizers",
    "update",
    "authorized inside the apiserver by the OwnerReferencesPermissionEnforcement admission plugin \
     when the operator applies a child whose owner reference has blockOwnerDeletion; the test \
     cluster does not enable that plugin (checked by hand, see the chart README)",
)];

/// What the apiserver's audit log says one user called.
struct Calls {
    /// (apiGroup, resource[/subresource], verb) of every request. A server-side apply that created
    /// its object (201) also counts as `create`: the apiserver authorizes it as both.
    used: BTreeSet<(String, String, String)>,
    /// The requests that were denied.
    denied: Vec<String>,
}

/// Reads the audit log that `tests/cluster/up.sh` has the apiserver write (`TAILWARDEN_AUDIT_LOG`).
fn audited(user: &str) -> Calls {
    let path = std::env::var_os("TAILWARDEN_AUDIT_LOG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("TAILWARDEN_STATE_DIR")
                .map(|d| PathBuf::from(d).join("logs/audit.log"))
        })
        .expect("TAILWARDEN_AUDIT_LOG is set: source the env file of tests/cluster/up.sh");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "the audit log {}: {e} (a cluster started by an older up.sh has none: restart it)",
            path.display()
        )
    });
    let mut calls = Calls {
        used: BTreeSet::new(),
        denied: vec![],
    };
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["user"]["username"] != user {
            continue;
        }
        let verb = event["verb"].as_str().unwrap_or_default().to_owned();
        let code = event["responseStatus"]["code"].as_i64();
        let decision = event["annotations"]["authorization.k8s.io/decision"].as_str();
        let what = match event.get("objectRef") {
            Some(r) => {
                let group = r["apiGroup"].as_str().unwrap_or_default().to_owned();
                let mut resource = r["resource"].as_str().unwrap_or_default().to_owned();
                if let Some(sub) = r["subresource"].as_str() {
                    resource = format!("{resource}/{sub}");
                }
                if verb == "patch" && code == Some(201) {
                    calls
                        .used
                        .insert((group.clone(), resource.clone(), "create".to_owned()));
                }
                calls
                    .used
                    .insert((group.clone(), resource.clone(), verb.clone()));
                format!(
                    "{verb} {group}/{resource} {}/{}",
                    r["namespace"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                )
            }
            None => format!(
                "{verb} {}",
                event["requestURI"].as_str().unwrap_or_default()
            ),
        };
        if decision == Some("forbid") || code == Some(403) {
            calls.denied.push(format!("{what}: {code:?}"));
        }
    }
    assert!(
        !calls.used.is_empty(),
        "no request of {user} in {}: does the apiserver run with tests/cluster/up.sh's audit policy?",
        path.display()
    );
    calls
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn operator_works_with_the_charts_cluster_role_and_nothing_more() {
    operator_runs_with_only_the_charts_permissions("rbac-cluster", false).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn operator_works_with_the_charts_namespaced_role_and_nothing_more() {
    operator_runs_with_only_the_charts_permissions("rbac-ns", true).await;
}

/// `helm install` of the whole chart into a namespace that enforces the `restricted` Pod Security
/// Standard: the API server admits the operator's pods (kwok runs them), two replicas on two
/// nodes, and `helm uninstall` removes the cluster-wide RBAC again.
#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn helm_installs_the_chart_under_the_restricted_pod_security_standard() {
    let admin = client().await;
    install_crd(&admin).await;
    let ns = namespace(&admin, "helm").await;
    let fullname = format!("{ns}-tailwarden");
    let _cleanup = Cleanup {
        cluster_scoped: vec![
            ("ClusterRole".into(), fullname.clone()),
            ("ClusterRoleBinding".into(), fullname.clone()),
        ],
        namespaces: vec![ns.clone()],
    };
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone());
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}),
            ),
        )
        .await
        .unwrap();
    // The admission plugin is on: a pod without a locked-down security context is rejected.
    let bare: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"name": "c", "image": "example.com/bare"}]},
    }))
    .unwrap();
    let rejected = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), &ns)
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &bare,
        )
        .await
        .expect_err("the restricted standard rejects a bare pod");
    assert!(rejected.to_string().contains("restricted"), "{rejected}");

    let home = std::env::temp_dir().join(format!("tailwarden-helm-{ns}"));
    let helm_cmd = |args: &[&str]| {
        let mut cmd = Command::new(helm());
        cmd.args(args)
            .args(["--namespace", &ns])
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    };
    let chart = chart();
    // The freeze-annotation policy is cluster-wide and would judge the annotations that tests
    // running beside this one set; freeze_policy.rs tests it with a binding to its own namespace.
    run(&mut helm_cmd(&[
        "install",
        &ns,
        chart.to_str().unwrap(),
        "--set",
        "freezeAnnotationsPolicy.enabled=false",
        "--wait",
        "--timeout",
        "90s",
    ]));
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns);
    let deployment = wait_for("two available operator replicas", T, || async {
        let d = exists(&deployments, &fullname).await?;
        (d.status.as_ref()?.available_replicas == Some(2)).then_some(d)
    })
    .await;
    let selector = deployment
        .spec
        .unwrap()
        .selector
        .match_labels
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(admin.clone(), &ns)
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
        .unwrap();
    let nodes: BTreeSet<_> = pods
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    assert_eq!(nodes.len(), 2, "the replicas spread over both nodes");
    let pdbs = Api::<PodDisruptionBudget>::namespaced(admin.clone(), &ns);
    wait_for("the PDB to allow one disruption", T, || async {
        let pdb = exists(&pdbs, &fullname).await?;
        (pdb.status?.disruptions_allowed == 1).then_some(())
    })
    .await;
    Api::<Service>::namespaced(admin.clone(), &ns)
        .get(&format!("{fullname}-metrics"))
        .await
        .unwrap();

    run(&mut helm_cmd(&[
        "uninstall",
        &ns,
        "--wait",
        "--timeout",
        "60s",
    ]));
    assert!(
        Api::<ClusterRole>::all(admin.clone())
            .get_opt(&fullname)
            .await
            .unwrap()
            .is_none(),
        "helm uninstall removes the ClusterRole"
    );
    let _ = std::fs::remove_dir_all(&home);
}
