//! The Grafana dashboards of `dashboards/`: current JSON models templated by a Prometheus data
//! source, namespace and pipeline, shipped unchanged by the chart, read strictly by the Grafana
//! Foundation SDK's dashboard model, and every query of every panel, annotation and variable
//! returning data from a real Prometheus that scrapes real data-plane workers under load and the
//! operator, with the pipeline's generated rules loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::dashboards::{
    BUILT_IN, DATASOURCE_VARIABLE, Dashboard, Query, chart_dir, dir, files, load_all, references,
    substitute,
};
use tailwarden_tests::dataplane_process::DataplaneProcess;
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::prometheus::Prometheus;
use tailwarden_tests::*;

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": DATASOURCE_VARIABLE})
}

#[test]
fn the_three_dashboards_are_current_models_with_unique_panel_ids() {
    let all = load_all();
    let names: Vec<_> = all.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(
        names,
        [
            "operator-health.json",
            "pipeline-detail.json",
            "slo-overview.json"
        ]
    );
    let mut uids = BTreeSet::new();
    for d in &all {
        let version = d.json["schemaVersion"].as_u64().unwrap_or(0);
        assert!(version >= 39, "{}: schemaVersion {version}", d.file);
        assert!(
            uids.insert(d.json["uid"].to_string()),
            "{}: uid reused",
            d.file
        );
        let mut ids = BTreeSet::new();
        for p in d.panels() {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{}: {p} has no id", d.file));
            assert!(ids.insert(id), "{}: panel id {id} used twice", d.file);
            assert!(
                p["gridPos"]["w"].is_u64(),
                "{}: {} has no gridPos",
                d.file,
                p["title"]
            );
        }
    }
}

#[test]
fn every_query_reads_the_datasource_variable() {
    for d in load_all() {
        let ds: Vec<_> = d
            .variables()
            .into_iter()
            .filter(|v| v["type"] == "datasource")
            .collect();
        assert_eq!(ds.len(), 1, "{}: one data source variable", d.file);
        assert_eq!(
            (&ds[0]["name"], &ds[0]["query"]),
            (&json!("datasource"), &json!("prometheus")),
            "{}",
            d.file
        );
        for p in d.panels().into_iter().filter(|p| p["type"] != "row") {
            assert_eq!(p["datasource"], datasource(), "{}: {}", d.file, p["title"]);
            let targets = p["targets"].as_array().map_or(0, Vec::len);
            assert!(targets > 0, "{}: {} has no query", d.file, p["title"]);
            for t in p["targets"].as_array().into_iter().flatten() {
                assert_eq!(t["datasource"], datasource(), "{}: {}", d.file, p["title"]);
            }
        }
        for a in d.annotations() {
            assert_eq!(a["datasource"], datasource(), "{}: {}", d.file, a["name"]);
        }
        for v in d.variables().into_iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"], datasource(), "{}: {}", d.file, v["name"]);
        }
    }
}

#[test]
fn every_variable_is_used_and_every_reference_is_defined() {
    for d in load_all() {
        let defined: BTreeSet<String> = d
            .variables()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect();
        let mut used = BTreeSet::new();
        let mut uses = |text: &str| {
            for name in references(text) {
                assert!(
                    defined.contains(&name) || BUILT_IN.contains(&name.as_str()),
                    "{}: ${name} is not a variable",
                    d.file
                );
                used.insert(name);
            }
        };
        for q in d.queries() {
            uses(&q.expr);
        }
        for p in d.panels() {
            uses(&p["datasource"]["uid"].to_string());
        }
        for a in d.annotations() {
            uses(&a["datasource"]["uid"].to_string());
        }
        for name in &defined {
            assert!(used.contains(name), "{}: ${name} is never used", d.file);
        }
    }
}

/// Every `namespace` matcher of `expr`: (operator, value).
fn namespace_matchers(expr: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    for (at, _) in expr.match_indices("namespace") {
        let before = expr[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = expr[at + "namespace".len()..].trim_start();
        let Some(op) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
        else {
            continue;
        };
        let value = rest[op.len()..].trim_start();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.split_once('"'))
            .map(|(v, _)| v)
            .unwrap_or_else(|| panic!("an unquoted namespace matcher in {expr}"));
        out.push((op.to_owned(), value.to_owned()));
    }
    out
}

#[test]
fn no_namespace_is_hard_coded() {
    for d in load_all() {
        let names: BTreeSet<_> = d
            .variables()
            .iter()
            .map(|v| v["name"].as_str().unwrap().to_owned())
            .collect();
        assert!(names.contains("namespace"), "{}: $namespace", d.file);
        if d.file != "operator-health.json" {
            assert!(names.contains("pipeline"), "{}: $pipeline", d.file);
        }
        for q in d.queries() {
            for (op, value) in namespace_matchers(&q.expr) {
                assert!(
                    matches!(op.as_str(), "=" | "=~") && value == "$namespace",
                    "{}: namespace{op}\"{value}\" in {}",
                    q.whence,
                    q.expr
                );
            }
            // Every query but the namespace variable's own is scoped to the selected namespaces.
            if !q.whence.ends_with("variable \"namespace\"") {
                assert!(
                    !namespace_matchers(&q.expr).is_empty(),
                    "{}: not scoped by $namespace: {}",
                    q.whence,
                    q.expr
                );
            }
        }
    }
}

#[test]
fn the_chart_ships_the_dashboards_unchanged() {
    let (ours, chart) = (files(&dir()), files(&chart_dir()));
    assert_eq!(
        ours, chart,
        "charts/tailwarden/dashboards must hold the same files: run scripts/sync-dashboards.sh"
    );
    for file in ours {
        let read = |d: std::path::PathBuf| std::fs::read(d.join(&file)).unwrap();
        assert!(
            read(dir()) == read(chart_dir()),
            "charts/tailwarden/dashboards/{file} differs from dashboards/{file}: run scripts/sync-dashboards.sh"
        );
    }
}

#[test]
#[ignore = "needs helm from tests/helm/build.sh: run tests/run.sh"]
fn the_chart_ships_them_as_sidecar_config_maps_and_scrapes_the_operator_only_when_asked() {
    use tailwarden_tests::helm::render;
    let kinds = |objects: &[Value], kind: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    };
    let dashboards = |objects: &[Value]| -> Vec<Value> {
        kinds(objects, "ConfigMap")
            .into_iter()
            .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
            .collect()
    };
    let plain = render("tw", "tailwarden-system", &[]);
    assert!(dashboards(&plain).is_empty(), "off by default");
    assert!(kinds(&plain, "ServiceMonitor").is_empty(), "off by default");

    let on = render(
        "tw",
        "tailwarden-system",
        &["dashboards.enabled=true", "serviceMonitor.enabled=true"],
    );
    let maps = dashboards(&on);
    assert_eq!(maps.len(), files(&dir()).len());
    for file in files(&dir()) {
        let text = std::fs::read_to_string(dir().join(&file)).unwrap();
        assert!(
            maps.iter().any(|m| m["data"][&file] == text.as_str()),
            "a ConfigMap holds {file} as it is"
        );
    }
    let monitor = &kinds(&on, "ServiceMonitor")[0];
    let service = kinds(&on, "Service")
        .into_iter()
        .find(|s| {
            s["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "metrics")
        })
        .expect("the metrics Service");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "selects the metrics Service"
        );
    }
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(
        (&endpoint["port"], &endpoint["honorLabels"]),
        (&json!("metrics"), &json!(true)),
        "scrapes the metrics port, keeping each pipeline's namespace label"
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["tailwarden-system"])
    );
    let elsewhere = render(
        "tw",
        "tailwarden-system",
        &["dashboards.enabled=true", "dashboards.namespace=grafana"],
    );
    assert!(
        dashboards(&elsewhere)
            .iter()
            .all(|m| m["metadata"]["namespace"] == "grafana")
    );
    // values.schema.json refuses what would not render a usable object.
    for bad in [
        "dashboards.enabled=yes",
        "serviceMonitor.interval=30",
        "dashboards.folder=x",
    ] {
        assert!(tailwarden_tests::helm::refuses(bad), "{bad} renders");
    }
}

#[test]
#[ignore = "builds a Go tool from the Go module proxy: run tests/run.sh"]
fn the_grafana_foundation_sdk_reads_every_dashboard_strictly() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    run(&mut Command::new(root.join("dashboards/build.sh")));
    let cache = std::env::var_os("TAILWARDEN_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("HOME")).join(".cache/tailwarden"));
    let paths: Vec<_> = files(&dir()).iter().map(|f| dir().join(f)).collect();
    run(Command::new(cache.join("bin/dashboard-check")).args(&paths));
    // The checker does fail: a field the model does not know is refused.
    let mut model: Value =
        serde_json::from_str(&std::fs::read_to_string(&paths[0]).unwrap()).unwrap();
    model["panels"][0]["options"]["notAnOption"] = json!(true);
    let bad = std::env::temp_dir().join(format!("dashboard-check-{}.json", std::process::id()));
    std::fs::write(&bad, model.to_string()).unwrap();
    let out = Command::new(cache.join("bin/dashboard-check"))
        .arg(&bad)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&bad);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("notAnOption"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------------------------------------
// Every query against real processes.

/// The pipeline the dashboards show.
const PIPELINE: &str = "shop";
/// The namespace label the operator's own series get from its scrape target, as a ServiceMonitor
/// in the operator's namespace gives them.
const OPERATOR_NAMESPACE: &str = "tailwarden-system";
/// Grafana's `$__interval` and query step.
const STEP: Duration = Duration::from_secs(5);
/// `$__rate_interval` for a 1 s scrape: at least four scrapes plus the step, as Grafana takes it.
const RATE_INTERVAL: &str = "20s";
/// How long the load may take to give every query data.
const WITHIN: Duration = Duration::from_secs(240);

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// NDJSON records: `n` rejected ones (dead letters: an unknown currency, and a line that is not
/// JSON) and one non-critical product description, which the paused worker defers.
fn events(round: u64) -> String {
    let mut body = String::new();
    for k in 0..2 {
        body.push_str(&format!(
            r#"{{"event_id":"bad-{round}-{k}","class":"pricing","schema_version":2,"key":{{"product_id":"P{k}","valid_from":"2026-01-01T00:00:00Z"}},"event_time":{round},"sequence":{round},"payload":{{"amount":1,"currency":"NOPE"}}}}"#
        ));
        body.push('\n');
    }
    body.push_str("not a record\n");
    body.push_str(&format!(
        r#"{{"event_id":"note-{round}","class":"product","schema_version":2,"key":{{"product_id":"P{round}"}},"event_time":{round},"sequence":{round},"payload":{{"description":"deferred while paused"}}}}"#
    ));
    body.push('\n');
    body
}

async fn post(url: &str, body: String) {
    let _ = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(5))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await;
}

/// What a query returned: how many series have a finite sample, and the largest of those.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Answer {
    series: usize,
    max: f64,
}

/// Panels, annotations and variables that show events, whose queries must show one happening
/// (a positive value), not merely a series at zero.
const EVENTS: [&str; 9] = [
    "panel \"Dead letters and deferred records\"",
    "panel \"Cache evictions\"",
    "panel \"Correctness errors\"",
    "panel \"Rollouts",
    "panel \"Burn-rate alerts firing\"",
    "panel \"Decisions",
    "panel \"Leaders\"",
    "annotation \"Decisions\"",
    "annotation \"Rollouts frozen\"",
];

impl Answer {
    /// Whether the panel, annotation or variable at `whence` has something to show.
    fn shows(&self, whence: &str) -> bool {
        let event = EVENTS.iter().any(|e| whence.contains(e));
        self.series > 0 && (!event || self.max > 0.0)
    }
}

/// What one query returned, or Prometheus's error.
async fn evaluate(
    prometheus: &str,
    query: &Query,
    values: &[(&str, &str)],
    from: i64,
) -> Result<Answer, String> {
    let expr = substitute(&query.expr, values);
    let leftover = references(&expr);
    assert!(
        leftover.is_empty(),
        "{}: ${leftover:?} left in {expr}",
        query.whence
    );
    let now = jiff::Timestamp::now().as_second();
    let request = if query.instant {
        reqwest::Client::new()
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", expr.as_str()), ("time", &now.to_string())])
    } else {
        reqwest::Client::new()
            .get(format!("{prometheus}/api/v1/query_range"))
            .query(&[
                ("query", expr.as_str()),
                ("start", &from.to_string()),
                ("end", &now.to_string()),
                ("step", &STEP.as_secs().to_string()),
            ])
    };
    let body: Value = request
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    let finite = |v: &Value| {
        v[1].as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|x| x.is_finite())
    };
    let mut answer = Answer {
        series: 0,
        max: f64::NEG_INFINITY,
    };
    for s in body["data"]["result"].as_array().into_iter().flatten() {
        let samples =
            std::iter::once(&s["value"]).chain(s["values"].as_array().into_iter().flatten());
        let values: Vec<f64> = samples.filter_map(finite).collect();
        if !values.is_empty() {
            answer.series += 1;
            answer.max = values.into_iter().fold(answer.max, f64::max);
        }
    }
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster, Prometheus and the workspace's binaries: run tests/run.sh"]
async fn every_query_returns_data_from_real_workers_and_the_operator() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "dashboards").await;
    let logs = std::env::temp_dir().join(format!("tailwarden-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();

    // A real worker, configured as the operator configures the pipeline's workers, with a small
    // cache (so it evicts) and non-critical work paused (so it defers).
    let mut spec = minimal_spec();
    let mut shop = pipeline(PIPELINE, spec.clone());
    shop.metadata.namespace = Some(ns.clone());
    let mut config =
        tailwarden_operator::dataplane_config::render("shop", &shop.spec, false).unwrap();
    config.serve.cache_max_entries = 20;
    let worker = DataplaneProcess::start(
        "dashboards",
        &serde_yaml::to_string(&config).unwrap(),
        &["--pause-non-critical", "true"],
    )
    .await;

    // Prometheus with the rules render-rules prints for the pipeline; it scrapes the worker with
    // the labels the PodMonitor gives it, and the operator, whose own series keep their labels.
    let manifest = logs.join("pipeline.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&shop).unwrap()).unwrap();
    let rules = run(Command::new(render_rules_bin()).arg(&manifest));
    let operator_port = free_port();
    let jobs = format!(
        "  - job_name: dataplane\n    static_configs:\n      - targets: [\"{}\"]\n        labels: {{namespace: \"{ns}\", pipeline: \"{PIPELINE}\"}}\n\
         \x20 - job_name: operator\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{operator_port}\"]\n        labels: {{namespace: \"{OPERATOR_NAMESPACE}\"}}\n",
        worker.metrics
    );
    let prometheus = Prometheus::with_scrape_jobs_and_rules(&jobs, &rules).await;
    let from = jiff::Timestamp::now().as_second();

    let args = [
        "--leader-elect",
        "true",
        "--lease-namespace",
        &ns,
        "--lease-name",
        "tailwarden-dashboards",
        "--prometheus-url",
        &prometheus.url,
        "--evaluation-interval",
        "5s",
        "--signal-window",
        "30s",
    ];
    let operator =
        OperatorProcess::spawn_at(operator_port, "dashboards-operator", &ns, &args, &logs);
    spec["prometheus"] = json!({"url": prometheus.url});
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &pipeline(PIPELINE, spec))
        .await
        .unwrap();

    // Open-loop reads of every query class and writes, for longer than the test needs.
    let load_log = std::fs::File::create(logs.join("loadgen.log")).unwrap();
    let _load = Killed(
        Command::new(loadgen_bin())
            .args(["run", "--ingest", &worker.ingest.to_string()])
            .args(["--serve", &worker.serve.to_string()])
            .args(["--read-rate", "100", "--write-rate", "200", "--batch", "20"])
            .args([
                "--keys",
                "200",
                "--read-connections",
                "4",
                "--write-connections",
                "2",
            ])
            .args(["--duration", &WITHIN.as_secs().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::from(load_log))
            .spawn()
            .expect("the load generator starts (cargo build -p tailwarden-dataplane --bins)"),
    );

    let values = |range: &str| -> Vec<(String, String)> {
        [
            ("namespace", ns.as_str()),
            ("pipeline", PIPELINE),
            ("__rate_interval", RATE_INTERVAL),
            ("__interval", "5s"),
            ("__range", range),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let queries: Vec<Query> = load_all().iter().flat_map(Dashboard::queries).collect();
    let start = Instant::now();
    let (mut round, mut frozen) = (0, false);
    let mut answers: BTreeMap<String, Result<Answer, String>>;
    loop {
        // Dead letters and deferred records every second; a manual freeze, an accountable
        // decision the annotations show, once the operator runs.
        round += 1;
        post(&worker.updates_url(), events(round)).await;
        if !frozen && start.elapsed() > Duration::from_secs(15) {
            let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
            let patch = json!({"metadata": {"annotations": {
                "tailwarden.io/rollout-freeze": "dashboards test: a decision to annotate",
                "tailwarden.io/rollout-freeze-until": until,
                "tailwarden.io/rollout-freeze-by": "dashboards-test",
            }}});
            api.patch(PIPELINE, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
            frozen = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if round % 15 != 0 {
            continue;
        }
        let range = format!("{}s", jiff::Timestamp::now().as_second() - from);
        answers = BTreeMap::new();
        for q in &queries {
            let values = if q.whence.starts_with("operator-health.json") {
                let mut v = values(&range);
                v[0].1 = OPERATOR_NAMESPACE.into();
                v.push(("instance".into(), ".*".into()));
                v
            } else {
                values(&range)
            };
            let pairs: Vec<(&str, &str)> = values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            answers.insert(
                format!("{}: {}", q.whence, q.expr),
                evaluate(&prometheus.url, q, &pairs, from).await,
            );
        }
        let errors: Vec<_> = answers.iter().filter(|(_, a)| a.is_err()).collect();
        assert!(errors.is_empty(), "queries Prometheus refused: {errors:#?}");
        let empty: Vec<_> = answers
            .iter()
            .filter(|(q, a)| !a.as_ref().is_ok_and(|a| a.shows(q)))
            .collect();
        eprintln!(
            "after {:?}: {} of {} queries returned data",
            start.elapsed(),
            answers.len() - empty.len(),
            answers.len()
        );
        if empty.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < WITHIN,
            "queries without data after {WITHIN:?}: {empty:#?}\nloadgen: {}",
            std::fs::read_to_string(logs.join("loadgen.log")).unwrap_or_default()
        );
    }
    let panels: usize = load_all()
        .iter()
        .map(|d| d.panels().iter().filter(|p| p["type"] != "row").count())
        .sum();
    eprintln!(
        "every query of {panels} panels, the annotations and variables returned data: {} queries",
        answers.len()
    );

    // A deleted pipeline takes its series with it.
    api.delete(PIPELINE, &Default::default()).await.unwrap();
    let labels = format!("namespace=\"{ns}\",pipeline=\"{PIPELINE}\"");
    wait_for(
        "the deleted pipeline's series to go",
        Duration::from_secs(30),
        || async {
            let text = reqwest::get(&operator.metrics)
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (!text.contains(&labels)).then_some(())
        },
    )
    .await;
    delete_namespace(&client, &ns).await;
}
