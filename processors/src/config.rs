//! Processor settings: flags or `FLASHSALE_*` environment variables.

use std::net::SocketAddr;

use clap::Parser;
use flashsale_runtime::config::{KafkaArgs, LogArgs, RegistryArgs, TopicArgs};

use flashsale_core::DedupeLimits;

/// `flashsale-processor`: owns partitions of the requests topic and decides
/// every record in them, exactly once in effect.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct ProcessorConfig {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub log: LogArgs,
    /// Consumer group shared by all processor instances.
    #[arg(
        long,
        env = "FLASHSALE_PROCESSOR_GROUP",
        default_value = "flashsale-processors"
    )]
    pub group_id: String,
    /// Name of this instance in logs and client IDs (default: host-pid).
    #[arg(long, env = "FLASHSALE_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Address of the ops endpoint (/health, /metrics); none when unset.
    #[arg(long, env = "FLASHSALE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Most records decided per batch (one produce-ack-commit cycle).
    #[arg(long, env = "FLASHSALE_BATCH_RECORDS_MAX", default_value_t = 1000)]
    pub batch_records_max: usize,
    /// How long a batch waits for more records after its first, in ms.
    #[arg(long, env = "FLASHSALE_BATCH_WAIT_MS", default_value_t = 1)]
    pub batch_wait_ms: u64,
    /// Dedupe memory per partition: forget a request ID this long after it
    /// was decided, by record time, in ms. Must be equal on all instances.
    #[arg(long, env = "FLASHSALE_DEDUPE_WINDOW_MS", default_value_t = 86_400_000)]
    pub dedupe_window_ms: i64,
    /// Dedupe memory per partition: most remembered request IDs. Must be
    /// equal on all instances.
    #[arg(
        long,
        env = "FLASHSALE_DEDUPE_ENTRIES_MAX",
        default_value_t = 2_000_000
    )]
    pub dedupe_entries_max: usize,
    /// Snapshot a partition's state after this many records (0: never by
    /// count). Bounds how much of the log a restore replays.
    #[arg(
        long,
        env = "FLASHSALE_SNAPSHOT_EVERY_RECORDS",
        default_value_t = 50_000
    )]
    pub snapshot_every_records: u64,
    /// Snapshot a partition that changed at least this long ago, in ms
    /// (0: never by time).
    #[arg(long, env = "FLASHSALE_SNAPSHOT_EVERY_MS", default_value_t = 60_000)]
    pub snapshot_every_ms: u64,
    /// Largest snapshot chunk, in bytes; keep it below the broker's record
    /// size limit (1 MB by default on Kafka).
    #[arg(
        long,
        env = "FLASHSALE_SNAPSHOT_CHUNK_BYTES",
        default_value_t = 262_144
    )]
    pub snapshot_chunk_bytes: usize,
    /// Longest wait for one replay read (restore or gap fill), in ms; past it
    /// the processor stops rather than decide on an incomplete state.
    #[arg(long, env = "FLASHSALE_REPLAY_TIMEOUT_MS", default_value_t = 60_000)]
    pub replay_timeout_ms: u64,
}

impl ProcessorConfig {
    /// The deterministic dedupe limits.
    pub fn dedupe_limits(&self) -> DedupeLimits {
        DedupeLimits {
            window_ms: self.dedupe_window_ms,
            entries_max: self.dedupe_entries_max,
        }
    }

    /// This instance's name.
    pub fn instance(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("processor-{}", std::process::id()))
    }
}
