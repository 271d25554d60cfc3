//! Pipelines for unit tests.

use kube::api::ObjectMeta;
use tailwarden_crds::{RetailPipeline, RetailPipelineSpec};
use tailwarden_slo::gate::{GateCode, GateState, Gates};

use crate::verdict::Verdict;

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

/// A distributed pipeline: Cassandra storage, Kafka streams.
pub fn cassandra_pipeline(name: &str) -> RetailPipeline {
    let mut p = pipeline(name);
    p.spec.storage = serde_json::from_value(serde_json::json!({"cassandra": {
        "contactPoints": ["cassandra-0:9042"], "keyspace": "retail"}}))
    .expect("a cassandra storage spec deserializes");
    p.spec.streams = serde_json::from_value(serde_json::json!({"kafka": {
        "bootstrapServers": ["kafka-0:9092"], "consumerGroup": "retail-ingest",
        "topics": {"product": "product", "pricing": "pricing", "inventory": "inventory",
                   "fulfillment": "fulfillment"}}}))
    .expect("a kafka streams spec deserializes");
    p
}

/// A verdict with the freeze gate `frozen` (reason code `code`), degradation open, and nothing else
/// decided; tests set the fields they need.
pub fn verdict(frozen: bool, code: GateCode) -> Verdict {
    let gate = |closed, code| GateState {
        closed,
        reason: format!("budget 10.0% left ({code})"),
        code,
    };
    Verdict {
        gates: Gates {
            freeze: gate(frozen, code),
            degrade: gate(false, GateCode::BudgetHealthy),
        },
        serve: None,
        ingest: None,
        slis: Default::default(),
        budget: Default::default(),
        slo_budgets: Default::default(),
        missing: vec![],
        backends: vec![],
        kafka_partitions: Default::default(),
        dry_run: false,
        evaluated_at: String::new(),
    }
}
