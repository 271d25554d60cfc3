//! Starts the real binary on free loopback ports and talks to it over HTTP.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod kafka;
pub mod pipeline;
pub mod services;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `tailwarden-dataplane`.
pub struct Server {
    pub child: Child,
    pub dir: PathBuf,
    pub ingest: String,
    pub serve: String,
    pub metrics: String,
    args: Vec<String>,
    /// `--data-dir dir` (the embedded store); off for a worker whose config names its backends.
    data_dir_flag: bool,
    /// How long a start may take (creating Cassandra tables takes seconds per table).
    start_timeout: Duration,
    /// Wait until /readyz stops saying "starting"; else only until the process answers.
    wait_started: bool,
    /// Where stderr (the JSON log) goes; discarded when `None`.
    log: Option<PathBuf>,
}

/// A free TCP port on loopback, never handed out twice by this process.
///
/// Ports come from below the Linux ephemeral range (32768+): a port the kernel picked would
/// be free again at once, so outgoing connections (and other tests asking the kernel) could
/// take it before the server under test binds it.
fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = fastrand::u16(20000..32000);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
}

/// A fresh data directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tailwarden-it-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh directory that is removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        Self(temp_dir(name))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Server {
    /// Starts on `dir` and waits until ready.
    pub async fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_logging(dir, extra, None).await
    }

    /// Starts on `dir` with its log written to `log`, and waits until ready.
    pub async fn start_logging(dir: &Path, extra: &[&str], log: Option<PathBuf>) -> Server {
        let mut s = Server {
            child: Command::new("true").spawn().unwrap(),
            dir: dir.to_owned(),
            ingest: String::new(),
            serve: String::new(),
            metrics: String::new(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            data_dir_flag: true,
            start_timeout: Duration::from_secs(30),
            wait_started: true,
            log,
        };
        s.restart().await;
        s
    }

    /// Starts `role` with the backends its `config` file names (no `--data-dir`); its log is
    /// `dir/name/log`. Waits until it has started.
    pub async fn start_configured(dir: &Path, name: &str, role: &str, config: &Path) -> Server {
        Self::configured(dir, name, role, config, true).await
    }

    /// As [`Server::start_configured`], but waits only until the process answers `/readyz`
    /// (for workers whose backends are not there yet).
    pub async fn spawn_configured(dir: &Path, name: &str, role: &str, config: &Path) -> Server {
        Self::configured(dir, name, role, config, false).await
    }

    async fn configured(
        dir: &Path,
        name: &str,
        role: &str,
        config: &Path,
        wait_started: bool,
    ) -> Server {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = Server {
            child: Command::new("true").spawn().unwrap(),
            ingest: String::new(),
            serve: String::new(),
            metrics: String::new(),
            args: ["--role", role, "--config", &config.display().to_string()]
                .map(str::to_owned)
                .to_vec(),
            data_dir_flag: false,
            start_timeout: Duration::from_secs(120),
            wait_started,
            log: Some(dir.join("log")),
            dir,
        };
        s.restart().await;
        s
    }

    /// (Re)starts the process on the same directory with fresh ports.
    pub async fn restart(&mut self) {
        let _ = self.child.wait();
        let (i, sv, m) = (free_port(), free_port(), free_port());
        self.ingest = format!("http://127.0.0.1:{i}");
        self.serve = format!("http://127.0.0.1:{sv}");
        self.metrics = format!("http://127.0.0.1:{m}");
        let role = if self.args.iter().any(|a| a == "--role") {
            vec![]
        } else {
            vec!["--role", "standalone"]
        };
        self.child = Command::new(env!("CARGO_BIN_EXE_tailwarden-dataplane"))
            .args(role)
            .args(if self.data_dir_flag {
                vec!["--data-dir".as_ref(), self.dir.as_os_str()]
            } else {
                vec![]
            })
            .args(["--listen-ingest", &format!("127.0.0.1:{i}")])
            .args(["--listen-serve", &format!("127.0.0.1:{sv}")])
            .args(["--listen-metrics", &format!("127.0.0.1:{m}")])
            .args(["--store-cache-mb", "16", "--dedup-window", "1000000"])
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(match &self.log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::null(),
            })
            .spawn()
            .unwrap();
        // Started once /readyz no longer says it is starting (it may stay unready for another
        // reason, such as a required snapshot).
        let url = format!("{}/readyz", self.metrics);
        let wait_started = self.wait_started;
        eventually("the server to start", self.start_timeout, || {
            let url = url.clone();
            async move {
                let r = reqwest::get(&url).await.ok()?;
                let ok = r.status().is_success();
                let body = r.text().await.ok()?;
                (ok || !wait_started || !body.starts_with("starting")).then_some(())
            }
        })
        .await;
        // An answer from another process on a reused port must not pass for this one.
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the data plane exited during start-up"
        );
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap().code()
    }

    /// POSTs NDJSON to the write API; returns status and JSON body.
    pub async fn post_updates(&self, ndjson: impl Into<reqwest::Body>) -> (u16, Value) {
        self.post(
            &format!("{}/v1/updates", self.ingest),
            "application/x-ndjson",
            ndjson,
        )
        .await
    }

    /// POSTs a body with a content type.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// GETs a read-API path.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&format!("{}{path}", self.serve)).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a data-plane config file into `dir` and returns its path (for `--config`).
pub fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A response as the tests look at it.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The body as text (error bodies must never echo a token).
    pub text: String,
    pub json: Value,
}

/// Sends `method url` with an optional bearer token and body.
pub async fn send(method: &str, url: &str, token: Option<&str>, body: &str) -> Answer {
    let mut r = reqwest::Client::new()
        .request(method.parse().unwrap(), url)
        .header("content-type", "application/x-ndjson")
        .body(body.to_owned());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Answer {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// GET returning status and JSON.
pub async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The `/metrics` text of `server`; empty while it does not answer.
pub async fn metrics_text(server: &Server) -> String {
    match reqwest::get(format!("{}/metrics", server.metrics)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// `(role, state)` of each `tailwarden_backend_state{backend="<backend>"} 1` series `server`
/// exports now.
pub async fn backend_states(server: &Server, backend: &str) -> Vec<(String, String)> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_owned())
    };
    metrics_text(server)
        .await
        .lines()
        .filter(|l| l.starts_with("tailwarden_backend_state{") && l.ends_with("} 1"))
        .filter(|l| label(l, "backend").as_deref() == Some(backend))
        .map(|l| (label(l, "role").unwrap(), label(l, "state").unwrap()))
        .collect()
}

/// Waits until `server` reports `backend` in a state that `want` accepts, and returns the
/// state. Asserts at every look that the backend has no more than one series.
pub async fn until_backend_state(
    server: &Server,
    backend: &str,
    deadline: Duration,
    want: impl Fn(&str) -> bool,
) -> String {
    let what = format!(
        "{} to report the {backend} state wanted",
        server.dir.display()
    );
    eventually(&what, deadline, || async {
        let states = backend_states(server, backend).await;
        assert!(
            states.len() <= 1,
            "one {backend} series at most: {states:?}"
        );
        states
            .into_iter()
            .map(|(_, state)| state)
            .find(|state| want(state))
    })
    .await
}

/// One inventory update as an NDJSON line.
pub fn inventory(
    event_id: &str,
    product: &str,
    location: &str,
    quantity: i64,
    event_time_ms: i64,
    seq: u64,
) -> String {
    format!(
        r#"{{"event_id":"{event_id}","class":"inventory","schema_version":2,"key":{{"product_id":"{product}","location":"{location}"}},"event_time":{event_time_ms},"sequence":{seq},"payload":{{"quantity":{quantity}}}}}"#
    ) + "\n"
}
