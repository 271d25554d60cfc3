//! Wiring: opens the store, starts the roles' listeners and the writer, and shuts down in order
//! (stop accepting, finish in-flight requests and their durable acks, stop the writer, close the
//! store).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::sync::watch;

use crate::auth::Guards;
use crate::backend_probe::{self, Probes, Reporter};
use crate::backends::{self, Backends};
use crate::cache::{Cache, CacheCounters, Invalidation};
use crate::config::{Config, ConfigError, Role, Streams};
use crate::feed::{ChangeFeed, InProcessFeed, Relay};
use crate::health::Health;
use crate::ingest::admission::Admission;
use crate::ingest::http::{IngestState, RecordSink};
use crate::ingest::router::JobRouter;
use crate::ingest::writer::{Writer, WriterConfig};
use crate::ingest::{ChannelSource, MergedSource, deferral};
use crate::metrics::{LayerLabel, Metrics};
use crate::serve::http::ServeState;
use crate::serve::reader::Reader;
use crate::snapshot::{ImportDir, Snapshots};

/// Most write requests holding a body in memory at once (memory bound: this × maxBodyBytes).
const MAX_INGEST_REQUESTS: usize = 32;
/// Jobs queued for each writer thread; records are bounded separately by `queueCapacity`.
const WRITER_QUEUE_JOBS: usize = 1024;
/// Longest the shutdown waits for the store's memtable flush: well inside the kubelet's default
/// 30 s grace period (a flush of the default 32 MiB budget takes well under a second).
const SHUTDOWN_FLUSH_DEADLINE: Duration = Duration::from_secs(15);

/// Longest the shutdown waits for change events still in the producer's queue.
const KAFKA_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// Settings that are not part of the operator's config contract (flags and environment).
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Event ids remembered for dedup (hashes, 8 bytes each plus map overhead).
    pub dedup_window: usize,
    /// Readiness waits for an active snapshot.
    pub require_snapshot: bool,
    /// Block cache of the embedded store, bytes.
    pub store_cache_bytes: u64,
    /// Bytes written after which the embedded store flushes all memtables: bounds what a start
    /// after a crash replays from the journal.
    pub store_flush_bytes: u64,
    /// Entity states the writer keeps in memory to skip store reads of hot keys (shared out
    /// among the writer threads).
    pub writer_cache_entries: usize,
    /// Writer threads of the in-process write path, each owning the keys of one writer
    /// partition (not `ingest.partitions`, which partitions the Kafka topics). Kafka mode keeps
    /// one writer: its consumer hands over one job at a time, in offset order.
    pub writer_threads: usize,
    /// The config file to re-read for `degradation.pauseNonCritical`, which the operator flips in
    /// the ConfigMap under error-budget pressure without restarting the workers.
    pub watch_config: Option<PathBuf>,
}

/// How often the mounted config is re-read for the degradation switch.
const DEGRADATION_POLL: Duration = Duration::from_secs(5);

/// Re-reads `file` every [`DEGRADATION_POLL`] and applies its `degradation.pauseNonCritical`.
/// A file that does not parse leaves the switch as it is (and says so), never half-applied.
async fn watch_degradation(
    file: PathBuf,
    paused: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(DEGRADATION_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match Config::load(&file) {
            Ok(config) => {
                let pause = config.degradation.pause_non_critical;
                if paused.swap(pause, Ordering::Relaxed) != pause {
                    tracing::info!(
                        pause_non_critical = pause,
                        "degradation switched by the config file"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "config re-read failed; degradation left as it is")
            }
        }
    }
}

/// Starts every part of `role` and runs until `shutdown` resolves.
pub async fn run(
    role: Role,
    config: Config,
    tuning: Tuning,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let max_body_bytes = match &config.streams {
        Streams::Http { max_body_bytes } => *max_body_bytes as usize,
        Streams::Kafka { .. } => crate::stream::MAX_BODY_BYTES,
    };
    let guards = Guards::load(&config.auth, role)?;
    let metrics = Arc::new(Metrics::with_read_bounds(
        &config.serve.latency_bounds_seconds,
    ));
    // Health first: a worker that waits for its backends answers /readyz with the reason.
    let (stop_http, http_stopped) = watch::channel(false);
    let health = Health::new(metrics.clone(), tuning.require_snapshot);
    let mut servers = vec![
        serve(
            "metrics",
            config.listen.metrics,
            health.router(),
            http_stopped.clone(),
        )
        .await?,
    ];
    let mut shutdown = std::pin::pin!(shutdown);
    let reporter = Reporter::new(metrics.clone(), role);
    let backends = tokio::select! {
        opened = backends::open(&config, &tuning, &health, &reporter) => opened?,
        () = &mut shutdown => {
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    let Backends {
        store,
        work_dir,
        interrupted,
        kafka,
        cassandra,
    } = backends;
    let probes = Probes {
        cassandra,
        kafka: kafka.as_ref().map(|k| k.probe()).transpose()?.map(Arc::new),
    };
    let probe = tokio::spawn(backend_probe::run(reporter, probes, http_stopped.clone()));
    let import_dir = match &config.snapshots.import_dir {
        Some(dir) => Some(resolve_import_dir(dir, &work_dir)?),
        None => None,
    };
    let ingests = matches!(role, Role::Ingest | Role::Standalone);
    let serves = matches!(role, Role::Serve | Role::Standalone);
    // Ingest publishes its changes to the change topic (its own caches hear them too); a serve
    // worker hears the topic through a local feed.
    let kafka_feed = match (&kafka, ingests) {
        (Some(k), true) => Some(k.change_feed(metrics.clone())?),
        _ => None,
    };
    let feed: Arc<dyn ChangeFeed> = match &kafka_feed {
        Some(f) => f.clone(),
        None => Arc::new(InProcessFeed::default()),
    };
    let snapshots = Arc::new(Snapshots::open(
        store.clone(),
        feed.clone(),
        metrics.clone(),
        interrupted,
    )?);
    metrics
        .dead_letters_stored
        .set(store.dead_letter_count() as i64);
    metrics.ingest_deferred.set(store.deferred_count() as i64);

    let (close_writer, writer_closing) = watch::channel(false);
    let mut writer_threads = Vec::new();
    let mut kafka_threads = Vec::new();
    let store_failed = health.store_failed.clone();

    if ingests {
        let open: Vec<&str> = [&guards.ingest, &guards.admin]
            .into_iter()
            .filter(|g| g.is_open())
            .map(|g| g.scope().config_key())
            .collect();
        if !open.is_empty() {
            tracing::warn!(
                unset = ?open,
                "the write API is unauthenticated: anyone who can reach it can write, read dead letters and load snapshots"
            );
        }
        let paused = Arc::new(AtomicBool::new(config.degradation.pause_non_critical));
        if let Some(file) = tuning.watch_config.clone() {
            tokio::spawn(watch_degradation(
                file,
                paused.clone(),
                http_stopped.clone(),
            ));
        }
        let threads = match &kafka {
            Some(_) => 1,
            None => tuning.writer_threads,
        };
        tracing::info!(writer_threads = threads, "starting the writers");
        let (router, queues) = JobRouter::new(threads, WRITER_QUEUE_JOBS, metrics.clone());
        let writer = Writer::new(
            store.clone(),
            feed.clone(),
            metrics.clone(),
            paused.clone(),
            store_failed.clone(),
            WriterConfig {
                max_records: config.ingest.batch.max_records as usize,
                linger: config.ingest.batch.linger,
                partitions: config.ingest.partitions,
                dead_letter_max: config.ingest.dead_letter.max_records,
                dead_letter_retention: config.ingest.dead_letter.retention,
                dedup_window: tuning.dedup_window,
                hot_entities: tuning.writer_cache_entries,
            },
        )?;
        let channels = queues.into_iter().map(|jobs| ChannelSource {
            jobs,
            closing: writer_closing.clone(),
        });
        let mut writers = writer.partitioned(threads).into_iter().zip(channels);
        let writer_runs: Vec<Box<dyn FnOnce() + Send>> = match &kafka {
            Some(k) => {
                let topics = k.source(
                    writer_closing.clone(),
                    metrics.clone(),
                    config.ingest.batch.max_records as usize,
                )?;
                kafka_threads.push(k.spawn_lag_monitor(metrics.clone(), http_stopped.clone())?);
                let (writer, channel) = writers
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("Kafka mode has one writer"))?;
                let writer = writer.with_ownership_epoch(topics.ownership_epoch());
                vec![Box::new(move || {
                    writer.run(MergedSource::new(channel, topics))
                })]
            }
            None => writers
                .map(|(writer, channel)| -> Box<dyn FnOnce() + Send> {
                    Box::new(move || writer.run(channel))
                })
                .collect(),
        };
        for (i, run) in writer_runs.into_iter().enumerate() {
            writer_threads.push(
                std::thread::Builder::new()
                    .name(format!("writer-{i}"))
                    .spawn(run)?,
            );
        }
        metrics
            .ingest_queue_capacity
            .set(config.ingest.queue_capacity as i64);
        metrics
            .ingest_retry_after
            .set(i64::from(crate::ingest::http::RETRY_AFTER_SECONDS));
        let state = Arc::new(IngestState {
            sink: match &kafka {
                Some(k) => k.sink(metrics.clone())?,
                None => RecordSink::Writer,
            },
            store: store.clone(),
            metrics: metrics.clone(),
            admission: Admission::new(
                config.ingest.queue_capacity,
                MAX_INGEST_REQUESTS,
                metrics.ingest_queue_depth.clone(),
                metrics.ingest_refused_records.clone(),
            ),
            jobs: router,
            max_body_bytes,
            queue_capacity: config.ingest.queue_capacity,
            paused,
            snapshots: snapshots.clone(),
            spool_dir: work_dir.clone(),
            import_dir,
        });
        tokio::spawn(deferral::drain(state.clone(), writer_closing.clone()));
        let router = crate::ingest::http::router(state, &guards);
        servers.push(serve("ingest", config.listen.ingest, router, http_stopped.clone()).await?);
    }

    if serves {
        let invalidation = Arc::new(Invalidation::new(metrics.cache_invalidations.clone()));
        feed.subscribe(invalidation.clone());
        if let (Some(k), None) = (&kafka, &kafka_feed) {
            // A serve worker hears the change topic: the snapshot pointer first, so that a read
            // refilling an invalidated cache already uses a newly activated snapshot.
            let heard = Arc::new(InProcessFeed::default());
            heard.subscribe(snapshots.clone());
            heard.subscribe(invalidation.clone());
            kafka_threads.push(k.listen(Arc::new(Relay(heard)), http_stopped.clone())?);
        }
        let counters = |layer: &'static str| CacheCounters {
            hits: metrics
                .cache_hits
                .get_or_create(&LayerLabel { layer })
                .clone(),
            misses: metrics
                .cache_misses
                .get_or_create(&LayerLabel { layer })
                .clone(),
            evictions: metrics
                .cache_evictions
                .get_or_create(&LayerLabel { layer })
                .clone(),
        };
        // The entry budget is split between the two layers.
        let per_layer = config.serve.cache_max_entries / 2;
        let reader = Arc::new(Reader::new(
            store.clone(),
            snapshots.clone(),
            Cache::new(per_layer, invalidation.clone(), counters("data")),
            invalidation.clone(),
            config.serve.cache_ttl.clone(),
        ));
        let state = Arc::new(ServeState {
            reader,
            responses: Cache::new(per_layer, invalidation, counters("response")),
            metrics: metrics.clone(),
            read_timeout: config.serve.read_timeout,
            read_error_percent: config.faults.read_error_percent,
        });
        let router = crate::serve::http::router(state, guards.read.clone());
        servers.push(serve("serve", config.listen.serve, router, http_stopped.clone()).await?);
    }

    health.started(snapshots.clone());
    tracing::info!(role = role.as_str(), "ready");

    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    health.stopping();
    let _ = stop_http.send(true);
    for server in servers {
        server.await??;
    }
    probe.await?;
    let _ = close_writer.send(true);
    for t in writer_threads {
        tokio::task::spawn_blocking(move || t.join())
            .await?
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?;
    }
    if let Some(f) = &kafka_feed
        && let Err(e) = f.flush(KAFKA_FLUSH_DEADLINE)
    {
        tracing::warn!(error = %e, "flushing change events at shutdown failed");
    }
    for t in kafka_threads {
        tokio::task::spawn_blocking(move || t.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a Kafka thread panicked"))?;
    }
    drop(snapshots);
    // With the writer stopped, flush the memtables so the next start replays next to nothing.
    // A failure only costs restart time: everything is in the synced journal.
    let flushing = store.clone();
    match tokio::task::spawn_blocking(move || flushing.flush(SHUTDOWN_FLUSH_DEADLINE)).await? {
        Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, "flushing the store at shutdown failed"),
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

/// Resolves `snapshots.importDir` once (symlinks included) so that requested paths can be
/// compared with it. It must not overlap the data dir: the store's own files would otherwise be
/// loadable, and their lines dead-lettered with their content.
fn resolve_import_dir(dir: &Path, data_dir: &Path) -> Result<ImportDir, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid {
        key: "snapshots.importDir".into(),
        why,
    };
    let import = ImportDir::resolve(dir)
        .map_err(|e| invalid(format!("cannot use {}: {e}", dir.display())))?;
    let resolved = import.resolved();
    let data = data_dir
        .canonicalize()
        .map_err(|e| invalid(format!("cannot resolve the data dir: {e}")))?;
    if resolved.starts_with(&data) || data.starts_with(resolved) {
        return Err(invalid(format!(
            "{} overlaps the data dir {}",
            dir.display(),
            data_dir.display()
        )));
    }
    Ok(import)
}

/// Binds `addr` and serves `router` until `stop` turns true.
async fn serve(
    name: &'static str,
    addr: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} listener on {addr}"))?;
    tracing::info!(listener = name, addr = %listener.local_addr()?, "listening");
    Ok(tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    }))
}
