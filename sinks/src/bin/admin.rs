//! `flashsale-admin`: operator commands for a flashsale deployment.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use flashsale_schemas::config::{KafkaArgs, LogArgs, TopicArgs};
use flashsale_schemas::runtime::init_tracing;

/// Operator commands for a flashsale deployment.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    topics: TopicArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the pipeline's topics if missing; fail if an existing topic
    /// has another partition count.
    CreateTopics {
        /// Partitions per topic. Fixed for the life of a deployment: keys
        /// map to partitions by murmur2 modulo this count.
        #[arg(long, env = "FLASHSALE_PARTITIONS", default_value_t = 8)]
        partitions: i32,
        /// Replicas per partition (1 for a single dev broker).
        #[arg(long, env = "FLASHSALE_REPLICATION_FACTOR", default_value_t = 1)]
        replication_factor: i32,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let result = match cli.command {
        Command::CreateTopics {
            partitions,
            replication_factor,
        } => {
            flashsale_sinks::admin::create_topics(
                &cli.kafka.brokers,
                &cli.topics,
                partitions,
                replication_factor,
            )
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashsale-admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
