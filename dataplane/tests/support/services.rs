//! A test's own Kafka broker and/or Cassandra node, started with the tests/services scripts in a
//! fresh directory, for tests that stop, kill and restart them (the shared servers of the other
//! test binaries must never be stopped). Dropping the guard stops them, also when the test
//! panics.
//!
//! One file, included by two crates: the data plane's tests (`support::services`) and the
//! end-to-end tests (`tailwarden_tests::own_services`), which point pods at such a node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `tests/services` of this repository.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/services")
}

/// Kafka or Cassandra.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Kafka,
    Cassandra,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::Cassandra => "cassandra",
        }
    }
}

/// Servers of one test in their own state directory; stopped (down.sh) and removed on drop.
pub struct OwnServices {
    pub dir: PathBuf,
}

impl OwnServices {
    /// Starts `services` (one after the other) in a fresh directory; Cassandra without auth.
    pub async fn start(name: &str, services: &[Service]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "tailwarden-svc-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let own = Self { dir };
        for &s in services {
            own.up(s, false).await;
        }
        own
    }

    /// Runs `SERVICE-up.sh DIR`; with `reuse`, on the data and ports of the previous run
    /// (`TAILWARDEN_REUSE=1`). Panics (with the script's output) if it fails.
    pub async fn up(&self, service: Service, reuse: bool) {
        let script = scripts().join(format!("{}-up.sh", service.name()));
        let dir = self.dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new(script)
                .arg(&dir)
                .env("TAILWARDEN_SKIP_BUILD", "1")
                .env("TAILWARDEN_REUSE", if reuse { "1" } else { "0" })
                .env_remove("TAILWARDEN_CASSANDRA_AUTH")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "{}-up.sh {} failed:\n{}",
            service.name(),
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `down.sh DIR SERVICE`: SIGTERM, bounded wait (Cassandra flushes its memtables).
    pub async fn down(&self, service: Service) {
        let dir = self.dir.clone();
        let status = tokio::task::spawn_blocking(move || down(&dir, &[service.name()]))
            .await
            .unwrap();
        assert!(
            status,
            "down.sh {} {} failed",
            self.dir.display(),
            service.name()
        );
    }

    /// SIGKILL: the server gets no chance to flush or to tell anyone. Returns once it is gone.
    pub fn kill(&self, service: Service) {
        let pid = self.pid(service);
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
        // The JVM is not our child (the up script forked it): wait until it is gone or a zombie.
        let end = Instant::now() + Duration::from_secs(30);
        while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        }) {
            assert!(
                Instant::now() < end,
                "{} (pid {pid}) survived SIGKILL",
                service.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self, service: Service) -> i32 {
        let path = self.dir.join(format!("pids/{}.pid", service.name()));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    /// The value DIR/env exports for `name` (the up scripts write it).
    pub fn env(&self, name: &str) -> String {
        let env = std::fs::read_to_string(self.dir.join("env")).unwrap_or_default();
        let prefix = format!("export {name}=");
        env.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .next_back()
            .unwrap_or_else(|| panic!("{name} not in {}/env", self.dir.display()))
            .to_owned()
    }

    /// The broker's bootstrap address.
    pub fn kafka(&self) -> String {
        self.env("TAILWARDEN_KAFKA_BOOTSTRAP")
    }

    /// The node's CQL contact point.
    pub fn cassandra(&self) -> String {
        self.env("TAILWARDEN_CASSANDRA")
    }
}

fn down(dir: &Path, services: &[&str]) -> bool {
    Command::new(scripts().join("down.sh"))
        .arg(dir)
        .args(services)
        .env("TAILWARDEN_DOWN_GRACE", "20")
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for OwnServices {
    fn drop(&mut self) {
        down(&self.dir, &[]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
