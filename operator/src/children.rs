//! The desired child objects of a pipeline: a pure function of the spec and the replica decision.
//!
//! Nothing here talks to the API server, so every rule about labels, probes, security context and
//! topology is unit-tested without a cluster. The reconciler applies the result with server-side
//! apply and prunes the children of the topology that is not wanted.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use tailwarden_contract::config::{Config, INGEST_PORT, METRICS_PORT, SERVE_PORT};
use tailwarden_crds::{RetailPipeline, RetailPipelineSpec};

use crate::dataplane_config::{
    CASSANDRA_CREDENTIALS_DIR, DATA_DIR, KAFKA_CREDENTIALS_DIR, TOKEN_FILE, token_dir, token_refs,
};
use crate::topology::Topology;

/// The user the data-plane image runs as: any non-root UID works; 65532 is the distroless `nonroot`.
const RUN_AS: i64 = 65532;
/// Where the ConfigMap is mounted.
const CONFIG_DIR: &str = "/etc/tailwarden/config";
/// The label carrying the data-plane version a child runs.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
/// Annotation carrying a hash of the config, so a config change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "tailwarden.io/config-hash";

/// A workload role: the `app.kubernetes.io/component` label and the data plane's `--role`.
pub use tailwarden_contract::config::Role;

/// Replica counts decided for the scalable roles (ignored by the standalone topology).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    /// Ingest Deployment replicas.
    pub ingest: i32,
    /// Serve Deployment replicas.
    pub serve: i32,
}

/// The workloads of one topology.
#[derive(Debug, Clone, PartialEq)]
pub enum Workloads {
    /// One StatefulSet with one replica and a volume.
    Standalone(Box<StatefulSet>),
    /// Independently scaled ingest and serve Deployments.
    Distributed {
        /// Ingest Deployment.
        ingest: Box<Deployment>,
        /// Serve Deployment.
        serve: Box<Deployment>,
    },
}

/// Every child object a pipeline should have.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The data-plane config file.
    pub config_map: ConfigMap,
    /// The write API.
    pub ingest_service: Service,
    /// The read API.
    pub serve_service: Service,
    /// The workloads.
    pub workloads: Workloads,
    /// One per workload.
    pub disruption_budgets: Vec<PodDisruptionBudget>,
}

impl Children {
    /// The pod template of each workload, by role.
    pub fn templates_mut(&mut self) -> Vec<(Role, &mut PodTemplateSpec)> {
        match &mut self.workloads {
            Workloads::Standalone(sts) => sts
                .spec
                .as_mut()
                .map(|s| (Role::Standalone, &mut s.template))
                .into_iter()
                .collect(),
            Workloads::Distributed { ingest, serve } => {
                [(Role::Ingest, ingest), (Role::Serve, serve)]
                    .into_iter()
                    .filter_map(|(role, d)| d.spec.as_mut().map(|s| (role, &mut s.template)))
                    .collect()
            }
        }
    }

    /// The data-plane config file's text.
    pub fn config_yaml_mut(&mut self) -> Option<&mut String> {
        self.config_map.data.as_mut()?.get_mut(CONFIG_FILE)
    }
}

/// The key of the data-plane config in the ConfigMap.
pub const CONFIG_FILE: &str = "config.yaml";

/// Names of a pipeline's children, one place for every `<pipeline>-<suffix>` rule.
pub mod names {
    /// The ConfigMap.
    pub fn config_map(pipeline: &str) -> String {
        format!("{pipeline}-dataplane")
    }
    /// The Service, Deployment or StatefulSet, and PodDisruptionBudget of a role.
    pub fn workload(pipeline: &str, role: super::Role) -> String {
        format!("{pipeline}-{}", role.as_str())
    }
}

/// The labels every child carries (`app.kubernetes.io/*` conventions). `version` is the data-plane
/// version the child runs.
pub fn labels(
    pipeline: &RetailPipeline,
    version: &str,
    role: Option<Role>,
) -> BTreeMap<String, String> {
    let mut labels = selector(pipeline, role);
    labels.insert("app.kubernetes.io/part-of".into(), "tailwarden".into());
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "tailwarden-operator".into(),
    );
    labels.insert(VERSION_LABEL.into(), version.into());
    labels
}

/// The immutable subset of labels that selects a role's pods.
pub fn selector(pipeline: &RetailPipeline, role: Option<Role>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "tailwarden-dataplane".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), pipeline.name_any()),
    ]);
    if let Some(role) = role {
        labels.insert("app.kubernetes.io/component".into(), role.as_str().into());
    }
    labels
}

/// Everything decided about a pipeline's children besides its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The data-plane config file.
    pub config: Config,
    /// Replica counts of the scalable roles.
    pub replicas: Replicas,
    /// The data-plane version to run (the spec's, or the running one while rollouts are frozen).
    pub version: String,
    /// Pause the Deployments' rollout.
    pub paused: bool,
}

/// Builds every child of `pipeline` from its spec and the plan.
pub fn desired(pipeline: &RetailPipeline, plan: &Plan) -> Children {
    let config_yaml = plan.config.to_yaml();
    // The degradation switch is read live by the workers, so flipping it must not roll the pods
    // (nor be held back by a rollout freeze): it is left out of the hash.
    let hashed = Config {
        degradation: Default::default(),
        ..plan.config.clone()
    };
    let config_hash = format!("{:016x}", fnv1a(hashed.to_yaml().as_bytes()));
    let version = plan.version.as_str();
    let replicas = plan.replicas;
    let name = pipeline.name_any();
    let config_map = ConfigMap {
        metadata: meta(pipeline, version, names::config_map(&name), None),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_owned(), config_yaml)])),
        ..Default::default()
    };
    let (workloads, pod_roles) = match Topology::of(&pipeline.spec) {
        Topology::Standalone => (
            Workloads::Standalone(Box::new(stateful_set(pipeline, version, &config_hash))),
            vec![Role::Standalone],
        ),
        Topology::Distributed => (
            Workloads::Distributed {
                ingest: Box::new(deployment(
                    pipeline,
                    plan,
                    Role::Ingest,
                    replicas.ingest,
                    &config_hash,
                )),
                serve: Box::new(deployment(
                    pipeline,
                    plan,
                    Role::Serve,
                    replicas.serve,
                    &config_hash,
                )),
            },
            vec![Role::Ingest, Role::Serve],
        ),
    };
    // In the standalone topology one pod answers both APIs, so both Services select it.
    let (ingest_pods, serve_pods) = match Topology::of(&pipeline.spec) {
        Topology::Standalone => (Role::Standalone, Role::Standalone),
        Topology::Distributed => (Role::Ingest, Role::Serve),
    };
    Children {
        config_map,
        ingest_service: service(pipeline, version, Role::Ingest, ingest_pods, INGEST_PORT),
        serve_service: service(pipeline, version, Role::Serve, serve_pods, SERVE_PORT),
        workloads,
        disruption_budgets: pod_roles
            .into_iter()
            .map(|role| disruption_budget(pipeline, version, role))
            .collect(),
    }
}

fn meta(pipeline: &RetailPipeline, version: &str, name: String, role: Option<Role>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pipeline.namespace(),
        labels: Some(labels(pipeline, version, role)),
        // blockOwnerDeletion: a foreground delete of the pipeline waits for its children.
        owner_references: pipeline.controller_owner_ref(&()).map(|o| {
            vec![OwnerReference {
                block_owner_deletion: Some(true),
                ..o
            }]
        }),
        ..Default::default()
    }
}

fn service(pipeline: &RetailPipeline, version: &str, role: Role, pods: Role, port: u16) -> Service {
    let name = names::workload(&pipeline.name_any(), role);
    Service {
        metadata: meta(pipeline, version, name, Some(role)),
        spec: Some(ServiceSpec {
            selector: Some(selector(pipeline, Some(pods))),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: port.into(),
                    target_port: Some(IntOrString::String(role.as_str().into())),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("metrics".into()),
                    port: METRICS_PORT.into(),
                    target_port: Some(IntOrString::String("metrics".into())),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn disruption_budget(pipeline: &RetailPipeline, version: &str, role: Role) -> PodDisruptionBudget {
    let name = names::workload(&pipeline.name_any(), role);
    PodDisruptionBudget {
        metadata: meta(pipeline, version, name, Some(role)),
        spec: Some(PodDisruptionBudgetSpec {
            // One pod at a time: a drain proceeds, but never takes a whole role down. A single
            // standalone pod still drains (minAvailable: 1 would block node maintenance forever).
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(pipeline, Some(role))),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deployment(
    pipeline: &RetailPipeline,
    plan: &Plan,
    role: Role,
    replicas: i32,
    config_hash: &str,
) -> Deployment {
    let name = names::workload(&pipeline.name_any(), role);
    Deployment {
        metadata: meta(pipeline, &plan.version, name, Some(role)),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            // Paused while the error budget freezes rollouts and one is in flight.
            paused: Some(plan.paused),
            selector: LabelSelector {
                match_labels: Some(selector(pipeline, Some(role))),
                ..Default::default()
            },
            // Surge first: a rollout never lowers the number of ready workers.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: pod_template(pipeline, &plan.version, role, config_hash, false),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stateful_set(pipeline: &RetailPipeline, version: &str, config_hash: &str) -> StatefulSet {
    let name = pipeline.name_any();
    let embedded = pipeline.spec.storage.embedded.clone().unwrap_or_default();
    StatefulSet {
        metadata: meta(
            pipeline,
            version,
            names::workload(&name, Role::Standalone),
            Some(Role::Standalone),
        ),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::workload(&name, Role::Serve)),
            selector: LabelSelector {
                match_labels: Some(selector(pipeline, Some(Role::Standalone))),
                ..Default::default()
            },
            template: pod_template(pipeline, version, Role::Standalone, config_hash, true),
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(selector(pipeline, Some(Role::Standalone))),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: embedded.storage_class_name,
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(embedded.volume_size),
                        )])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            // Acknowledged data outlives the pipeline object: volumes are kept until an admin
            // deletes them on purpose.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_template(
    pipeline: &RetailPipeline,
    version: &str,
    role: Role,
    config_hash: &str,
    has_data_volume: bool,
) -> PodTemplateSpec {
    let spec = &pipeline.spec;
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map(&pipeline.name_any()),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("config", CONFIG_DIR),
        VolumeMount {
            read_only: None,
            ..mount("tmp", "/tmp")
        },
    ];
    if has_data_volume {
        mounts.push(VolumeMount {
            read_only: None,
            ..mount("data", DATA_DIR)
        });
    }
    let secrets = [
        (
            "cassandra-credentials",
            spec.storage
                .cassandra
                .as_ref()
                .and_then(|c| c.credentials_secret_ref.as_ref()),
            CASSANDRA_CREDENTIALS_DIR,
        ),
        (
            "kafka-credentials",
            spec.streams
                .kafka
                .as_ref()
                .and_then(|k| k.credentials_secret_ref.as_ref()),
            KAFKA_CREDENTIALS_DIR,
        ),
    ];
    for (volume, secret, dir) in secrets {
        if let Some(secret) = secret {
            volumes.push(Volume {
                name: volume.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.name.as_str().to_owned()),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            });
            mounts.push(mount(volume, dir));
        }
    }
    // API tokens: each pod mounts only the tokens of the APIs its role serves, and only the
    // referenced key, as the file the config names.
    for (scope, secret) in token_refs(spec) {
        let Some(secret) = secret.filter(|_| scope.served_by(role)) else {
            continue;
        };
        let volume = format!("{}-token", scope.as_str());
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.name.as_str().to_owned()),
                items: Some(vec![KeyToPath {
                    key: secret.key.clone(),
                    path: TOKEN_FILE.into(),
                    ..Default::default()
                }]),
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&volume, &token_dir(scope)));
    }
    let mut ports = vec![];
    if matches!(role, Role::Ingest | Role::Standalone) {
        ports.push(port("ingest", INGEST_PORT));
    }
    if matches!(role, Role::Serve | Role::Standalone) {
        ports.push(port("serve", SERVE_PORT));
    }
    ports.push(port("metrics", METRICS_PORT));
    let resources = match role {
        Role::Ingest => spec.ingest.resources.clone(),
        Role::Serve | Role::Standalone => spec.serve.resources.clone(),
    }
    .unwrap_or_else(default_resources);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(pipeline, version, Some(role))),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_owned(),
                config_hash.to_owned(),
            )])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            // The workers never call the Kubernetes API.
            automount_service_account_token: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(30),
            containers: vec![Container {
                name: "dataplane".into(),
                image: Some(format!("{}:{version}", spec.dataplane.image)),
                image_pull_policy: Some(
                    serde_json::to_value(spec.dataplane.image_pull_policy)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "IfNotPresent".into()),
                ),
                args: Some(worker_args(role, spec)),
                ports: Some(ports),
                liveness_probe: Some(probe("/healthz", 10, 6)),
                readiness_probe: Some(probe("/readyz", 5, 3)),
                // A worker failing at start leaves its last log lines for Ready to quote.
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                resources: Some(resources),
                security_context: Some(SecurityContext {
                    run_as_non_root: Some(true),
                    read_only_root_filesystem: Some(true),
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                volume_mounts: Some(mounts),
                ..Default::default()
            }],
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port.into(),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The worker's command line: its role and config, and the switch that lets the config's
/// `faults` through while the spec asks for fault injection (the worker refuses them otherwise).
fn worker_args(role: Role, spec: &RetailPipelineSpec) -> Vec<String> {
    let mut args = vec![
        "--role".into(),
        role.as_str().into(),
        "--config".into(),
        format!("{CONFIG_DIR}/config.yaml"),
    ];
    if spec.dataplane.fault_injection.is_some() {
        args.push("--allow-fault-injection".into());
    }
    args
}

fn probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// Requests sized for a small pipeline; memory is limited so a leak cannot starve the node, CPU is
/// not, so tail latency is never throttled.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("500m".into())),
            ("memory".to_owned(), Quantity("512Mi".into())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("2Gi".into()),
        )])),
        ..Default::default()
    }
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, which may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane_config::render;
    use crate::test_support::{cassandra_pipeline, pipeline};

    fn plan(p: &RetailPipeline, degraded: bool) -> Plan {
        Plan {
            config: render(&p.name_any(), &p.spec, degraded).unwrap(),
            replicas: Replicas {
                ingest: 3,
                serve: 4,
            },
            version: p.spec.dataplane.version.clone(),
            paused: false,
        }
    }

    fn build(p: &RetailPipeline) -> Children {
        desired(p, &plan(p, false))
    }

    fn pod_spec(t: &PodTemplateSpec) -> &PodSpec {
        t.spec.as_ref().unwrap()
    }

    fn templates(c: &Children) -> Vec<&PodTemplateSpec> {
        match &c.workloads {
            Workloads::Standalone(s) => vec![&s.spec.as_ref().unwrap().template],
            Workloads::Distributed { ingest, serve } => vec![
                &ingest.spec.as_ref().unwrap().template,
                &serve.spec.as_ref().unwrap().template,
            ],
        }
    }

    #[test]
    fn embedded_storage_runs_one_standalone_stateful_set_with_a_volume() {
        let c = build(&pipeline("shop"));
        let Workloads::Standalone(sts) = &c.workloads else {
            panic!("embedded storage must be standalone")
        };
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(sts.metadata.name.as_deref(), Some("shop-standalone"));
        assert_eq!(
            spec.replicas,
            Some(1),
            "the embedded store cannot scale out"
        );
        let claims = spec.volume_claim_templates.as_ref().unwrap();
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        assert_eq!(
            claims[0]
                .spec
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"],
            Quantity("10Gi".into())
        );
        assert_eq!(c.disruption_budgets.len(), 1);
        // Both APIs are answered by the one standalone pod.
        for svc in [&c.ingest_service, &c.serve_service] {
            let sel = svc.spec.as_ref().unwrap().selector.as_ref().unwrap();
            assert_eq!(sel["app.kubernetes.io/component"], "standalone");
        }
    }

    #[test]
    fn cassandra_storage_runs_separately_scaled_deployments() {
        let c = build(&cassandra_pipeline("shop"));
        let Workloads::Distributed { ingest, serve } = &c.workloads else {
            panic!("cassandra storage must be distributed")
        };
        assert_eq!(ingest.spec.as_ref().unwrap().replicas, Some(3));
        assert_eq!(serve.spec.as_ref().unwrap().replicas, Some(4));
        assert_eq!(c.disruption_budgets.len(), 2);
        assert_eq!(
            c.serve_service
                .spec
                .as_ref()
                .unwrap()
                .selector
                .as_ref()
                .unwrap()["app.kubernetes.io/component"],
            "serve"
        );
        let args = pod_spec(&ingest.spec.as_ref().unwrap().template).containers[0]
            .args
            .clone()
            .unwrap();
        assert_eq!(args[..2], ["--role".to_owned(), "ingest".to_owned()]);
        assert!(!args.contains(&"--allow-fault-injection".to_owned()));
    }

    #[test]
    fn fault_injection_starts_the_workers_with_its_switch_and_only_then() {
        let mut p = cassandra_pipeline("shop");
        p.spec.dataplane.fault_injection = Some(tailwarden_crds::FaultInjection {
            read_error_percent: 5.0,
        });
        let c = build(&p);
        let Workloads::Distributed { ingest, serve } = &c.workloads else {
            panic!("cassandra storage must be distributed")
        };
        for workload in [ingest, serve] {
            let args = pod_spec(&workload.spec.as_ref().unwrap().template).containers[0]
                .args
                .clone()
                .unwrap();
            assert_eq!(args.last().unwrap(), "--allow-fault-injection");
        }
    }

    #[test]
    fn every_child_is_owned_and_labelled() {
        for p in [pipeline("shop"), cassandra_pipeline("shop")] {
            let c = build(&p);
            let mut metas = vec![
                &c.config_map.metadata,
                &c.ingest_service.metadata,
                &c.serve_service.metadata,
            ];
            metas.extend(c.disruption_budgets.iter().map(|b| &b.metadata));
            match &c.workloads {
                Workloads::Standalone(s) => metas.push(&s.metadata),
                Workloads::Distributed { ingest, serve } => {
                    metas.push(&ingest.metadata);
                    metas.push(&serve.metadata);
                }
            }
            for m in metas {
                let owner = &m.owner_references.as_ref().unwrap()[0];
                assert_eq!(owner.kind, "RetailPipeline");
                assert_eq!(owner.controller, Some(true));
                assert_eq!(owner.block_owner_deletion, Some(true));
                let labels = m.labels.as_ref().unwrap();
                assert_eq!(labels["app.kubernetes.io/instance"], "shop");
                assert_eq!(
                    labels["app.kubernetes.io/managed-by"],
                    "tailwarden-operator"
                );
                assert_eq!(labels["app.kubernetes.io/version"], "1.0.0");
                assert_eq!(m.namespace.as_deref(), Some("retail"));
            }
        }
    }

    #[test]
    fn containers_are_locked_down_and_probed() {
        for p in [pipeline("shop"), cassandra_pipeline("shop")] {
            let c = build(&p);
            for t in templates(&c) {
                let pod = pod_spec(t);
                assert_eq!(pod.automount_service_account_token, Some(false));
                assert_eq!(
                    pod.security_context.as_ref().unwrap().run_as_non_root,
                    Some(true)
                );
                let container = &pod.containers[0];
                let sc = container.security_context.as_ref().unwrap();
                assert_eq!(sc.read_only_root_filesystem, Some(true));
                assert_eq!(sc.allow_privilege_escalation, Some(false));
                assert_eq!(
                    sc.capabilities.as_ref().unwrap().drop.as_deref(),
                    Some(&["ALL".to_owned()][..])
                );
                let live = container
                    .liveness_probe
                    .as_ref()
                    .unwrap()
                    .http_get
                    .as_ref()
                    .unwrap();
                let ready = container
                    .readiness_probe
                    .as_ref()
                    .unwrap()
                    .http_get
                    .as_ref()
                    .unwrap();
                assert_eq!(live.path.as_deref(), Some("/healthz"));
                assert_eq!(ready.path.as_deref(), Some("/readyz"));
                let policy = container.termination_message_policy.as_deref();
                assert_eq!(policy, Some("FallbackToLogsOnError"));
                let resources = container.resources.as_ref().unwrap();
                assert!(resources.requests.as_ref().unwrap().contains_key("memory"));
                assert_eq!(
                    container.image.as_deref(),
                    Some("example.com/tailwarden/dataplane:1.0.0")
                );
            }
        }
    }

    fn hash(c: &Children) -> String {
        templates(c)[0]
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    }

    #[test]
    fn a_config_change_rolls_the_pods_but_degradation_does_not() {
        let p = pipeline("shop");
        let base = desired(&p, &plan(&p, false));
        assert_eq!(
            base,
            desired(&p, &plan(&p, false)),
            "builders are deterministic"
        );
        let degraded = desired(&p, &plan(&p, true));
        assert_eq!(
            hash(&base),
            hash(&degraded),
            "the degradation switch is read live"
        );
        assert!(
            degraded.config_map.data.as_ref().unwrap()["config.yaml"]
                .contains("pauseNonCritical: true")
        );
        let mut other = p.clone();
        other.spec.ingest.batch.linger = "50ms".into();
        assert_ne!(hash(&base), hash(&desired(&other, &plan(&other, false))));
    }

    #[test]
    fn the_plan_sets_version_and_pause() {
        let p = cassandra_pipeline("shop");
        let held = Plan {
            version: "0.9.0".into(),
            paused: true,
            ..plan(&p, false)
        };
        let c = desired(&p, &held);
        let Workloads::Distributed { serve, .. } = &c.workloads else {
            unreachable!()
        };
        let spec = serve.spec.as_ref().unwrap();
        assert_eq!(spec.paused, Some(true));
        assert_eq!(
            pod_spec(&spec.template).containers[0].image.as_deref(),
            Some("example.com/tailwarden/dataplane:0.9.0")
        );
        assert_eq!(
            serve.metadata.labels.as_ref().unwrap()[VERSION_LABEL],
            "0.9.0"
        );
    }

    #[test]
    fn credentials_come_from_a_secret_volume() {
        let mut p = cassandra_pipeline("shop");
        p.spec
            .storage
            .cassandra
            .as_mut()
            .unwrap()
            .credentials_secret_ref = Some(tailwarden_crds::SecretRef {
            name: "cass".into(),
        });
        let c = build(&p);
        for t in templates(&c) {
            let pod = pod_spec(t);
            let vol = pod
                .volumes
                .as_ref()
                .unwrap()
                .iter()
                .find(|v| v.name == "cassandra-credentials")
                .unwrap();
            assert_eq!(
                vol.secret.as_ref().unwrap().secret_name.as_deref(),
                Some("cass")
            );
            let env = pod.containers[0].env.clone().unwrap_or_default();
            assert!(
                env.is_empty(),
                "credentials never travel in environment variables"
            );
        }
    }

    /// Token Secrets for every scope.
    fn with_tokens(mut p: RetailPipeline) -> RetailPipeline {
        p.spec.dataplane.auth = serde_json::from_value(serde_json::json!({
            "ingestTokenSecretRef": {"name": "shop-ingest", "key": "ingest-key"},
            "adminTokenSecretRef": {"name": "shop-admin", "key": "admin-key"},
            "readTokenSecretRef": {"name": "shop-read", "key": "read-key"}
        }))
        .unwrap();
        p
    }

    /// The token volumes of a pod: (volume, Secret, key, mount path, read-only).
    fn token_mounts(t: &PodTemplateSpec) -> Vec<(String, String, String, String, bool)> {
        let pod = pod_spec(t);
        let volumes = pod.volumes.as_ref().unwrap();
        pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.name.ends_with("-token"))
            .map(|m| {
                let secret = volumes
                    .iter()
                    .find(|v| v.name == m.name)
                    .and_then(|v| v.secret.as_ref())
                    .unwrap();
                let items = secret.items.as_ref().unwrap();
                assert_eq!(items.len(), 1);
                assert_eq!(items[0].path, "token");
                (
                    m.name.clone(),
                    secret.secret_name.clone().unwrap(),
                    items[0].key.clone(),
                    m.mount_path.clone(),
                    m.read_only == Some(true),
                )
            })
            .collect()
    }

    fn token(scope: &str, secret: &str) -> (String, String, String, String, bool) {
        (
            format!("{scope}-token"),
            secret.into(),
            format!("{scope}-key"),
            format!("/etc/tailwarden/tokens/{scope}"),
            true,
        )
    }

    #[test]
    fn api_tokens_are_mounted_read_only_and_only_their_paths_are_in_the_config_map() {
        let p = with_tokens(cassandra_pipeline("shop"));
        let c = build(&p);
        let Workloads::Distributed { ingest, serve } = &c.workloads else {
            unreachable!()
        };
        // Each role mounts the tokens of the APIs it serves, nothing more.
        assert_eq!(
            token_mounts(&ingest.spec.as_ref().unwrap().template),
            vec![token("ingest", "shop-ingest"), token("admin", "shop-admin")]
        );
        assert_eq!(
            token_mounts(&serve.spec.as_ref().unwrap().template),
            vec![token("read", "shop-read")]
        );
        let config = &c.config_map.data.as_ref().unwrap()["config.yaml"];
        for file in ["ingest", "admin", "read"] {
            assert!(
                config.contains(&format!("/etc/tailwarden/tokens/{file}/token")),
                "{config}"
            );
        }
        // The operator never reads the Secrets; the ConfigMap names files, not Secrets or keys.
        for secret in ["shop-ingest", "shop-admin", "shop-read", "-key"] {
            assert!(!config.contains(secret), "{config}");
        }
        for t in templates(&c) {
            let env = pod_spec(t).containers[0].env.clone().unwrap_or_default();
            assert!(
                env.is_empty(),
                "tokens never travel in environment variables"
            );
        }

        let standalone = with_tokens(pipeline("shop"));
        assert_eq!(
            token_mounts(&set_template(&build(&standalone))),
            vec![
                token("ingest", "shop-ingest"),
                token("admin", "shop-admin"),
                token("read", "shop-read")
            ]
        );
        // Without references nothing is mounted.
        assert!(token_mounts(&set_template(&build(&pipeline("shop")))).is_empty());
    }

    fn set_template(c: &Children) -> PodTemplateSpec {
        let Workloads::Standalone(set) = &c.workloads else {
            unreachable!()
        };
        set.spec.as_ref().unwrap().template.clone()
    }

    #[test]
    fn user_resources_override_the_defaults() {
        let mut p = cassandra_pipeline("shop");
        p.spec.ingest.resources = Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_owned(), Quantity("3".into()))])),
            ..Default::default()
        });
        let c = build(&p);
        let Workloads::Distributed { ingest, serve } = &c.workloads else {
            unreachable!()
        };
        let cpu = |d: &Deployment| {
            pod_spec(&d.spec.as_ref().unwrap().template).containers[0]
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["cpu"]
                .clone()
        };
        assert_eq!(cpu(ingest), Quantity("3".into()));
        assert_eq!(cpu(serve), Quantity("500m".into()));
    }
}
