//! The reconcile loop: observe the pipeline and its children, decide the desired children, act with
//! server-side apply, and report through the status subresource and Events.
//!
//! Reconcile is level-triggered and idempotent: it recomputes everything from the current objects
//! each time, so a missed event, a deleted child or a hand edit is corrected on the next pass.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tailwarden_crds::{DecisionKind, RetailPipeline, RetailPipelineStatus};
use tracing::{info, warn};

use crate::children::{self, Children, Role, Workloads, names};
use crate::conditions::{self, Observation, READY, WorkloadObservation};
use crate::engine::{Engine, EngineConfig};
use crate::error::{Error, ErrorClass, classify};
use crate::metrics::Metrics;
use crate::monitoring;
use crate::plan::{self, Live, Plan};
use crate::pod_trouble::{self, PodTrouble};
use crate::status_page::source::LiveState;
use crate::topology::Topology;
use crate::verdict::{Verdict, Verdicts};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "tailwarden-operator";
/// Reconcile at least this often, even without events, to re-read workload readiness.
const RESYNC: Duration = Duration::from_secs(300);
/// Label selecting the children this operator manages, to keep the owned watches small.
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tailwarden-operator";
/// Reconciles doing API calls at once. Unbounded, a start with 1,000 pipelines ran 1,000
/// reconciles at once, each with its own API connection and request and response buffers: the
/// operator's memory grew with the fleet. The bound is a FIFO semaphore inside `reconcile`, not
/// the controller's own concurrency limit: that one picks the next object from a hash set, and with
/// children's status events re-triggering the busy pipelines, ~250 of 1,000 pipelines were never
/// reconciled in 9 minutes.
pub const RECONCILE_CONCURRENCY: usize = 16;

/// Shared state of the reconcilers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// The SLO engine's latest verdicts.
    pub verdicts: Verdicts,
    /// Where the status page finds the pipeline store once the controller runs.
    pub live: LiveState,
    /// Permits to do a reconcile's API calls, granted first come, first served; closed when the
    /// controller shuts down.
    pub reconcile_slots: tokio::sync::Semaphore,
}

impl Context {
    /// A context whose Events are reported as coming from `instance`.
    pub fn new(client: Client, metrics: Arc<Metrics>, instance: &str) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            verdicts: Verdicts::default(),
            live: LiveState::default(),
            reconcile_slots: tokio::sync::Semaphore::new(RECONCILE_CONCURRENCY),
        }
    }
}

/// Runs the controller until `shutdown` resolves. `namespace` limits it to one namespace. With an
/// engine, the SLO engine runs beside it and triggers reconciles when a verdict changes.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    engine: Option<EngineConfig>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // `owns` watches children as metadata only (`PartialObjectMeta`) and keeps no store of them:
    // an event maps to its owner's reconcile, which reads the child with a GET.
    let owned = watcher::Config::default().labels(MANAGED_SELECTOR);
    // A pipeline triggers a reconcile when its spec (generation) or annotations (freeze and
    // override) change, never for its status: the reconcile's own status write must not trigger
    // the next one. Children, verdicts and the resync still trigger as usual.
    let (reader, writer) = reflector::store();
    ctx.live.publish(reader.clone(), ctx.verdicts.clone());
    let (metrics, known) = (ctx.metrics.clone(), reader.clone());
    let pipelines = watcher(
        api::<RetailPipeline>(&client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    // The store keeps every pipeline for the controller and the SLO engine; neither reads the
    // managed fields, which are most of a small object's size.
    .modify(|pipeline| pipeline.managed_fields_mut().clear())
    .reflect(writer)
    // A deleted pipeline's series go with it; after a relist, those of pipelines deleted
    // while the watch was down too.
    .inspect_ok(move |event| match event {
        watcher::Event::Delete(p) => {
            let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
            metrics
                .pipelines
                .retain(|n, p| (n, p) != (ns.as_str(), name.as_str()));
        }
        watcher::Event::InitDone => metrics.pipelines.retain(|ns, name| {
            known
                .get(&reflector::ObjectRef::new(name).within(ns))
                .is_some()
        }),
        _ => {}
    })
    .applied_objects()
    .predicate_filter(
        predicates::generation.combine(predicates::annotations),
        Default::default(),
    );
    let controller = Controller::for_stream(pipelines, reader)
        .owns(api::<Deployment>(&client, namespace), owned.clone())
        .owns(api::<StatefulSet>(&client, namespace), owned.clone())
        .owns(api::<Service>(&client, namespace), owned.clone())
        .owns(api::<ConfigMap>(&client, namespace), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), owned);
    let (trigger, triggered) = futures::channel::mpsc::unbounded();
    let engine_task = engine.map(|config| {
        let engine = Arc::new(Engine::new(
            config,
            ctx.verdicts.clone(),
            ctx.metrics.clone(),
        ));
        tokio::spawn(engine.run(controller.store(), trigger))
    });
    let slots = ctx.clone();
    let shutdown = async move {
        shutdown.await;
        slots.reconcile_slots.close();
    };
    controller
        .reconcile_on(triggered)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(err) = result {
                warn!(error = %err, "reconcile stream error");
            }
        })
        .await;
    if let Some(task) = engine_task {
        task.abort();
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Retries a failed reconcile after a delay chosen by the error's class.
pub fn error_policy(pipeline: Arc<RetailPipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    let class = classify(error);
    ctx.metrics.reconcile_failed(class);
    warn!(
        pipeline = %pipeline.name_any(),
        namespace = pipeline.namespace().unwrap_or_default(),
        class = class.as_str(),
        error = %error,
        "reconcile failed"
    );
    Action::requeue(class.backoff())
}

/// How often one reconcile starts over on a fresh copy when its status write meets a newer one.
const STALE_COPY_ATTEMPTS: usize = 3;

/// One reconcile of one pipeline: observe → plan (pure) → apply → report.
///
/// The copy from the controller's store can lag behind the API server: the reconcile's own status
/// writes do not trigger a reconcile, so one started by a child's event can run before the store
/// has the last status, or a spec edit. Decisions are made relative to the previous status, so a
/// pass on an old copy would repeat or overwrite them, and it would apply an old spec. So each
/// pass reads the pipeline afresh, its status write is conditional on that copy's
/// resourceVersion, and on a conflict (a write in between) it starts over on a fresh copy.
pub async fn reconcile(pipeline: Arc<RetailPipeline>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Closed at shutdown: reconciles still waiting for a slot end at once, so that stopping
    // waits for the few in flight, not for every queued pipeline.
    let Ok(_slot) = ctx.reconcile_slots.acquire().await else {
        return Ok(Action::await_change());
    };
    let _timer = ctx.metrics.reconcile_started();
    let ns = pipeline
        .namespace()
        .ok_or(Error::MissingMetadata("namespace"))?;
    let api = Api::<RetailPipeline>::namespaced(ctx.client.clone(), &ns);
    let name = pipeline.name_any();
    let mut attempt = 1;
    loop {
        let Some(pipeline) = get_opt(&api, &name).await? else {
            // Deleted meanwhile: the garbage collector removes its children.
            return Ok(Action::await_change());
        };
        match reconcile_copy(&ctx, &pipeline, &ns).await {
            Err(err) if classify(&err) == ErrorClass::Conflict && attempt < STALE_COPY_ATTEMPTS => {
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Observe → plan → apply → report for one copy of the pipeline.
async fn reconcile_copy(
    ctx: &Context,
    pipeline: &RetailPipeline,
    ns: &str,
) -> Result<Action, Error> {
    let name = pipeline.name_any();
    let topology = Topology::of(&pipeline.spec);

    // Observe: what the workloads run now, so a reconcile never undoes scaling or a freeze.
    let live = observe_live(&ctx.client, ns, &name, topology).await?;
    let verdict = ctx.verdicts.get(&reflector::ObjectRef::from(pipeline));
    let now = jiff::Timestamp::now();
    // Plan.
    let plan = plan::plan(pipeline, &live, verdict.as_ref(), now);
    // Apply.
    let (workloads, monitoring) = apply_plan(ctx, pipeline, ns, &plan).await?;
    let trouble = observe_trouble(&ctx.client, ns, pipeline, &workloads).await;
    // Report.
    report(
        ctx, pipeline, &plan, verdict, workloads, trouble, monitoring,
    )
    .await?;
    Ok(Action::requeue(next_pass(&plan, now)))
}

/// When to reconcile again without an event: soon after a spec error, at the latest when a freeze
/// annotation expires, and at the resync otherwise.
fn next_pass(plan: &Plan, now: jiff::Timestamp) -> Duration {
    if plan.apply.is_err() {
        return ErrorClass::Spec.backoff();
    }
    plan.recheck_at
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .map_or(RESYNC, |wait| (wait + Duration::from_secs(1)).min(RESYNC))
}

/// Applies the plan's children and monitoring, or, for an unusable spec, only observes what runs.
async fn apply_plan(
    ctx: &Context,
    pipeline: &RetailPipeline,
    ns: &str,
    plan: &Plan,
) -> Result<
    (
        (WorkloadObservation, WorkloadObservation),
        Result<(), String>,
    ),
    Error,
> {
    let client = &ctx.client;
    match &plan.apply {
        Ok(apply) => {
            let observed = apply_children(client, ns, &apply.children).await?;
            prune_other_topology(ctx, pipeline, ns, plan.topology).await?;
            let monitoring = apply_monitoring(
                client,
                ns,
                pipeline,
                &plan.rollout.version,
                &apply.objectives,
            )
            .await?;
            Ok((observed, monitoring))
        }
        Err(_) => {
            ctx.metrics.reconcile_failed(ErrorClass::Spec);
            let observed =
                observe_existing(client, ns, &pipeline.name_any(), plan.topology).await?;
            Ok((
                observed,
                Err("not applied: the spec cannot be used".to_owned()),
            ))
        }
    }
}

/// Writes the status (only when it changed) and publishes each decision as an Event and metric.
async fn report(
    ctx: &Context,
    pipeline: &RetailPipeline,
    plan: &Plan,
    verdict: Option<Verdict>,
    (ingest, serve): (WorkloadObservation, WorkloadObservation),
    trouble: Option<PodTrouble>,
    monitoring: Result<(), String>,
) -> Result<(), Error> {
    let previous = pipeline.status.as_ref();
    let now = jiff::Timestamp::now();
    let obs = Observation {
        generation: pipeline.metadata.generation,
        topology: plan.topology,
        version: pipeline.spec.dataplane.version.clone(),
        ingest,
        serve,
        trouble,
        spec_error: plan.apply.as_ref().err().cloned(),
        verdict,
        rollout: plan.rollout.clone(),
        rollout_status: plan.rollout_status.clone(),
        monitoring,
        remote_backends: crate::reachability::uses_remote_backends(&pipeline.spec),
    };
    let mut status = conditions::status(previous, &obs, now);
    let recorded: Vec<_> = plan
        .decisions
        .iter()
        .map(|decision| {
            (
                decision.kind,
                conditions::decided(&mut status, decision, now),
            )
        })
        .collect();
    // The status first: when the write fails, nothing is published, and the retry decides again.
    if previous != Some(&status) {
        patch_status(&ctx.client, pipeline, &status).await?;
    }
    let (ns, name) = (
        pipeline.namespace().unwrap_or_default(),
        pipeline.name_any(),
    );
    for (kind, note) in recorded {
        ctx.metrics.decided((&ns, &name), kind);
        let type_ = if kind == DecisionKind::InvalidSpec {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, pipeline, type_, kind.as_str(), note).await;
    }
    ctx.metrics.pipelines.report(
        (&ns, &name),
        plan.topology,
        &status,
        plan.apply.as_ref().ok().map(|a| &a.objectives),
    );
    publish_ready_transition(ctx, pipeline, previous, &status).await;
    Ok(())
}

/// Applies the PrometheusRule and PodMonitor when the Prometheus Operator's CRDs exist; otherwise
/// says why they were skipped (the rules can still be rendered with `render-rules`).
async fn apply_monitoring(
    client: &Client,
    ns: &str,
    pipeline: &RetailPipeline,
    version: &str,
    objectives: &tailwarden_slo::objective::Objectives,
) -> Result<Result<(), String>, Error> {
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in monitoring::REQUIRED_CRDS {
        if get_opt(&crds, crd).await?.is_none() {
            return Ok(Err(format!(
                "the Prometheus Operator's CRD {crd} is not installed: PrometheusRule and PodMonitor skipped \
                 (render plain rules with `render-rules`)"
            )));
        }
    }
    apply(
        client,
        ns,
        &monitoring::prometheus_rule(pipeline, version, objectives),
    )
    .await?;
    apply(client, ns, &monitoring::pod_monitor(pipeline, version)).await?;
    Ok(Ok(()))
}

async fn observe_live(
    client: &Client,
    ns: &str,
    name: &str,
    topology: Topology,
) -> Result<Live, Error> {
    let config = get_opt(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &names::config_map(name),
    )
    .await?
    .and_then(|cm| cm.data?.remove(children::CONFIG_FILE));
    let mut live = Live {
        config,
        ..Live::default()
    };
    match topology {
        Topology::Distributed => {
            let api = Api::<Deployment>::namespaced(client.clone(), ns);
            for role in [Role::Serve, Role::Ingest] {
                let Some(d) = get_opt(&api, &names::workload(name, role)).await? else {
                    continue;
                };
                live.in_flight |= observe_deployment(&d).rolling();
                let Some(spec) = d.spec else { continue };
                *match role {
                    Role::Serve => &mut live.serve_replicas,
                    _ => &mut live.ingest_replicas,
                } = spec.replicas;
                live.templates.push((role, spec.template));
            }
        }
        Topology::Standalone => {
            let api = Api::<StatefulSet>::namespaced(client.clone(), ns);
            if let Some(sts) = get_opt(&api, &names::workload(name, Role::Standalone)).await? {
                live.in_flight = observe_stateful_set(&sts).rolling();
                if let Some(spec) = sts.spec {
                    live.templates.push((Role::Standalone, spec.template));
                }
            }
        }
    }
    // The version of the first workload (serve before ingest): both run one version but mid-rollout.
    live.version = live.templates.iter().find_map(|(_, t)| {
        t.metadata
            .as_ref()?
            .labels
            .as_ref()?
            .get(children::VERSION_LABEL)
            .cloned()
    });
    Ok(live)
}

/// Applies every child and returns what the workloads report (ingest, serve).
async fn apply_children(
    client: &Client,
    ns: &str,
    desired: &Children,
) -> Result<(WorkloadObservation, WorkloadObservation), Error> {
    apply(client, ns, &desired.config_map).await?;
    apply(client, ns, &desired.ingest_service).await?;
    apply(client, ns, &desired.serve_service).await?;
    for pdb in &desired.disruption_budgets {
        apply(client, ns, pdb).await?;
    }
    Ok(match &desired.workloads {
        Workloads::Standalone(sts) => {
            let applied = apply(client, ns, sts.as_ref()).await?;
            let obs = observe_stateful_set(&applied);
            (obs.clone(), obs)
        }
        Workloads::Distributed { ingest, serve } => (
            observe_deployment(&apply(client, ns, ingest.as_ref()).await?),
            observe_deployment(&apply(client, ns, serve.as_ref()).await?),
        ),
    })
}

/// What the workloads report when the spec could not be applied.
async fn observe_existing(
    client: &Client,
    ns: &str,
    name: &str,
    topology: Topology,
) -> Result<(WorkloadObservation, WorkloadObservation), Error> {
    Ok(match topology {
        Topology::Standalone => {
            let api = Api::<StatefulSet>::namespaced(client.clone(), ns);
            let obs = get_opt(&api, &names::workload(name, Role::Standalone))
                .await?
                .map(|s| observe_stateful_set(&s))
                .unwrap_or_default();
            (obs.clone(), obs)
        }
        Topology::Distributed => {
            let api = Api::<Deployment>::namespaced(client.clone(), ns);
            let get = async |role| {
                Ok::<_, Error>(
                    get_opt(&api, &names::workload(name, role))
                        .await?
                        .map(|d| observe_deployment(&d))
                        .unwrap_or_default(),
                )
            };
            (get(Role::Ingest).await?, get(Role::Serve).await?)
        }
    })
}

/// Why the workers are not ready, from the pipeline's pods. They are listed only while a workload
/// is not available, so a steady pipeline costs no pod list. A failed list is logged and leaves the
/// cause unknown: the cause explains the status, it never decides anything.
async fn observe_trouble(
    client: &Client,
    ns: &str,
    pipeline: &RetailPipeline,
    (ingest, serve): &(WorkloadObservation, WorkloadObservation),
) -> Option<PodTrouble> {
    if ingest.available() && serve.available() {
        return None;
    }
    let selector = children::selector(pipeline, None)
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    // From the API server's watch cache rather than etcd: a cause a moment old tells as much.
    let params = ListParams::default().labels(&selector).match_any();
    match Api::<Pod>::namespaced(client.clone(), ns)
        .list(&params)
        .await
    {
        Ok(pods) => pod_trouble::most_telling(&pods.items, jiff::Timestamp::now()),
        Err(source) => {
            let error = Error::kube(format!("list Pods {ns} {selector}"))(source);
            warn!(%error, pipeline = %pipeline.name_any(), "could not read why the workers are not ready");
            None
        }
    }
}

fn observe_deployment(d: &Deployment) -> WorkloadObservation {
    let status = d.status.clone().unwrap_or_default();
    WorkloadObservation {
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        total: status.replicas.unwrap_or(0),
        observed_latest: status.observed_generation >= d.metadata.generation,
    }
}

fn observe_stateful_set(s: &StatefulSet) -> WorkloadObservation {
    let status = s.status.clone().unwrap_or_default();
    let same_revision =
        status.update_revision.is_none() || status.current_revision == status.update_revision;
    WorkloadObservation {
        desired: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        // Once current and update revisions agree, every pod runs the latest template.
        updated: if same_revision {
            status.replicas
        } else {
            status.updated_replicas.unwrap_or(0)
        },
        total: status.replicas,
        observed_latest: status.observed_generation >= s.metadata.generation,
    }
}

/// Deletes the workloads of the topology the spec no longer asks for, when this pipeline owns them.
async fn prune_other_topology(
    ctx: &Context,
    pipeline: &RetailPipeline,
    ns: &str,
    topology: Topology,
) -> Result<(), Error> {
    let name = pipeline.name_any();
    let client = &ctx.client;
    let stale_roles: &[Role] = match topology {
        Topology::Standalone => &[Role::Ingest, Role::Serve],
        Topology::Distributed => &[Role::Standalone],
    };
    for &role in stale_roles {
        let object = names::workload(&name, role);
        let pruned = match role {
            Role::Standalone => delete_owned::<StatefulSet>(client, ns, &object, pipeline).await?,
            Role::Ingest | Role::Serve => {
                delete_owned::<Deployment>(client, ns, &object, pipeline).await?
            }
        };
        let pdb_pruned = if role == Role::Standalone {
            delete_owned::<PodDisruptionBudget>(client, ns, &object, pipeline).await?
        } else {
            false
        };
        if pruned || pdb_pruned {
            let note = format!(
                "deleted {object}: the {} topology does not run it",
                topology.as_str()
            );
            info!(pipeline = %name, namespace = ns, "{note}");
            publish(ctx, pipeline, EventType::Normal, "Pruned", note).await;
        }
    }
    // The ingest and serve PDBs of the distributed topology are named like its Services, which
    // both topologies keep; in the standalone topology only the standalone PDB exists.
    if topology == Topology::Standalone {
        for role in [Role::Ingest, Role::Serve] {
            delete_owned::<PodDisruptionBudget>(
                client,
                ns,
                &names::workload(&name, role),
                pipeline,
            )
            .await?;
        }
    }
    Ok(())
}

/// Deletes `name` if it exists and `owner` controls it. Returns whether it deleted anything.
async fn delete_owned<K>(
    client: &Client,
    ns: &str,
    name: &str,
    owner: &RetailPipeline,
) -> Result<bool, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), ns);
    let Some(object) = get_opt(&api, name).await? else {
        return Ok(false);
    };
    let owned = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == owner.metadata.uid.as_ref());
    if !owned {
        return Ok(false);
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(Error::kube(format!("delete {} {ns}/{name}", K::kind(&())))(
            e,
        )),
    }
}

/// Server-side applies `object` under the operator's field manager, taking ownership of its fields.
async fn apply<K>(client: &Client, ns: &str, object: &K) -> Result<K, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let name = object
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingMetadata("name"))?;
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
        .map_err(Error::kube(format!("apply {} {ns}/{name}", K::kind(&()))))
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    api.get_opt(name).await.map_err(Error::kube(format!(
        "get {} {name}",
        K::kind(&K::DynamicType::default())
    )))
}

async fn patch_status(
    client: &Client,
    pipeline: &RetailPipeline,
    status: &RetailPipelineStatus,
) -> Result<(), Error> {
    let ns = pipeline.namespace().unwrap_or_default();
    let name = pipeline.name_any();
    // The resourceVersion makes the write conditional: a copy older than the server's fails with
    // a conflict instead of overwriting decisions it has not seen.
    let patch = serde_json::json!({
        "apiVersion": RetailPipeline::api_version(&()),
        "kind": RetailPipeline::kind(&()),
        "metadata": {"resourceVersion": pipeline.resource_version()},
        "status": status,
    });
    Api::<RetailPipeline>::namespaced(client.clone(), &ns)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::kube(format!(
            "patch status of RetailPipeline {ns}/{name}"
        )))?;
    Ok(())
}

async fn publish_ready_transition(
    ctx: &Context,
    pipeline: &RetailPipeline,
    previous: Option<&RetailPipelineStatus>,
    status: &RetailPipelineStatus,
) {
    let before = previous
        .and_then(|p| conditions::condition(p, READY))
        .map(|c| c.status.clone());
    let Some(now) = conditions::condition(status, READY) else {
        return;
    };
    if before.as_deref() == Some(now.status.as_str()) {
        return;
    }
    let type_ = if now.status == "True" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    publish(ctx, pipeline, type_, &now.reason, now.message.clone()).await;
}

/// Publishes an Event; a failure to publish is logged, never fails the reconcile.
async fn publish(
    ctx: &Context,
    pipeline: &RetailPipeline,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(err) = ctx
        .recorder
        .publish(&event, &pipeline.object_ref(&()))
        .await
    {
        warn!(error = %err, pipeline = %pipeline.name_any(), "could not publish event");
    }
}
