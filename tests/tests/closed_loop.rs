//! The closed loop on real pods: load on real serve workers → their metrics in a real Prometheus
//! → the operator's SLO engine → more serve pods on the real node → the SLIs recover.
//! The bed and how it is sized: `tests/src/closed_loop.rs`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tailwarden_crds::{Decision, DecisionKind, MarkState, RetailPipeline};
use tailwarden_tests::closed_loop::{Bed, Load, PIPELINE};
use tailwarden_tests::{real_node, wait_for};

/// The operator's evaluation interval (its production default).
const INTERVAL: Duration = Duration::from_secs(15);
/// Its signal window: the shortest it accepts.
const SIGNAL_WINDOW: &str = "30s";
/// Serve scales down only after this long of wanting fewer replicas (production: 5 min).
const DOWN_WINDOW_S: u64 = 60;
/// P99 objective (the paper's), and the scale-up target as a percent of it: 100 ms. Below ~70 %
/// of a worker's capacity its P99 stays under ~40 ms; the CPU limit's CFS throttling gives
/// occasional spikes beyond that even at low load, which a lower target would chase.
const P99_OBJECTIVE_MS: f64 = 200.0;
const TARGET_PERCENT: u32 = 50;
/// Measured on this machine kind (debug build, 150m CPU limit, uncached reads, each one a
/// Cassandra query): one serve worker answers ~230 reads/s at most; its P99 is ~35 ms at 100
/// reads/s and ~165 ms at 200. The read rate rises in steps until the P99 crosses the target,
/// so the test does not depend on where exactly that happens on a busy machine, and stops short
/// of overload, which would spend the (test-young, so small) latency budget and block the
/// scale-down.
const RAMP_READS: [u32; 7] = [60, 90, 120, 150, 180, 210, 240];
const CALM_READS: &str = "40";
/// The freshness objective: ingest must scale before the consumer lag comes near it.
const MAX_LAG_S: u64 = 120;
/// Updates per second throughout: freshness, correctness and the budget need ingest data, and
/// serve never scales down on incomplete data.
const WRITES: &str = "20";

/// Updates waiting (Kafka consumer lag plus queued) that one ingest replica is sized for.
const BACKLOG_PER_REPLICA: u32 = 3000;
/// Write rates of the ingest burst, in steps until ingest scales up: one ingest worker on 150m
/// of CPU consumes fewer updates per second than its write API accepts into Kafka, so a burst
/// leaves a consumer lag that grows.
const BURST_WRITES: [u32; 4] = [400, 800, 1200, 1600];

/// Serve and ingest roles that one worker saturates on 150m of CPU (uncached reads, each one a
/// Cassandra query; updates consumed from Kafka and written to Cassandra): 1 to 3 replicas each.
fn spec() -> serde_json::Value {
    json!({
        "storage": {}, "streams": {"kafka": {"topics": {}}},
        "ingest": {
            "replicas": {"min": 1, "max": 3},
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"},
                          "limits": {"cpu": "150m", "memory": "256Mi"}},
        },
        "serve": {
            "replicas": {"min": 1, "max": 3},
            "cacheMaxEntries": 0,
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"},
                          "limits": {"cpu": "150m", "memory": "256Mi"}},
        },
        "slos": {"freshness": {"maxLag": format!("{MAX_LAG_S}s")}, "readLatency": [{"queryClass": "product", "p95": "120ms",
                                  "p99": format!("{P99_OBJECTIVE_MS}ms")}]},
        "autoscaling": {
          "ingest": {
            "targetBacklogPerReplica": BACKLOG_PER_REPLICA,
            "scaleUp": {"stabilizationWindow": "0s", "cooldown": "15s", "maxStep": 2},
            "scaleDown": {"stabilizationWindow": format!("{DOWN_WINDOW_S}s"),
                          "cooldown": format!("{DOWN_WINDOW_S}s"), "maxStep": 1},
          },
          "serve": {
            "targetP99PercentOfSlo": TARGET_PERCENT,
            "scaleUp": {"stabilizationWindow": "0s", "cooldown": "15s", "maxStep": 2},
            "scaleDown": {"stabilizationWindow": format!("{DOWN_WINDOW_S}s"),
                          "cooldown": format!("{DOWN_WINDOW_S}s"), "maxStep": 1},
        }},
    })
}

/// The scaling decisions of `kind` in the history, oldest first.
async fn scalings(api: &Api<RetailPipeline>, kind: DecisionKind) -> Vec<Decision> {
    let mut d: Vec<Decision> = api
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

async fn serve_decisions(api: &Api<RetailPipeline>) -> Vec<Decision> {
    scalings(api, DecisionKind::ScaleServe).await
}

fn replicas_after(d: &Decision) -> i32 {
    d.inputs
        .replicas_after
        .expect("a scale decision names its replicas")
}

/// The serve P99 in milliseconds as the operator's engine reads it: over its signal window, from
/// the pipeline's pods.
async fn p99_ms(bed: &Bed) -> Option<f64> {
    let q = format!(
        r#"histogram_quantile(0.99, sum by (le) (rate(tailwarden_read_duration_seconds_bucket{{namespace="{}",pipeline="{PIPELINE}",class="product"}}[{SIGNAL_WINDOW}])))"#,
        bed.ns
    );
    bed.prometheus.query(&q).await.map(|s| s * 1000.0)
}

async fn ready_replicas(bed: &Bed, role: &str) -> i32 {
    Api::<Deployment>::namespaced(bed.client.clone(), &bed.ns)
        .get(&format!("{PIPELINE}-{role}"))
        .await
        .ok()
        .and_then(|d| d.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster with its real node, Kafka, Cassandra and Prometheus: run tests/run.sh"]
async fn the_loop_closes_on_real_pods() {
    let mut bed = Bed::start(
        "loop",
        spec(),
        &[
            "--evaluation-interval",
            &format!("{}s", INTERVAL.as_secs()),
            "--signal-window",
            SIGNAL_WINDOW,
        ],
    )
    .await;
    let _writes = bed
        .load(
            "writes",
            &[
                "--write-rate",
                WRITES,
                "--batch",
                "5",
                "--duration",
                "1200",
                "--keys",
                "1000",
            ],
        )
        .await;
    let t = Instant::now();
    let spike = read_load_rises(&bed).await;
    took("1a (read load rises)", t);

    // The load falls: serve could scale down once its window has passed, but Prometheus stops
    // first.
    drop(spike);
    let calm = reads(&bed, "calm", CALM_READS).await;
    let t = Instant::now();
    let (returned, held) = prometheus_outage_holds_replicas(&mut bed).await;
    took("5 (Prometheus outage)", t);
    let t = Instant::now();
    eprintln!("serve held {held} replicas through the outage");
    serve_scales_down_after_its_window(&bed, returned).await;
    took("1b (read load falls)", t);
    drop(calm);
    let t = Instant::now();
    ingest_burst_scales_ingest_until_the_lag_drains(&bed).await;
    took("2 (ingest burst)", t);
    let t = Instant::now();
    bad_version_is_frozen_and_the_fix_goes_through_with_an_override(&bed).await;
    took("3 (bad version)", t);
    bed.finish().await;
}

/// Open-loop reads at `rate` per second over 1,000 products, for at most 15 minutes.
fn read_args(rate: &str) -> Vec<String> {
    ["--read-rate", rate, "--duration", "900", "--keys", "1000"]
        .map(str::to_owned)
        .to_vec()
}

async fn reads(bed: &Bed, name: &str, rate: &str) -> Load {
    let args = read_args(rate);
    bed.load(name, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
}

/// Raises a load in steps until the operator scales `kind` up: each step starts the load of
/// `args(rate)` (stopping the one before) and waits at most 3 evaluations for a decision above
/// 1 replica, calling `watch` every second. Returns the running load and that decision.
async fn ramp<W, Fut>(
    bed: &Bed,
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
        let args = args(&rate.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        load = Some(bed.load(&format!("{what}-{rate}"), &args).await);
        let step = Instant::now();
        while step.elapsed() < INTERVAL * 3 {
            let decisions = scalings(&bed.pipelines, kind).await;
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

fn took(scenario: &str, since: Instant) {
    eprintln!(
        "scenario {scenario} took {:.0} s",
        since.elapsed().as_secs_f64()
    );
}

/// Scenario 1, rise: the read load rises until P99 nears its objective, serve scales up, the new
/// pods take traffic and P99 recovers within 3 evaluations. Returns the load, still running.
async fn read_load_rises(bed: &Bed) -> Load {
    assert_eq!(
        ready_replicas(bed, "serve").await,
        1,
        "serve starts at its minimum"
    );
    let target_ms = P99_OBJECTIVE_MS * f64::from(TARGET_PERCENT) / 100.0;

    // 1. The read load rises until one worker's P99 crosses the target.
    let (spike, up) = ramp(
        bed,
        "reads",
        &RAMP_READS,
        DecisionKind::ScaleServe,
        read_args,
        || async {},
    )
    .await;
    assert!(
        up.reason.contains("P99"),
        "scaled up on the P99 signal: {}",
        up.reason
    );
    let breach_p99: f64 = up
        .inputs
        .read_p99
        .as_deref()
        .and_then(|p| p.strip_suffix("ms")?.parse().ok())
        .expect("the decision records the P99 it saw");
    assert!(
        breach_p99 > target_ms,
        "the P99 that triggered it ({breach_p99} ms) is over the {target_ms} ms target"
    );
    let scaled_to = replicas_after(&up);

    // 2. The new pods become Ready and take traffic.
    wait_for(
        "the new serve pods to be Ready",
        Duration::from_secs(90),
        || async { (ready_replicas(bed, "serve").await >= scaled_to).then_some(()) },
    )
    .await;
    let ready_at = Instant::now();
    let per_pod = format!(
        r#"count(sum by (pod) (rate(tailwarden_read_requests_total{{namespace="{}",pipeline="{PIPELINE}"}}[10s])) > 1)"#,
        bed.ns
    );
    wait_for(
        "every serve pod to take reads",
        Duration::from_secs(45),
        || async { (bed.prometheus.query(&per_pod).await? >= f64::from(scaled_to)).then_some(()) },
    )
    .await;

    // 3. P99 is back under the target (so under the objective too) within 3 evaluation
    //    intervals of the new pods being Ready, read back from Prometheus as the engine reads it
    //    (the status refreshes its SLI values only once a minute).
    let recovered_ms = wait_for("P99 to recover", INTERVAL * 3, || async {
        let p99 = p99_ms(bed).await?;
        eprintln!(
            "{:>3} s after Ready: P99 {p99:.0} ms",
            ready_at.elapsed().as_secs()
        );
        (p99 < target_ms).then_some(p99)
    })
    .await;
    let recovery = ready_at.elapsed();
    eprintln!(
        "serve 1 → {scaled_to} at P99 {breach_p99} ms; P99 {recovered_ms} ms {:.0} s after Ready",
        recovery.as_secs_f64()
    );

    // The decision is an Event, and counted in the operator's metrics.
    let events = Api::<Event>::namespaced(bed.client.clone(), &bed.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScaleServe")
                && e.message.as_deref().is_some_and(|m| m.contains("P99"))),
        "a ScaleServe Event names the signal"
    );

    spike
}

/// Scenario 5: with Prometheus stopped while the load is calm, the operator holds: the condition
/// names the missing SLIs and serve is not scaled down for longer than its window and cooldown,
/// which with data would have let it. Prometheus then returns, and the conditions recover.
/// Returns when Prometheus returned, and the replicas held.
async fn prometheus_outage_holds_replicas(bed: &mut Bed) -> (jiff::Timestamp, i32) {
    bed.prometheus.stop();
    let message = wait_for(
        "MetricsAvailable=False to name what is missing",
        INTERVAL * 3,
        || async {
            let (status, _, message) =
                real_node::condition(&bed.pipelines, PIPELINE, "MetricsAvailable").await?;
            (status == "False").then_some(message)
        },
    )
    .await;
    assert!(
        message.contains("holding replicas") && message.contains("P99"),
        "{message}"
    );
    // What serve runs once the operator knows it has no data (the rising load may have added a
    // replica after the first scale-up, before the outage).
    let replicas = serve_spec_replicas(bed).await.expect("serve's replicas");
    assert!(replicas > 1, "serve has replicas to lose");
    let hold = Duration::from_secs(DOWN_WINDOW_S) + INTERVAL * 2;
    let outage = Instant::now();
    while outage.elapsed() < hold {
        assert_eq!(
            serve_spec_replicas(bed).await,
            Some(replicas),
            "serve scaled without data, {:?} into the outage",
            outage.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    bed.prometheus.restart().await;
    let returned = jiff::Timestamp::now();
    wait_for(
        "MetricsAvailable=True after Prometheus returns",
        INTERVAL * 4,
        || async {
            let (status, ..) =
                real_node::condition(&bed.pipelines, PIPELINE, "MetricsAvailable").await?;
            (status == "True").then_some(())
        },
    )
    .await;
    (returned, replicas)
}

/// Scenario 1, fall: with the load calm and data back, serve scales down one step, and only
/// after a whole stabilization window of complete data since `since` (the data gap
/// restarted that clock); no more than one change of direction.
async fn serve_scales_down_after_its_window(bed: &Bed, since: jiff::Timestamp) {
    let api = &bed.pipelines;
    let down = wait_for(
        "the operator to scale serve down",
        Duration::from_secs(DOWN_WINDOW_S * 2) + INTERVAL * 4,
        || async {
            serve_decisions(api).await.into_iter().find(|d| {
                d.inputs
                    .replicas_before
                    .is_some_and(|b| replicas_after(d) < b)
                    && jiff::Timestamp::from_str(&d.time).is_ok_and(|t| t >= since)
            })
        },
    )
    .await;
    let after = jiff::Timestamp::from_str(&down.time)
        .unwrap()
        .duration_since(since);
    assert!(
        after >= jiff::SignedDuration::from_secs((DOWN_WINDOW_S - INTERVAL.as_secs()) as i64),
        "scaled down {after:?} after data returned, before a whole window of it"
    );
    assert_eq!(
        replicas_after(&down),
        down.inputs.replicas_before.unwrap() - 1,
        "one step at most: {}",
        down.reason
    );

    let history = serve_decisions(api).await;
    let directions: Vec<bool> = history
        .iter()
        .map(|d| replicas_after(d) > d.inputs.replicas_before.unwrap_or_default())
        .collect();
    let changes = directions.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        changes <= 1,
        "one change of direction at most: {:?}",
        history
            .iter()
            .map(|d| (d.time.clone(), replicas_after(d)))
            .collect::<Vec<_>>()
    );
}

async fn serve_spec_replicas(bed: &Bed) -> Option<i32> {
    Api::<Deployment>::namespaced(bed.client.clone(), &bed.ns)
        .get(&format!("{PIPELINE}-serve"))
        .await
        .ok()?
        .spec?
        .replicas
}

/// Scenario 2: a write burst makes the Kafka consumer lag grow; ingest scales up before the
/// freshness objective breaches, the new workers join the consumer group, and the lag drains
/// while the burst goes on.
async fn ingest_burst_scales_ingest_until_the_lag_drains(bed: &Bed) {
    let ns = &bed.ns;
    let lag_records = format!(
        // Every worker reports the group's lag of every partition: one copy per partition.
        r#"sum(max by (topic, partition) (tailwarden_kafka_consumer_lag_records{{namespace="{ns}",pipeline="{PIPELINE}"}}))"#
    );
    let lag_seconds = format!(
        r#"max(tailwarden_kafka_consumer_lag_seconds{{namespace="{ns}",pipeline="{PIPELINE}"}})"#
    );
    let worst_lag_s = std::cell::Cell::new(0.0f64);
    let track = |lag: Option<f64>| worst_lag_s.set(worst_lag_s.get().max(lag.unwrap_or(0.0)));
    let (burst, up) = ramp(
        bed,
        "burst",
        &BURST_WRITES,
        DecisionKind::ScaleIngest,
        |rate| {
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
        },
        || async { track(bed.prometheus.query(&lag_seconds).await) },
    )
    .await;
    let scaled_to = replicas_after(&up);
    eprintln!("ingest 1 → {scaled_to}: {}", up.reason);
    assert!(
        up.reason.contains("backlog") || up.reason.contains("lag"),
        "scaled up on the backlog or lag: {}",
        up.reason
    );
    wait_for(
        "the new ingest pods to be Ready",
        Duration::from_secs(90),
        || async { (ready_replicas(bed, "ingest").await >= scaled_to).then_some(()) },
    )
    .await;
    // The lag drains while the burst goes on, and never came near the freshness objective.
    let drained = wait_for(
        "the consumer lag to drain",
        Duration::from_secs(120),
        || async {
            let records = bed.prometheus.query(&lag_records).await?;
            track(bed.prometheus.query(&lag_seconds).await);
            (records < f64::from(BACKLOG_PER_REPLICA) / 10.0).then_some(records)
        },
    )
    .await;
    let worst_lag_s = worst_lag_s.get();
    eprintln!("lag drained to {drained} records; worst lag {worst_lag_s:.1} s");
    assert!(
        worst_lag_s < MAX_LAG_S as f64,
        "the lag ({worst_lag_s} s) stayed under the freshness objective ({MAX_LAG_S} s)"
    );
    let consuming = format!(
        // In Kafka mode the writer commits only what its consumer took from its partitions.
        r#"count(sum by (pod) (rate(tailwarden_ingest_commit_duration_seconds_count{{namespace="{ns}",pipeline="{PIPELINE}"}}[15s])) > 0)"#
    );
    let consumers = bed.prometheus.query(&consuming).await.unwrap_or(0.0);
    assert!(
        consumers >= f64::from(scaled_to),
        "every ingest pod consumes: {consumers} of {scaled_to}"
    );
    drop(burst);
}

/// Whether every serve pod runs `image` and is Ready, and the template names it.
async fn serve_rolled_to(bed: &Bed, image: &str) -> bool {
    let Ok(d) = Api::<Deployment>::namespaced(bed.client.clone(), &bed.ns)
        .get(&format!("{PIPELINE}-serve"))
        .await
    else {
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

/// Scenario 3: a bad version whose workers fail 5 % of reads (fault injection) burns the
/// availability budget and the rollout freezes; a fixed version is held back by the freeze and
/// goes through with the accountable override.
async fn bad_version_is_frozen_and_the_fix_goes_through_with_an_override(bed: &Bed) {
    let api = &bed.pipelines;
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
    wait_for(
        "rollouts to be allowed before the bad version",
        INTERVAL * 4,
        || async {
            let (status, ..) = real_node::condition(api, PIPELINE, "RolloutFrozen").await?;
            (status == "False").then_some(())
        },
    )
    .await;
    let _reads = reads(bed, "reads-bad-version", CALM_READS).await;

    // The bad version rolls out, and its workers fail 5 % of reads.
    let bad = format!("{version}-bad");
    let patch = json!({"spec": {"dataplane": {"version": bad,
        "faultInjection": {"readErrorPercent": 5}}}});
    api.patch(PIPELINE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // The freeze may pause this rollout before it ends: the first failing pod can spend the
    // young test budget. So wait only for the template, and the failures below.
    wait_for(
        "serve's template to name the bad version",
        Duration::from_secs(60),
        || async {
            let d = Api::<Deployment>::namespaced(bed.client.clone(), &bed.ns)
                .get(&format!("{PIPELINE}-serve"))
                .await
                .ok()?;
            let image_now = d.spec?.template.spec?.containers[0].image.clone()?;
            (image_now == format!("{image}:{bad}")).then_some(())
        },
    )
    .await;
    let errors = format!(
        // `or vector(0)`: once the failing pods are gone, so are all the 500 series.
        r#"sum(rate(tailwarden_read_requests_total{{namespace="{}",pipeline="{PIPELINE}",code="500"}}[15s])) or vector(0)"#,
        bed.ns
    );
    wait_for("reads to fail", Duration::from_secs(60), || async {
        (bed.prometheus.query(&errors).await? > 0.0).then_some(())
    })
    .await;

    // The budget burns and the rollout freezes.
    let (_, reason, message) = wait_for("the rollout to freeze", INTERVAL * 8, || async {
        let c = real_node::condition(api, PIPELINE, "RolloutFrozen").await?;
        (c.0 == "True").then_some(c)
    })
    .await;
    eprintln!("frozen: {reason}: {message}");
    let frozen = api.get(PIPELINE).await.unwrap().status.unwrap();
    assert!(
        frozen
            .decisions
            .iter()
            .any(|d| d.kind == DecisionKind::FreezeRollout),
        "a FreezeRollout decision"
    );

    // The fixed version waits for the freeze.
    let fixed = format!("{version}-fixed");
    let patch = json!({"spec": {"dataplane": {"version": fixed, "faultInjection": null}}});
    api.patch(PIPELINE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let held = wait_for(
        "the fixed version to be held back",
        INTERVAL * 2,
        || async {
            let rollout = api.get(PIPELINE).await.ok()?.status?.rollout;
            (!rollout.held_back.is_empty()).then_some(rollout.held_back)
        },
    )
    .await;
    eprintln!("held back: {held:?}");
    assert!(
        !serve_rolled_to(bed, &format!("{image}:{fixed}")).await,
        "the fixed version rolled out through the freeze"
    );

    // The accountable override lets it through; the errors stop.
    let until = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let patch = json!({"metadata": {"annotations": {
        "tailwarden.io/rollout-freeze-override": "roll out the fix for the 5 % read errors",
        "tailwarden.io/rollout-freeze-override-until": until,
        "tailwarden.io/rollout-freeze-override-by": "closed-loop-test",
    }}});
    api.patch(PIPELINE, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(
        "serve to roll out the fixed version",
        Duration::from_secs(120),
        || async {
            serve_rolled_to(bed, &format!("{image}:{fixed}"))
                .await
                .then_some(())
        },
    )
    .await;
    // The status says whose override let it through, once a reconcile has seen the annotations
    // (CI saw reconciles of an older copy of the pipeline in between: the OverrideFreeze
    // decision was once missing from the history, and the mark was once not yet in the status
    // right after the rollout; still being looked into).
    let mark = wait_for("the override in the status", INTERVAL * 3, || async {
        let mark = api
            .get(PIPELINE)
            .await
            .ok()?
            .status?
            .rollout
            .freeze_override?;
        (mark.state == MarkState::Active).then_some(mark)
    })
    .await;
    assert_eq!(mark.by.as_deref(), Some("closed-loop-test"), "{mark:?}");
    wait_for("reads to stop failing", Duration::from_secs(90), || async {
        (bed.prometheus.query(&errors).await? == 0.0).then_some(())
    })
    .await;
}
