//! A pipeline's SLO rules as a plain Prometheus rules file, for Prometheus servers that the
//! Prometheus Operator does not manage: one function, so `render-rules` and
//! `kubectl tailwarden rules` print the same text.

use kube::ResourceExt;
use tailwarden_crds::RetailPipeline;
use tailwarden_slo::rules::{RulesError, pipeline_rules, rules_file};

use crate::evaluation::objectives;
use crate::monitoring::series_labels;
use crate::spec_error::SpecError;

/// The pipeline's rules could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The spec's SLOs cannot be turned into objectives.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The rules could not be written as YAML.
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// The rules file of `pipeline`; a pipeline without a namespace is taken to be in `default`, as
/// `kubectl apply` would place it. `sloth` adds Sloth's labels even when the spec does not ask.
pub fn render(pipeline: &RetailPipeline, sloth: bool) -> Result<String, RenderError> {
    let namespace = pipeline.namespace().unwrap_or_else(|| "default".into());
    let objectives = objectives(&pipeline.spec)?;
    Ok(rules_file(&pipeline_rules(
        &namespace,
        &pipeline.name_any(),
        &objectives,
        series_labels(pipeline, sloth),
    ))?)
}
