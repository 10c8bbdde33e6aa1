//! Settings shared by every service, read from flags or `FLASHSALE_*`
//! environment variables (flags win). `--help` on any binary lists them with
//! their defaults; the defaults point at the local stack that `dev/up` starts.

use clap::Args;
use flashsale_schemas::names;

/// Where the Kafka-protocol brokers are.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "FLASHSALE_BROKERS", default_value = "127.0.0.1:19092")]
    pub brokers: String,
    /// Group members (processors, sinks) that own no partition leave and
    /// rejoin their group when a partition has had lag and no committed
    /// progress for this many seconds (0: never). Repairs a rebalance that
    /// left partitions unowned (a broker-side defect); see
    /// `crate::group::StallWatch`.
    #[arg(long, env = "FLASHSALE_GROUP_STALL_S", default_value_t = 20)]
    pub group_stall_s: u64,
}

impl KafkaArgs {
    /// The stall watch for a member subscribed to `topic`, if enabled.
    pub fn stall_watch(&self, topic: &str) -> Option<crate::group::StallWatch> {
        (self.group_stall_s > 0).then(|| {
            crate::group::StallWatch::new(topic, std::time::Duration::from_secs(self.group_stall_s))
        })
    }
}

/// The topics of the pipeline.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Input topic: purchase requests and sale commands, keyed by product ID.
    #[arg(
        long,
        env = "FLASHSALE_REQUESTS_TOPIC",
        default_value = names::REQUESTS_TOPIC
    )]
    pub requests_topic: String,
    /// Output topic: one outcome per input record, keyed by product ID.
    #[arg(
        long,
        env = "FLASHSALE_OUTCOMES_TOPIC",
        default_value = names::OUTCOMES_TOPIC
    )]
    pub outcomes_topic: String,
    /// Refused input records, with a reason header.
    #[arg(
        long,
        env = "FLASHSALE_DEAD_LETTER_TOPIC",
        default_value = names::DEAD_LETTER_TOPIC
    )]
    pub dead_letter_topic: String,
    /// Compacted topic of per-partition processor state snapshots.
    #[arg(
        long,
        env = "FLASHSALE_SNAPSHOTS_TOPIC",
        default_value = names::SNAPSHOTS_TOPIC
    )]
    pub snapshots_topic: String,
}

impl TopicArgs {
    /// The topics whose value schemas the contract registers.
    pub fn contract_topics(&self) -> flashsale_schemas::registry::ContractTopics<'_> {
        flashsale_schemas::registry::ContractTopics {
            requests: &self.requests_topic,
            outcomes: &self.outcomes_topic,
            dead_letter: &self.dead_letter_topic,
            snapshots: &self.snapshots_topic,
        }
    }
}

/// Where the Confluent-compatible schema registry is.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Base URL of a Confluent-compatible schema registry API: a Confluent
    /// Schema Registry's root, or Apicurio Registry's `/apis/ccompat/v7`
    /// (what the local stack runs).
    #[arg(
        long,
        env = "FLASHSALE_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:18081/apis/ccompat/v7"
    )]
    pub schema_registry_url: String,
}

/// Where the read models live: MySQL/MariaDB (sales, stock, orders,
/// outcomes tables) and Redis (stock hashes, outcome views). The sinks write
/// them, the ingress and `flashsale-admin` read them.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// MySQL/MariaDB read model, as a mysql:// URL.
    #[arg(
        long,
        env = "FLASHSALE_MYSQL_URL",
        default_value = "mysql://flashsale:flashsale@127.0.0.1:13306/flashsale"
    )]
    pub mysql_url: String,
    /// Redis read model, as a redis:// URL.
    #[arg(
        long,
        env = "FLASHSALE_REDIS_URL",
        default_value = "redis://127.0.0.1:16379/"
    )]
    pub redis_url: String,
}

/// Logging settings.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter in `tracing` EnvFilter syntax (e.g. `info,flashsale=debug`);
    /// RUST_LOG is used when this is unset.
    #[arg(long, env = "FLASHSALE_LOG")]
    pub log: Option<String>,
    /// Emit logs as JSON lines instead of human-readable text.
    #[arg(long, env = "FLASHSALE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}
