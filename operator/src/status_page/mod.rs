//! The SLO status page: a read-only HTML view of every pipeline's budget, SLIs, burn-rate alerts
//! and decisions, served on its own port. Only GET routes, no script, nothing loaded from
//! elsewhere. The leader shows its live state; a standby the status the leader last wrote.

pub mod chart;
pub mod detail;
pub mod history;
pub mod html;
pub mod source;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use self::history::HistorySource;
use self::source::Source;
use self::view::{Filter, State};

/// What the page reads.
#[derive(Clone)]
pub struct StatusPage {
    /// The pipelines.
    pub source: Source,
    /// The budget's history, for the chart.
    pub history: HistorySource,
}

/// The list's query parameters, as the filter form sends them (empty means all).
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    state: String,
}

/// The router: `/` and `/pipelines/{namespace}/{name}`, GET only.
pub fn router(page: Arc<StatusPage>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/pipelines/{namespace}/{name}", get(detail))
        .with_state(page)
}

/// Serves the page on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    page: Arc<StatusPage>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(page))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn list(AxumState(page): AxumState<Arc<StatusPage>>, Query(q): Query<ListQuery>) -> Response {
    let state = match q.state.as_str() {
        "" => None,
        s => match State::parse(s) {
            Some(s) => Some(s),
            None => {
                let text = format!("unknown state {s:?}");
                return reply(
                    StatusCode::BAD_REQUEST,
                    html::message("Bad request", &text, None),
                );
            }
        },
    };
    let filter = Filter {
        namespace: Some(q.namespace).filter(|ns| !ns.is_empty()),
        state,
    };
    match page.source.views().await {
        Ok((mode, views)) => {
            let namespaces = view::namespaces(&views);
            let views = view::list(views, &filter);
            reply(
                StatusCode::OK,
                html::list(&views, &namespaces, &filter, mode),
            )
        }
        Err(err) => unavailable(&err),
    }
}

async fn detail(
    AxumState(page): AxumState<Arc<StatusPage>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let (mode, view) = match page.source.view(&namespace, &name).await {
        Ok((mode, Some(view))) => (mode, view),
        Ok((mode, None)) => {
            let text = format!("No pipeline {namespace}/{name}.");
            return reply(
                StatusCode::NOT_FOUND,
                html::message("Not found", &text, Some(mode)),
            );
        }
        Err(err) => return unavailable(&err),
    };
    let derived = detail::derive(&view);
    let now = jiff::Timestamp::now().as_second();
    let samples = match &derived {
        Some(d) => page
            .history
            .budget(&view.pipeline, d.period, now)
            .await
            .map(|s| (s, now - d.period.as_secs() as i64))
            .map_err(|e| e.to_string()),
        None => {
            Err("no chart: the spec's objectives are invalid, so the SLO period is unknown".into())
        }
    };
    let chart = match &samples {
        Ok((s, start)) => html::Chart::Samples(s, *start as f64, now as f64),
        Err(why) => html::Chart::Unavailable(why.clone()),
    };
    let spec = serde_yaml::to_string(&view.pipeline.spec).unwrap_or_else(|e| e.to_string());
    reply(
        StatusCode::OK,
        html::detail(&view, derived.as_ref(), chart, &spec, mode),
    )
}

fn reply(status: StatusCode, markup: maud::Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

fn unavailable(err: &kube::Error) -> Response {
    let text = format!("Could not read the pipelines: {err}");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        html::message("Unavailable", &text, None),
    )
}
