//! The operator binary as a child process, and reading its `/metrics`.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{free_port, operator_bin};

/// An operator process, killed when dropped so a failing test leaves nothing behind.
pub struct OperatorProcess {
    /// Its `--identity`.
    pub identity: String,
    /// URL of its `/metrics`.
    pub metrics: String,
    /// Base URL of its status page (`--status-addr`, a free loopback port).
    pub status: String,
    child: Child,
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OperatorProcess {
    /// Starts the operator watching `namespace` only, with `args` added, logging to
    /// `<logs>/<identity>.log`.
    pub fn spawn(identity: &str, namespace: &str, args: &[&str], logs: &Path) -> Self {
        Self::spawn_at(free_port(), identity, namespace, args, logs)
    }

    /// Like [`OperatorProcess::spawn`], serving `/metrics` on loopback port `port`, which a test
    /// can name to Prometheus before the operator starts.
    pub fn spawn_at(
        port: u16,
        identity: &str,
        namespace: &str,
        args: &[&str],
        logs: &Path,
    ) -> Self {
        let log = std::fs::File::create(logs.join(format!("{identity}.log"))).unwrap();
        let status = format!("127.0.0.1:{}", free_port());
        let child = Command::new(operator_bin())
            .args(args)
            .args(["--watch-namespace", namespace, "--identity", identity])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--status-addr", &status])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", operator_bin().display()));
        Self {
            identity: identity.into(),
            metrics: format!("http://127.0.0.1:{port}/metrics"),
            status: format!("http://{status}"),
            child,
        }
    }

    /// The value of the series `name` (with its labels, exactly as exported), if it answers.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }
}
