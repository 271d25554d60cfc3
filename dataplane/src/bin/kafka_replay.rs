//! `tailwarden-kafka-replay`: replay in Kafka mode, run beside (not inside) the workers.
//!
//! ```sh
//! # move the ingest group's offsets (scale the ingest workers to 0 first):
//! tailwarden-kafka-replay --config /etc/tailwarden/config.yaml offsets --topic pricing --timestamp 2026-12-03T06:00:00Z
//! tailwarden-kafka-replay --config … offsets --topic shop.inventory --partition 3 --offset 1200
//! # re-ingest the dead-letter topic with today's validation:
//! tailwarden-kafka-replay --config … dead-letters --earliest --limit 10000
//! ```
//! Prints the result as JSON; exits 1 with the reason on failure (2 for a bad config), e.g. when
//! the group still has active members.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use tailwarden_dataplane::config::Config;
use tailwarden_dataplane::metrics::Metrics;
use tailwarden_dataplane::model::Class;
use tailwarden_dataplane::stream::TopicsExt;
use tailwarden_dataplane::stream::mode::KafkaMode;
use tailwarden_dataplane::stream::replay::{self, ReplayFrom};

#[derive(Parser, Debug)]
#[command(name = "tailwarden-kafka-replay", version, about)]
struct Cli {
    /// The pipeline's config file (`streams.kafka` is read from it).
    #[arg(long, env = "TAILWARDEN_CONFIG")]
    config: PathBuf,
    /// Timeout of each Kafka request, seconds.
    #[arg(long, default_value_t = 30)]
    timeout_seconds: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Moves the ingest consumer group's committed offsets; refused while it has members.
    Offsets {
        /// A class (`product`, `pricing`, ...) or a topic name.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<i32>,
        #[command(flatten)]
        from: From,
    },
    /// Reads the dead-letter topic and produces the records that now pass validation to their
    /// class topic.
    DeadLetters {
        /// Only this partition (default: all).
        #[arg(long)]
        partition: Option<i32>,
        #[command(flatten)]
        from: From,
        /// Most dead letters read.
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct From {
    /// From this offset.
    #[arg(long)]
    offset: Option<i64>,
    /// From the first record at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    timestamp: Option<String>,
    /// From the oldest record kept.
    #[arg(long)]
    earliest: bool,
}

impl From {
    fn resolve(&self) -> Result<ReplayFrom, String> {
        if let Some(o) = self.offset {
            return Ok(ReplayFrom::Offset(o));
        }
        if let Some(t) = &self.timestamp {
            let v = match t.parse::<i64>() {
                Ok(ms) => Value::from(ms),
                Err(_) => Value::String(t.clone()),
            };
            return tailwarden_dataplane::schema::parse_time(&v)
                .map(ReplayFrom::Timestamp)
                .map_err(|e| format!("--timestamp: {e}"));
        }
        Ok(ReplayFrom::Earliest)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mode = match Config::load(&cli.config)
        .map_err(|e| e.to_string())
        .and_then(|c| KafkaMode::from_config(&c).map_err(|e| e.to_string()))
    {
        Ok(Some(m)) => m,
        Ok(None) => {
            eprintln!("tailwarden-kafka-replay: the config has no streams.kafka");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("tailwarden-kafka-replay: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = Duration::from_secs(cli.timeout_seconds);
    let result: Result<Value, String> = match &cli.command {
        Command::Offsets {
            topic,
            partition,
            from,
        } => from.resolve().and_then(|from| {
            let topic = match Class::parse(topic) {
                Some(c) => mode.topics.for_class(c).to_owned(),
                None => topic.clone(),
            };
            replay::move_offsets(&mode.conn, &mode.group, &topic, *partition, from, timeout)
                .map(|offsets| {
                    json!({"group": mode.group, "topic": topic,
                           "offsets": offsets.iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>()})
                })
                .map_err(|e| e.to_string())
        }),
        Command::DeadLetters {
            partition,
            from,
            limit,
        } => from.resolve().and_then(|from| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let metrics = std::sync::Arc::new(Metrics::new());
                let producer = tailwarden_dataplane::stream::producer::Producer::new(
                    &mode.conn, timeout, metrics,
                )
                .map_err(|e| e.to_string())?;
                let ingest = tailwarden_dataplane::stream::ingest::KafkaIngest::new(
                    producer,
                    mode.topics.clone(),
                );
                replay::replay_dead_letters(&mode.conn, &ingest, *partition, from, *limit, timeout)
                    .await
                    .map(|r| {
                        json!({"read": r.read, "replayed": r.replayed, "still_rejected": r.still_rejected,
                               "next": r.next.iter().map(|(p, o)| json!({"partition": p, "offset": o})).collect::<Vec<_>>()})
                    })
                    .map_err(|e| e.to_string())
            })
        }),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tailwarden-kafka-replay: {e}");
            ExitCode::FAILURE
        }
    }
}
