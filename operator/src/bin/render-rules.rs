//! Prints a pipeline's SLO rules as a plain Prometheus rules file, for Prometheus servers that
//! are not managed by the Prometheus Operator: `render-rules pipeline.yaml > rules.yaml`.

use std::io::Read;
use std::path::PathBuf;

use clap::Parser;
use tailwarden_crds::RetailPipeline;

/// Prints the SLO rules of a RetailPipeline as a plain Prometheus rules file.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The RetailPipeline YAML; `-` or none reads standard input.
    file: Option<PathBuf>,
    /// Also label the series as Sloth does and record `sloth_slo_info`, for Sloth's dashboards
    /// (as the spec's `prometheus.slothLabels` does).
    #[arg(long)]
    sloth_labels: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut text = String::new();
    match args.file {
        Some(path) if path.as_os_str() != "-" => text = std::fs::read_to_string(&path)?,
        _ => {
            std::io::stdin().read_to_string(&mut text)?;
        }
    }
    let pipeline: RetailPipeline = serde_yaml::from_str(&text)?;
    print!(
        "{}",
        tailwarden_operator::rules_file::render(&pipeline, args.sloth_labels)?
    );
    Ok(())
}
