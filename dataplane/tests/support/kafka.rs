//! The real Kafka broker of tests/services: connection settings and fresh topics.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tailwarden_dataplane::stream::client::Connection;
use tailwarden_dataplane::stream::{Topics, TopicsExt};

pub fn bootstrap() -> String {
    std::env::var("TAILWARDEN_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "TAILWARDEN_KAFKA_BOOTSTRAP is not set: start a broker with \
             tests/services/kafka-up.sh DIR and `. DIR/env` (tests/run.sh does both)"
        )
    })
}

pub fn conn() -> Connection {
    conn_at(&bootstrap())
}

/// As [`conn`], for the broker at `bootstrap` (a test's own broker).
pub fn conn_at(bootstrap: &str) -> Connection {
    Connection::new(&[bootstrap.to_owned()], None)
        .unwrap()
        // The broker's minimum: a consumer that dies leaves the group in 6 s, not 45.
        .with("session.timeout.ms", "6000")
        .with("heartbeat.interval.ms", "500")
        .with("topic.metadata.refresh.interval.ms", "1000")
}

pub fn unique(name: &str) -> String {
    format!("tw-{name}-{:08x}", fastrand::u32(..))
}

/// Topics of a fresh pipeline, created with `partitions` partitions each.
pub async fn topics(name: &str, partitions: i32) -> Topics {
    topics_at(&bootstrap(), name, partitions).await
}

/// As [`topics`], on the broker at `bootstrap`.
pub async fn topics_at(bootstrap: &str, name: &str, partitions: i32) -> Topics {
    let t = Topics::with_prefix(&unique(name));
    let admin: AdminClient<DefaultClientContext> = conn_at(bootstrap).config().create().unwrap();
    let names = [
        &t.product,
        &t.pricing,
        &t.inventory,
        &t.fulfillment,
        &t.changes,
        &t.dead_letters,
    ];
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    // Wait until the metadata lists every partition (creation is asynchronous on the broker).
    let probe: BaseConsumer = conn_at(bootstrap).config().create().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let visible = || {
        names.iter().all(|n| {
            probe
                .fetch_metadata(Some(n), Duration::from_secs(5))
                .map(|m| {
                    m.topics().iter().any(|x| {
                        x.error().is_none()
                            && x.partitions().len() == partitions as usize
                            && x.partitions().iter().all(|p| p.leader() >= 0)
                    })
                })
                .unwrap_or(false)
                && (0..partitions)
                    .all(|p| probe.fetch_watermarks(n, p, Duration::from_secs(5)).is_ok())
        })
    };
    while !visible() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the topics"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t
}
