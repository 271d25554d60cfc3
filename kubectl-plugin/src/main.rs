//! `kubectl-tailwarden`, a kubectl plugin: pipelines by remaining error budget, why the operator
//! decided what it did, accountable rollout freezes and overrides, and a pipeline's SLO rules.

mod cli;
mod cluster;
mod commands;
mod error;
mod history;
mod marks;
mod suggest;
mod summary;
mod table;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match commands::run(cli::Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
