//! Snapshots: atomic visibility, referential integrity, rollback, and a load killed midway.

mod support;

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, eventually, get_json, inventory, temp_dir};

fn product(id: &str, name: &str) -> String {
    format!(
        r#"{{"class":"product","schema_version":2,"key":{{"product_id":"{id}"}},"payload":{{"name":"{name}"}}}}"#
    ) + "\n"
}

fn price(id: &str, amount: f64) -> String {
    format!(
        r#"{{"class":"pricing","schema_version":2,"key":{{"product_id":"{id}","valid_from":"2026-01-01T00:00:00Z"}},"payload":{{"amount":{amount},"currency":"EUR"}}}}"#
    ) + "\n"
}

async fn snapshots(server: &Server) -> Value {
    get_json(&format!("{}/v1/snapshots", server.ingest)).await.1
}

async fn load(server: &Server, body: String) -> u64 {
    let (status, meta) = server
        .post(
            &format!("{}/v1/snapshots?as_of=2026-06-01T00:00:00Z", server.ingest),
            "application/x-ndjson",
            body,
        )
        .await;
    assert_eq!(status, 202, "{meta}");
    let version = meta["version"].as_u64().unwrap();
    eventually(
        "the snapshot to become active",
        Duration::from_secs(60),
        || async move { (snapshots(server).await["active"] == json!(version)).then_some(()) },
    )
    .await;
    version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_swap_atomically_check_references_and_roll_back() {
    let server = Server::start(&temp_dir("snap"), &[]).await;
    let v1 = load(&server, product("A", "Old A") + &price("A", 1.0)).await;
    assert_eq!(server.get("/v1/products/A").await.1["name"], json!("Old A"));

    // A price for an unknown product is dead-lettered, the rest loads.
    let body = product("A", "New A") + &product("B", "B") + &price("A", 2.0) + &price("GHOST", 3.0);
    let (status, _) = server
        .post(
            &format!(
                "{}/v1/snapshots?as_of=2026-06-01T00:00:00Z&max_rejected_ratio=0.5",
                server.ingest
            ),
            "application/x-ndjson",
            body,
        )
        .await;
    assert_eq!(status, 202);
    eventually("snapshot 2", Duration::from_secs(60), || async {
        (snapshots(&server).await["active"] == json!(v1 + 1)).then_some(())
    })
    .await;
    assert_eq!(server.get("/v1/products/A").await.1["name"], json!("New A"));
    assert_eq!(server.get("/v1/products/B").await.0, 200);
    assert_eq!(server.get("/v1/prices/GHOST").await.0, 404);
    let (_, dead) = get_json(&format!("{}/v1/deadletter", server.ingest)).await;
    assert_eq!(dead["items"][0]["field"], json!("key.product_id"), "{dead}");

    // Streaming updates newer than the snapshot apply on top of it.
    let (status, _) = server
        .post_updates(inventory("s-1", "A", "S1", 9, 1_900_000_000_000, 1))
        .await;
    assert_eq!(status, 200);
    let (_, detail) = server.get("/v1/product-detail/A?location=S1").await;
    assert_eq!(
        (
            detail["product"]["name"].clone(),
            detail["inventory"]["quantity"].clone()
        ),
        (json!("New A"), json!(9))
    );
    assert_eq!(detail["price"]["amount"], json!(2.0));

    // Rollback returns to version 1 at once.
    let (status, body) = server
        .post(
            &format!("{}/v1/snapshots/rollback", server.ingest),
            "application/json",
            "",
        )
        .await;
    assert_eq!((status, body["active"].clone()), (200, json!(v1)));
    assert_eq!(server.get("/v1/products/A").await.1["name"], json!("Old A"));
    assert_eq!(server.get("/v1/products/B").await.0, 404);

    // After a fix upstream (the product now exists), replaying the dead letter applies it.
    let product_update = r#"{"event_id":"ghost-1","class":"product","schema_version":2,"key":{"product_id":"GHOST"},"event_time":1,"sequence":1,"payload":{"name":"Ghost"}}"#;
    server.post_updates(product_update.to_string()).await;
    let (status, body) = server
        .post(
            &format!("{}/v1/deadletter/replay", server.ingest),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replayed"], json!(1), "{body}");
    assert_eq!(
        get_json(&format!("{}/v1/deadletter/count", server.ingest))
            .await
            .1["count"],
        json!(0)
    );
    assert_eq!(server.get("/v1/prices/GHOST").await.1["amount"], json!(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_killed_midway_leaves_the_old_snapshot_and_no_trace() {
    let mut server = Server::start(&temp_dir("snapkill"), &[]).await;
    let v1 = load(&server, product("OLD", "old")).await;

    let big = server.dir.join("big.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    for i in 0..400_000 {
        f.write_all(product(&format!("NEW{i}"), "new").as_bytes())
            .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let (status, meta) = server
        .post(
            &format!("{}/v1/snapshots?path={}", server.ingest, big.display()),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, 202, "{meta}");
    // Kill once the load has visibly written part of the new version.
    eventually(
        "the load to be under way",
        Duration::from_secs(30),
        || async {
            let list = snapshots(&server).await;
            let loading = list["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["state"] == json!("loading"));
            assert_eq!(
                list["active"],
                json!(v1),
                "load finished before it could be killed"
            );
            let written = server.get("/v1/products/OLD").await.0 == 200 && loading;
            written.then_some(())
        },
    )
    .await;
    server.kill();
    server.restart().await;

    let list = snapshots(&server).await;
    assert_eq!(list["active"], json!(v1), "{list}");
    assert!(
        list["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == json!("complete")),
        "{list}"
    );
    assert_eq!(server.get("/v1/products/OLD").await.0, 200);
    assert_eq!(server.get("/v1/products/NEW0").await.0, 404);
}
