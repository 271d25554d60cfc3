//! Bearer-token authentication against the real binary: 401 without a token, 403 with a wrong
//! one, 2xx with the right one, per scope; health and metrics stay open; tokens never appear in
//! a response or the log.

mod support;

use serde_json::json;
use support::{Answer, Server, TempDir, get_json, inventory, send, temp_dir, write_config};

const INGEST_TOKEN: &str = "ingest-7f3a9c-token";
const ADMIN_TOKEN: &str = "admin-b41d07-token";
const READ_TOKEN: &str = "read-5e82aa-token";

/// Token files as a Secret volume would hold them (with the usual trailing newline) and a
/// config naming them; `read` adds the read token.
fn secured_config(secrets: &TempDir, read: bool) -> std::path::PathBuf {
    let file = |name: &str, token: &str| {
        let path = secrets.0.join(name);
        std::fs::write(&path, format!("{token}\n")).unwrap();
        path.display().to_string()
    };
    let mut yaml = format!(
        "auth:\n  ingestTokenFile: {}\n  adminTokenFile: {}\n",
        file("ingest", INGEST_TOKEN),
        file("admin", ADMIN_TOKEN)
    );
    if read {
        yaml += &format!("  readTokenFile: {}\n", file("read", READ_TOKEN));
    }
    write_config(&secrets.0, &yaml)
}

fn assert_refused(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {}", a.text);
    let code = if status == 401 {
        "unauthorized"
    } else {
        "forbidden"
    };
    assert_eq!(a.json["code"], json!(code), "{what}: {}", a.text);
    assert!(a.json["error"].is_string(), "{what}: {}", a.text);
    if status == 401 {
        let challenge = a.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
    }
    for token in [INGEST_TOKEN, ADMIN_TOKEN, READ_TOKEN] {
        assert!(!a.text.contains(token), "{what} echoes a token: {}", a.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_and_admin_routes_need_their_own_token() {
    let secrets = TempDir::new("auth-secrets");
    let config = secured_config(&secrets, false);
    let log = secrets.0.join("server.log");
    let server = Server::start_logging(
        &temp_dir("auth"),
        &["--config", config.to_str().unwrap()],
        Some(log.clone()),
    )
    .await;
    let updates = format!("{}/v1/updates", server.ingest);
    let record = inventory("auth-1", "P1", "S1", 3, 1_700_000_000_000, 1);

    // Ingest route.
    let a = send("POST", &updates, None, &record).await;
    assert_refused(&a, 401, "updates without a token");
    let a = send("POST", &updates, Some("wrong"), &record).await;
    assert_refused(&a, 403, "updates with a wrong token");
    let a = send("POST", &updates, Some(ADMIN_TOKEN), &record).await;
    assert_refused(&a, 403, "updates with the admin token");
    let a = send("POST", &updates, Some(INGEST_TOKEN), &record).await;
    assert_eq!(
        (a.status, a.json["accepted"].clone()),
        (200, json!(1)),
        "{}",
        a.text
    );

    // Admin routes: the ingest token is not enough.
    let degradation = format!("{}/v1/admin/degradation", server.ingest);
    let body = r#"{"pauseNonCritical": true}"#;
    let a = send("PUT", &degradation, None, body).await;
    assert_refused(&a, 401, "degradation without a token");
    let a = send("PUT", &degradation, Some("wrong"), body).await;
    assert_refused(&a, 403, "degradation with a wrong token");
    let a = send("PUT", &degradation, Some(INGEST_TOKEN), body).await;
    assert_refused(&a, 403, "degradation with the ingest token");
    let a = send("PUT", &degradation, Some(ADMIN_TOKEN), body).await;
    assert_eq!(
        (a.status, a.json["pauseNonCritical"].clone()),
        (200, json!(true)),
        "{}",
        a.text
    );
    for (method, path) in [
        ("GET", "/v1/deadletter"),
        ("GET", "/v1/deadletter/count"),
        ("POST", "/v1/deadletter/replay"),
        ("GET", "/v1/snapshots"),
        ("POST", "/v1/snapshots"),
        ("POST", "/v1/snapshots/rollback"),
        ("GET", "/v1/admin/degradation"),
    ] {
        let url = format!("{}{path}", server.ingest);
        let a = send(method, &url, None, "").await;
        assert_refused(&a, 401, &format!("{method} {path} without a token"));
        let a = send(method, &url, Some(INGEST_TOKEN), "").await;
        assert_refused(&a, 403, &format!("{method} {path} with the ingest token"));
    }
    let a = send(
        "GET",
        &format!("{}/v1/deadletter", server.ingest),
        Some(ADMIN_TOKEN),
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);

    // Health, readiness and metrics stay open; so do reads without a read token.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let a = send("GET", &format!("{}{path}", server.metrics), None, "").await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
    }
    let (status, body) = server.get("/v1/inventory/P1/S1").await;
    assert_eq!((status, body["quantity"].clone()), (200, json!(3)));

    // Tokens are configured, so no warning about an open write API, and no token in the log.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("unauthenticated"), "{log}");
    for token in [INGEST_TOKEN, ADMIN_TOKEN] {
        assert!(!log.contains(token), "the log shows a token: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_read_token_when_one_is_configured() {
    let secrets = TempDir::new("auth-read-secrets");
    let config = secured_config(&secrets, true);
    let server = Server::start(
        &temp_dir("auth-read"),
        &["--config", config.to_str().unwrap()],
    )
    .await;
    let url = format!("{}/v1/products/P1", server.serve);
    assert_refused(
        &send("GET", &url, None, "").await,
        401,
        "read without a token",
    );
    assert_refused(
        &send("GET", &url, Some(INGEST_TOKEN), "").await,
        403,
        "read with the ingest token",
    );
    let a = send("GET", &url, Some(READ_TOKEN), "").await;
    assert_eq!(
        (a.status, a.json["code"].clone()),
        (404, json!("not_found"))
    );
    // An unknown path is still a plain 404, not an authentication answer.
    assert_eq!(
        get_json(&format!("{}/v1/nothing", server.serve)).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_token_files_the_api_is_open_and_says_so_once() {
    let dir = TempDir::new("auth-open-log");
    let log = dir.0.join("server.log");
    let server = Server::start_logging(&temp_dir("auth-open"), &[], Some(log.clone())).await;
    let (status, _) = server
        .post_updates(inventory("open-1", "P1", "S1", 1, 1_700_000_000_000, 1))
        .await;
    assert_eq!(status, 200);
    let a = send(
        "GET",
        &format!("{}/v1/deadletter/count", server.ingest),
        None,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let log = std::fs::read_to_string(&log).unwrap();
    let warnings = log
        .lines()
        .filter(|l| l.contains("the write API is unauthenticated"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}
