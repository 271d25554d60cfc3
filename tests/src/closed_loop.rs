//! The closed-loop test bed (`tests/tests/closed_loop.rs`): a distributed pipeline whose worker
//! pods run on the real node against the real Kafka and Cassandra of tests/services, an operator
//! process reconciling it, and a real Prometheus with the pipeline's SLO rules that follows the
//! pods as they come and go, the way the operator's PodMonitor selects them.
//!
//! The node has 2 CPUs shared with everything else, so load alone would not saturate a worker in a
//! repeatable way. Instead each serve pod gets a CPU limit, which the node's cgroups enforce (CFS
//! quota): one worker saturates at a known read rate, and a scale-up adds a known capacity.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tailwarden_crds::{Decision, DecisionKind, MarkState, MarkStatus, RetailPipeline};
use tailwarden_operator::freeze_annotations::Mark;

use crate::kafka::Topics;
use crate::operator_process::OperatorProcess;
use crate::prometheus::Prometheus;
use crate::{cassandra, real_node};

/// The pipeline of a bed.
pub const PIPELINE: &str = "shop";

/// The operator's evaluation interval (its production default).
pub const INTERVAL: Duration = Duration::from_secs(15);
/// Its signal window: the shortest it accepts.
pub const SIGNAL_WINDOW: &str = "30s";
/// Serve scales down only after this long of wanting fewer replicas (production: 5 min).
pub const DOWN_WINDOW_S: u64 = 60;
/// P99 objective (the paper's), and the scale-up target as a percent of it: 100 ms. Below ~70 %
/// of a worker's capacity its P99 stays under ~40 ms; the CPU limit's CFS throttling gives
/// occasional spikes beyond that even at low load, which a lower target would chase.
pub const P99_OBJECTIVE_MS: f64 = 200.0;
/// See [`P99_OBJECTIVE_MS`].
pub const TARGET_PERCENT: u32 = 50;
/// The P99 serve scales up above, in milliseconds.
pub const TARGET_MS: f64 = P99_OBJECTIVE_MS * TARGET_PERCENT as f64 / 100.0;
/// Measured on this machine kind (debug build, 150m CPU limit, uncached reads, each one a
/// Cassandra query): one serve worker answers ~230 reads/s at most; its P99 is ~35 ms at 100
/// reads/s and ~165 ms at 200. The read rate rises in steps until the P99 crosses the target,
/// so nothing depends on where exactly that happens on a busy machine, and stops short of
/// overload, which would spend the (young, so small) latency budget and block the scale-down.
pub const RAMP_READS: [u32; 7] = [60, 90, 120, 150, 180, 210, 240];
/// Reads per second that one worker serves far under the target.
pub const CALM_READS: &str = "40";
/// The freshness objective: ingest must scale before the consumer lag comes near it.
pub const MAX_LAG_S: u64 = 120;
/// Updates per second throughout: freshness, correctness and the budget need ingest data, and
/// serve never scales down on incomplete data.
pub const WRITES: &str = "20";
/// Updates waiting (Kafka consumer lag plus queued) that one ingest replica is sized for.
pub const BACKLOG_PER_REPLICA: u32 = 3000;
/// Write rates of an ingest burst, in steps until ingest scales up: one ingest worker on 150m
/// of CPU consumes fewer updates per second than its write API accepts into Kafka, so a burst
/// leaves a consumer lag that grows.
pub const BURST_WRITES: [u32; 4] = [400, 800, 1200, 1600];

/// Serve and ingest roles that one worker saturates on 150m of CPU (uncached reads, each one a
/// Cassandra query; updates consumed from Kafka and written to Cassandra): 1 to 3 replicas each,
/// with short windows so that a scale-down follows within minutes.
pub fn spec() -> serde_json::Value {
    let scaling = |up_cooldown: &str| {
        json!({
            "scaleUp": {"stabilizationWindow": "0s", "cooldown": up_cooldown, "maxStep": 2},
            "scaleDown": {"stabilizationWindow": format!("{DOWN_WINDOW_S}s"),
                          "cooldown": format!("{DOWN_WINDOW_S}s"), "maxStep": 1},
        })
    };
    let resources = json!({"requests": {"cpu": "10m", "memory": "64Mi"},
                           "limits": {"cpu": "150m", "memory": "256Mi"}});
    let mut ingest = scaling("15s");
    ingest["targetBacklogPerReplica"] = json!(BACKLOG_PER_REPLICA);
    let mut serve = scaling("15s");
    serve["targetP99PercentOfSlo"] = json!(TARGET_PERCENT);
    json!({
        "storage": {}, "streams": {"kafka": {"topics": {}}},
        "ingest": {"replicas": {"min": 1, "max": 3}, "resources": resources},
        "serve": {"replicas": {"min": 1, "max": 3}, "cacheMaxEntries": 0, "resources": resources},
        "slos": {"freshness": {"maxLag": format!("{MAX_LAG_S}s")},
                 "readLatency": [{"queryClass": "product", "p95": "120ms",
                                  "p99": format!("{P99_OBJECTIVE_MS}ms")}]},
        "autoscaling": {"ingest": ingest, "serve": serve},
    })
}

/// The operator's flags for [`spec`]: [`INTERVAL`] and [`SIGNAL_WINDOW`].
pub fn operator_args() -> Vec<String> {
    vec![
        "--evaluation-interval".into(),
        format!("{}s", INTERVAL.as_secs()),
        "--signal-window".into(),
        SIGNAL_WINDOW.into(),
    ]
}

/// The replicas a scale decision went to.
pub fn replicas_after(d: &Decision) -> i32 {
    d.inputs
        .replicas_after
        .expect("a scale decision names its replicas")
}

/// The read P99 a decision was taken on, in milliseconds, as its inputs record it (`"728ms"`).
pub fn decision_p99_ms(d: &Decision) -> Option<f64> {
    d.inputs
        .read_p99
        .as_deref()?
        .strip_suffix("ms")?
        .parse()
        .ok()
}

/// Open-loop reads at `rate` per second over 1,000 products, for at most 15 minutes.
pub fn read_args(rate: &str) -> Vec<String> {
    ["--read-rate", rate, "--duration", "900", "--keys", "1000"]
        .map(str::to_owned)
        .to_vec()
}

/// Open-loop writes of an ingest burst at `rate` updates per second, in batches of 100.
pub fn burst_args(rate: &str) -> Vec<String> {
    [
        "--write-rate",
        rate,
        "--batch",
        "100",
        "--write-connections",
        "4",
        "--duration",
        "900",
        "--keys",
        "100000",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A running bed; dropping it stops the operator, Prometheus and the target refresher, and
/// [`Bed::finish`] deletes the namespace.
pub struct Bed {
    /// Client of the test cluster.
    pub client: Client,
    /// The bed's namespace, on the real node.
    pub ns: String,
    /// Logs of the operator, Prometheus' targets file and the load generator.
    pub logs: PathBuf,
    /// The pipeline's API.
    pub pipelines: Api<RetailPipeline>,
    /// Prometheus, scraping the pipeline's pods every second.
    pub prometheus: Prometheus,
    /// The operator reconciling the pipeline.
    pub operator: OperatorProcess,
    refresher: tokio::task::JoinHandle<()>,
}

impl Bed {
    /// Starts a bed named `prefix-…`: a Cassandra role and Secret of its own, the pipeline's
    /// topics, the operator (`operator_args` added), the pipeline from `spec` (storage and
    /// streams filled in, the dataplane image of the real node), and Prometheus. Returns once
    /// the pipeline is Ready and Prometheus scrapes its pods.
    pub async fn start(prefix: &str, spec: serde_json::Value, operator_args: &[String]) -> Self {
        Self::start_on(prefix, spec, operator_args, None).await
    }

    /// Like [`Bed::start`], on the Cassandra node at `cassandra` (a test's own, without
    /// authentication) instead of the shared one.
    pub async fn start_on(
        prefix: &str,
        mut spec: serde_json::Value,
        operator_args: &[String],
        cassandra: Option<&str>,
    ) -> Self {
        let client = crate::client().await;
        crate::install_crd(&client).await;
        let ns = real_node::namespace(&client, prefix).await;
        let logs = std::env::temp_dir().join(format!("tailwarden-{ns}"));
        std::fs::create_dir_all(&logs).unwrap();
        let suffix = format!("{:08x}", fastrand::u32(..));

        if cassandra.is_none() {
            cassandra::credentials_secret(&client, &ns, &suffix).await;
        }
        let topics = Topics::create(&format!("{prefix}-{suffix}"), 2);

        let mut args = vec!["--leader-elect", "false"];
        args.extend(operator_args.iter().map(String::as_str));
        let operator = OperatorProcess::spawn(prefix, &ns, &args, &logs);

        crate::on_test_services(
            &mut spec,
            &prefix.replace('-', "_"),
            &suffix,
            &topics,
            "cassandra-credentials",
        );
        if let Some(contact_point) = cassandra {
            let node = &mut spec["storage"]["cassandra"];
            node["contactPoints"] = json!([contact_point]);
            node.as_object_mut().unwrap().remove("credentialsSecretRef");
        }
        spec["dataplane"] = json!({
            "image": real_node::image("tailwarden-dataplane"),
            "version": real_node::image_version(),
            "imagePullPolicy": "Never",
        });
        let pipelines = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
        pipelines
            .create(&PostParams::default(), &crate::pipeline(PIPELINE, spec))
            .await
            .unwrap();
        real_node::wait_ready_status(&pipelines, PIPELINE, "True", Duration::from_secs(240)).await;

        // Prometheus finds the pods as the operator's PodMonitor selects them; the refresher
        // rewrites the targets file every second, so pods added by a scale-up are scraped too.
        let live = pipelines.get(PIPELINE).await.unwrap();
        let monitor =
            tailwarden_operator::monitoring::pod_monitor(&live, &real_node::image_version());
        let targets = logs.join("targets.json");
        let job = real_node::scrape_job(&client, &monitor, &targets).await;
        // The SLO rules the operator would ship as a PrometheusRule (burn rates, page alerts).
        let manifest = logs.join("pipeline.yaml");
        std::fs::write(&manifest, serde_yaml::to_string(&live).unwrap()).unwrap();
        let rules = crate::run(Command::new(crate::render_rules_bin()).arg(&manifest));
        let prometheus = Prometheus::with_scrape_jobs_and_rules(&job, &rules).await;
        let refresher = {
            let client = client.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    real_node::scrape_job(&client, &monitor, &targets).await;
                }
            })
        };
        crate::use_prometheus(&pipelines, PIPELINE, &prometheus.url).await;
        let bed = Self {
            client,
            ns,
            logs,
            pipelines,
            prometheus,
            operator,
            refresher,
        };
        let up = format!(
            r#"count(up{{namespace="{}",pipeline="{PIPELINE}"}} == 1)"#,
            bed.ns
        );
        crate::wait_for(
            "Prometheus to scrape the pipeline's pods",
            Duration::from_secs(60),
            || async { (bed.prometheus.query(&up).await? >= 2.0).then_some(()) },
        )
        .await;
        bed
    }

    /// `ClusterIP:port` of the pipeline's `role` Service (`ingest` or `serve`).
    pub async fn service(&self, role: &str) -> String {
        let url = real_node::service_url(
            &self.client,
            &self.ns,
            &format!("{PIPELINE}-{role}"),
            "http",
        )
        .await;
        url.trim_start_matches("http://").to_owned()
    }

    /// Starts the open-loop load generator (`tailwarden-loadgen run`) with `args`, its output in
    /// `<logs>/<name>.log`. Connections are replaced every 50 requests, so pods added behind the
    /// Service take their share.
    pub async fn load(&self, name: &str, args: &[&str]) -> Load {
        let log = std::fs::File::create(self.logs.join(format!("{name}.log"))).unwrap();
        let child = Command::new(crate::loadgen_bin())
            .arg("run")
            .args(["--ingest", &self.service("ingest").await])
            .args(["--serve", &self.service("serve").await])
            .args(["--reconnect-after", "50"])
            .args(args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("tailwarden-loadgen starts");
        Load { child }
    }

    /// Starts `tailwarden-loadgen run` with the arguments `args`.
    pub async fn load_with(&self, name: &str, args: &[String]) -> Load {
        self.load(name, &args.iter().map(String::as_str).collect::<Vec<_>>())
            .await
    }

    /// Reads at `rate` per second ([`read_args`]).
    pub async fn reads(&self, name: &str, rate: &str) -> Load {
        self.load_with(name, &read_args(rate)).await
    }

    /// [`WRITES`] small batches of updates per second over 1,000 products, for 20 minutes.
    pub async fn writes(&self) -> Load {
        let args = [
            "--write-rate",
            WRITES,
            "--batch",
            "5",
            "--duration",
            "1200",
            "--keys",
            "1000",
        ];
        self.load("writes", &args).await
    }

    /// The pipeline's `role` Deployment (`ingest` or `serve`).
    pub async fn deployment(&self, role: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.client.clone(), &self.ns)
            .get(&format!("{PIPELINE}-{role}"))
            .await
            .ok()
    }

    /// Ready pods of `role`.
    pub async fn ready_replicas(&self, role: &str) -> i32 {
        self.deployment(role)
            .await
            .and_then(|d| d.status?.ready_replicas)
            .unwrap_or(0)
    }

    /// The replicas the operator set on `role`.
    pub async fn spec_replicas(&self, role: &str) -> Option<i32> {
        self.deployment(role).await?.spec?.replicas
    }

    /// Whether every serve pod runs `image` and is Ready, and the template names it.
    pub async fn serve_rolled_to(&self, image: &str) -> bool {
        let Some(d) = self.deployment("serve").await else {
            return false;
        };
        let template = d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].image.clone());
        let status = d.status.unwrap_or_default();
        let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
        template.as_deref() == Some(image)
            && status.updated_replicas == Some(want)
            && status.ready_replicas == Some(want)
            && status.replicas == Some(want)
    }

    /// The decisions of `kind` in the history (not dry runs), oldest first.
    pub async fn decisions(&self, kind: DecisionKind) -> Vec<Decision> {
        let mut d: Vec<Decision> = self
            .pipelines
            .get(PIPELINE)
            .await
            .ok()
            .and_then(|p| p.status)
            .map(|s| s.decisions)
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.kind == kind && !d.dry_run)
            .collect();
        d.sort_by(|a, b| a.time.cmp(&b.time));
        d
    }

    /// The serve P99 in milliseconds as the operator's engine reads it: over its signal window,
    /// from the pipeline's pods.
    pub async fn p99_ms(&self) -> Option<f64> {
        let q = format!(
            r#"histogram_quantile(0.99, sum by (le) (rate(tailwarden_read_duration_seconds_bucket{{namespace="{}",pipeline="{PIPELINE}",class="product"}}[{SIGNAL_WINDOW}])))"#,
            self.ns
        );
        self.prometheus.query(&q).await.map(|s| s * 1000.0)
    }

    /// Reads answered with a 500 per second, over 15 s.
    pub fn read_errors_query(&self) -> String {
        format!(
            // `or vector(0)`: once the failing pods are gone, so are all the 500 series.
            r#"sum(rate(tailwarden_read_requests_total{{namespace="{}",pipeline="{PIPELINE}",code="500"}}[15s])) or vector(0)"#,
            self.ns
        )
    }

    /// Raises a load in steps until the operator scales `kind` up: each step starts the load of
    /// `args(rate)` (stopping the one before) and waits at most 3 evaluations for a decision
    /// above 1 replica, calling `watch` every second. Returns the running load and that decision.
    pub async fn ramp<W, Fut>(
        &self,
        what: &str,
        rates: &[u32],
        kind: DecisionKind,
        args: impl Fn(&str) -> Vec<String>,
        mut watch: W,
    ) -> (Load, Decision)
    where
        W: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut load = None;
        for rate in rates {
            drop(load.take());
            let step_load = self
                .load_with(&format!("{what}-{rate}"), &args(&rate.to_string()))
                .await;
            load = Some(step_load);
            let step = Instant::now();
            while step.elapsed() < INTERVAL * 3 {
                let decisions = self.decisions(kind).await;
                if let Some(up) = decisions.into_iter().find(|d| replicas_after(d) > 1) {
                    eprintln!("{what}: scaled up at {rate}/s");
                    return (load.expect("started above"), up);
                }
                watch().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        panic!("{what}: no scale-up before the rate reached its maximum");
    }

    /// Reads rise in the steps of [`RAMP_READS`] until serve scales up; returns the load, still
    /// running, and the decision.
    pub async fn read_spike(&self) -> (Load, Decision) {
        self.read_spike_watched(|| async {}).await
    }

    /// [`Bed::read_spike`], calling `watch` every second while it waits for the decision.
    pub async fn read_spike_watched<W, Fut>(&self, watch: W) -> (Load, Decision)
    where
        W: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        self.ramp(
            "reads",
            &RAMP_READS,
            DecisionKind::ScaleServe,
            read_args,
            watch,
        )
        .await
    }

    /// Waits until `role` has at least `n` Ready pods.
    pub async fn wait_ready_replicas(&self, role: &str, n: i32, timeout: Duration) {
        crate::wait_for(&format!("{n} {role} pods Ready"), timeout, || async {
            (self.ready_replicas(role).await >= n).then_some(())
        })
        .await
    }

    /// The data-plane image and the `<version>-<tag>` versions of it for a bad and a fixed
    /// release: the node's image re-tagged, so that each is a change of version.
    pub fn tag_versions(&self) -> Versions {
        let version = real_node::image_version();
        let image = real_node::image("tailwarden-dataplane");
        for tag in ["bad", "fixed"] {
            real_node::ctr(&[
                "images",
                "tag",
                "--force",
                &format!("{image}:{version}"),
                &format!("{image}:{version}-{tag}"),
            ]);
        }
        Versions {
            bad: format!("{version}-bad"),
            fixed: format!("{version}-fixed"),
            image,
        }
    }

    /// Patches the pipeline's spec with `spec`, merged.
    pub async fn patch_spec(&self, spec: serde_json::Value) {
        self.pipelines
            .patch(
                PIPELINE,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": spec })),
            )
            .await
            .unwrap();
    }

    /// Once rollouts are open, rolls out the bad version, whose workers fail 5 % of reads (fault
    /// injection), and waits for serve's template to name it and for reads to fail. Only the
    /// template: the freeze may pause the rollout before it ends, as the first failing pod can
    /// spend a young budget.
    pub async fn roll_out_bad_version(&self, versions: &Versions) {
        // A freeze left by an earlier scene (a spent latency budget) would hold it back.
        self.wait_condition("RolloutFrozen", "False", INTERVAL * 4)
            .await;
        self.patch_spec(json!({"dataplane": {"version": versions.bad,
            "faultInjection": {"readErrorPercent": 5}}}))
            .await;
        let bad_image = format!("{}:{}", versions.image, versions.bad);
        crate::wait_for(
            "serve's template to name the bad version",
            Duration::from_secs(60),
            || async {
                let d = self.deployment("serve").await?;
                let image = d.spec?.template.spec?.containers[0].image.clone()?;
                (image == bad_image).then_some(())
            },
        )
        .await;
        let errors = self.read_errors_query();
        crate::wait_for("reads to fail", Duration::from_secs(60), || async {
            (self.prometheus.query(&errors).await? > 0.0).then_some(())
        })
        .await;
    }

    /// Waits for the condition `type_` to have `status`; returns its reason and message.
    pub async fn wait_condition(
        &self,
        type_: &str,
        status: &str,
        timeout: Duration,
    ) -> (String, String) {
        crate::wait_for(&format!("{type_}={status}"), timeout, || async {
            let (now, reason, message) =
                real_node::condition(&self.pipelines, PIPELINE, type_).await?;
            (now == status).then_some((reason, message))
        })
        .await
    }

    /// Asks for the fixed version (fault injection removed) and waits until the status lists
    /// what the freeze holds back of it.
    pub async fn ask_for_fixed_version(&self, versions: &Versions) -> Vec<String> {
        self.patch_spec(json!({"dataplane": {"version": versions.fixed, "faultInjection": null}}))
            .await;
        crate::wait_for(
            "the fixed version to be held back",
            INTERVAL * 2,
            || async {
                let rollout = self.pipelines.get(PIPELINE).await.ok()?.status?.rollout;
                (!rollout.held_back.is_empty()).then_some(rollout.held_back)
            },
        )
        .await
    }

    /// Sets the accountable override annotations (for an hour), waits until serve runs the
    /// fixed version, and returns the override as the status shows it.
    pub async fn override_freeze(&self, versions: &Versions, by: &str, why: &str) -> MarkStatus {
        let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
        let mark = Mark::Override;
        let patch = json!({"metadata": {"annotations": {
            mark.annotation(): why, mark.until_annotation(): until, mark.by_annotation(): by,
        }}});
        self.pipelines
            .patch(PIPELINE, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        let fixed_image = format!("{}:{}", versions.image, versions.fixed);
        crate::wait_for(
            "serve to roll out the fixed version",
            Duration::from_secs(120),
            || async { self.serve_rolled_to(&fixed_image).await.then_some(()) },
        )
        .await;
        crate::wait_for("the override in the status", INTERVAL, || async {
            let mark = self
                .pipelines
                .get(PIPELINE)
                .await
                .ok()?
                .status?
                .rollout
                .freeze_override?;
            (mark.state == MarkState::Active).then_some(mark)
        })
        .await
    }

    /// Deletes the namespace (and with it the pods) and removes the logs.
    pub async fn finish(self) {
        crate::delete_namespace(&self.client, &self.ns).await;
        let _ = std::fs::remove_dir_all(&self.logs);
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

/// The image of a bad and a fixed release ([`Bed::tag_versions`]).
pub struct Versions {
    /// The data-plane image, without a tag.
    pub image: String,
    /// The bad release's version (its tag).
    pub bad: String,
    /// The fixed release's version.
    pub fixed: String,
}

/// A running load generator, killed when dropped.
pub struct Load {
    child: Child,
}

impl Load {
    /// Waits for the run to end by itself, at most `timeout`.
    pub async fn finish(mut self, timeout: Duration) {
        crate::wait_for("the load run to end", timeout, || {
            let done = self.child.try_wait().ok().flatten().is_some();
            async move { done.then_some(()) }
        })
        .await;
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
