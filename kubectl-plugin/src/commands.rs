//! Each subcommand: the requests it makes and what it prints. The words and tables come from the
//! pure modules; this is only the I/O around them.

use std::io::{Read, Write};
use std::path::Path;

use jiff::Timestamp;
use kube::ResourceExt;
use tailwarden_crds::RetailPipeline;
use tailwarden_operator::freeze_annotations::Mark;
use tailwarden_operator::rules_file::render;

use crate::cli::{Cli, Command, Connection, Output};
use crate::cluster::Cluster;
use crate::error::Error;
use crate::history;
use crate::marks::{self, Change, Current, expiry};
use crate::summary::table;
use tailwarden_operator::summary::{Summary, sort};

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let connection = &cli.connection;
    match cli.command {
        Command::Status {
            all_namespaces,
            output,
        } => status(&Cluster::connect(connection).await?, all_namespaces, output).await,
        Command::Why { pipeline } => {
            let cluster = Cluster::connect(connection).await?;
            let p = cluster.pipeline(&pipeline).await?;
            print(&history::render(
                &cluster.target(&pipeline),
                p.status.as_ref(),
            ))
        }
        Command::Freeze {
            pipeline,
            reason,
            duration,
            dry_run,
        } => {
            set(
                connection,
                Mark::Freeze,
                &pipeline,
                &reason,
                &duration,
                dry_run.dry_run,
            )
            .await
        }
        Command::Override {
            pipeline,
            reason,
            duration,
            dry_run,
        } => {
            set(
                connection,
                Mark::Override,
                &pipeline,
                &reason,
                &duration,
                dry_run.dry_run,
            )
            .await
        }
        Command::Unfreeze { pipeline, dry_run } => {
            let cluster = Cluster::connect(connection).await?;
            apply(&cluster, &pipeline, Change::Clear, dry_run.dry_run).await
        }
        Command::Rules { pipeline, file } => {
            let pipeline = match (pipeline, file) {
                (_, Some(file)) => read_pipeline(&file)?,
                (Some(name), None) => Cluster::connect(connection).await?.pipeline(&name).await?,
                // clap requires one of them.
                (None, None) => unreachable!("rules needs a pipeline or -f"),
            };
            let rules = render(&pipeline, false).map_err(|cause| Error::Rules {
                pipeline: pipeline.name_any(),
                cause,
            })?;
            print(&rules)
        }
    }
}

async fn status(cluster: &Cluster, all_namespaces: bool, output: Output) -> Result<(), Error> {
    let mut rows: Vec<Summary> = cluster
        .pipelines(all_namespaces)
        .await?
        .iter()
        .map(Summary::of)
        .collect();
    sort(&mut rows);
    match output {
        Output::Table if rows.is_empty() => {
            let scope = if all_namespaces {
                "any namespace".to_owned()
            } else {
                format!("namespace {}", cluster.namespace)
            };
            eprintln!("No RetailPipelines in {scope}.");
            Ok(())
        }
        Output::Table => print(&table(&rows, all_namespaces)),
        Output::Json => print(&format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).map_err(|e| Error::Output(e.to_string()))?
        )),
        Output::Yaml => {
            print(&serde_yaml::to_string(&rows).map_err(|e| Error::Output(e.to_string()))?)
        }
    }
}

/// `freeze` and `override`: sign the annotation with the user the API server sees.
async fn set(
    connection: &Connection,
    mark: Mark,
    pipeline: &str,
    reason: &str,
    duration: &str,
    dry_run: bool,
) -> Result<(), Error> {
    // Flags first: a refused --for or --reason needs no cluster.
    let reason = marks::reason(reason)?;
    let until = expiry(Timestamp::now(), duration)?;
    let cluster = Cluster::connect(connection).await?;
    let by = cluster.username().await?;
    let change = Change::Set {
        mark,
        reason,
        until,
        by: &by,
    };
    apply(&cluster, pipeline, change, dry_run).await
}

/// Says what `change` does to `pipeline`, then does it unless `dry_run`.
async fn apply(
    cluster: &Cluster,
    pipeline: &str,
    change: Change<'_>,
    dry_run: bool,
) -> Result<(), Error> {
    let current = Current::of(&cluster.pipeline(pipeline).await?, Timestamp::now());
    print(&format!(
        "{}\n",
        change.describe(&cluster.target(pipeline), &current)
    ))?;
    if dry_run {
        return print("Dry run: nothing changed.\n");
    }
    cluster.patch(pipeline, &change.patch()).await?;
    print(&format!(
        "Done; kubectl tailwarden why {pipeline} -n {} shows the operator's decision once it \
         reconciles.\n",
        cluster.namespace
    ))
}

/// A pipeline from a YAML or JSON file, or standard input for `-`.
fn read_pipeline(path: &Path) -> Result<RetailPipeline, Error> {
    let read = |cause| Error::Read {
        path: path.to_owned(),
        cause,
    };
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map_err(read)?;
    } else {
        text = std::fs::read_to_string(path).map_err(read)?;
    }
    serde_yaml::from_str(&text).map_err(|cause| Error::NotAPipeline {
        path: path.to_owned(),
        cause,
    })
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e.to_string())),
        _ => Ok(()),
    }
}
