//! Pipelines for unit tests.

use kube::api::ObjectMeta;
use tailwarden_crds::{RetailPipeline, RetailPipelineSpec};

/// A minimal valid spec: everything but the data plane left to defaults.
pub fn spec() -> RetailPipelineSpec {
    serde_json::from_value(serde_json::json!({
        "dataplane": {"image": "example.com/tailwarden/dataplane", "version": "1.0.0"}
    }))
    .expect("the minimal spec deserializes")
}

/// An embedded-storage pipeline as the API server would return it.
pub fn pipeline(name: &str) -> RetailPipeline {
    RetailPipeline {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("retail".into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(1),
            ..Default::default()
        },
        spec: spec(),
        status: None,
    }
}

/// A Cassandra-backed (distributed) pipeline.
pub fn cassandra_pipeline(name: &str) -> RetailPipeline {
    let mut p = pipeline(name);
    p.spec.storage = serde_json::from_value(serde_json::json!({"cassandra": {
        "contactPoints": ["cassandra-0:9042"], "keyspace": "retail"}}))
    .expect("a cassandra storage spec deserializes");
    p
}
