//! The command line: kubectl's connection flags, then one subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Error budgets, decisions and accountable rollout freezes of Tailwarden RetailPipelines.
///
/// Installed as `kubectl-tailwarden` on PATH, it runs as `kubectl tailwarden ...`.
#[derive(Parser, Debug)]
#[command(name = "kubectl-tailwarden", bin_name = "kubectl tailwarden", version)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster, user and namespace, chosen as kubectl chooses them.
#[derive(Args, Debug, Clone, Default)]
pub struct Connection {
    /// The kubeconfig file (default: KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, else `default`).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pipelines by remaining error budget, lowest first: budget, worst SLO, burn rates,
    /// replicas, what freezes rollouts, degradation.
    Status {
        /// Pipelines of every namespace.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// The operator's decisions on a pipeline, oldest first, and the conditions that explain
    /// a freeze or degradation.
    Why {
        /// The pipeline's name, in the namespace of -n.
        pipeline: String,
    },
    /// Freezes a pipeline's rollouts by hand, whatever its error budget says, signed with your
    /// user name.
    Freeze {
        /// The pipeline's name, in the namespace of -n.
        pipeline: String,
        /// Why: the annotation's value, shown in the decision history.
        #[arg(long)]
        reason: String,
        /// How long it holds, e.g. 30m, 2h, 1d; at most 7 days.
        #[arg(long = "for", value_name = "DURATION", default_value = "2h")]
        duration: String,
        #[command(flatten)]
        dry_run: DryRun,
    },
    /// Lets a pipeline's rollouts through its error budget's freeze (not through a manual
    /// freeze), signed with your user name.
    Override {
        /// The pipeline's name, in the namespace of -n.
        pipeline: String,
        /// Why: the annotation's value, shown in the decision history.
        #[arg(long)]
        reason: String,
        /// How long it holds, e.g. 30m, 2h, 1d; at most 7 days.
        #[arg(long = "for", value_name = "DURATION", default_value = "1h")]
        duration: String,
        #[command(flatten)]
        dry_run: DryRun,
    },
    /// Removes a pipeline's manual freeze and freeze override; the budget's freeze stays.
    Unfreeze {
        /// The pipeline's name, in the namespace of -n.
        pipeline: String,
        #[command(flatten)]
        dry_run: DryRun,
    },
    /// The pipeline's Prometheus rules, as `render-rules` prints them.
    #[command(group = clap::ArgGroup::new("source").required(true))]
    Rules {
        /// A pipeline in the cluster.
        #[arg(group = "source")]
        pipeline: Option<String>,
        /// A pipeline file instead; `-` reads standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE", group = "source")]
        file: Option<PathBuf>,
    },
}

/// `--dry-run`: only say what would happen.
#[derive(Args, Debug, Clone, Copy)]
pub struct DryRun {
    /// Print what would happen, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How `status` prints.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn connection_flags_go_anywhere_and_for_has_per_command_defaults() {
        let cli = Cli::try_parse_from([
            "kubectl-tailwarden",
            "freeze",
            "web",
            "--reason",
            "x",
            "-n",
            "shop",
        ])
        .unwrap();
        assert_eq!(cli.connection.namespace.as_deref(), Some("shop"));
        assert!(matches!(cli.command, Command::Freeze { duration, .. } if duration == "2h"));
        let cli = Cli::try_parse_from(["kubectl-tailwarden", "override", "web", "--reason", "x"])
            .unwrap();
        assert!(matches!(cli.command, Command::Override { duration, .. } if duration == "1h"));
        assert!(
            Cli::try_parse_from(["kubectl-tailwarden", "status", "-A", "-n", "shop"]).is_err(),
            "-A and -n exclude each other"
        );
        assert!(Cli::try_parse_from(["kubectl-tailwarden", "rules"]).is_err());
        assert!(
            Cli::try_parse_from(["kubectl-tailwarden", "rules", "web", "-f", "p.yaml"]).is_err()
        );
    }
}
