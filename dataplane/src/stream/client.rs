//! The shared client settings: bootstrap servers and, when `credentialsDir` is set, SASL/PLAIN
//! with the `username` and `password` files of that directory (mounted from a Secret).

use std::path::Path;

use rdkafka::ClientConfig;

use crate::stream::StreamError;

/// Settings every producer, consumer and admin client of this process starts from.
#[derive(Clone, Debug)]
pub struct Connection {
    config: ClientConfig,
}

impl Connection {
    /// `bootstrap_servers` as `host:port`; credentials read once, now (a rotated Secret takes a
    /// restart, as for the auth tokens).
    pub fn new(
        bootstrap_servers: &[String],
        credentials_dir: Option<&Path>,
    ) -> Result<Self, StreamError> {
        if bootstrap_servers.is_empty() {
            return Err(StreamError::Other("no bootstrap servers".into()));
        }
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap_servers.join(","))
            .set("client.id", "tailwarden-dataplane")
            .set("log_level", "4");
        if let Some(dir) = credentials_dir {
            let read = |name: &str| {
                let file = dir.join(name);
                std::fs::read_to_string(&file)
                    .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                    .map_err(|e| StreamError::Credentials(format!("{}: {e}", file.display())))
            };
            let (user, password) = (read("username")?, read("password")?);
            if user.is_empty() {
                return Err(StreamError::Credentials(format!(
                    "{}/username is empty",
                    dir.display()
                )));
            }
            // TLS needs librdkafka built with OpenSSL (the `ssl` feature), which this build
            // leaves out; SASL/PLAIN therefore runs over PLAINTEXT inside the cluster network.
            config
                .set("security.protocol", "SASL_PLAINTEXT")
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", user)
                .set("sasl.password", password);
        }
        Ok(Self { config })
    }

    /// Overrides one librdkafka property for every client made from this connection (tests
    /// lower `session.timeout.ms`, for example).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.config.set(key, value);
        self
    }

    /// A copy of the shared settings, to add client-specific ones to.
    pub fn config(&self) -> ClientConfig {
        self.config.clone()
    }

    /// The bootstrap servers, as configured.
    pub fn bootstrap(&self) -> &str {
        self.config.get("bootstrap.servers").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_sasl_plain() {
        let dir = std::env::temp_dir().join(format!("tw-kafka-cred-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("username"), "ingest\n").unwrap();
        std::fs::write(dir.join("password"), "s3cret\n").unwrap();
        let c = Connection::new(&["127.0.0.1:9092".into()], Some(&dir)).unwrap();
        let cfg = c.config();
        assert_eq!(cfg.get("sasl.username"), Some("ingest"));
        assert_eq!(cfg.get("sasl.password"), Some("s3cret"));
        assert_eq!(cfg.get("security.protocol"), Some("SASL_PLAINTEXT"));
        std::fs::remove_file(dir.join("password")).unwrap();
        let e = Connection::new(&["127.0.0.1:9092".into()], Some(&dir)).unwrap_err();
        assert!(e.to_string().contains("password"), "{e}");
        let plain = Connection::new(&["a:1".into(), "b:2".into()], None).unwrap();
        assert_eq!(plain.bootstrap(), "a:1,b:2");
        assert_eq!(plain.config().get("security.protocol"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
