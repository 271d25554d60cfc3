//! The Tailwarden operator: reconciles RetailPipelines into data-plane workloads.
//!
//! The loop is observe → decide → act → report: decisions are pure functions over plain data
//! ([`children`], [`conditions`], [`dataplane_config`]), kept apart from the I/O in [`reconciler`].

pub mod children;
pub mod conditions;
pub mod dataplane_config;
pub mod decisions;
pub mod engine;
pub mod error;
pub mod evaluation;
pub mod freeze_annotations;
pub mod held_back;
pub mod leader;
pub mod metrics;
pub mod monitoring;
pub mod plan;
pub mod pod_trouble;
pub mod prometheus_access;
pub mod reachability;
pub mod reconciler;
pub mod rollout;
pub mod rules_file;
pub mod schedule;
pub mod server;
pub mod spec_error;
pub mod status_page;
pub mod summary;
pub mod topology;
pub mod verdict;

#[cfg(test)]
mod test_support;
