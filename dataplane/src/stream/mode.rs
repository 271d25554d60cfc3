//! Kafka mode assembled for `app.rs`: one [`Connection`], the pipeline's [`Topics`] and the
//! ingest consumer group, and constructors for each piece a role needs.

use std::sync::Arc;
use std::time::Duration;

use crate::feed::Invalidate;
use crate::ingest::http::RecordSink;
use crate::metrics::Metrics;
use crate::stream::changes::KafkaChangeFeed;
use crate::stream::client::Connection;
use crate::stream::consumer::{KafkaSource, SourceConfig};
use crate::stream::ingest::KafkaIngest;
use crate::stream::lag::LagMonitor;
use crate::stream::probe::KafkaProbe;
use crate::stream::producer::Producer;
use crate::stream::{StreamError, Topics};

/// How long the write API waits for Kafka's acknowledgement of a batch before answering 503.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the lag monitor measures.
pub const LAG_EVERY: Duration = Duration::from_secs(5);

/// Everything Kafka mode needs in one process.
#[derive(Clone, Debug)]
pub struct KafkaMode {
    /// Client settings.
    pub conn: Connection,
    /// The pipeline's topics.
    pub topics: Topics,
    /// The ingest workers' consumer group.
    pub group: String,
}

impl KafkaMode {
    /// Kafka mode over `conn`.
    pub fn new(conn: Connection, topics: Topics, group: impl Into<String>) -> Self {
        Self {
            conn,
            topics,
            group: group.into(),
        }
    }

    /// Kafka mode as `config.streams` describes it; `None` in HTTP mode.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<Self>, StreamError> {
        match &config.streams {
            crate::config::Streams::Kafka {
                bootstrap_servers,
                topics,
                consumer_group,
                credentials_dir,
            } => Ok(Some(Self::new(
                Connection::new(bootstrap_servers, credentials_dir.as_deref())?,
                topics.clone(),
                consumer_group.clone(),
            ))),
            crate::config::Streams::Http { .. } => Ok(None),
        }
    }

    /// The write API's sink (ingest role): `IngestState { sink, .. }`.
    pub fn sink(&self, metrics: Arc<Metrics>) -> Result<RecordSink, StreamError> {
        let producer = Producer::new(&self.conn, PRODUCE_TIMEOUT, metrics)?;
        Ok(RecordSink::Kafka(KafkaIngest::shared(
            producer,
            self.topics.clone(),
        )))
    }

    /// The consumer group as the writer's second source (ingest role):
    /// `writer.with_ownership_epoch(source.ownership_epoch()).run(MergedSource::new(channel_source, source))`.
    pub fn source(
        &self,
        closing: tokio::sync::watch::Receiver<bool>,
        metrics: Arc<Metrics>,
        max_job_records: usize,
    ) -> Result<KafkaSource, StreamError> {
        KafkaSource::new(
            &self.conn,
            &self.group,
            &self.topics,
            closing,
            metrics,
            SourceConfig {
                max_job_records: max_job_records.max(1),
                ..SourceConfig::default()
            },
        )
    }

    /// The change feed the writer and snapshots publish to (ingest role; standalone keeps the
    /// in-process feed).
    pub fn change_feed(&self, metrics: Arc<Metrics>) -> Result<Arc<KafkaChangeFeed>, StreamError> {
        Ok(Arc::new(KafkaChangeFeed::new(
            &self.conn,
            &self.topics.changes,
            metrics,
        )?))
    }

    /// Delivers the change topic to `subscriber` (serve role: the cache `Invalidation`) on a
    /// thread, until `stop` turns true.
    pub fn listen(
        &self,
        subscriber: Arc<dyn Invalidate>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<std::thread::JoinHandle<()>, StreamError> {
        KafkaChangeFeed::listen(&self.conn, &self.topics.changes, subscriber, stop)
    }

    /// The reachability probe of the pipeline's topics.
    pub fn probe(&self) -> Result<KafkaProbe, StreamError> {
        KafkaProbe::new(&self.conn, &self.topics)
    }

    /// Measures the group's lag every [`LAG_EVERY`] on a thread, until `stop` turns true
    /// (ingest role).
    pub fn spawn_lag_monitor(
        &self,
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<std::thread::JoinHandle<()>, StreamError> {
        let monitor = LagMonitor::new(&self.conn, &self.group, &self.topics, metrics)?;
        std::thread::Builder::new()
            .name("kafka-lag".into())
            .spawn(move || monitor.run(LAG_EVERY, stop))
            .map_err(|e| StreamError::Other(format!("starting the lag monitor: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::TopicsExt;

    #[test]
    fn streams_kafka_becomes_kafka_mode() {
        let yaml = "streams: !kafka {bootstrapServers: ['k:9092'], consumerGroup: g, topics: {product: p, pricing: q, inventory: i, fulfillment: f, changes: c, deadLetters: d}}\n";
        let config: crate::config::Config = serde_yaml::from_str(yaml).unwrap();
        let mode = KafkaMode::from_config(&config).unwrap().unwrap();
        assert_eq!(mode.group, "g");
        assert_eq!(mode.conn.bootstrap(), "k:9092");
        assert_eq!(mode.topics.changes, "c");
        assert_eq!(mode.topics.dead_letters, "d");
        assert_eq!(mode.topics.for_class(crate::model::Class::Pricing), "q");
        let http = crate::config::Config::default();
        assert!(KafkaMode::from_config(&http).unwrap().is_none());
    }
}
