//! CQL against the real Cassandra node of tests/services (`TAILWARDEN_CASSANDRA`, with the
//! superuser's credentials from the environment), through its `cql.sh`.

use std::path::Path;
use std::process::Command;

/// The node's `host:port`; panics with how to start one when unset.
pub fn contact_point() -> String {
    std::env::var("TAILWARDEN_CASSANDRA").unwrap_or_else(|_| {
        panic!(
            "TAILWARDEN_CASSANDRA is not set: start a node with \
             tests/services/cassandra-up.sh DIR and `. DIR/env` (tests/run.sh does both)"
        )
    })
}

/// Runs `statements` in order; panics with cql.sh's error output if one fails.
pub fn cql(statements: &[&str]) {
    // cql.sh reads the contact point from a state dir's env file.
    let state = std::env::temp_dir().join(format!(
        "tailwarden-cql-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("env"),
        format!("export TAILWARDEN_CASSANDRA={}\n", contact_point()),
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("services/cql.sh");
    let out = Command::new(script)
        .arg(&state)
        .args(statements)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&state);
    assert!(
        out.status.success(),
        "cql.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Cassandra role of the caller's own (`tw_<suffix>`), allowed every keyspace, with a random
/// password that appears nowhere else, held in the Secret `cassandra-credentials` of `ns`
/// (keys `username`, `password`): returns (user, password).
pub async fn credentials_secret(client: &kube::Client, ns: &str, suffix: &str) -> (String, String) {
    let (user, password) = test_role(suffix);
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cassandra-credentials"},
        "stringData": {"username": user, "password": password},
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &secret)
        .await
        .unwrap();
    (user, password)
}

fn test_role(suffix: &str) -> (String, String) {
    let user = format!("tw_{suffix}");
    let password = format!("pw{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    cql(&[
        &format!("CREATE ROLE {user} WITH PASSWORD = '{password}' AND LOGIN = true"),
        &format!("GRANT ALL PERMISSIONS ON ALL KEYSPACES TO {user}"),
    ]);
    (user, password)
}
