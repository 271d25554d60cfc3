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
use std::time::Duration;

use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use tailwarden_crds::RetailPipeline;

use crate::kafka::Topics;
use crate::operator_process::OperatorProcess;
use crate::prometheus::Prometheus;
use crate::{cassandra, real_node};

/// The pipeline of a bed.
pub const PIPELINE: &str = "shop";

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
    _operator: OperatorProcess,
    refresher: tokio::task::JoinHandle<()>,
}

impl Bed {
    /// Starts a bed named `prefix-…`: a Cassandra role and Secret of its own, the pipeline's
    /// topics, the operator (`operator_args` added), the pipeline from `spec` (storage and
    /// streams filled in, the dataplane image of the real node), and Prometheus. Returns once
    /// the pipeline is Ready and Prometheus scrapes its pods.
    pub async fn start(prefix: &str, mut spec: serde_json::Value, operator_args: &[&str]) -> Self {
        let client = crate::client().await;
        crate::install_crd(&client).await;
        let ns = real_node::namespace(&client, prefix).await;
        let logs = std::env::temp_dir().join(format!("tailwarden-{ns}"));
        std::fs::create_dir_all(&logs).unwrap();
        let suffix = format!("{:08x}", fastrand::u32(..));

        cassandra::credentials_secret(&client, &ns, &suffix).await;
        let topics = Topics::create(&format!("{prefix}-{suffix}"), 2);

        let mut args = vec!["--leader-elect", "false"];
        args.extend(operator_args);
        let operator = OperatorProcess::spawn(prefix, &ns, &args, &logs);

        crate::on_test_services(
            &mut spec,
            &prefix.replace('-', "_"),
            &suffix,
            &topics,
            "cassandra-credentials",
        );
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
            _operator: operator,
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
