//! The SLO status page in a real browser: the operator binary serves it on `--status-addr`,
//! headless Chromium loads the list and detail pages (content asserted from the DOM it built,
//! screenshots saved under `<target>/test-output/status-page/`), and axe-core, run inside that
//! Chromium (tests/status-page/axe.mjs), finds no serious or critical accessibility violation.
//! A standby (the Lease held by another) shows the pipelines' status with its banner; a leader
//! shows its live store without one. The burn-down chart draws the budget series a real
//! Prometheus holds (backfilled: two days of a recorded `slo:period_error_budget_remaining:ratio`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tailwarden_crds::RetailPipeline;
use tailwarden_tests::operator_process::OperatorProcess;
use tailwarden_tests::prometheus::{History, Prometheus};
use tailwarden_tests::*;

const BANNER: &str = "standby: showing the pipelines' status as last written by the leader";
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

/// `<target>/test-output/status-page`, next to the test executable's profile directory.
fn output_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("target/<profile>/deps/<exe>");
    let dir = target.join("test-output/status-page");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// axe-core's browser bundle, where tests/status-page/install.sh puts it: `TAILWARDEN_AXE_JS`, else
/// under `TAILWARDEN_CACHE` (default `~/.cache/tailwarden`).
fn axe_js() -> PathBuf {
    if let Some(path) = std::env::var_os("TAILWARDEN_AXE_JS") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("TAILWARDEN_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/tailwarden")
        });
    cache.join("axe/node_modules/axe-core/axe.min.js")
}

/// Headless Chromium with `args` and a fresh profile; its stdout.
fn chromium(args: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("status-page-chromium-{}", fastrand::u64(..)));
    let out = run(Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args));
    let _ = std::fs::remove_dir_all(profile);
    out
}

fn dump_dom(url: &str) -> String {
    chromium(&["--dump-dom", url])
}

fn screenshot(url: &str, file: &str, height: u32) -> PathBuf {
    let path = output_dir().join(file);
    chromium(&[
        &format!("--screenshot={}", path.display()),
        &format!("--window-size=1280,{height}"),
        url,
    ]);
    assert!(path.exists(), "no screenshot at {}", path.display());
    path
}

/// axe-core's violations on `url`, as id, impact, help and nodes.
fn axe(url: &str) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("status-page/axe.mjs");
    let out = run(Command::new("node")
        .arg("--experimental-websocket")
        .arg(script)
        .arg("chromium")
        .arg(axe_js())
        .arg(url));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("axe output {out:?}: {e}"))
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-12-02T12:00:00Z"})
}

/// A status as the leader writes it: `remaining` percent of budget, burn rates over the page
/// windows of a 30-day SLO, and `decisions`.
fn status(remaining: f64, rates: [f64; 4], decisions: Value) -> Value {
    let frozen = remaining < 25.0;
    let degraded = remaining < 10.0;
    json!({
        "topology": "standalone",
        "ingest": {"desiredReplicas": 1, "readyReplicas": 1, "summary": "1/1"},
        "serve": {"desiredReplicas": 1, "readyReplicas": 1, "summary": "1/1"},
        "slis": {"readP95": "84ms", "readP99": "130ms", "freshnessLag": "42s",
                 "availabilityPercent": 99.93},
        "budget": {
            "remaining": format!("{remaining:.1}%"),
            "remainingPercent": remaining,
            "worstSlo": "availability",
            "burnRates": [{"window": "5m", "rate": rates[0]}, {"window": "30m", "rate": rates[1]},
                          {"window": "1h", "rate": rates[2]}, {"window": "6h", "rate": rates[3]}],
        },
        "rollout": {"budgetFrozen": frozen},
        "conditions": [
            condition("Degraded", if degraded { "True" } else { "False" },
                      if degraded { "BudgetBelowThreshold" } else { "BudgetHealthy" },
                      &format!("error budget {remaining:.1}% (degrade below 10%)")),
            condition("MetricsAvailable", "True", "AllRead", "every SLI was read"),
        ],
        "decisions": decisions,
    })
}

fn decision(kind: &str, reason: &str, time: &str) -> Value {
    json!({"kind": kind, "reason": reason, "time": time,
           "inputs": {"budgetRemainingPercent": 4.2, "worstSlo": "availability"}})
}

async fn create(api: &Api<RetailPipeline>, name: &str, status: Value) {
    api.create(&PostParams::default(), &pipeline(name, minimal_spec()))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .unwrap_or_else(|e| panic!("patch the status of {name}: {e}"));
}

/// A Lease held by another operator for an hour, so the one under test stays a standby.
async fn held_lease(client: &kube::Client, ns: &str, name: &str) {
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"holderIdentity": "another-operator", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now},
    }))
    .unwrap();
    Api::<Lease>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &lease)
        .await
        .unwrap();
}

/// Two days of `checkout`'s recorded budget per SLO, one sample a minute up to `end`:
/// availability burns from 40% to 4.2%, latency stays above it.
fn budget_history(ns: &str, end: i64) -> String {
    const SERIES: &str = "slo:period_error_budget_remaining:ratio";
    let start = end - 2 * 86_400;
    let times: Vec<i64> = (start..=end).step_by(60).collect();
    let progress = |t: i64| (t - start) as f64 / (end - start) as f64;
    let labels = |slo: &str| format!("namespace=\"{ns}\",pipeline=\"checkout\",slo=\"{slo}\"");
    History::default()
        .family(SERIES, "gauge")
        .series(SERIES, &labels("availability"), &times, |t| {
            0.40 - 0.358 * progress(t)
        })
        .series(SERIES, &labels("latency-product-p99"), &times, |t| {
            0.9 - 0.2 * progress(t)
        })
        .finish()
}

/// Whether `names` appear in `text` in this order.
fn in_order(text: &str, names: &[&str]) -> bool {
    let at: Vec<usize> = names
        .iter()
        .map(|n| text.find(n).unwrap_or(usize::MAX))
        .collect();
    at.windows(2).all(|w| w[0] < w[1]) && at.iter().all(|&i| i != usize::MAX)
}

fn assert_accessible(page: &str, url: &str) {
    let violations = axe(url);
    for v in &violations {
        eprintln!(
            "axe {page}: {} ({}) {}: {}",
            v["id"], v["impact"], v["help"], v["nodes"]
        );
    }
    let severe: Vec<&Value> = violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        severe.is_empty(),
        "{page}: serious or critical violations: {severe:#?}"
    );
}

#[tokio::test]
#[ignore = "needs the local cluster: run tests/run.sh"]
async fn the_status_page_lists_by_budget_and_details_a_pipeline_in_chromium() {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, "status-page").await;
    let logs = std::env::temp_dir().join(format!("tailwarden-status-page-{ns}"));
    std::fs::create_dir_all(&logs).unwrap();
    let api = Api::<RetailPipeline>::namespaced(client.clone(), &ns);
    let checkout_decisions = json!([
        decision(
            "FreezeRollout",
            "error budget 18.0% is below the freeze threshold 25%",
            "2026-12-02T10:00:00Z"
        ),
        decision(
            "Degrade",
            &format!("error budget 4.2% is below 10%: {HOSTILE}"),
            "2026-12-02T11:30:00Z"
        ),
    ]);
    create(
        &api,
        "checkout",
        status(4.2, [16.0, 7.5, 15.1, 6.4], checkout_decisions),
    )
    .await;
    create(
        &api,
        "search",
        status(52.0, [1.2, 0.9, 1.1, 0.8], json!([])),
    )
    .await;
    create(
        &api,
        "catalog",
        status(88.5, [0.2, 0.1, 0.3, 0.2], json!([])),
    )
    .await;

    // End a little in the past, so every backfilled block is complete.
    let end = jiff::Timestamp::now().as_second() / 60 * 60 - 600;
    let prometheus = Prometheus::with_history(&budget_history(&ns, end)).await;

    held_lease(&client, &ns, "tailwarden-status-page").await;
    let standby = OperatorProcess::spawn(
        "status-standby",
        &ns,
        &[
            "--leader-elect",
            "true",
            "--lease-namespace",
            &ns,
            "--lease-name",
            "tailwarden-status-page",
            "--prometheus-url",
            &prometheus.url,
        ],
        &logs,
    );
    let base = standby.status.clone();
    wait_for_ok("the standby's status page", &base, Duration::from_secs(30)).await;

    let list = dump_dom(&format!("{base}/"));
    assert!(list.contains(BANNER), "{list}");
    assert!(
        in_order(&list, &["checkout", "search", "catalog"]),
        "budget order:\n{list}"
    );
    assert!(
        list.contains(r#"<span class="badge frozen">frozen</span>"#),
        "{list}"
    );
    let frozen_url = format!("{base}/?namespace={ns}&state=frozen");
    let frozen = dump_dom(&frozen_url);
    assert!(
        frozen.contains("checkout") && !frozen.contains("catalog"),
        "{frozen}"
    );
    assert!(
        frozen.contains(r#"<option value="frozen" selected="">frozen</option>"#),
        "{frozen}"
    );
    screenshot(&frozen_url, "list-frozen.png", 600);
    let list_png = screenshot(&format!("{base}/"), "list.png", 900);

    let detail_url = format!("{base}/pipelines/{ns}/checkout");
    let detail = dump_dom(&detail_url);
    for expected in [
        BANNER,
        "Burn-rate alerts",
        r#"<span class="fires">fires</span>"#,
        "error budget 18.0% is below the freeze threshold 25%",
        "error budget 4.2% is below 10%: &lt;img src=x onerror=alert(1)&gt;",
        "version: 1.0.0",
    ] {
        assert!(detail.contains(expected), "{expected:?} missing:\n{detail}");
    }
    assert!(!detail.contains("<img"), "the hostile reason is escaped");
    let points = detail
        .split(r#"<polyline class="budget" points=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no burn-down line:\n{detail}"));
    assert!(
        points.split(' ').count() >= 8,
        "one point per step of the backfilled days: {points}"
    );
    assert!(
        in_order(&detail, &["Degrade", "FreezeRollout"]),
        "newest decision first"
    );
    let detail_png = screenshot(&detail_url, "detail.png", 2000);
    eprintln!(
        "screenshots: {} {}",
        list_png.display(),
        detail_png.display()
    );

    assert_accessible("list", &format!("{base}/"));
    assert_accessible("detail", &detail_url);

    // A leader serves the same pipelines from its live store, without the banner.
    let leader_process = OperatorProcess::spawn(
        "status-leader",
        &ns,
        &["--leader-elect", "false", "--disable-slo-engine"],
        &logs,
    );
    let leader = format!("{}/", leader_process.status);
    wait_for_ok("the leader's status page", &leader, Duration::from_secs(30)).await;
    let html = reqwest::get(&leader).await.unwrap().text().await.unwrap();
    assert!(!html.contains(BANNER), "{html}");
    screenshot(&leader, "list-leader.png", 600);
    assert!(
        in_order(&html, &["checkout", "search", "catalog"]),
        "{html}"
    );
    let missing = reqwest::get(format!("{leader}pipelines/{ns}/nothing"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    delete_namespace(&client, &ns).await;
}
