//! `/metrics`, `/healthz` and `/readyz`: served from the first moment of a worker's life, so that
//! a worker waiting for its backends reports why it is not ready instead of being unreachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;

use crate::metrics::Metrics;
use crate::snapshot::Snapshots;

/// What the health endpoints know about the worker.
pub struct Health {
    metrics: Arc<Metrics>,
    require_snapshot: bool,
    /// Set once the backends are open and the roles started.
    snapshots: OnceLock<Arc<Snapshots>>,
    /// Why the worker is still starting (e.g. the backend it waits for and its error).
    starting: Mutex<String>,
    stopping: AtomicBool,
    /// A store commit failed: the engine may refuse every later write.
    pub store_failed: Arc<AtomicBool>,
}

impl Health {
    /// A worker that is starting.
    pub fn new(metrics: Arc<Metrics>, require_snapshot: bool) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            require_snapshot,
            snapshots: OnceLock::new(),
            starting: Mutex::new("starting: opening the store".into()),
            stopping: AtomicBool::new(false),
            store_failed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Says what the start waits for; `/readyz` answers it until [`Health::started`].
    pub fn waiting(&self, why: String) {
        *self.starting.lock() = why;
    }

    /// Every role is serving.
    pub fn started(&self, snapshots: Arc<Snapshots>) {
        let _ = self.snapshots.set(snapshots);
    }

    /// Shutdown has begun: not ready any more.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The router of the metrics listener.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("shutting down".into());
        }
        if self.store_failed.load(Ordering::Relaxed) {
            return Err("store commit failed".into());
        }
        let Some(snapshots) = self.snapshots.get() else {
            return Err(self.starting.lock().clone());
        };
        if self.require_snapshot && snapshots.active() == 0 {
            return Err("no active snapshot".into());
        }
        Ok(())
    }
}

/// Live unless a store commit failed: the engine may refuse every later write, and a restart
/// recovers it from its journal. A worker waiting for its backends is live.
async fn healthz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    if h.store_failed.load(Ordering::Relaxed) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "store commit failed; restart to recover",
        )
    } else {
        (StatusCode::OK, "ok")
    }
}

async fn metrics_text(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.encode(),
    )
}

/// Ready once the backends are open and every role serves, a snapshot is active when one is
/// required, and shutdown has not begun. The body says why not.
async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    match h.readiness() {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}
