//! Bad input gets a clear 4xx naming the problem, and nothing else is lost.

mod support;

use serde_json::json;
use support::{Server, inventory, temp_dir};

fn record(payload: &str) -> String {
    format!(
        r#"{{"event_id":"bad-{}","class":"pricing","schema_version":2,"key":{{"product_id":"P1","valid_from":0}},"event_time":5,"sequence":1,"payload":{payload}}}"#,
        fastrand::u64(..)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_input_is_refused_clearly() {
    let server = Server::start(&temp_dir("bad"), &["--pause-non-critical", "false"]).await;
    let url = format!("{}/v1/updates", server.ingest);
    // A good record first; it must still be there at the end.
    let (status, _) = server
        .post_updates(inventory("keep-1", "KEEP", "S1", 7, 1, 1))
        .await;
    assert_eq!(status, 200);

    let (status, body) = server.post(&url, "application/json", r#"[{"a":1}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not a JSON array"),
        "{body}"
    );

    let (status, body) = server.post(&url, "application/json", "[]").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("empty"), "{body}");

    let (status, body) = server.post_updates("\n\n").await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], json!("empty_batch"));

    let (status, body) = server.post(&url, "text/csv", "a,b").await;
    assert_eq!(status, 415);
    assert!(
        body["error"].as_str().unwrap().contains("text/csv"),
        "{body}"
    );

    // An oversized body is refused from its declared length, before it is read.
    let response = oversized(&server.ingest).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("maxBodyBytes"), "{response}");

    let (status, body) = server
        .post_updates(record(r#"{"amount":"cheap","currency":"USD"}"#))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["field"],
        json!("payload.amount"),
        "{body}"
    );

    let (status, body) = server
        .post_updates(record(r#"{"amount":1e300,"currency":"USD"}"#))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["field"],
        json!("payload.amount"),
        "{body}"
    );

    let (status, body) = server
        .post_updates(record(r#"{"amount":1}"#).replace(
            r#""sequence":1"#,
            r#""sequence":123456789012345678901234567890"#,
        ))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["errors"][0]["field"], json!("sequence"), "{body}");

    let (status, body) = server
        .post_updates(
            record(r#"{"amount":1}"#).replace(r#""schema_version":2"#, r#""schema_version":9"#),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["field"],
        json!("schema_version"),
        "{body}"
    );
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not supported")
    );

    let mut invalid_utf8 = record(r#"{"amount":1,"currency":"USD"}"#).into_bytes();
    invalid_utf8.splice(10..10, [0xff, 0xfe]);
    let (status, body) = server.post_updates(invalid_utf8.clone()).await;
    assert_eq!(status, 422);
    assert!(
        body["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{body}"
    );
    let mut array = b"[".to_vec();
    array.extend(&invalid_utf8);
    array.push(b']');
    let (status, body) = server.post(&url, "application/json", array).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("UTF-8"), "{body}");

    // One bad record never rejects its good neighbours.
    let mixed = inventory("mixed-good", "MIXED", "S1", 3, 1, 1) + "{not json}\n";
    let (status, body) = server.post_updates(mixed).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["accepted"].clone(), body["rejected"].clone()),
        (json!(1), json!(1)),
        "{body}"
    );
    assert_eq!(body["errors"][0]["index"], json!(1));
    assert_eq!(
        server.get("/v1/inventory/MIXED/S1").await.1["quantity"],
        json!(3)
    );

    // Rejected records are dead-lettered with their reason.
    let (_, count) = support::get_json(&format!("{}/v1/deadletter/count", server.ingest)).await;
    assert_eq!(count["count"], json!(6), "{count}");

    // Nothing else was lost.
    let (status, body) = server.get("/v1/inventory/KEEP/S1").await;
    assert_eq!((status, body["quantity"].clone()), (200, json!(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_reject_malformed_keys_and_404_unknown_ones() {
    let server = Server::start(&temp_dir("keys"), &[]).await;
    let (status, body) = server.get("/v1/products/bad%20id").await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("product_id"),
        "{body}"
    );
    let (status, body) = server.get("/v1/prices/P1?at=yesterday").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("at"), "{body}");
    let (status, body) = server.get("/v1/products/NOPE").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], json!("not_found"));
}

/// Sends only the headers of a 17 MiB request and returns the raw response.
async fn oversized(base: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/updates HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\n\r\n",
        17 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_retry_after() {
    let dir = temp_dir("backpressure");
    let config = dir.join("config.yaml");
    // A long linger keeps the first batch queued (admitted, not yet durable) while we probe.
    std::fs::write(
        &config,
        "ingest:\n  partitions: 4\n  queueCapacity: 100\n  batch: {maxRecords: 1000, linger: 3s}\n  deadLetter: {retention: 1h, maxRecords: 100}\n",
    )
    .unwrap();
    let server = Server::start(&dir.join("data"), &["--config", config.to_str().unwrap()]).await;
    let batch = |tag: &str, n: usize| -> String {
        (0..n)
            .map(|i| inventory(&format!("{tag}-{i}"), &format!("Q{i}"), "S1", 1, 1, 1))
            .collect()
    };
    let first = {
        let url = format!("{}/v1/updates", server.ingest);
        let body = batch("first", 60);
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    support::eventually(
        "60 records queued",
        std::time::Duration::from_secs(10),
        || async {
            let text = reqwest::get(format!("{}/metrics", server.metrics))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains("tailwarden_ingest_queue_depth_records 60")
                .then_some(())
        },
    )
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/updates", server.ingest))
        .header("content-type", "application/x-ndjson")
        .body(batch("second", 60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    // A batch that can never fit is refused as too large, not told to retry.
    let (status, body) = server.post_updates(batch("huge", 101)).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("queueCapacity"),
        "{body}"
    );
    // The queued batch is still committed and acknowledged.
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(server.get("/v1/inventory/Q59/S1").await.0, 200);
}
