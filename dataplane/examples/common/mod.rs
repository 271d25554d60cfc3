//! What the distributed benchmarks share: the servers of tests/services (from `. DIR/env`),
//! fresh topics and keyspace per run, and worker processes of the release binary.

// Each example compiles this module on its own and uses part of it.
#![allow(dead_code)]

#[path = "../../tests/support/kafka.rs"]
mod kafka;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use tailwarden_dataplane::stream::Topics;
use tailwarden_dataplane::stream::client::Connection;

/// Partitions of every topic a run creates.
pub const PARTITIONS: i32 = 4;

/// An environment variable that `. DIR/env` of tests/services sets.
pub fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: . DIR/env of tests/services"))
}

/// A session as the superuser of the test node.
pub async fn session() -> anyhow::Result<Session> {
    Ok(SessionBuilder::new()
        .known_node(env("TAILWARDEN_CASSANDRA")?)
        .user(
            env("TAILWARDEN_CASSANDRA_USER")?,
            env("TAILWARDEN_CASSANDRA_PASSWORD")?,
        )
        .build()
        .await?)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The release data-plane binary beside the running example.
pub fn dataplane_bin() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .context("the example lives in target/<profile>/examples")?
        .join("tailwarden-dataplane"))
}

/// `/proc/loadavg`, for the report.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// One run's topics, keyspace, consumer group and worker config, named after `tag`; the
/// keyspace is dropped and the directory removed on [`Run::finish`].
pub struct Run {
    pub conn: Connection,
    pub topics: Topics,
    pub keyspace: String,
    pub group: String,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Run {
    /// Creates the topics and writes a config with `extra` YAML appended (e.g. `serve:` or
    /// `ingest:` settings).
    pub async fn create(tag: &str, extra: &str) -> anyhow::Result<Self> {
        let bootstrap = env("TAILWARDEN_KAFKA_BOOTSTRAP")?;
        let conn = Connection::new(std::slice::from_ref(&bootstrap), None)?;
        // The tests' helper: creates them and waits until every partition has a leader.
        let topics = kafka::topics(tag, PARTITIONS).await;
        let dir = std::env::temp_dir().join(format!("tailwarden-{tag}"));
        std::fs::create_dir_all(dir.join("creds"))?;
        std::fs::write(
            dir.join("creds/username"),
            env("TAILWARDEN_CASSANDRA_USER")?,
        )?;
        std::fs::write(
            dir.join("creds/password"),
            env("TAILWARDEN_CASSANDRA_PASSWORD")?,
        )?;
        let keyspace = tag.replace('-', "_");
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "storage: !cassandra {{contactPoints: ['{}'], keyspace: {keyspace}, consistency: ONE, credentialsDir: {}}}\n\
                 streams: !kafka {{bootstrapServers: ['{bootstrap}'], consumerGroup: {tag}, topics: {{product: {}, pricing: {}, inventory: {}, fulfillment: {}, changes: {}, deadLetters: {}}}}}\n{extra}",
                env("TAILWARDEN_CASSANDRA")?,
                dir.join("creds").display(),
                topics.product,
                topics.pricing,
                topics.inventory,
                topics.fulfillment,
                topics.changes,
                topics.dead_letters,
            ),
        )?;
        Ok(Self {
            conn,
            topics,
            keyspace,
            group: tag.to_owned(),
            dir,
            config,
        })
    }

    /// Starts a worker of `role` on this run's config and waits until it is Ready.
    pub async fn worker(&self, role: &str, name: &str) -> anyhow::Result<Worker> {
        self.worker_with(role, name, &self.config).await
    }

    /// Like [`Run::worker`], with the config file `config`.
    pub async fn worker_with(
        &self,
        role: &str,
        name: &str,
        config: &Path,
    ) -> anyhow::Result<Worker> {
        let addr = || format!("127.0.0.1:{}", free_port());
        let (ingest, serve, metrics) = (addr(), addr(), addr());
        let bin = dataplane_bin()?;
        let child = Command::new(&bin)
            .args(["--role", role, "--config"])
            .arg(config)
            .args(["--listen-ingest", &ingest])
            .args(["--listen-serve", &serve])
            .args(["--listen-metrics", &metrics])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{name}.log")))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let worker = Worker {
            child,
            ingest,
            serve,
        };
        let readyz = format!("http://{metrics}/readyz");
        let deadline = Instant::now() + Duration::from_secs(180);
        while !reqwest::get(&readyz)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("{name} not ready in 180 s: see {}", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(worker)
    }

    /// Drops the keyspace and removes the directory.
    pub async fn finish(self) -> anyhow::Result<()> {
        session()
            .await?
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.keyspace), &[])
            .await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A worker process, killed when dropped.
pub struct Worker {
    child: Child,
    /// The write API, `host:port`.
    pub ingest: String,
    /// The read API, `host:port`.
    pub serve: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One inventory update as JSON.
pub fn inventory(event_id: &str, product: &str, quantity: usize, event_time_ms: u64) -> String {
    format!(
        r#"{{"event_id":"{event_id}","class":"inventory","schema_version":2,"key":{{"product_id":"{product}","location":"S1"}},"event_time":{event_time_ms},"sequence":1,"payload":{{"quantity":{quantity}}}}}"#
    )
}
