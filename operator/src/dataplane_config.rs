//! Renders a pipeline spec into the data-plane configuration file (the ConfigMap's `config.yaml`).

use std::path::PathBuf;

use tailwarden_contract::auth::Scope;
use tailwarden_contract::config::{
    Auth, Batch, CacheTtls, Config, DeadLetter, Degradation, Faults, Ingest, KafkaTopics, Listen,
    Serve, Storage, Streams,
};
use tailwarden_crds::{RetailPipelineSpec, SecretKeyRef};

use crate::spec_error::{SpecError, duration};

/// Where the embedded store lives inside the container (the PersistentVolume's mount point).
pub const DATA_DIR: &str = "/var/lib/tailwarden";
/// Where Cassandra credentials are mounted from their Secret.
pub const CASSANDRA_CREDENTIALS_DIR: &str = "/etc/tailwarden/secrets/cassandra";
/// Where Kafka credentials are mounted from their Secret.
pub const KAFKA_CREDENTIALS_DIR: &str = "/etc/tailwarden/secrets/kafka";
/// Where the API tokens are mounted from their Secrets: one directory per scope
/// (`/etc/tailwarden/tokens/ingest`, …), each holding the Secret's key as the file `token`.
pub const TOKENS_DIR: &str = "/etc/tailwarden/tokens";
/// The file a token's Secret key is mounted as, inside its scope's directory.
pub const TOKEN_FILE: &str = "token";
/// Most updates queued per ingest worker: bounded memory, then 429.
const QUEUE_CAPACITY: usize = 100_000;
/// Read deadline: comfortably inside the default P99 objective, so reads fail fast instead of queueing.
const READ_TIMEOUT_MS: u64 = 100;

/// The data-plane config for pipeline `name`'s spec. `pause_non_critical` comes from the
/// error-budget decision.
pub fn render(
    name: &str,
    spec: &RetailPipelineSpec,
    pause_non_critical: bool,
) -> Result<Config, SpecError> {
    let storage = match (&spec.storage.embedded, &spec.storage.cassandra) {
        (_, Some(c)) => Storage::Cassandra {
            contact_points: c.contact_points.clone(),
            keyspace: c.keyspace.clone(),
            consistency: serde_json::to_value(c.consistency)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "LOCAL_QUORUM".into()),
            credentials_dir: c
                .credentials_secret_ref
                .as_ref()
                .map(|_| PathBuf::from(CASSANDRA_CREDENTIALS_DIR)),
        },
        _ => Storage::Embedded {
            path: PathBuf::from(DATA_DIR),
        },
    };
    let streams = match (&spec.streams.http, &spec.streams.kafka) {
        (_, Some(k)) => Streams::Kafka {
            bootstrap_servers: k.bootstrap_servers.clone(),
            topics: KafkaTopics {
                product: k.topics.product.clone(),
                pricing: k.topics.pricing.clone(),
                inventory: k.topics.inventory.clone(),
                fulfillment: k.topics.fulfillment.clone(),
                changes: k
                    .topics
                    .changes
                    .clone()
                    .unwrap_or_else(|| format!("{name}.changes")),
                dead_letters: k
                    .topics
                    .dead_letters
                    .clone()
                    .unwrap_or_else(|| format!("{name}.dead-letters")),
            },
            consumer_group: k.consumer_group.clone(),
            credentials_dir: k
                .credentials_secret_ref
                .as_ref()
                .map(|_| PathBuf::from(KAFKA_CREDENTIALS_DIR)),
        },
        (Some(h), None) => Streams::Http {
            max_body_bytes: positive("spec.streams.http.maxBodyBytes", h.max_body_bytes)?,
        },
        (None, None) => Streams::default(),
    };
    let ttl = &spec.serve.cache_ttl;
    Ok(Config {
        storage,
        streams,
        listen: Listen::default(),
        ingest: Ingest {
            partitions: positive("spec.ingest.partitions", spec.ingest.partitions.into())? as u32,
            batch: Batch {
                max_records: positive(
                    "spec.ingest.batch.maxRecords",
                    spec.ingest.batch.max_records.into(),
                )? as u32,
                linger: duration("spec.ingest.batch.linger", &spec.ingest.batch.linger)?,
            },
            queue_capacity: QUEUE_CAPACITY,
            dead_letter: DeadLetter {
                retention: duration(
                    "spec.ingest.deadLetter.retention",
                    &spec.ingest.dead_letter.retention,
                )?,
                max_records: positive(
                    "spec.ingest.deadLetter.maxRecords",
                    spec.ingest.dead_letter.max_records,
                )?,
            },
        },
        serve: Serve {
            cache_ttl: CacheTtls {
                product: duration("spec.serve.cacheTtl.product", &ttl.product)?,
                pricing: duration("spec.serve.cacheTtl.pricing", &ttl.pricing)?,
                inventory: duration("spec.serve.cacheTtl.inventory", &ttl.inventory)?,
                fulfillment: duration("spec.serve.cacheTtl.fulfillment", &ttl.fulfillment)?,
            },
            cache_max_entries: u64::try_from(spec.serve.cache_max_entries).map_err(|_| {
                SpecError::new("spec.serve.cacheMaxEntries", "must not be negative")
            })?,
            read_timeout: std::time::Duration::from_millis(READ_TIMEOUT_MS),
            latency_bounds_seconds: latency_bounds(spec)?,
        },
        degradation: Degradation { pause_non_critical },
        snapshots: Default::default(),
        auth: auth(spec),
        faults: Faults {
            read_error_percent: spec
                .dataplane
                .fault_injection
                .as_ref()
                .map_or(0.0, |f| f.read_error_percent),
        },
    })
}

/// Every read-latency objective, in seconds as the rules' `le` label reads it: the workers make
/// each one a bucket boundary, so no objective is left without a bucket to count it.
fn latency_bounds(spec: &RetailPipelineSpec) -> Result<Vec<f64>, SpecError> {
    let mut bounds = vec![];
    for l in &crate::evaluation::objectives(spec)?.latency {
        for bound in [l.p95, l.p99] {
            // The same correctly rounded division as `promql::le_label`.
            bounds.push(bound.as_nanos() as f64 / 1e9);
        }
    }
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    Ok(bounds)
}

/// The Secret key referenced for each scope's token, if any.
pub fn token_refs(spec: &RetailPipelineSpec) -> [(Scope, Option<&SecretKeyRef>); 3] {
    let auth = spec.dataplane.auth.as_ref();
    Scope::ALL.map(|scope| {
        let secret = auth.and_then(|a| match scope {
            Scope::Ingest => a.ingest_token_secret_ref.as_ref(),
            Scope::Admin => a.admin_token_secret_ref.as_ref(),
            Scope::Read => a.read_token_secret_ref.as_ref(),
        });
        (scope, secret)
    })
}

/// The directory a scope's token Secret is mounted at.
pub fn token_dir(scope: Scope) -> String {
    format!("{TOKENS_DIR}/{}", scope.as_str())
}

/// The config names the mounted token files only; the tokens stay in their Secrets.
fn auth(spec: &RetailPipelineSpec) -> Auth {
    let mut auth = Auth::default();
    for (scope, secret) in token_refs(spec) {
        let file = secret.map(|_| PathBuf::from(token_dir(scope)).join(TOKEN_FILE));
        match scope {
            Scope::Ingest => auth.ingest_token_file = file,
            Scope::Admin => auth.admin_token_file = file,
            Scope::Read => auth.read_token_file = file,
        }
    }
    auth
}

fn positive(field: &str, value: i64) -> Result<u64, SpecError> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| SpecError::new(field, format!("must be positive, got {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::spec;
    use std::time::Duration;

    #[test]
    fn every_latency_objective_is_rendered_as_a_bucket_bound() {
        let mut s = spec();
        s.slos.read_latency[0].p99 = "250ms".into();
        let bounds = render("shop", &s, false)
            .unwrap()
            .serve
            .latency_bounds_seconds;
        assert!(bounds.contains(&0.25), "{bounds:?}");
        assert!(bounds.contains(&0.12) && bounds.contains(&0.2));
        // The workers' bucket label and the rules' `le` matcher are the same string.
        let le = tailwarden_slo::promql::le_label(Duration::from_millis(250));
        assert_eq!(0.25f64.to_string(), le);
    }

    #[test]
    fn default_spec_renders_the_embedded_http_config() {
        let config = render("shop", &spec(), false).unwrap();
        assert_eq!(
            config.storage,
            Storage::Embedded {
                path: DATA_DIR.into()
            }
        );
        assert!(
            matches!(config.streams, Streams::Http { max_body_bytes } if max_body_bytes == 16 << 20)
        );
        assert_eq!(config.ingest.batch.linger, Duration::from_millis(5));
        assert_eq!(config.serve.cache_ttl.product, Duration::from_secs(600));
        assert!(!config.degradation.pause_non_critical);
        // What the operator writes, the data plane reads back unchanged.
        assert_eq!(Config::parse(&config.to_yaml()).unwrap(), config);
    }

    #[test]
    fn fault_injection_reaches_the_config_and_is_off_without_it() {
        assert!(!render("shop", &spec(), false).unwrap().faults.any());
        let mut s = spec();
        s.dataplane.fault_injection = Some(tailwarden_crds::FaultInjection {
            read_error_percent: 5.0,
        });
        let config = render("shop", &s, false).unwrap();
        assert_eq!(config.faults.read_error_percent, 5.0);
        assert!(config.to_yaml().contains("readErrorPercent: 5"));
    }

    #[test]
    fn api_tokens_are_mounted_file_paths_never_inline() {
        let mut s = spec();
        s.dataplane.auth = serde_json::from_value(serde_json::json!({
            "ingestTokenSecretRef": {"name": "shop-tokens", "key": "ingest"},
            "adminTokenSecretRef": {"name": "shop-admin", "key": "token"}
        }))
        .unwrap();
        let config = render("shop", &s, false).unwrap();
        assert_eq!(
            config.auth.ingest_token_file,
            Some(PathBuf::from("/etc/tailwarden/tokens/ingest/token"))
        );
        assert_eq!(
            config.auth.admin_token_file,
            Some(PathBuf::from("/etc/tailwarden/tokens/admin/token"))
        );
        assert_eq!(config.auth.read_token_file, None);
        let yaml = config.to_yaml();
        // The Secrets' names and keys are the kubelet's business, not the workers'.
        assert!(
            !yaml.contains("shop-tokens") && !yaml.contains("shop-admin"),
            "{yaml}"
        );
        assert_eq!(Config::parse(&yaml).unwrap(), config);
        // Without a reference the config has no auth at all (open, as before).
        assert!(
            !render("shop", &spec(), false)
                .unwrap()
                .to_yaml()
                .contains("auth")
        );
    }

    #[test]
    fn cassandra_credentials_are_a_mounted_directory_never_inline() {
        let mut s = spec();
        s.storage = serde_json::from_value(serde_json::json!({"cassandra": {
            "contactPoints": ["cassandra-0:9042"], "keyspace": "retail",
            "credentialsSecretRef": {"name": "cass-creds"}}}))
        .unwrap();
        let config = render("shop", &s, true).unwrap();
        let yaml = config.to_yaml();
        assert!(yaml.contains(CASSANDRA_CREDENTIALS_DIR), "{yaml}");
        assert!(
            !yaml.contains("cass-creds"),
            "the Secret's name is not needed by workers: {yaml}"
        );
        assert!(config.degradation.pause_non_critical);
    }

    #[test]
    fn kafka_change_and_dead_letter_topics_default_to_the_pipeline_name() {
        let mut s = spec();
        let kafka = |topics: serde_json::Value| -> tailwarden_crds::StreamsSpec {
            serde_json::from_value(serde_json::json!({"kafka": {
                "bootstrapServers": ["kafka-0:9092"], "consumerGroup": "g", "topics": topics}}))
            .unwrap()
        };
        let classes = serde_json::json!({"product": "p", "pricing": "q", "inventory": "i", "fulfillment": "f"});
        s.streams = kafka(classes.clone());
        let Streams::Kafka { topics, .. } = render("shop", &s, false).unwrap().streams else {
            panic!("kafka streams render as kafka")
        };
        assert_eq!(
            (topics.changes.as_str(), topics.dead_letters.as_str()),
            ("shop.changes", "shop.dead-letters")
        );
        let mut named = classes;
        named["changes"] = "c".into();
        named["deadLetters"] = "d".into();
        s.streams = kafka(named);
        let Streams::Kafka { topics, .. } = render("shop", &s, false).unwrap().streams else {
            panic!("kafka streams render as kafka")
        };
        assert_eq!(
            (topics.changes.as_str(), topics.dead_letters.as_str()),
            ("c", "d")
        );
    }

    #[test]
    fn unusable_duration_names_the_field() {
        let mut s = spec();
        s.ingest.batch.linger = "soon".into();
        let err = render("shop", &s, false).unwrap_err();
        assert_eq!(err.field, "spec.ingest.batch.linger");
    }
}
