//! Process-level behaviour: config errors, graceful shutdown, readiness, ordering, deferral.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{Server, eventually, get_json, inventory, metrics_text, temp_dir, write_config};

#[test]
fn a_bad_config_fails_at_start_naming_the_key() {
    let dir = temp_dir("config");
    let file = dir.join("config.yaml");
    std::fs::write(&file, "ingest:\n  partitions: 0\n  queueCapacity: 10\n  batch: {maxRecords: 1, linger: 1ms}\n  deadLetter: {retention: 1h, maxRecords: 1}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailwarden-dataplane"))
        .args(["--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ingest.partitions"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(&file, "serve:\n  cacheTTL: 5s\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailwarden-dataplane"))
        .args(["--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cacheTTL"));

    // Tuning flags are checked as strictly, by name.
    let out = Command::new(env!("CARGO_BIN_EXE_tailwarden-dataplane"))
        .args(["--writer-threads", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--writer-threads"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// `faults` fail a share of reads on purpose, counted as 500s in the read metrics, and only in a
/// worker started with `--allow-fault-injection`; any other worker refuses the config by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_read_faults_need_their_start_switch() {
    let dir = temp_dir("faults");
    let config = write_config(&dir, "faults: {readErrorPercent: 50}\n");
    let out = Command::new(env!("CARGO_BIN_EXE_tailwarden-dataplane"))
        .args(["--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("faults.readErrorPercent") && stderr.contains("--allow-fault-injection"),
        "{stderr}"
    );

    let server = Server::start(
        &dir.join("store"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--allow-fault-injection",
        ],
    )
    .await;
    let mut failed = 0;
    for i in 0..400 {
        let (status, body) = server.get(&format!("/v1/inventory/F{i}/S1")).await;
        match status {
            500 => {
                assert_eq!(body["code"], "injected_fault", "{body}");
                failed += 1;
            }
            404 => {}
            other => panic!("read answered {other}: {body}"),
        }
    }
    // Binomial(400, 0.5): outside 140..=260 has a probability below 1e-9.
    assert!((140..=260).contains(&failed), "{failed} of 400 failed");
    let metrics = metrics_text(&server).await;
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("tailwarden_read_requests_total") && l.contains(r#"code="500""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted, f64::from(failed), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly_keeping_acknowledged_data() {
    let mut server = Server::start(&temp_dir("term"), &[]).await;
    let (status, _) = server
        .post_updates(inventory("t-1", "T", "S1", 4, 1, 1))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.terminate(), Some(0));
    server.restart().await;
    assert_eq!(
        server.get("/v1/inventory/T/S1").await.1["quantity"],
        json!(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_a_required_snapshot() {
    let server = Server::start(&temp_dir("ready"), &["--require-snapshot"]).await;
    let ready = || async {
        reqwest::get(format!("{}/readyz", server.metrics))
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ready().await, 503);
    let body =
        r#"{"class":"brand","schema_version":2,"key":{"brand_id":"B"},"payload":{"name":"B"}}"#;
    let (status, _) = server
        .post(
            &format!("{}/v1/snapshots", server.ingest),
            "application/x-ndjson",
            body,
        )
        .await;
    assert_eq!(status, 202);
    eventually("readiness", Duration::from_secs(30), || async {
        (ready().await == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_never_overwrites_a_newer_one() {
    let server = Server::start(&temp_dir("order"), &[]).await;
    let (_, body) = server
        .post_updates(inventory("o-2", "O", "S1", 2, 2_000, 1))
        .await;
    assert_eq!(body["accepted"], json!(1));
    let (_, body) = server
        .post_updates(inventory("o-1", "O", "S1", 1, 1_000, 9))
        .await;
    assert_eq!(body["stale"], json!(1), "{body}");
    // Same event time: the higher sequence wins, whatever the arrival order.
    let (_, body) = server
        .post_updates(inventory("o-3", "O", "S1", 3, 2_000, 0))
        .await;
    assert_eq!(body["stale"], json!(1), "{body}");
    assert_eq!(
        server.get("/v1/inventory/O/S1").await.1["quantity"],
        json!(2)
    );
    // Coalescing inside one batch gives the same answer as separate batches.
    let batch =
        inventory("o-5", "O2", "S1", 5, 5_000, 1) + &inventory("o-4", "O2", "S1", 4, 4_000, 1);
    let (_, body) = server.post_updates(batch).await;
    assert_eq!(
        (body["accepted"].clone(), body["stale"].clone()),
        (json!(1), json!(1)),
        "{body}"
    );
    assert_eq!(
        server.get("/v1/inventory/O2/S1").await.1["quantity"],
        json!(5)
    );
    let metrics = reqwest::get(format!("{}/metrics", server.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"tailwarden_ingest_records_total{class="inventory",outcome="stale"} 3"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_critical_updates_are_deferred_not_dropped() {
    let server = Server::start(&temp_dir("defer"), &["--pause-non-critical", "true"]).await;
    let enrich = r#"{"event_id":"en-1","class":"product","schema_version":2,"key":{"product_id":"E"},"event_time":10,"sequence":1,"payload":{"enrichment":{"tags":["new"]}}}"#;
    let core = r#"{"event_id":"co-1","class":"product","schema_version":2,"key":{"product_id":"E"},"event_time":10,"sequence":2,"payload":{"name":"Saw"}}"#;
    let (_, body) = server.post_updates(format!("{enrich}\n{core}\n")).await;
    assert_eq!(
        (body["deferred"].clone(), body["accepted"].clone()),
        (json!(1), json!(1)),
        "{body}"
    );
    let (_, product) = server.get("/v1/products/E").await;
    assert_eq!(product["name"], json!("Saw"));
    assert_eq!(product.get("enrichment"), None);

    let (status, _) = reqwest::Client::new()
        .put(format!("{}/v1/admin/degradation", server.ingest))
        .body(r#"{"pauseNonCritical": false}"#)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200);
    eventually(
        "the deferred update to apply",
        Duration::from_secs(30),
        || async {
            let (_, deg) = get_json(&format!("{}/v1/admin/degradation", server.ingest)).await;
            let (_, p) = server.get("/v1/products/E").await;
            (deg["deferred"] == json!(0) && p["enrichment"] == json!({"tags": ["new"]}))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_opens_only_its_listeners() {
    let ingest = Server::start(&temp_dir("role-ingest"), &["--role", "ingest"]).await;
    let (status, _) = ingest
        .post_updates(inventory("r-1", "R", "S1", 1, 1, 1))
        .await;
    assert_eq!(status, 200);
    assert!(
        reqwest::get(format!("{}/v1/products/R", ingest.serve))
            .await
            .is_err(),
        "ingest must not serve reads"
    );

    let serve = Server::start(&temp_dir("role-serve"), &["--role", "serve"]).await;
    assert_eq!(serve.get("/v1/products/R").await.0, 404);
    assert!(
        reqwest::Client::new()
            .post(format!("{}/v1/updates", serve.ingest))
            .body("{}")
            .send()
            .await
            .is_err(),
        "serve must not accept writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_degradation_switch_follows_the_config_file() {
    let dir = temp_dir("degrade-file");
    let file = dir.join("config.yaml");
    let write = |pause: bool| {
        std::fs::write(
            &file,
            format!("degradation:\n  pauseNonCritical: {pause}\n"),
        )
        .unwrap();
    };
    write(false);
    let server = Server::start(&dir.join("data"), &["--config", file.to_str().unwrap()]).await;
    let switch = || async {
        let (_, deg) = get_json(&format!("{}/v1/admin/degradation", server.ingest)).await;
        deg["pauseNonCritical"].as_bool()
    };
    assert_eq!(switch().await, Some(false));
    // The operator rewrites the ConfigMap; the kubelet refreshes the mounted file.
    write(true);
    eventually(
        "the worker to pause non-critical work",
        Duration::from_secs(30),
        || async { (switch().await == Some(true)).then_some(()) },
    )
    .await;
    write(false);
    eventually(
        "the worker to resume non-critical work",
        Duration::from_secs(30),
        || async { (switch().await == Some(false)).then_some(()) },
    )
    .await;
}
