//! A real data-plane worker (`tailwarden-dataplane`, standalone role unless `--role` says
//! otherwise) as a child process on loopback ports, with its own data directory; killed, and its
//! directory removed, when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{dataplane_bin, free_port, wait_for_ok};

/// A running worker.
pub struct DataplaneProcess {
    /// The write API, `host:port`.
    pub ingest: SocketAddr,
    /// The read API, `host:port`.
    pub serve: SocketAddr,
    /// `/metrics`, `/healthz` and `/readyz`, `host:port`.
    pub metrics: SocketAddr,
    child: Child,
    dir: PathBuf,
}

impl Drop for DataplaneProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl DataplaneProcess {
    /// Starts a standalone worker with the config file `config` (YAML) and `args` added, named
    /// `name` in its directory, and waits until it is ready.
    pub async fn start(name: &str, config: &str, args: &[&str]) -> Self {
        let worker = Self::spawn(name, config, args, None);
        let ready = format!("http://{}/readyz", worker.metrics);
        wait_for_ok("the worker to be ready", &ready, Duration::from_secs(30)).await;
        worker
    }

    /// Starts a worker like [`DataplaneProcess::start`] without waiting for it to be ready,
    /// logging at info to `log` when given. An embedded store lives in the worker's directory.
    pub fn spawn(name: &str, config: &str, args: &[&str], log: Option<&std::path::Path>) -> Self {
        let dir =
            std::env::temp_dir().join(format!("tailwarden-worker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, config).unwrap();
        let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
        let (ingest, serve, metrics) = (addr(free_port()), addr(free_port()), addr(free_port()));
        let mut command = Command::new(dataplane_bin());
        command.arg("--config").arg(&file);
        // Cassandra workers refuse --data-dir; every other config gets its store here.
        let cassandra = tailwarden_contract::config::Config::parse(config).is_ok_and(|c| {
            matches!(
                c.storage,
                tailwarden_contract::config::Storage::Cassandra { .. }
            )
        });
        if !cassandra {
            command.arg("--data-dir").arg(dir.join("data"));
        }
        let child = command
            .args(["--listen-ingest", &ingest.to_string()])
            .args(["--listen-serve", &serve.to_string()])
            .args(["--listen-metrics", &metrics.to_string()])
            .args(["--store-cache-mb", "16", "--dedup-window", "10000"])
            .args(args)
            .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .expect("the data-plane binary starts (cargo build --workspace builds it)");
        Self {
            ingest,
            serve,
            metrics,
            child,
            dir,
        }
    }

    /// URL of the write API's `POST /v1/updates`.
    pub fn updates_url(&self) -> String {
        format!("http://{}/v1/updates", self.ingest)
    }
}
