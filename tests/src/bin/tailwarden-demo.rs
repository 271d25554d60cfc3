//! The story of `scripts/demo.sh`, on the closed-loop bed (`tests/src/closed_loop.rs`): a
//! distributed pipeline whose workers run on the real node against real Kafka and Cassandra, the
//! operator reconciling it and a real Prometheus scraping it. It plays a read spike and the
//! scale-up, the scale-down after it, a bad rollout frozen and the fix let through by an
//! accountable override, while a live view prints the pipeline's state and every decision with
//! its reason as it happens.
//!
//! `--keep` leaves everything running after the story, with the live view, until Ctrl-C. Ctrl-C
//! at any time deletes the demo's namespace and stops the operator, Prometheus and the load.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tailwarden_crds::{DecisionKind, RetailPipelineStatus};
use tailwarden_operator::summary::{Summary, decision_inputs};
use tailwarden_tests::closed_loop::*;
use tailwarden_tests::wait_for;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let keep = std::env::args().any(|a| a == "--keep");
    say(
        "Starting a distributed pipeline on the real node (operator, Prometheus, 1 ingest and 1 serve worker)",
    );
    let bed = Bed::start("demo", spec(), &operator_args()).await;
    println!("  namespace        {}", bed.ns);
    println!("  status page      {}", bed.operator.status);
    println!("  Prometheus       {}", bed.prometheus.url);
    println!("  logs             {}", bed.logs.display());
    println!(
        "  objectives       read P99 < {P99_OBJECTIVE_MS} ms (serve scales up above {TARGET_PERCENT} % of it), freshness < {MAX_LAG_S} s"
    );
    let started = Instant::now();
    let story = async {
        story(&bed).await;
        if keep {
            say("Left running with the live view; Ctrl-C tears everything down");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = story => {}
        () = live_view(&bed, started) => {}
        _ = tokio::signal::ctrl_c() => say("Interrupted"),
    }
    say("Tearing down: the demo's namespace, the operator, Prometheus and the load");
    bed.finish().await;
}

async fn story(bed: &Bed) {
    let _writes = bed.writes().await;

    say(&format!(
        "1. A read spike: reads rise from {}/s in steps until the P99 crosses the target",
        RAMP_READS[0]
    ));
    let (spike, up) = bed.read_spike().await;
    let scaled_to = replicas_after(&up);
    bed.wait_ready_replicas("serve", scaled_to, Duration::from_secs(120))
        .await;
    let ready = Instant::now();
    let p99 = wait_for("the P99 to recover", INTERVAL * 6, || async {
        bed.p99_ms().await.filter(|p| *p < TARGET_MS)
    })
    .await;
    say(&format!(
        "   {scaled_to} serve pods Ready; P99 back to {p99:.0} ms {} s later",
        ready.elapsed().as_secs()
    ));

    say(&format!(
        "2. The spike ends: {CALM_READS} reads/s; serve scales down after its {DOWN_WINDOW_S} s window"
    ));
    drop(spike);
    let calm = bed.reads("calm", CALM_READS).await;
    wait_for(
        "serve to scale down",
        Duration::from_secs(DOWN_WINDOW_S * 2) + INTERVAL * 4,
        || async {
            bed.decisions(DecisionKind::ScaleServe)
                .await
                .into_iter()
                .find(|d| replicas_after(d) < d.inputs.replicas_before.unwrap_or_default())
        },
    )
    .await;

    say("3. A bad rollout: a new version whose workers fail 5 % of reads (fault injection)");
    let versions = bed.tag_versions();
    bed.roll_out_bad_version(&versions).await;
    let (_, message) = bed
        .wait_condition("RolloutFrozen", "True", INTERVAL * 8)
        .await;
    say(&format!("   Rollouts frozen: {message}"));
    say("   The fixed version is asked for, and held back by the freeze");
    let held = bed.ask_for_fixed_version(&versions).await;
    say(&format!("   Held back: {}", held.join("; ")));
    say(
        "   An SRE lets the fix through with the accountable override (kubectl tailwarden override)",
    );
    bed.override_freeze(
        &versions,
        "demo-sre",
        "roll out the fix for the read errors",
    )
    .await;
    let errors = bed.read_errors_query();
    wait_for("reads to stop failing", Duration::from_secs(90), || async {
        (bed.prometheus.query(&errors).await? == 0.0).then_some(())
    })
    .await;
    say("4. Recovered: the fix runs everywhere and reads no longer fail");
    drop(calm);
    if let Some(status) = status(bed).await {
        println!("\n  Decision history (oldest first):");
        for d in &status.decisions {
            println!(
                "  {}  {:<16} {}  [{}]",
                d.time,
                d.kind.as_str(),
                d.reason,
                decision_inputs(&d.inputs)
            );
        }
    }
}

async fn status(bed: &Bed) -> Option<RetailPipelineStatus> {
    bed.pipelines.get(PIPELINE).await.ok()?.status
}

/// Every 5 s one line of state (replicas, P99 and lag as Prometheus has them now, the budget and
/// what freezes rollouts as the status has them), and each new decision as it appears.
async fn live_view(bed: &Bed, started: Instant) {
    let mut seen = BTreeSet::new();
    let lag = format!(
        r#"max(tailwarden_kafka_consumer_lag_seconds{{namespace="{}",pipeline="{PIPELINE}"}})"#,
        bed.ns
    );
    loop {
        if let Ok(pipeline) = bed.pipelines.get(PIPELINE).await {
            let at = format!("[{:>4} s]", started.elapsed().as_secs());
            for d in pipeline.status.iter().flat_map(|s| &s.decisions) {
                if seen.insert((d.time.clone(), d.kind.as_str())) {
                    println!("{at} decision {}: {}", d.kind.as_str(), d.reason);
                }
            }
            let row = Summary::of(&pipeline);
            let replicas = |r: Option<tailwarden_operator::summary::Replicas>| {
                r.map_or("-".into(), |r| format!("{}/{}", r.ready, r.desired))
            };
            let frozen = row.frozen.unwrap_or_default();
            let rollouts = match (frozen.budget || frozen.manual, frozen.overridden) {
                (true, true) => "frozen, overridden",
                (true, false) => "frozen",
                (false, _) => "open",
            };
            println!(
                "{at} serve {} ingest {} | P99 {} | lag {} | budget {} | rollouts {rollouts}",
                replicas(row.serve),
                replicas(row.ingest),
                bed.p99_ms()
                    .await
                    .map_or("-".into(), |p| format!("{p:.0} ms")),
                bed.prometheus
                    .query(&lag)
                    .await
                    .map_or("-".into(), |s| format!("{s:.1} s")),
                row.budget_text.as_deref().unwrap_or("-"),
            );
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn say(what: &str) {
    println!("\n==> {what}");
}
