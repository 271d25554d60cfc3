//! Reaction time of the closed loop (docs/benchmarks.md): on a fresh bed per run
//! (`tests/src/closed_loop.rs`), reads rise in steps until serve scales up, and it measures from
//! the moment Prometheus shows the P99 over the scale-up target to the operator's decision, to
//! the first new serve pod Ready, and to the P99 back under the target. Prints each run and the
//! median and maximum. Needs what the closed-loop test needs (tests/lib/bed.sh's `bed_up`).
//!
//! `reaction-time [runs]` (default 3).

use std::cell::Cell;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tailwarden_tests::closed_loop::*;
use tailwarden_tests::wait_for;

/// Seconds from the breach to each step of one run.
struct Run {
    decision: f64,
    ready: f64,
    back: f64,
    p99_at_breach: f64,
    load: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(3, |n| n.parse().expect("runs: a number"));
    let mut results = Vec::new();
    for i in 1..=runs {
        let run = once().await;
        println!(
            "run {i}: P99 {:.0} ms over the {TARGET_MS} ms target; decision after {:.1} s, first new pod Ready after {:.1} s, P99 back under the target after {:.1} s (load average {})",
            run.p99_at_breach, run.decision, run.ready, run.back, run.load
        );
        results.push(run);
    }
    println!("\n| from the breach to | median | max |\n|---|---|---|");
    for (what, pick) in [
        ("the decision", (|r: &Run| r.decision) as fn(&Run) -> f64),
        ("the first new pod Ready", |r: &Run| r.ready),
        ("the P99 back under the target", |r: &Run| r.back),
    ] {
        let mut v: Vec<f64> = results.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        println!(
            "| {what} | {:.1} s | {:.1} s |",
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
}

async fn once() -> Run {
    let bed = Bed::start("reaction", spec(), &operator_args()).await;
    let load = std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    let _writes = bed.writes().await;
    let breach: Cell<Option<(Instant, jiff::Timestamp, f64)>> = Cell::new(None);
    let watch = || async {
        if breach.get().is_none()
            && let Some(p99) = bed.p99_ms().await.filter(|p| *p > TARGET_MS)
        {
            breach.set(Some((Instant::now(), jiff::Timestamp::now(), p99)));
        }
    };
    let (spike, up) = bed.read_spike_watched(watch).await;
    // The decision may come before a poll saw the breach: then the breach is the decision's P99.
    let decided = jiff::Timestamp::from_str(&up.time).expect("an RFC 3339 decision time");
    let (at, at_wall, p99) = breach.get().unwrap_or((
        Instant::now(),
        decided,
        decision_p99_ms(&up).unwrap_or(f64::NAN),
    ));
    let decision = decided.duration_since(at_wall).as_secs_f64().max(0.0);
    wait_for(
        "a new serve pod to be Ready",
        Duration::from_secs(120),
        || async { (bed.ready_replicas("serve").await > 1).then_some(()) },
    )
    .await;
    let ready = at.elapsed().as_secs_f64();
    wait_for("the P99 to recover", Duration::from_secs(180), || async {
        bed.p99_ms().await.filter(|p| *p < TARGET_MS)
    })
    .await;
    let back = at.elapsed().as_secs_f64();
    drop(spike);
    bed.finish().await;
    Run {
        decision,
        ready,
        back,
        p99_at_breach: p99,
        load,
    }
}
