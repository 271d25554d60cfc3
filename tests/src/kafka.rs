//! Topics on the real Kafka broker of tests/services (`TAILWARDEN_KAFKA_BOOTSTRAP`), created with
//! its `kafka-topics.sh`: the workers never create topics, the Kafka administrator does.

use std::path::Path;
use std::process::Command;

/// The broker's `host:port`; panics with how to start one when unset.
pub fn bootstrap() -> String {
    std::env::var("TAILWARDEN_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "TAILWARDEN_KAFKA_BOOTSTRAP is not set: start a broker with \
             tests/services/kafka-up.sh DIR and `. DIR/env` (tests/run.sh does both)"
        )
    })
}

/// A pipeline's six topics (four classes, changes, dead letters), named `<prefix>.<what>`.
pub struct Topics {
    /// Prefix of every name.
    pub prefix: String,
}

impl Topics {
    /// Creates the six topics with `partitions` partitions each.
    pub fn create(prefix: &str, partitions: u32) -> Self {
        // kafka-topics.sh reads the broker's address from a state dir's env file.
        let state = std::env::temp_dir().join(format!("tailwarden-topics-{prefix}"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("env"),
            format!("export TAILWARDEN_KAFKA_BOOTSTRAP={}\n", bootstrap()),
        )
        .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("services/kafka-topics.sh");
        let topics = Self {
            prefix: prefix.to_owned(),
        };
        for what in [
            "product",
            "pricing",
            "inventory",
            "fulfillment",
            "changes",
            "dead-letters",
        ] {
            let out = Command::new(&script)
                .arg(&state)
                .args(["create", &topics.name(what), &partitions.to_string()])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "creating topic {}: {}",
                topics.name(what),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&state);
        topics
    }

    /// The topic of `what` (`inventory`, `changes`, `dead-letters`, ...).
    pub fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.prefix)
    }

    /// `streams` of a worker config consuming these topics with consumer group `group`.
    pub fn streams_yaml(&self, group: &str) -> String {
        format!(
            "streams: !kafka {{bootstrapServers: ['{}'], consumerGroup: {group}, topics: {{product: {}, pricing: {}, inventory: {}, fulfillment: {}, changes: {}, deadLetters: {}}}}}\n",
            bootstrap(),
            self.name("product"),
            self.name("pricing"),
            self.name("inventory"),
            self.name("fulfillment"),
            self.name("changes"),
            self.name("dead-letters"),
        )
    }
}
