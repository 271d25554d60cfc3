//! `tailwarden-dataplane`: one binary, three roles (ingest, serve, standalone).

/// mimalloc: the write path allocates many small objects and glibc malloc dominated profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tailwarden_dataplane::app::{Tuning, run};
use tailwarden_dataplane::config::{Config, Role, Storage};

/// Command line; every flag can also be set through its TAILWARDEN_* environment variable and
/// overrides the config file.
#[derive(Parser, Debug)]
#[command(name = "tailwarden-dataplane", version, about)]
struct Cli {
    /// ingest, serve or standalone.
    #[arg(long, env = "TAILWARDEN_ROLE", default_value = "standalone")]
    role: Role,
    /// YAML config file (the operator's ConfigMap); defaults apply without one.
    #[arg(long, env = "TAILWARDEN_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `listen.ingest`.
    #[arg(long, env = "TAILWARDEN_LISTEN_INGEST")]
    listen_ingest: Option<SocketAddr>,
    /// Overrides `listen.serve`.
    #[arg(long, env = "TAILWARDEN_LISTEN_SERVE")]
    listen_serve: Option<SocketAddr>,
    /// Overrides `listen.metrics`.
    #[arg(long, env = "TAILWARDEN_LISTEN_METRICS")]
    listen_metrics: Option<SocketAddr>,
    /// Overrides `storage.embedded.path`; refused when the storage is Cassandra.
    #[arg(long, env = "TAILWARDEN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Overrides `degradation.pauseNonCritical`.
    #[arg(long, env = "TAILWARDEN_PAUSE_NON_CRITICAL")]
    pause_non_critical: Option<bool>,
    /// Event ids remembered for deduplication.
    #[arg(long, env = "TAILWARDEN_DEDUP_WINDOW", default_value_t = 2_000_000)]
    dedup_window: usize,
    /// Report not-ready until a snapshot is active.
    #[arg(long, env = "TAILWARDEN_REQUIRE_SNAPSHOT", default_value_t = false)]
    require_snapshot: bool,
    /// Block cache of the embedded store, MiB.
    #[arg(long, env = "TAILWARDEN_STORE_CACHE_MB", default_value_t = 256)]
    store_cache_mb: u64,
    /// MiB written after which the store flushes its memtables: the most a start after a crash
    /// replays from the journal.
    #[arg(long, env = "TAILWARDEN_STORE_FLUSH_MB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    store_flush_mb: u64,
    /// Entity states the writer keeps in memory for hot keys.
    #[arg(
        long,
        env = "TAILWARDEN_WRITER_CACHE_ENTRIES",
        default_value_t = 200_000
    )]
    writer_cache_entries: usize,
    /// Writer threads, each committing the keys of one writer partition (default: half the
    /// cores, 1 to 4). Kafka mode keeps one writer.
    #[arg(long, env = "TAILWARDEN_WRITER_THREADS", value_parser = clap::value_parser!(u16).range(1..=64))]
    writer_threads: Option<u16>,
    /// Accept the config's `faults` section (deliberate failures, for tests). Without it a
    /// config that asks for a fault is refused, so a production worker never fails on purpose.
    #[arg(
        long,
        env = "TAILWARDEN_ALLOW_FAULT_INJECTION",
        default_value_t = false
    )]
    allow_fault_injection: bool,
}

/// The default writer threads: half the cores, 1 to 4. The other half parses requests: on 2
/// cores the HTTP path is CPU-bound and a second writer thread measured ~10% slower (smaller
/// group commits, more fsyncs); beyond 4, fjall serialising the fsyncs of its one journal leaves
/// little to gain.
fn default_writer_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 4))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            eprintln!("tailwarden-dataplane: {e}");
            return ExitCode::from(2);
        }
    };
    let tuning = Tuning {
        dedup_window: cli.dedup_window,
        require_snapshot: cli.require_snapshot,
        store_cache_bytes: cli.store_cache_mb << 20,
        store_flush_bytes: cli.store_flush_mb << 20,
        writer_cache_entries: cli.writer_cache_entries,
        writer_threads: cli
            .writer_threads
            .map_or_else(default_writer_threads, usize::from),
        // An explicit --pause-non-critical wins over the file, so the file is not watched then.
        watch_config: cli
            .config
            .clone()
            .filter(|_| cli.pause_non_critical.is_none()),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tailwarden-dataplane: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.role, config, tuning, terminated())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "fatal");
            eprintln!("tailwarden-dataplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config file (or defaults) with flag and environment overrides, validated.
fn load(cli: &Cli) -> Result<Config, tailwarden_dataplane::config::ConfigError> {
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(a) = cli.listen_ingest {
        config.listen.ingest = a;
    }
    if let Some(a) = cli.listen_serve {
        config.listen.serve = a;
    }
    if let Some(a) = cli.listen_metrics {
        config.listen.metrics = a;
    }
    if let Some(dir) = &cli.data_dir {
        match &mut config.storage {
            Storage::Embedded { path } => *path = dir.clone(),
            // Silently swapping a shared store for a local one would split the pipeline's state.
            Storage::Cassandra { .. } => {
                return Err(tailwarden_dataplane::config::ConfigError::Invalid {
                    key: "--data-dir".into(),
                    why: "the storage is cassandra; the data directory is the embedded store's"
                        .into(),
                });
            }
        }
    }
    if let Some(p) = cli.pause_non_critical {
        config.degradation.pause_non_critical = p;
    }
    config.validate()?;
    if config.faults.any() && !cli.allow_fault_injection {
        return Err(tailwarden_dataplane::config::ConfigError::Invalid {
            key: "faults.readErrorPercent".into(),
            why: "fault injection is refused unless the worker starts with --allow-fault-injection"
                .into(),
        });
    }
    if config.faults.any() {
        tracing::warn!(
            read_error_percent = config.faults.read_error_percent,
            "fault injection is on: reads fail on purpose"
        );
    }
    Ok(config)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminated() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = ctrl_c => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
}
