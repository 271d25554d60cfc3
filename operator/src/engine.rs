//! The SLO engine: every evaluation interval it reads the SLIs of the pipelines that are due from
//! Prometheus, evaluates each ([`crate::evaluation`]), stores the verdicts and asks the controller
//! to reconcile the pipelines whose verdict changed. A pipeline is due once its own
//! `spec.autoscaling.evaluationInterval` has elapsed ([`crate::schedule`]).
//!
//! Queries are batched across pipelines: each distinct expression (an SLI over a window, grouped
//! by `namespace, pipeline`) is sent once per Prometheus, whatever the number of pipelines, and
//! the distinct queries run concurrently with a timeout.
//!
//! Where the generated recording rules are loaded, the SLI error ratios come from the recorded
//! `slo:sli_error:ratio_rate<window>` series, one cheap query per window for every pipeline and
//! SLO. Only the ratios nobody recorded are computed from the raw counters, whose long windows
//! read every sample of up to 30 days.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_http_query::Client as Prometheus;
use prometheus_http_query::response::Data;
use tailwarden_contract::backend::{self, Backend, Reachability};
use tailwarden_contract::config::Role;
use tailwarden_crds::RetailPipeline;
use tailwarden_slo::objective::slos;
use tailwarden_slo::promql;
use tailwarden_slo::scaling::ScalingState;
use tailwarden_slo::window::read_windows;
use tracing::{info, warn};

use crate::conditions::{DEGRADED, is_true};
use crate::evaluation::{self, Readings, objectives};
use crate::metrics::Metrics;
use crate::prometheus_access::{self, PrometheusAccess, TlsMaterial};
use crate::reachability;
use crate::schedule;
use crate::verdict::Verdicts;

/// Every live query groups by these labels, which scraping attaches to the data plane's series.
const GROUPING: &str = "namespace, pipeline";

/// Engine settings (operator flags).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Prometheus used by pipelines that do not name their own.
    pub default_prometheus: Option<String>,
    /// How often the engine ticks: the fastest any pipeline is evaluated.
    pub interval: Duration,
    /// Deadline of one query.
    pub query_timeout: Duration,
    /// Queries in flight at once per pass.
    pub concurrency: usize,
    /// Window of the rate-based signals that drive scaling (P95/P99, request rate, throughput,
    /// backlog slope). Short, so a breach shows within a pass or two and the two quantile
    /// queries, the costliest of a pass, read few samples; it needs at least 4 scrapes.
    pub signal_window: Duration,
    /// TLS trust, client certificate and credentials for Prometheus, read from files each pass.
    pub access: PrometheusAccess,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_prometheus: None,
            interval: Duration::from_secs(15),
            query_timeout: Duration::from_secs(10),
            concurrency: 8,
            signal_window: Duration::from_secs(120),
            access: PrometheusAccess::default(),
        }
    }
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Pipelines evaluated.
    pub pipelines: usize,
    /// Live pipelines left alone because their own interval has not elapsed.
    pub not_due: usize,
    /// Distinct queries sent.
    pub queries: usize,
    /// Queries that failed.
    pub failed_queries: usize,
    /// SLI error ratios (pipeline × SLO × window) read from recording rules, not raw counters.
    pub recorded_ratios: usize,
    /// Pipelines whose verdict changed.
    pub changed: Vec<ObjectRef<RetailPipeline>>,
    /// How long the pass took.
    pub duration: Duration,
}

/// What one distinct query feeds.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    ErrorRatio {
        slo: String,
        window: Duration,
    },
    Quantile(f64),
    RequestRate,
    FreshnessLag,
    Backlog,
    BacklogSlope,
    Throughput,
    /// Groups whose read histogram lacks this latency bound.
    MissingBucket(Duration),
    /// Workers per (role, backend, state) of `tailwarden_backend_state`.
    BackendState,
    /// Partitions per consumed Kafka topic.
    KafkaPartitions,
}

/// The SLO engine.
pub struct Engine {
    /// The HTTP client and the TLS material it was built from; rebuilt when the files change.
    http: Mutex<(TlsMaterial, reqwest::Client)>,
    config: EngineConfig,
    verdicts: Verdicts,
    metrics: Arc<Metrics>,
    scaling: Mutex<HashMap<(String, String), (ScalingState, ScalingState)>>,
    /// When each live pipeline was last evaluated, by the passes' `now`.
    evaluated: Mutex<HashMap<ObjectRef<RetailPipeline>, Timestamp>>,
}

/// Which live pipelines a pass evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    /// Every live pipeline.
    All,
    /// Those whose own evaluation interval has elapsed.
    Due,
}

impl Engine {
    /// An engine that writes into `verdicts`.
    pub fn new(config: EngineConfig, verdicts: Verdicts, metrics: Arc<Metrics>) -> Self {
        let plain = TlsMaterial::default();
        let http = prometheus_access::client(&plain, config.query_timeout)
            .expect("a client without TLS files always builds");
        Self {
            http: Mutex::new((plain, http)),
            config,
            verdicts,
            metrics,
            scaling: Mutex::default(),
            evaluated: Mutex::default(),
        }
    }

    /// The PromQL a pass sends for these pipelines, once each (benchmarks time them one by one).
    pub fn queries(&self, pipelines: &[Arc<RetailPipeline>], now: Timestamp) -> Vec<String> {
        let refs: Vec<_> = pipelines.iter().collect();
        distinct_queries(&refs, now, self.config.signal_window, &Recorded::new())
            .into_iter()
            .map(|(q, _)| q)
            .collect()
    }

    /// Ticks every `interval` until dropped, evaluating the pipelines that are due and asking for
    /// a reconcile of changed ones.
    pub async fn run(
        self: Arc<Self>,
        store: Store<RetailPipeline>,
        trigger: UnboundedSender<ObjectRef<RetailPipeline>>,
    ) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let pipelines = store.state();
            let report = self.scheduled_pass(&pipelines, Timestamp::now()).await;
            if report.failed_queries > 0 {
                warn!(
                    failed = report.failed_queries,
                    queries = report.queries,
                    "SLO queries failed"
                );
            }
            info!(
                pipelines = report.pipelines,
                not_due = report.not_due,
                queries = report.queries,
                changed = report.changed.len(),
                millis = report.duration.as_millis() as u64,
                "SLO evaluation pass"
            );
            for r in report.changed {
                let _ = trigger.unbounded_send(r);
            }
        }
    }

    /// One evaluation of every live pipeline of `pipelines` as of `now`, due or not: for callers
    /// that choose when to evaluate (tests, benchmarks).
    pub async fn pass(&self, pipelines: &[Arc<RetailPipeline>], now: Timestamp) -> PassReport {
        self.pass_of(pipelines, now, Select::All).await
    }

    /// The pass of one tick at `now`: only the pipelines that are due are read from Prometheus
    /// and evaluated; the others keep their verdict.
    pub async fn scheduled_pass(
        &self,
        pipelines: &[Arc<RetailPipeline>],
        now: Timestamp,
    ) -> PassReport {
        self.pass_of(pipelines, now, Select::Due).await
    }

    /// A pass over the live pipelines of `pipelines` that `select` picks.
    async fn pass_of(
        &self,
        pipelines: &[Arc<RetailPipeline>],
        now: Timestamp,
        select: Select,
    ) -> PassReport {
        let start = Instant::now();
        let mut report = PassReport::default();
        let live: Vec<_> = pipelines
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let keep: HashSet<ObjectRef<RetailPipeline>> =
            live.iter().map(|p| ObjectRef::from(p.as_ref())).collect();
        self.verdicts.retain(|pipeline| keep.contains(pipeline));
        // A pipeline deleted while the last pass evaluated it loses the budgets that pass set.
        self.metrics
            .pipelines
            .retain(|ns, name| keep.contains(&ObjectRef::new(name).within(ns)));
        let before = live.len();
        let live = self.select(live, now, select, &keep);
        report.not_due = before - live.len();

        // Group pipelines by the Prometheus they read.
        let mut by_url: BTreeMap<Option<String>, Vec<&Arc<RetailPipeline>>> = BTreeMap::new();
        for p in &live {
            let url = p
                .spec
                .prometheus
                .as_ref()
                .map(|p| p.url.clone())
                .or_else(|| self.config.default_prometheus.clone());
            by_url.entry(url).or_default().push(p);
        }
        for (url, group) in by_url {
            let readings = match &url {
                Some(url) => self.read(url, &group, now, &mut report).await,
                None => group
                    .iter()
                    .map(|p| {
                        let failures = vec!["no Prometheus configured: set spec.prometheus.url or the operator's --prometheus-url".into()];
                        (key(p), Readings { failures, ..Readings::default() })
                    })
                    .collect(),
            };
            for p in group {
                report.pipelines += 1;
                if self.evaluate(p, readings.get(&key(p)).cloned().unwrap_or_default(), now) {
                    report.changed.push(ObjectRef::from(p.as_ref()));
                }
            }
        }
        report.duration = start.elapsed();
        self.metrics
            .slo_pass(report.duration, report.queries, report.failed_queries);
        report
    }

    /// The pipelines of `live` this pass evaluates, noting `now` as their last evaluation. The
    /// state of pipelines not in `keep` (deleted) is forgotten.
    fn select<'a>(
        &self,
        live: Vec<&'a Arc<RetailPipeline>>,
        now: Timestamp,
        select: Select,
        keep: &HashSet<ObjectRef<RetailPipeline>>,
    ) -> Vec<&'a Arc<RetailPipeline>> {
        let mut evaluated = self
            .evaluated
            .lock()
            .expect("evaluated lock is never poisoned");
        evaluated.retain(|p, _| keep.contains(p));
        live.into_iter()
            .filter(|p| {
                let r = ObjectRef::from(p.as_ref());
                // The CRD refuses an interval that does not parse; were one to get through, zero
                // evaluates the pipeline on every tick rather than never.
                let interval = schedule::interval(&p.spec).unwrap_or_default();
                let due = select == Select::All
                    || schedule::is_due(
                        evaluated.get(&r).copied(),
                        now,
                        interval,
                        self.config.interval,
                    );
                if due {
                    evaluated.insert(r, now);
                }
                due
            })
            .collect()
    }

    /// Evaluates one pipeline and stores its verdict; returns whether the verdict changed.
    fn evaluate(&self, p: &RetailPipeline, readings: Readings, now: Timestamp) -> bool {
        let (ns, name) = key(p);
        let status = p.status.as_ref();
        let mut scaling = self.scaling.lock().expect("scaling lock is never poisoned");
        let (serve_state, ingest_state) = scaling
            .entry((ns.clone(), name.clone()))
            .or_default()
            .clone();
        let replicas = |r: Option<i32>, min: i32| r.filter(|r| *r > 0).unwrap_or(min).max(0) as u32;
        let ctx = evaluation::Context {
            spec: &p.spec,
            serve_replicas: replicas(
                status.map(|s| s.serve.desired_replicas),
                p.spec.serve.replicas.min,
            ),
            ingest_replicas: replicas(
                status.map(|s| s.ingest.desired_replicas),
                p.spec.ingest.replicas.min,
            ),
            was_frozen: status.is_some_and(|s| s.rollout.budget_frozen),
            was_degraded: is_true(status, DEGRADED),
            serve_state: &serve_state,
            ingest_state: &ingest_state,
            // How often this pipeline is evaluated: its next chance to react.
            interval: schedule::cadence(
                schedule::interval(&p.spec).unwrap_or_default(),
                self.config.interval,
            ),
            now,
        };
        match evaluation::evaluate(&ctx, &readings) {
            Ok(outcome) => {
                self.metrics
                    .pipelines
                    .budgets((&ns, &name), &outcome.verdict.slo_budgets);
                scaling.insert(
                    (ns.clone(), name.clone()),
                    (outcome.serve_state, outcome.ingest_state),
                );
                self.verdicts
                    .set(ObjectRef::from(p), outcome.verdict, Instant::now())
            }
            // The reconciler reports spec errors on the Ready condition.
            Err(_) => false,
        }
    }

    /// Reads every SLI of `pipelines` from one Prometheus.
    async fn read(
        &self,
        url: &str,
        pipelines: &[&Arc<RetailPipeline>],
        now: Timestamp,
        report: &mut PassReport,
    ) -> HashMap<(String, String), Readings> {
        let mut readings: HashMap<(String, String), Readings> = pipelines
            .iter()
            .map(|p| (key(p), Readings::default()))
            .collect();
        let (http, authorization) = match self.http_client() {
            Ok(c) => c,
            Err(err) => {
                let why = format!("Prometheus access settings unusable: {err}");
                warn!(error = %err, "Prometheus access settings unusable");
                for r in readings.values_mut() {
                    r.failures.push(why.clone());
                }
                return readings;
            }
        };
        let prometheus = match Prometheus::from(http, url) {
            Ok(client) => client,
            Err(err) => {
                for r in readings.values_mut() {
                    r.failures
                        .push(format!("Prometheus URL {url:?} is unusable: {err}"));
                }
                return readings;
            }
        };
        let at = now.as_second();
        let auth = authorization.as_ref();
        let recorded = self
            .read_recorded(&prometheus, auth, pipelines, now, report)
            .await;
        for ((ns, pipeline, slo, window), value) in &recorded {
            let Some(r) = readings.get_mut(&(ns.clone(), pipeline.clone())) else {
                continue;
            };
            report.recorded_ratios += 1;
            // NaN is what PromQL gives for 0/0 (no traffic): no data, not a measurement.
            if value.is_finite() {
                let target = Target::ErrorRatio {
                    slo: slo.clone(),
                    window: *window,
                };
                record(r, &target, &HashMap::new(), *value);
            }
        }
        let queries = distinct_queries(pipelines, now, self.config.signal_window, &recorded);
        report.queries += queries.len();
        // Each answer is folded into the readings as it arrives: only the queries in flight hold
        // their answers, not every answer of the pass at once.
        let mut results = std::pin::pin!(self.send(&prometheus, auth, queries, at));
        while let Some((query, targets, result)) = results.next().await {
            let series = match &result {
                Ok(r) => match r.data() {
                    Data::Vector(v) => v.as_slice(),
                    _ => &[],
                },
                Err(err) => {
                    report.failed_queries += 1;
                    let why = format!(
                        "query failed ({}): {}",
                        prometheus_access::describe(err),
                        truncate(&query)
                    );
                    for r in readings.values_mut() {
                        if !r.failures.contains(&why) {
                            r.failures.push(why.clone());
                        }
                    }
                    continue;
                }
            };
            for s in series {
                let (labels, value) = (s.metric(), s.sample().value());
                // NaN is what PromQL gives for 0/0 (no traffic): no data, not a measurement.
                if !value.is_finite() {
                    continue;
                }
                let (Some(ns), Some(pipeline)) = (labels.get("namespace"), labels.get("pipeline"))
                else {
                    continue;
                };
                let Some(r) = readings.get_mut(&(ns.clone(), pipeline.clone())) else {
                    continue;
                };
                for target in &targets {
                    record(r, target, labels, value);
                }
            }
        }
        readings
    }

    /// The recorded error ratios of the windows these pipelines need. A window whose query fails
    /// is simply not recorded: its ratios fall back to the raw counters.
    async fn read_recorded(
        &self,
        prometheus: &Prometheus,
        authorization: Option<&reqwest::header::HeaderValue>,
        pipelines: &[&Arc<RetailPipeline>],
        now: Timestamp,
        report: &mut PassReport,
    ) -> Recorded {
        let windows: BTreeSet<Duration> = pipelines
            .iter()
            .filter_map(|p| objectives(&p.spec).ok())
            .flat_map(|o| read_windows(&o, now))
            .collect();
        let queries: Vec<_> = windows
            .into_iter()
            .map(|w| {
                let metric = promql::sli_error_metric(w);
                (format!("max by ({GROUPING}, slo) ({metric})"), w)
            })
            .collect();
        report.queries += queries.len();
        let mut recorded = Recorded::new();
        let mut results =
            std::pin::pin!(self.send(prometheus, authorization, queries, now.as_second()));
        while let Some((_, window, result)) = results.next().await {
            let Ok(result) = result else {
                report.failed_queries += 1;
                continue;
            };
            let Data::Vector(v) = result.data() else {
                continue;
            };
            for s in v {
                let labels = s.metric();
                if let (Some(ns), Some(pipeline), Some(slo)) = (
                    labels.get("namespace"),
                    labels.get("pipeline"),
                    labels.get("slo"),
                ) {
                    recorded.insert(
                        (ns.clone(), pipeline.clone(), slo.clone(), window),
                        s.sample().value(),
                    );
                }
            }
        }
        recorded
    }

    /// Sends `queries` concurrently, each evaluated at `at` with the query timeout, and yields
    /// each answer as it arrives.
    fn send<'a, T: 'a>(
        &self,
        prometheus: &'a Prometheus,
        authorization: Option<&'a reqwest::header::HeaderValue>,
        queries: Vec<(String, T)>,
        at: i64,
    ) -> impl futures::Stream<
        Item = (
            String,
            T,
            Result<prometheus_http_query::response::PromqlResult, prometheus_http_query::Error>,
        ),
    > + 'a {
        let timeout = self.config.query_timeout.as_millis() as i64;
        futures::stream::iter(queries)
            .map(move |(query, targets)| async move {
                let mut request = prometheus.query(query.as_str()).at(at).timeout(timeout);
                if let Some(value) = authorization {
                    request = request.header(reqwest::header::AUTHORIZATION, value.clone());
                }
                let result = request.get().await;
                (query, targets, result)
            })
            .buffer_unordered(self.config.concurrency.max(1))
    }
}

impl Engine {
    /// The HTTP client for this pass and the `Authorization` header to send, from the access
    /// files as they are now: a rotated credential is used at once, and a changed CA or client
    /// certificate rebuilds the client.
    fn http_client(
        &self,
    ) -> Result<
        (reqwest::Client, Option<reqwest::header::HeaderValue>),
        prometheus_access::AccessError,
    > {
        let access = &self.config.access;
        let tls = access.tls_material()?;
        let authorization = access.authorization()?;
        let mut cached = self.http.lock().expect("http lock is never poisoned");
        if cached.0 != tls {
            let client = prometheus_access::client(&tls, self.config.query_timeout)?;
            *cached = (tls, client);
        }
        Ok((cached.1.clone(), authorization))
    }
}

/// Recorded SLI error ratios: (namespace, pipeline, slo, window) → value.
type Recorded = HashMap<(String, String, String, Duration), f64>;

/// Every distinct query the pipelines need, with what each answer feeds. Pipelines with the same
/// SLO definitions share queries, so defaults cost the same for one pipeline or a thousand.
fn distinct_queries(
    pipelines: &[&Arc<RetailPipeline>],
    now: Timestamp,
    signal_window: Duration,
    recorded: &Recorded,
) -> Vec<(String, Vec<Target>)> {
    let mut queries: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    let mut add = |query: String, target: Target| {
        let targets = queries.entry(query).or_default();
        if !targets.contains(&target) {
            targets.push(target);
        }
    };
    // Every latency bound of the fleet, for the bucket checks below.
    let mut bounds = BTreeSet::new();
    for p in pipelines {
        let Ok(objectives) = objectives(&p.spec) else {
            continue;
        };
        bounds.extend(objectives.latency.iter().flat_map(|l| [l.p95, l.p99]));
        let windows = read_windows(&objectives, now);
        let (ns, name) = key(p);
        for slo in slos(&objectives) {
            for &window in &windows {
                let key = (ns.clone(), name.clone(), slo.name.clone(), window);
                if recorded.contains_key(&key) {
                    continue;
                }
                // Straight from the data plane's metrics, for pipelines whose rules are not
                // (yet) loaded.
                add(
                    slo.error_ratio_without_rules("", window, GROUPING),
                    Target::ErrorRatio {
                        slo: slo.name.clone(),
                        window,
                    },
                );
            }
        }
    }
    let grouping_class = format!("{GROUPING}, class");
    // Workers whose histogram lacks a configured bound (ones that predate
    // serve.latencyBoundsSeconds): normally an empty answer, one query per distinct bound.
    for bound in bounds {
        add(
            promql::missing_bucket("", bound, &grouping_class),
            Target::MissingBucket(bound),
        );
    }
    for q in [0.95, 0.99] {
        add(
            promql::latency_quantile("", None, q, signal_window, &grouping_class),
            Target::Quantile(q),
        );
    }
    add(
        promql::request_rate("", signal_window, GROUPING),
        Target::RequestRate,
    );
    add(
        promql::freshness_lag_by_class("", GROUPING),
        Target::FreshnessLag,
    );
    add(
        promql::ingest_backlog("", signal_window, GROUPING),
        Target::Backlog,
    );
    add(
        promql::queue_depth_slope("", signal_window, GROUPING),
        Target::BacklogSlope,
    );
    add(
        promql::accepted_rate("", signal_window, GROUPING),
        Target::Throughput,
    );
    // Only pipelines on Cassandra or Kafka have workers that report these.
    if pipelines
        .iter()
        .any(|p| reachability::uses_remote_backends(&p.spec))
    {
        add(
            format!(
                "count by ({GROUPING}, role, backend, state) ({} == 1)",
                backend::STATE_SERIES
            ),
            Target::BackendState,
        );
        add(
            format!("max by ({GROUPING}, topic) (tailwarden_kafka_topic_partitions)"),
            Target::KafkaPartitions,
        );
    }
    queries.into_iter().collect()
}

fn record(r: &mut Readings, target: &Target, labels: &HashMap<String, String>, value: f64) {
    let class = labels.get("class");
    let label = |name: &str| labels.get(name).map(String::as_str).unwrap_or_default();
    match target {
        Target::ErrorRatio { slo, window } => {
            r.error_ratios
                .entry(slo.clone())
                .or_default()
                .insert(*window, value);
        }
        Target::Quantile(q) => {
            if let Some(class) = class {
                let map = if *q < 0.99 { &mut r.p95 } else { &mut r.p99 };
                map.insert(class.clone(), value);
            }
        }
        Target::RequestRate => r.request_rate = Some(value),
        Target::FreshnessLag => {
            if let Some(class) = class {
                r.freshness_by_class.insert(class.clone(), value);
                r.freshness_lag = Some(r.freshness_lag.map_or(value, |l| l.max(value)));
            }
        }
        Target::Backlog => r.backlog = Some(value),
        Target::BacklogSlope => r.backlog_slope = Some(value),
        Target::Throughput => r.throughput = Some(value),
        Target::MissingBucket(bound) => {
            if let Some(class) = class {
                r.unbucketed.insert((class.clone(), *bound));
            }
        }
        // Series of another worker version, with labels outside the closed sets, are skipped.
        Target::BackendState => {
            if let (Ok(role), Ok(backend), Ok(state)) = (
                label("role").parse::<Role>(),
                label("backend").parse::<Backend>(),
                label("state").parse::<Reachability>(),
            ) {
                *r.backends
                    .entry((role, backend))
                    .or_default()
                    .entry(state)
                    .or_default() += value as u32;
            }
        }
        Target::KafkaPartitions => {
            if let Some(topic) = labels.get("topic") {
                r.kafka_partitions.insert(topic.clone(), value as i32);
            }
        }
    }
}

fn key(p: &RetailPipeline) -> (String, String) {
    (p.namespace().unwrap_or_default(), p.name_any())
}

fn truncate(query: &str) -> String {
    query.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cassandra_pipeline, pipeline};

    const SIGNAL: Duration = Duration::from_secs(120);

    #[test]
    fn pipelines_with_the_same_objectives_share_every_query() {
        let one = [Arc::new(cassandra_pipeline("a"))];
        let many: Vec<_> = (0..50)
            .map(|i| Arc::new(cassandra_pipeline(&format!("p{i}"))))
            .collect();
        let q1 = distinct_queries(
            &one.iter().collect::<Vec<_>>(),
            Timestamp::now(),
            SIGNAL,
            &Recorded::new(),
        );
        let q50 = distinct_queries(
            &many.iter().collect::<Vec<_>>(),
            Timestamp::now(),
            SIGNAL,
            &Recorded::new(),
        );
        assert_eq!(
            q1.len(),
            q50.len(),
            "the query count does not grow with pipelines"
        );
        // 13 SLOs over 4 page windows and the 30d period, 7 signal queries, one bucket check
        // per distinct latency bound (120ms and 200ms), and the backends' states and partitions.
        assert_eq!(q1.len(), 13 * 5 + 7 + 2 + 2);
        let standalone = distinct_queries(
            &[&Arc::new(pipeline("s"))],
            Timestamp::now(),
            SIGNAL,
            &Recorded::new(),
        );
        assert_eq!(
            standalone.len(),
            13 * 5 + 7 + 2,
            "no backend queries for embedded workers without Kafka"
        );
        assert!(
            q1.iter().all(|(q, _)| q.contains("namespace, pipeline")),
            "every query is batched by pipeline"
        );
    }

    #[test]
    fn recorded_ratios_are_not_computed_again_from_raw_counters() {
        let (a, b) = (Arc::new(pipeline("a")), Arc::new(pipeline("b")));
        let now = Timestamp::now();
        let objectives = objectives(&a.spec).unwrap();
        let windows = read_windows(&objectives, now);
        let mut recorded = Recorded::new();
        for slo in slos(&objectives) {
            for &w in &windows {
                recorded.insert(("retail".into(), "a".into(), slo.name.clone(), w), 0.0);
            }
        }
        let only_a = distinct_queries(&[&a], now, SIGNAL, &recorded);
        assert_eq!(
            only_a.len(),
            7 + 2,
            "only the signals and bucket checks: {only_a:?}"
        );
        assert!(
            only_a.iter().all(|(_, targets)| targets
                .iter()
                .all(|t| !matches!(t, Target::ErrorRatio { .. }))),
            "no raw error ratio for a recorded pipeline"
        );
        // A pipeline whose rules are not loaded still gets every ratio from the raw counters.
        let both = distinct_queries(&[&a, &b], now, SIGNAL, &recorded);
        assert_eq!(both.len(), 13 * 5 + 7 + 2);
    }

    #[test]
    fn a_different_threshold_adds_only_its_own_queries() {
        let mut custom = pipeline("b");
        custom.spec.slos.read_latency[0].p99 = "150ms".into();
        let ps = [Arc::new(pipeline("a")), Arc::new(custom)];
        let q = distinct_queries(
            &ps.iter().collect::<Vec<_>>(),
            Timestamp::now(),
            SIGNAL,
            &Recorded::new(),
        );
        assert_eq!(
            q.len(),
            13 * 5 + 7 + 2 + 5 + 1,
            "one more latency SLO over five windows, and its bound's bucket check"
        );
    }

    fn engine(prometheus: Option<&str>) -> (Engine, Verdicts) {
        let verdicts = Verdicts::default();
        let config = EngineConfig {
            default_prometheus: prometheus.map(Into::into),
            query_timeout: Duration::from_secs(2),
            ..EngineConfig::default()
        };
        let engine = Engine::new(config, verdicts.clone(), Arc::new(Metrics::default()));
        (engine, verdicts)
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn evaluated_at(verdicts: &Verdicts, name: &str) -> String {
        verdicts
            .get(&ObjectRef::new(name).within("retail"))
            .expect("a verdict")
            .evaluated_at
    }

    #[tokio::test]
    async fn a_tick_evaluates_only_the_pipelines_whose_interval_has_elapsed() {
        let (engine, verdicts) = engine(None);
        let mut slow = pipeline("slow");
        slow.spec.autoscaling.evaluation_interval = "45s".into();
        let ps = [Arc::new(pipeline("fast")), Arc::new(slow)];
        let mut evaluated = vec![];
        for tick in 0..4 {
            let report = engine.scheduled_pass(&ps, at(tick * 15)).await;
            evaluated.push((report.pipelines, report.not_due));
        }
        assert_eq!(evaluated, [(2, 0), (1, 1), (1, 1), (2, 0)]);
        assert_eq!(evaluated_at(&verdicts, "fast"), at(45).to_string());
        assert_eq!(evaluated_at(&verdicts, "slow"), at(45).to_string());
        engine.scheduled_pass(&ps, at(60)).await;
        assert_eq!(
            evaluated_at(&verdicts, "slow"),
            at(45).to_string(),
            "a pipeline not due keeps its verdict"
        );
        // An explicit pass evaluates everything, due or not.
        assert_eq!(engine.pass(&ps, at(61)).await.pipelines, 2);
    }

    #[tokio::test]
    async fn a_deleted_pipeline_is_forgotten_and_due_when_it_comes_back() {
        let (engine, _) = engine(None);
        let mut p = pipeline("p");
        p.spec.autoscaling.evaluation_interval = "1h".into();
        let p = Arc::new(p);
        engine.scheduled_pass(std::slice::from_ref(&p), at(0)).await;
        engine.scheduled_pass(&[], at(15)).await;
        assert!(engine.evaluated.lock().unwrap().is_empty());
        let report = engine.scheduled_pass(&[p], at(30)).await;
        assert_eq!(report.pipelines, 1, "recreated under the same name");
    }

    #[tokio::test]
    async fn no_query_is_sent_when_no_pipeline_is_due() {
        // Nothing listens there: the queries fail at once, but they are sent.
        let (engine, _) = engine(Some("http://127.0.0.1:1"));
        let ps = [Arc::new(pipeline("p"))];
        let first = engine.scheduled_pass(&ps, at(0)).await;
        assert!(first.queries > 0);
        let early = engine.scheduled_pass(&ps, at(5)).await;
        assert_eq!((early.pipelines, early.queries), (0, 0));
    }

    #[test]
    fn backend_states_are_counted_per_role_and_unknown_labels_skipped() {
        let mut r = Readings::default();
        let series = |role: &str, state: &str| {
            HashMap::from([
                ("role".to_owned(), role.to_owned()),
                ("backend".to_owned(), "cassandra".to_owned()),
                ("state".to_owned(), state.to_owned()),
            ])
        };
        record(
            &mut r,
            &Target::BackendState,
            &series("serve", "timeout"),
            2.0,
        );
        record(
            &mut r,
            &Target::BackendState,
            &series("serve", "reachable"),
            1.0,
        );
        record(
            &mut r,
            &Target::BackendState,
            &series("serve", "melted"),
            1.0,
        );
        let serve = &r.backends[&(Role::Serve, Backend::Cassandra)];
        assert_eq!(serve.get(&Reachability::Timeout), Some(&2));
        assert_eq!(serve.get(&Reachability::Reachable), Some(&1));
        assert_eq!(
            serve.values().sum::<u32>(),
            3,
            "the unknown state is skipped"
        );
        let topic = HashMap::from([("topic".to_owned(), "p.pricing".to_owned())]);
        record(&mut r, &Target::KafkaPartitions, &topic, 4.0);
        assert_eq!(r.kafka_partitions.get("p.pricing"), Some(&4));
    }
}
