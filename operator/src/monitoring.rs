//! The Prometheus Operator objects of a pipeline (`monitoring.coreos.com/v1`): a PrometheusRule
//! with its SLI recordings, budget meta rules and burn-rate alerts, and a PodMonitor that scrapes
//! its workers with the `pipeline` label the SLO queries group by. Pure builders; the reconciler
//! applies them only when the Prometheus Operator's CRDs exist.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{CustomResource, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use tailwarden_crds::RetailPipeline;
use tailwarden_slo::objective::Objectives;
use tailwarden_slo::rules::{RuleGroup, SeriesLabels, pipeline_rules};

use crate::children::{labels, selector};

/// CRDs whose presence switches the monitoring objects on.
pub const REQUIRED_CRDS: [&str; 2] = [
    "prometheusrules.monitoring.coreos.com",
    "podmonitors.monitoring.coreos.com",
];

/// `monitoring.coreos.com/v1` PrometheusRule (only the fields Tailwarden sets).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PrometheusRule",
    namespaced,
    schema = "disabled"
)]
pub struct PrometheusRuleSpec {
    /// Rule groups, evaluated by Prometheus.
    pub groups: Vec<RuleGroup>,
}

/// `monitoring.coreos.com/v1` PodMonitor (only the fields Tailwarden sets).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.coreos.com",
    version = "v1",
    kind = "PodMonitor",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// The pipeline's worker pods.
    pub selector: LabelSelector,
    /// How to scrape them.
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// One scraped port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// Container port name.
    pub port: String,
    /// Scrape interval.
    pub interval: String,
    /// Relabelings applied before ingestion.
    pub relabelings: Vec<Relabeling>,
}

/// A relabeling step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Relabeling {
    /// Labels read.
    pub source_labels: Vec<String>,
    /// Label written.
    pub target_label: String,
}

/// The PrometheusRule of a pipeline.
pub fn prometheus_rule(
    pipeline: &RetailPipeline,
    version: &str,
    objectives: &Objectives,
) -> PrometheusRule {
    let ns = pipeline.namespace().unwrap_or_default();
    PrometheusRule {
        metadata: meta(pipeline, version, format!("{}-slos", pipeline.name_any())),
        spec: PrometheusRuleSpec {
            groups: pipeline_rules(
                &ns,
                &pipeline.name_any(),
                objectives,
                series_labels(pipeline, false),
            ),
        },
    }
}

/// The labels of the pipeline's SLO series: Sloth's too when its spec asks, or `sloth` does.
pub fn series_labels(pipeline: &RetailPipeline, sloth: bool) -> SeriesLabels {
    let asked = pipeline
        .spec
        .prometheus
        .as_ref()
        .is_some_and(|p| p.sloth_labels);
    if sloth || asked {
        SeriesLabels::WithSloth
    } else {
        SeriesLabels::Plain
    }
}

/// The PodMonitor of a pipeline: every worker pod, with `pipeline` taken from the instance label
/// (the Prometheus Operator adds `namespace` itself).
pub fn pod_monitor(pipeline: &RetailPipeline, version: &str) -> PodMonitor {
    PodMonitor {
        metadata: meta(
            pipeline,
            version,
            format!("{}-dataplane", pipeline.name_any()),
        ),
        spec: PodMonitorSpec {
            selector: LabelSelector {
                match_labels: Some(selector(pipeline, None)),
                ..Default::default()
            },
            pod_metrics_endpoints: vec![PodMetricsEndpoint {
                port: "metrics".into(),
                interval: "15s".into(),
                relabelings: vec![Relabeling {
                    source_labels: vec![
                        "__meta_kubernetes_pod_label_app_kubernetes_io_instance".into(),
                    ],
                    target_label: "pipeline".into(),
                }],
            }],
        },
    }
}

fn meta(pipeline: &RetailPipeline, version: &str, name: String) -> ObjectMeta {
    let mut l: BTreeMap<String, String> = labels(pipeline, version, None);
    l.insert("app.kubernetes.io/component".into(), "monitoring".into());
    ObjectMeta {
        name: Some(name),
        namespace: pipeline.namespace(),
        labels: Some(l),
        owner_references: pipeline.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pipeline;

    #[test]
    fn the_rule_holds_recordings_meta_rules_and_alerts_for_the_pipeline() {
        let p = pipeline("shop");
        let rule = prometheus_rule(&p, "1.0.0", &Objectives::reference());
        assert_eq!(rule.metadata.name.as_deref(), Some("shop-slos"));
        assert_eq!(
            rule.metadata.owner_references.as_ref().unwrap()[0].kind,
            "RetailPipeline"
        );
        let rules: Vec<_> = rule.spec.groups.iter().flat_map(|g| &g.rules).collect();
        assert!(
            rules
                .iter()
                .any(|r| r.record.as_deref() == Some("slo:sli_error:ratio_rate5m"))
        );
        assert!(
            rules.iter().any(|r| r.alert.is_some()
                && r.labels.get("severity").map(String::as_str) == Some("page"))
        );
        assert!(rules.iter().all(|r| r.expr.contains("pipeline=\"shop\"")
            || r.record.as_deref().is_some_and(|n| n.starts_with("slo:"))));
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(json["kind"], "PrometheusRule");
    }

    #[test]
    fn the_rule_carries_sloth_labels_only_when_the_spec_asks() {
        let sloth_info = |p: &RetailPipeline| {
            prometheus_rule(p, "1.0.0", &Objectives::reference())
                .spec
                .groups
                .iter()
                .flat_map(|g| &g.rules)
                .filter(|r| r.record.as_deref() == Some("sloth_slo_info"))
                .count()
        };
        let mut p = pipeline("shop");
        assert_eq!(sloth_info(&p), 0);
        p.spec.prometheus = Some(tailwarden_crds::PrometheusSpec {
            url: "http://prometheus:9090".into(),
            sloth_labels: true,
        });
        assert_eq!(sloth_info(&p), 13);
    }

    #[test]
    fn the_pod_monitor_scrapes_the_metrics_port_with_a_pipeline_label() {
        let m = pod_monitor(&pipeline("shop"), "1.0.0");
        let json = serde_json::to_value(&m).unwrap();
        let endpoint = &json["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["port"], "metrics");
        assert_eq!(endpoint["relabelings"][0]["targetLabel"], "pipeline");
        assert_eq!(
            json["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "shop"
        );
    }
}
