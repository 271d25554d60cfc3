//! The closed loop on real pods: load on real serve workers → their metrics in a real Prometheus
//! → the operator's SLO engine → more serve pods on the real node → the SLIs recover.
//! The bed and how it is sized: `tests/src/closed_loop.rs`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use tailwarden_crds::{Decision, DecisionKind};
use tailwarden_tests::closed_loop::*;
use tailwarden_tests::{real_node, wait_for};

async fn serve_decisions(bed: &Bed) -> Vec<Decision> {
    bed.decisions(DecisionKind::ScaleServe).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local cluster with its real node, Kafka, Cassandra and Prometheus: run tests/run.sh"]
async fn the_loop_closes_on_real_pods() {
    let mut bed = Bed::start("loop", spec(), &operator_args()).await;
    let _writes = bed.writes().await;
    let t = Instant::now();
    let spike = read_load_rises(&bed).await;
    took("1a (read load rises)", t);

    // The load falls: serve could scale down once its window has passed, but Prometheus stops
    // first.
    drop(spike);
    let calm = bed.reads("calm", CALM_READS).await;
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
        bed.ready_replicas("serve").await,
        1,
        "serve starts at its minimum"
    );
    let target_ms = TARGET_MS;

    // 1. The read load rises until one worker's P99 crosses the target.
    let (spike, up) = bed.read_spike().await;
    assert!(
        up.reason.contains("P99"),
        "scaled up on the P99 signal: {}",
        up.reason
    );
    let breach_p99 = decision_p99_ms(&up).expect("the decision records the P99 it saw");
    assert!(
        breach_p99 > target_ms,
        "the P99 that triggered it ({breach_p99} ms) is over the {target_ms} ms target"
    );
    let scaled_to = replicas_after(&up);

    // 2. The new pods become Ready and take traffic.
    bed.wait_ready_replicas("serve", scaled_to, Duration::from_secs(90))
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
        let p99 = bed.p99_ms().await?;
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
    let replicas = bed.spec_replicas("serve").await.expect("serve's replicas");
    assert!(replicas > 1, "serve has replicas to lose");
    let hold = Duration::from_secs(DOWN_WINDOW_S) + INTERVAL * 2;
    let outage = Instant::now();
    while outage.elapsed() < hold {
        assert_eq!(
            bed.spec_replicas("serve").await,
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
    let down = wait_for(
        "the operator to scale serve down",
        Duration::from_secs(DOWN_WINDOW_S * 2) + INTERVAL * 4,
        || async {
            serve_decisions(bed).await.into_iter().find(|d| {
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

    let history = serve_decisions(bed).await;
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
    let (burst, up) = bed
        .ramp(
            "burst",
            &BURST_WRITES,
            DecisionKind::ScaleIngest,
            burst_args,
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
    bed.wait_ready_replicas("ingest", scaled_to, Duration::from_secs(90))
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

/// Scenario 3: a bad version whose workers fail 5 % of reads (fault injection) burns the
/// availability budget and the rollout freezes; a fixed version is held back by the freeze and
/// goes through with the accountable override.
async fn bad_version_is_frozen_and_the_fix_goes_through_with_an_override(bed: &Bed) {
    let versions = bed.tag_versions();
    let _reads = bed.reads("reads-bad-version", CALM_READS).await;

    // The bad version rolls out, its workers fail 5 % of reads, the budget burns, and the
    // rollout freezes.
    bed.roll_out_bad_version(&versions).await;
    let (reason, message) = bed
        .wait_condition("RolloutFrozen", "True", INTERVAL * 8)
        .await;
    eprintln!("frozen: {reason}: {message}");
    assert!(
        !bed.decisions(DecisionKind::FreezeRollout).await.is_empty(),
        "a FreezeRollout decision"
    );

    // The fixed version waits for the freeze.
    let held = bed.ask_for_fixed_version(&versions).await;
    eprintln!("held back: {held:?}");
    let fixed_image = format!("{}:{}", versions.image, versions.fixed);
    assert!(
        !bed.serve_rolled_to(&fixed_image).await,
        "the fixed version rolled out through the freeze"
    );

    // The accountable override lets it through, recorded with whose it is; the errors stop.
    let mark = bed
        .override_freeze(
            &versions,
            "closed-loop-test",
            "roll out the fix for the 5 % read errors",
        )
        .await;
    assert_eq!(mark.by.as_deref(), Some("closed-loop-test"), "{mark:?}");
    let overrides = bed.decisions(DecisionKind::OverrideFreeze).await;
    assert!(
        overrides
            .iter()
            .any(|d| d.inputs.actor.as_deref() == Some("closed-loop-test")),
        "an OverrideFreeze decision names who: {overrides:?}"
    );
    let errors = bed.read_errors_query();
    wait_for("reads to stop failing", Duration::from_secs(90), || async {
        (bed.prometheus.query(&errors).await? == 0.0).then_some(())
    })
    .await;
}
