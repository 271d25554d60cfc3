//! The budget's history for the burn-down chart. The operator keeps none, so it asks the
//! pipeline's Prometheus for the recorded remaining-budget series over the SLO period.

use std::time::Duration;

use prometheus_http_query::Client as Prometheus;
use prometheus_http_query::response::Data;
use tailwarden_crds::RetailPipeline;

use super::chart::Sample;
use crate::prometheus_access::{self, AccessError, PrometheusAccess};

/// The recording of the budget left per SLO over the rules' period (slo/src/rules.rs).
const BUDGET_SERIES: &str = "slo:period_error_budget_remaining:ratio";

/// How long the page waits for Prometheus.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Samples per chart: enough for a smooth line, few enough for a quick query.
const POINTS: u64 = 240;

/// Why there is no history to draw.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Neither the pipeline nor the operator names a Prometheus.
    #[error(
        "the chart needs Prometheus: set spec.prometheus.url or the operator's --prometheus-url"
    )]
    NoPrometheus,
    /// The access settings could not be used.
    #[error("Prometheus access: {0}")]
    Access(#[from] AccessError),
    /// The URL is not usable.
    #[error("Prometheus URL {url}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The query failed.
    #[error("Prometheus query failed: {0}")]
    Query(String),
}

/// Where the page reads history: the operator's default Prometheus and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct HistorySource {
    /// The operator's `--prometheus-url`.
    pub default_url: Option<String>,
    /// Credentials and TLS, as the SLO engine uses them.
    pub access: PrometheusAccess,
}

impl HistorySource {
    /// The lowest budget left across the pipeline's SLOs, over `period` up to `end` (Unix
    /// seconds); empty when Prometheus has no such series (no rules loaded yet).
    pub async fn budget(
        &self,
        pipeline: &RetailPipeline,
        period: Duration,
        end: i64,
    ) -> Result<Vec<Sample>, HistoryError> {
        let url = pipeline
            .spec
            .prometheus
            .as_ref()
            .map(|p| p.url.clone())
            .or_else(|| self.default_url.clone())
            .ok_or(HistoryError::NoPrometheus)?;
        let http = prometheus_access::client(&self.access.tls_material()?, TIMEOUT)?;
        let prometheus = Prometheus::from(http, &url).map_err(|e| HistoryError::Url {
            url: url.clone(),
            reason: prometheus_access::describe(&e),
        })?;
        let step = (period.as_secs() / POINTS).max(60) as f64;
        let start = end - period.as_secs() as i64;
        let mut request = prometheus
            .query_range(query(pipeline), start, end, step)
            .timeout(TIMEOUT.as_millis() as i64);
        if let Some(value) = self.access.authorization()? {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let result = request
            .get()
            .await
            .map_err(|e| HistoryError::Query(prometheus_access::describe(&e)))?;
        Ok(match result.data() {
            Data::Matrix(series) => series
                .iter()
                .flat_map(|s| s.samples())
                .map(|s| (s.timestamp(), s.value()))
                .collect(),
            _ => Vec::new(),
        })
    }
}

/// The PromQL of the pipeline's lowest budget left; label values quoted as PromQL strings.
fn query(pipeline: &RetailPipeline) -> String {
    use kube::ResourceExt;
    format!(
        "min({BUDGET_SERIES}{{namespace={:?},pipeline={:?}}})",
        pipeline.namespace().unwrap_or_default(),
        pipeline.name_any()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_selects_the_pipelines_budget_series() {
        let p = crate::status_page::view::tests::pipeline("shop", "web", serde_json::json!({}));
        assert_eq!(
            query(&p),
            r#"min(slo:period_error_budget_remaining:ratio{namespace="shop",pipeline="web"})"#
        );
    }
}
