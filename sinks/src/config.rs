//! Sink worker settings: flags or `FLASHSALE_*` environment variables.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use flashsale_runtime::config::{KafkaArgs, LogArgs, RegistryArgs, StoreArgs, TopicArgs};

/// Which read model a sink worker keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// MySQL/MariaDB: sales, orders, outcomes, per-user totals, stock.
    Mysql,
    /// Redis: stock, sold-out flags, outcome per request ID.
    Redis,
}

impl StoreKind {
    /// Lower-case name, used in group IDs and logs.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Mysql => "mysql",
            StoreKind::Redis => "redis",
        }
    }
}

/// `flashsale-sink`: projects the outcomes topic into one store.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct SinkConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Which store this worker writes.
    #[arg(long, env = "FLASHSALE_SINK_STORE", value_enum)]
    pub store: StoreKind,
    /// Consumer group (default: flashsale-sink-<store>); workers of one
    /// store share it and split the partitions.
    #[arg(long, env = "FLASHSALE_SINK_GROUP")]
    pub group_id: Option<String>,
    /// The read models; a worker writes the one `--store` names.
    #[command(flatten)]
    pub stores: StoreArgs,
    /// How long Redis keeps the outcome of a request ID, in seconds.
    #[arg(long, env = "FLASHSALE_OUTCOME_TTL_S", default_value_t = 86_400)]
    pub outcome_ttl_s: u64,
    /// Name of this instance in logs and client IDs (default: sink-<store>-pid).
    #[arg(long, env = "FLASHSALE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Address of the ops endpoint (/health, /metrics); none when unset.
    #[arg(long, env = "FLASHSALE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Most outcomes written per batch (one transaction or pipeline).
    #[arg(long, env = "FLASHSALE_SINK_BATCH_RECORDS_MAX", default_value_t = 2000)]
    pub batch_records_max: usize,
    /// How long a batch waits for more outcomes after its first, in ms.
    #[arg(long, env = "FLASHSALE_SINK_BATCH_WAIT_MS", default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Longest pause between retries of a failed store write, in ms.
    #[arg(long, env = "FLASHSALE_SINK_BACKOFF_MS_MAX", default_value_t = 5_000)]
    pub backoff_ms_max: u64,
}

impl SinkConfig {
    /// The consumer group.
    pub fn group(&self) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("flashsale-sink-{}", self.store.name()))
    }

    /// This instance's name.
    pub fn instance(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("sink-{}-{}", self.store.name(), std::process::id()))
    }
}
