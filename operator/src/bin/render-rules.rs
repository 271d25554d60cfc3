//! Prints a pipeline's SLO rules as a plain Prometheus rules file, for Prometheus servers that
//! are not managed by the Prometheus Operator: `render-rules pipeline.yaml > rules.yaml`.

use std::io::Read;

use kube::ResourceExt;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::evaluation::objectives;
use tailwarden_slo::rules::{pipeline_rules, rules_file};

fn main() -> anyhow::Result<()> {
    let mut text = String::new();
    match std::env::args().nth(1) {
        Some(path) if path != "-" => text = std::fs::read_to_string(&path)?,
        _ => {
            std::io::stdin().read_to_string(&mut text)?;
        }
    }
    let pipeline: RetailPipeline = serde_yaml::from_str(&text)?;
    let namespace = pipeline.namespace().unwrap_or_else(|| "default".into());
    let objectives = objectives(&pipeline.spec)?;
    print!(
        "{}",
        rules_file(&pipeline_rules(
            &namespace,
            &pipeline.name_any(),
            &objectives
        ))?
    );
    Ok(())
}
