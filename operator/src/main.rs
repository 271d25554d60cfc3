//! The operator binary: flags, logging, leader election and graceful shutdown around the controller.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use clap::Parser;
use tailwarden_operator::engine::EngineConfig;
use tailwarden_operator::leader::{Elector, LeaseConfig};
use tailwarden_operator::metrics::Metrics;
use tailwarden_operator::prometheus_access::PrometheusAccess;
use tailwarden_operator::reconciler::{self, Context};
use tailwarden_operator::server::{self, Health};
use tailwarden_operator::status_page::history::HistorySource;
use tailwarden_operator::status_page::source::Source;
use tailwarden_operator::status_page::{self, StatusPage};
use tokio::sync::watch;
use tracing::{error, info};

/// Reconciles RetailPipelines into data-plane workloads and enforces their SLOs.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "TAILWARDEN_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Address of the read-only SLO status page (docs/status-page.md).
    #[arg(long, env = "TAILWARDEN_STATUS_ADDR", default_value = "0.0.0.0:8081")]
    status_addr: SocketAddr,
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "TAILWARDEN_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Elect a leader through a Lease so that only one replica acts.
    #[arg(long, env = "TAILWARDEN_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "tailwarden-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "TAILWARDEN_LEASE_NAME",
        default_value = "tailwarden-operator"
    )]
    lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Prometheus of pipelines that do not set `spec.prometheus.url`.
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_URL")]
    prometheus_url: Option<String>,
    /// PEM file of the CA(s) that sign Prometheus's serving certificate; trusted instead of the
    /// system roots. Re-read every pass.
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_CA_FILE")]
    prometheus_ca_file: Option<PathBuf>,
    /// PEM client certificate presented to Prometheus (mutual TLS); needs --prometheus-key-file.
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_CERT_FILE")]
    prometheus_cert_file: Option<PathBuf>,
    /// PEM private key of --prometheus-cert-file.
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_KEY_FILE")]
    prometheus_key_file: Option<PathBuf>,
    /// File holding a bearer token for Prometheus (re-read every pass, so rotation works).
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_BEARER_TOKEN_FILE")]
    prometheus_bearer_token_file: Option<PathBuf>,
    /// File holding the basic-auth user name for Prometheus; needs the password file.
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_BASIC_AUTH_USERNAME_FILE")]
    prometheus_basic_auth_username_file: Option<PathBuf>,
    /// File holding the basic-auth password for Prometheus (re-read every pass).
    #[arg(long, env = "TAILWARDEN_PROMETHEUS_BASIC_AUTH_PASSWORD_FILE")]
    prometheus_basic_auth_password_file: Option<PathBuf>,
    /// How often the SLO engine ticks (at least 5s): the fastest a pipeline is evaluated; each
    /// is evaluated at its own `spec.autoscaling.evaluationInterval`, in whole ticks.
    #[arg(long, env = "TAILWARDEN_EVALUATION_INTERVAL", default_value = "15s", value_parser = parse_interval)]
    evaluation_interval: std::time::Duration,
    /// Window of the rate-based scaling signals (P95/P99, request and ingest rates, backlog
    /// slope): at least 30s, and at least 4 scrape intervals of the data plane.
    #[arg(long, env = "TAILWARDEN_SIGNAL_WINDOW", default_value = "2m", value_parser = parse_signal_window)]
    signal_window: std::time::Duration,
    /// Run without the SLO engine: reconcile only, never scale or freeze.
    #[arg(long, env = "TAILWARDEN_DISABLE_SLO_ENGINE")]
    disable_slo_engine: bool,
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    parse_at_least(s, 5)
}

fn parse_signal_window(s: &str) -> Result<std::time::Duration, String> {
    parse_at_least(s, 30)
}

fn parse_at_least(s: &str, min_secs: u64) -> Result<std::time::Duration, String> {
    let d = tailwarden_crds::duration::parse(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(min_secs) {
        return Err(format!("{s} is shorter than {min_secs}s"));
    }
    Ok(d)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_current_span(false)
        .init();
    let args = Args::parse();
    let access = PrometheusAccess {
        ca_file: args.prometheus_ca_file.clone(),
        cert_file: args.prometheus_cert_file.clone(),
        key_file: args.prometheus_key_file.clone(),
        bearer_token_file: args.prometheus_bearer_token_file.clone(),
        basic_auth_username_file: args.prometheus_basic_auth_username_file.clone(),
        basic_auth_password_file: args.prometheus_basic_auth_password_file.clone(),
    };
    // Settings that could never work stop the operator at once, naming the flag.
    if let Err(err) = access.validate() {
        error!(error = %err, "invalid Prometheus access settings");
        anyhow::bail!("invalid Prometheus access settings: {err}");
    }
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("tailwarden-operator-{}", std::process::id()));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutdown signal received");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: false.into(),
    });
    let server = tokio::spawn(server::serve(args.metrics_addr, health.clone(), stopped()));

    let client = kube::Client::try_default().await?;
    let version = client.apiserver_version().await?;
    info!(server_version = %version.git_version, "connected to the API server");
    health.ready.store(true, Ordering::Relaxed);
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), &identity));
    let namespace = args.watch_namespace.as_deref();
    // Served before leadership is known: a standby shows the status the leader last wrote.
    let page = Arc::new(StatusPage {
        source: Source {
            client: client.clone(),
            namespace: args.watch_namespace.clone(),
            live: ctx.live.clone(),
        },
        history: HistorySource {
            default_url: args.prometheus_url.clone(),
            access: access.clone(),
        },
    });
    let status_server = tokio::spawn(status_page::serve(args.status_addr, page, stopped()));
    let engine = (!args.disable_slo_engine).then(|| EngineConfig {
        default_prometheus: args.prometheus_url.clone(),
        interval: args.evaluation_interval,
        signal_window: args.signal_window,
        access: access.clone(),
        ..EngineConfig::default()
    });

    if !args.leader_elect {
        reconciler::run(ctx, namespace, engine, stopped()).await;
        server.await??;
        status_server.await??;
        return Ok(());
    }

    let elector = Elector::new(
        client,
        LeaseConfig::new(
            args.lease_namespace.clone(),
            args.lease_name.clone(),
            identity.clone(),
        ),
    );
    info!(identity = %identity, lease = %args.lease_name, "waiting for leadership");
    tokio::select! {
        _ = elector.acquire() => {}
        _ = stopped() => return Ok(()),
    }
    metrics.set_leader(true);
    let (lost_tx, lost_rx) = watch::channel(false);
    let stop_or_lost = {
        let stop = stopped();
        let mut lost = lost_rx.clone();
        async move {
            tokio::select! {
                _ = stop => {}
                _ = lost.wait_for(|l| *l) => {}
            }
        }
    };
    let controller = reconciler::run(ctx, namespace, engine, stop_or_lost);
    tokio::pin!(controller);
    let lost = tokio::select! {
        _ = &mut controller => false,
        _ = elector.hold() => {
            let _ = lost_tx.send(true);
            controller.await;
            true
        }
    };
    metrics.set_leader(false);
    if lost {
        // Exit so the pod restarts and campaigns afresh, never acting on a lost Lease.
        error!(identity = %identity, "lost leadership; exiting");
        std::process::exit(1);
    }
    if let Err(err) = elector.release().await {
        error!(error = %err, "could not release the Lease");
    }
    server.await??;
    status_server.await??;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
