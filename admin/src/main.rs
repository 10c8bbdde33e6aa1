//! `flashsale-admin`: operator commands for a flashsale deployment.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use flashsale_runtime::config::{KafkaArgs, LogArgs, RegistryArgs, StoreArgs, TopicArgs};
use flashsale_runtime::ops::init_tracing;

/// Operator commands for a flashsale deployment.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    topics: TopicArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    stores: StoreArgs,
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
    /// Compare, per product, the outcomes log with MySQL and Redis; print
    /// every drift and exit 1 when there is some. Run it once the sinks
    /// have caught up.
    Reconcile {
        /// Only products whose ID starts with this (default: all).
        #[arg(long, default_value = "")]
        product_prefix: String,
    },
    /// Rebuild Redis (stock, sold-out flags, outcomes) from MySQL, e.g.
    /// after Redis lost its data. Never overwrites newer Redis stock.
    RebuildRedis {
        /// TTL of the rebuilt outcome keys, in seconds.
        #[arg(long, env = "FLASHSALE_OUTCOME_TTL_S", default_value_t = 86_400)]
        outcome_ttl_s: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let result = match &cli.command {
        Command::CreateTopics {
            partitions,
            replication_factor,
        } => flashsale_admin::topics::create_topics(
            &cli.kafka.brokers,
            &cli.topics,
            *partitions,
            *replication_factor,
        )
        .await
        .map(|()| true),
        Command::Reconcile { product_prefix } => reconcile(&cli, product_prefix).await,
        Command::RebuildRedis { outcome_ttl_s } => {
            rebuild(&cli, *outcome_ttl_s).await.map(|()| true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flashsale-admin: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn stores(cli: &Cli) -> anyhow::Result<(sqlx::MySqlPool, redis::aio::ConnectionManager)> {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&cli.stores.mysql_url)
        .await?;
    let redis =
        redis::aio::ConnectionManager::new(redis::Client::open(cli.stores.redis_url.as_str())?)
            .await?;
    Ok((pool, redis))
}

/// Returns whether the stores agree with the log.
async fn reconcile(cli: &Cli, prefix: &str) -> anyhow::Result<bool> {
    use flashsale_admin::reconcile::{drift, read_log, read_stores};
    let contract = flashsale_schemas::registry::Contract::register(
        &cli.registry.schema_registry_url,
        &cli.topics.contract_topics(),
    )
    .await?;
    let (log, conflicts) = read_log(
        &cli.kafka.brokers,
        &cli.topics.outcomes_topic,
        &contract,
        prefix,
    )
    .await?;
    let (pool, mut redis) = stores(cli).await?;
    let stores = read_stores(&pool, &mut redis, prefix).await?;
    let mut lines = drift(&log, &stores);
    lines.extend(
        conflicts
            .iter()
            .map(|id| format!("request {id} was answered differently twice")),
    );
    let accepted: i64 = log.values().map(|v| v.accepted_units).sum();
    println!(
        "reconcile: {} products, {accepted} accepted units in the outcomes log",
        log.len()
    );
    for line in &lines {
        println!("drift: {line}");
    }
    println!(
        "reconcile: {} drift",
        if lines.is_empty() {
            "no".to_owned()
        } else {
            lines.len().to_string()
        }
    );
    Ok(lines.is_empty())
}

async fn rebuild(cli: &Cli, ttl_s: u64) -> anyhow::Result<()> {
    let (pool, mut redis) = stores(cli).await?;
    let (products, outcomes) =
        flashsale_admin::reconcile::rebuild_redis(&pool, &mut redis, ttl_s).await?;
    println!("rebuilt Redis from MySQL: {products} products, {outcomes} outcomes");
    Ok(())
}
