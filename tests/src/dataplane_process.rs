//! A real data-plane worker (`tailwarden-dataplane`, standalone role) as a child process on
//! loopback ports, with its own data directory; killed, and its directory removed, when dropped.

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
        let dir =
            std::env::temp_dir().join(format!("tailwarden-worker-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yaml");
        std::fs::write(&file, config).unwrap();
        let addr = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
        let (ingest, serve, metrics) = (addr(free_port()), addr(free_port()), addr(free_port()));
        let child = Command::new(dataplane_bin())
            .arg("--config")
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-ingest", &ingest.to_string()])
            .args(["--listen-serve", &serve.to_string()])
            .args(["--listen-metrics", &metrics.to_string()])
            .args(["--store-cache-mb", "16", "--dedup-window", "10000"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the data-plane binary starts (cargo build --workspace builds it)");
        let worker = Self {
            ingest,
            serve,
            metrics,
            child,
            dir,
        };
        let ready = format!("http://{metrics}/readyz");
        wait_for_ok("the worker to be ready", &ready, Duration::from_secs(30)).await;
        worker
    }

    /// URL of the write API's `POST /v1/updates`.
    pub fn updates_url(&self) -> String {
        format!("http://{}/v1/updates", self.ingest)
    }
}
