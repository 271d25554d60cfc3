//! A real Prometheus server for tests: Debian's `prometheus`, started on loopback over TSDB blocks
//! that `promtool tsdb create-blocks-from openmetrics` builds from an exact history.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a test's Prometheus may take to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    /// Base URL, e.g. `http://127.0.0.1:39123`.
    pub url: String,
    child: Child,
    dir: PathBuf,
    keep: bool,
}

impl Prometheus {
    /// Backfills `openmetrics` (text ending in `# EOF`) into a fresh TSDB and serves it.
    pub async fn with_history(openmetrics: &str) -> Self {
        let dir = fresh_dir();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let input = dir.join("history.om");
        std::fs::write(&input, openmetrics).unwrap();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("promtool runs: install it with tests/prometheus/install.sh");
        assert!(
            out.status.success(),
            "promtool backfill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::start(dir, "global:\n  scrape_interval: 15s\n", READY_WITHIN).await
    }

    /// Scrapes `target` every second, keeping the labels the target sets (`namespace`, `pipeline`).
    pub async fn scraping(target: std::net::SocketAddr) -> Self {
        Self::start(fresh_dir(), &scrape_config(target, ""), READY_WITHIN).await
    }

    /// Scrapes every second with `jobs`: the items of `scrape_configs`, as YAML indented by two.
    pub async fn with_scrape_jobs(jobs: &str) -> Self {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
        );
        Self::start(fresh_dir(), &config, READY_WITHIN).await
    }

    /// Like [`Prometheus::with_scrape_jobs`], evaluating the rules file `rules` every second.
    pub async fn with_scrape_jobs_and_rules(jobs: &str, rules: &str) -> Self {
        let (dir, rule_files) = rules_dir(rules);
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n{jobs}"
        );
        Self::start(dir, &config, READY_WITHIN).await
    }

    /// Like [`Prometheus::scraping`], evaluating the rules file `rules` every second.
    pub async fn scraping_with_rules(target: std::net::SocketAddr, rules: &str) -> Self {
        let (dir, rule_files) = rules_dir(rules);
        Self::start(dir, &scrape_config(target, &rule_files), READY_WITHIN).await
    }

    /// Like [`Prometheus::scraping`], serving its API as `web_config` (a `--web.config.file`: TLS,
    /// client certificates, basic auth) says. `https` tells whether it sets `tls_server_config`.
    /// Readiness is read from the log, since the API may need credentials.
    pub async fn scraping_with_web_config(
        target: std::net::SocketAddr,
        web_config: &str,
        https: bool,
    ) -> Self {
        let dir = fresh_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("web.yml");
        std::fs::write(&file, web_config).unwrap();
        let prometheus = Self::launch(
            dir,
            &scrape_config(target, ""),
            &[format!("--web.config.file={}", file.display())],
            if https { "https" } else { "http" },
        );
        crate::wait_for("Prometheus to be ready", READY_WITHIN, || async {
            let log = prometheus.log();
            let pid = prometheus.pid();
            // A process that exited stays a zombie (state Z) until it is waited for.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            assert!(
                matches!(state, Some(s) if s != "Z" && s != "X"),
                "Prometheus exited:\n{log}"
            );
            log.contains("Server is ready to receive web requests")
                .then_some(())
        })
        .await;
        prometheus
    }

    /// Serves the TSDB under `dir/data` with the configuration `config_text`, waiting up to
    /// `ready_within` for readiness (a large backfilled TSDB takes minutes to open).
    pub async fn start(dir: PathBuf, config_text: &str, ready_within: Duration) -> Self {
        let prometheus = Self::launch(dir, config_text, &[], "http");
        let ready = format!("{}/-/ready", prometheus.url);
        crate::wait_for_ok("Prometheus to be ready", &ready, ready_within).await;
        prometheus
    }

    fn launch(dir: PathBuf, config_text: &str, extra_args: &[String], scheme: &str) -> Self {
        Self::launch_at(crate::free_port(), dir, config_text, extra_args, scheme)
    }

    fn launch_at(
        port: u16,
        dir: PathBuf,
        config_text: &str,
        extra_args: &[String],
        scheme: &str,
    ) -> Self {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text).unwrap();
        let url = format!("{scheme}://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=400d")
            .args(extra_args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts: install it with tests/prometheus/install.sh");
        Self {
            url,
            child,
            dir,
            keep: false,
        }
    }

    /// The value of an instant query's first result, if it has one.
    pub async fn query(&self, expr: &str) -> Option<f64> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Stops the server now (the test goes on without Prometheus).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a stopped server again at the same URL, with the same configuration and TSDB, and
    /// waits until it is ready.
    pub async fn restart(&mut self) {
        let config = std::fs::read_to_string(self.dir.join("prometheus.yml")).unwrap();
        let port = self.url.rsplit(':').next().and_then(|p| p.parse().ok());
        let mut again = Self::launch_at(
            port.expect("the URL ends in a port"),
            self.dir.clone(),
            &config,
            &[],
            "http",
        );
        std::mem::swap(&mut self.child, &mut again.child);
        again.keep = true;
        drop(again);
        let ready = format!("{}/-/ready", self.url);
        crate::wait_for_ok("Prometheus to be ready again", &ready, READY_WITHIN).await;
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The TSDB directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Leaves the configuration, TSDB and log in place when dropped, for a look afterwards.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    /// The server log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn scrape_config(target: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{extra}scrape_configs:\n  - job_name: dataplane\n    honor_labels: true\n    static_configs:\n      - targets: [\"{target}\"]\n"
    )
}

/// A fresh directory holding the rules file `rules`, and the `rule_files` line naming it.
fn rules_dir(rules: &str) -> (PathBuf, String) {
    let dir = fresh_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.yml");
    std::fs::write(&file, rules).unwrap();
    let rule_files = format!("rule_files: [\"{}\"]\n", file.display());
    (dir, rule_files)
}

fn fresh_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "tailwarden-prom-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Writes OpenMetrics text: one family at a time, each series in time order.
#[derive(Default)]
pub struct History {
    text: String,
}

impl History {
    /// Starts a metric family of `kind` (`counter`, `gauge`, `histogram`).
    pub fn family(&mut self, name: &str, kind: &str) -> &mut Self {
        self.text.push_str(&format!("# TYPE {name} {kind}\n"));
        self
    }

    /// Adds a series sampled at `times` (unix seconds) with `value(t)`.
    pub fn series(
        &mut self,
        name: &str,
        labels: &str,
        times: &[i64],
        value: impl Fn(i64) -> f64,
    ) -> &mut Self {
        for &t in times {
            self.text
                .push_str(&format!("{name}{{{labels}}} {} {t}\n", value(t)));
        }
        self
    }

    /// The OpenMetrics text, terminated by `# EOF`.
    pub fn finish(&mut self) -> String {
        format!("{}# EOF\n", self.text)
    }
}
