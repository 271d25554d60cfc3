//! A distributed pipeline of the real binary on real Kafka and Cassandra: its topics, consumer
//! group, keyspace and config file, and reads through a serve worker.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::kafka::{bootstrap, topics_at, unique};
use super::{Server, TempDir, eventually, get_json, write_config};

/// Far longer than any test: a value that changes in a cache was invalidated, not expired.
pub const CACHE_TTL: &str = "1h";
/// Kafka → ingest → Cassandra → change topic → serve, on a busy debug build.
pub const VISIBLE: Duration = Duration::from_secs(60);

/// The shared Cassandra node of tests/services (with auth): contact point, user, password.
pub fn cassandra() -> (String, String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: start tests/services/cassandra-up.sh with \
                 TAILWARDEN_CASSANDRA_AUTH=1 and `. DIR/env` (tests/run.sh does both)"
            )
        })
    };
    (
        var("TAILWARDEN_CASSANDRA"),
        var("TAILWARDEN_CASSANDRA_USER"),
        var("TAILWARDEN_CASSANDRA_PASSWORD"),
    )
}

/// Where a pipeline's workers find Kafka and Cassandra.
#[derive(Clone, Debug)]
pub struct Backends {
    /// Kafka bootstrap address.
    pub kafka: String,
    /// Cassandra contact point.
    pub cassandra: String,
    /// Cassandra user and password; `None` for a node without authentication.
    pub credentials: Option<(String, String)>,
    /// `serve.readTimeout`.
    pub read_timeout: Duration,
}

impl Backends {
    /// The shared servers named by the environment (tests/run.sh).
    pub fn shared() -> Self {
        let (node, user, password) = cassandra();
        Self {
            kafka: bootstrap(),
            cassandra: node,
            credentials: Some((user, password)),
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// One pipeline's topics, group, keyspace and config file.
pub struct Pipeline {
    pub dir: TempDir,
    pub config: PathBuf,
    pub keyspace: String,
    pub backends: Backends,
}

impl Pipeline {
    /// A pipeline on the shared servers.
    pub async fn create(name: &str) -> Self {
        Self::create_with(name, Backends::shared()).await
    }

    /// A pipeline whose workers reach the shared Kafka and Cassandra at `node`.
    pub async fn create_at(name: &str, node: &str) -> Self {
        let backends = Backends {
            cassandra: node.to_owned(),
            ..Backends::shared()
        };
        Self::create_with(name, backends).await
    }

    /// A pipeline on `backends` (4 partitions per topic).
    pub async fn create_with(name: &str, backends: Backends) -> Self {
        let t = topics_at(&backends.kafka, name, 4).await;
        let dir = TempDir::new(name);
        let credentials = match &backends.credentials {
            Some((user, password)) => {
                let secrets = dir.0.join("cassandra");
                std::fs::create_dir_all(&secrets).unwrap();
                std::fs::write(secrets.join("username"), format!("{user}\n")).unwrap();
                std::fs::write(secrets.join("password"), format!("{password}\n")).unwrap();
                format!(", credentialsDir: {}", secrets.display())
            }
            None => String::new(),
        };
        let keyspace = unique(name).replace('-', "_");
        let config = write_config(
            &dir.0,
            &format!(
                "storage: !cassandra {{contactPoints: ['{node}'], keyspace: {keyspace}, consistency: ONE{credentials}}}
streams: !kafka {{bootstrapServers: ['{kafka}'], consumerGroup: {group}, topics: {{product: {p}, pricing: {q}, inventory: {i}, fulfillment: {f}, changes: {c}, deadLetters: {d}}}}}
serve: {{readTimeout: {read_timeout}ms, cacheMaxEntries: 10000, cacheTtl: {{product: {CACHE_TTL}, pricing: {CACHE_TTL}, inventory: {CACHE_TTL}, fulfillment: {CACHE_TTL}}}}}
",
                node = backends.cassandra,
                kafka = backends.kafka,
                read_timeout = backends.read_timeout.as_millis(),
                group = unique(name),
                p = t.product,
                q = t.pricing,
                i = t.inventory,
                f = t.fulfillment,
                c = t.changes,
                d = t.dead_letters,
            ),
        );
        Self {
            dir,
            config,
            keyspace,
            backends,
        }
    }

    pub async fn start(&self, name: &str, role: &str) -> Server {
        Server::start_configured(&self.dir.0, name, role, &self.config).await
    }

    pub async fn spawn(&self, name: &str, role: &str) -> Server {
        Server::spawn_configured(&self.dir.0, name, role, &self.config).await
    }

    /// Drops the keyspace: a small test node runs out of heap with many left behind.
    pub async fn drop_keyspace(&self) {
        let mut builder = scylla::client::session_builder::SessionBuilder::new()
            .known_node(&self.backends.cassandra);
        if let Some((user, password)) = &self.backends.credentials {
            builder = builder.user(user, password);
        }
        let session = builder.build().await.unwrap();
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.keyspace), &[])
            .await
            .unwrap();
    }
}

/// The quantity a serve worker answers for `product` at S1, if it has one.
pub async fn quantity(serve: &Server, product: &str) -> Option<Value> {
    let (status, body) = get_json(&format!("{}/v1/inventory/{product}/S1", serve.serve)).await;
    (status == 200).then(|| body["quantity"].clone())
}

/// Waits (at most [`VISIBLE`]) until `serve` answers `want` for `product` at S1.
pub async fn until_quantity(serve: &Server, product: &str, want: i64) {
    let what = format!("{} to answer {product} = {want}", serve.dir.display());
    eventually(&what, VISIBLE, || async {
        (quantity(serve, product).await == Some(json!(want))).then_some(())
    })
    .await;
}
