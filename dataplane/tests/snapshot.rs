//! Snapshots: atomic visibility, referential integrity, rollback, a load killed midway, `?path=`
//! confined to the import directory, and a failed load leaving no dead letters behind.

mod support;

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, TempDir, eventually, get_json, inventory, send, temp_dir, write_config};

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

/// A server whose `snapshots.importDir` is a fresh directory; returns it and the directory.
async fn with_import_dir(name: &str) -> (Server, TempDir, TempDir) {
    let import = TempDir::new(&format!("{name}-import"));
    let conf = TempDir::new(&format!("{name}-conf"));
    let config = write_config(
        &conf.0,
        &format!(
            "snapshots: {{importDir: {:?}}}\n",
            import.0.display().to_string()
        ),
    );
    let server = Server::start(&temp_dir(name), &["--config", config.to_str().unwrap()]).await;
    (server, import, conf)
}

async fn dead_letters(server: &Server) -> Value {
    get_json(&format!("{}/v1/deadletter", server.ingest))
        .await
        .1
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
    let (mut server, import, _conf) = with_import_dir("snapkill").await;
    let v1 = load(&server, product("OLD", "old")).await;

    let big = import.0.join("big.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
    // One rejected line, dead-lettered with the first chunk; the restart must remove it too.
    f.write_all(b"garbage-line\n").unwrap();
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
            let dead = get_json(&format!("{}/v1/deadletter/count", server.ingest))
                .await
                .1["count"]
                == json!(1);
            let written = server.get("/v1/products/OLD").await.0 == 200 && loading && dead;
            written.then_some(())
        },
    )
    .await;
    // A streaming write syncs the shared journal, and with it the load's dead letter, so that
    // it survives the kill and the restart has to remove it.
    let (status, _) = server
        .post_updates(inventory("sync-1", "OLD", "S1", 1, 1_700_000_000_000, 1))
        .await;
    assert_eq!(status, 200);
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
    let dead = dead_letters(&server).await;
    assert_eq!(dead["items"], json!([]), "{dead}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_is_refused_without_an_import_dir() {
    let server = Server::start(&temp_dir("snapnoimport"), &[]).await;
    let a = send(
        "POST",
        &format!("{}/v1/snapshots?path=/etc/passwd", server.ingest),
        None,
        "",
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json["code"], json!("import_disabled"), "{}", a.text);
    assert!(
        a.json["error"]
            .as_str()
            .unwrap()
            .contains("snapshots.importDir"),
        "{}",
        a.text
    );
    assert_eq!(snapshots(&server).await["snapshots"], json!([]));
    // Uploads in the body keep working.
    load(&server, product("UP", "uploaded")).await;
    assert_eq!(server.get("/v1/products/UP").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_is_confined_to_the_import_dir() {
    let (server, import, _conf) = with_import_dir("snapimport").await;
    // A "mounted Secret" outside the import directory: one line that would be dead-lettered
    // with its content if it were ever loaded.
    let secret_dir = TempDir::new("snapimport-secret");
    let secret = secret_dir.0.join("token");
    std::fs::write(&secret, "TOPSECRET-42\n").unwrap();
    std::os::unix::fs::symlink(&secret, import.0.join("link.ndjson")).unwrap();
    std::fs::create_dir(import.0.join("sub")).unwrap();

    let escape = format!(
        "sub/../../{}/token",
        secret_dir.0.file_name().unwrap().to_str().unwrap()
    );
    let absolute_escape = format!("{}/../{}", import.0.display(), escape);
    for (path, code) in [
        ("/etc/passwd".to_owned(), "path_not_allowed"),
        (secret.display().to_string(), "path_not_allowed"),
        ("link.ndjson".to_owned(), "path_not_allowed"),
        (
            import.0.join("link.ndjson").display().to_string(),
            "path_not_allowed",
        ),
        (escape, "path_not_allowed"),
        (absolute_escape, "path_not_allowed"),
        ("absent.ndjson".to_owned(), "bad_parameter"),
        ("sub".to_owned(), "bad_parameter"),
    ] {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/v1/snapshots", server.ingest),
            [("path", path.as_str())],
        )
        .unwrap();
        let a = send("POST", url.as_str(), None, "").await;
        assert_eq!(
            (a.status, a.json["code"].as_str()),
            (if code == "bad_parameter" { 400 } else { 403 }, Some(code)),
            "{path}: {}",
            a.text
        );
        // The answer never says where a symlink pointed.
        let secret_name = secret_dir.0.file_name().unwrap().to_str().unwrap();
        if !path.contains(secret_name) {
            assert!(!a.text.contains(secret_name), "{}", a.text);
        }
    }
    assert_eq!(snapshots(&server).await["snapshots"], json!([]));
    assert!(
        !dead_letters(&server)
            .await
            .to_string()
            .contains("TOPSECRET")
    );

    // A file inside the directory loads, by absolute or relative path.
    std::fs::write(import.0.join("good.ndjson"), product("IN", "inside")).unwrap();
    for path in [
        import.0.join("good.ndjson").display().to_string(),
        "good.ndjson".to_owned(),
    ] {
        let before = snapshots(&server).await["active"].as_u64().unwrap();
        let (status, meta) = server
            .post(
                &format!("{}/v1/snapshots?path={path}", server.ingest),
                "application/json",
                "",
            )
            .await;
        assert_eq!(status, 202, "{path}: {meta}");
        eventually(
            "the snapshot to become active",
            Duration::from_secs(60),
            || async {
                (snapshots(&server).await["active"].as_u64().unwrap() > before).then_some(())
            },
        )
        .await;
    }
    assert_eq!(
        server.get("/v1/products/IN").await.1["name"],
        json!("inside")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_removes_its_dead_letters() {
    let server = Server::start(&temp_dir("snapfail"), &[]).await;
    // A stream dead letter from before, which must stay.
    let (status, _) = server.post_updates("not json\n").await;
    assert_eq!(status, 422);
    // Every line rejected: far above the default limit of 1%.
    let body = "SECRET-LINE-1\n".to_owned() + &price("GHOST", 1.0) + "SECRET-LINE-2\n";
    let (status, meta) = server
        .post(
            &format!("{}/v1/snapshots", server.ingest),
            "application/x-ndjson",
            body,
        )
        .await;
    assert_eq!(status, 202, "{meta}");
    let version = meta["version"].clone();
    // The failed version disappears from the list once it is discarded.
    eventually(
        "the failed load to be discarded",
        Duration::from_secs(60),
        || async {
            let list = snapshots(&server).await;
            let gone = !list["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["version"] == version);
            gone.then_some(())
        },
    )
    .await;
    let dead = dead_letters(&server).await;
    let items = dead["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{dead}");
    assert_eq!(items[0]["source"]["kind"], json!("stream"), "{dead}");
    assert!(!dead.to_string().contains("SECRET-LINE"), "{dead}");
    assert_eq!(
        get_json(&format!("{}/v1/deadletter/count", server.ingest))
            .await
            .1["count"],
        json!(1)
    );
}
