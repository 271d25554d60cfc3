//! SIGKILL during sustained ingest: every acknowledged update survives, nothing applies twice.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::{Server, eventually, inventory, temp_dir};

const BATCH: usize = 200;

fn batch(n: usize) -> String {
    (0..BATCH)
        .map(|i| {
            inventory(
                &format!("crash-{n}-{i}"),
                &format!("P{n}x{i}"),
                "S1",
                (n * 1000 + i) as i64,
                1_700_000_000_000,
                1,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_updates_survive_sigkill_without_duplicate_effects() {
    let mut server = Server::start(&temp_dir("crash"), &[]).await;
    let acked: Arc<Mutex<Vec<usize>>> = Arc::default();
    // Four concurrent producers keep ingest busy until the process dies under them.
    let url = format!("{}/v1/updates", server.ingest);
    let mut producers = Vec::new();
    for p in 0..4 {
        let (acked, url) = (acked.clone(), url.clone());
        producers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for k in 0.. {
                let n = k * 4 + p;
                let sent = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(batch(n))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(n),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    eventually("40 acknowledged batches", Duration::from_secs(60), || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 40).then_some(()) }
    })
    .await;
    server.kill();
    for p in producers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    server.restart().await;

    for &n in &acked {
        for i in [0, BATCH / 2, BATCH - 1] {
            let (status, body) = server.get(&format!("/v1/inventory/P{n}x{i}/S1")).await;
            assert_eq!(status, 200, "acknowledged update {n}/{i} lost: {body}");
            assert_eq!(body["quantity"], serde_json::json!(n * 1000 + i));
        }
    }
    // Replaying acknowledged batches after the restart changes nothing: dedup was persisted.
    for &n in acked.iter().take(5) {
        let (status, body) = server.post_updates(batch(n)).await;
        assert_eq!(status, 200);
        assert_eq!(body["deduplicated"], serde_json::json!(BATCH), "{body}");
        assert_eq!(body["accepted"], serde_json::json!(0), "{body}");
    }
}
