//! Ingress settings: flags or `FLASHSALE_*` environment variables (flags
//! win). `flashsale-ingress --help` lists every one with its unit and default.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use flashsale_runtime::config::{KafkaArgs, LogArgs, RegistryArgs, StoreArgs, TopicArgs};
use flashsale_schemas::records::QUANTITY_MAX;

/// `flashsale-ingress`: the HTTP front of the pipeline. Validates purchases
/// and sale commands, produces them to the requests topic, waits for their
/// outcomes and answers with the decision.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct IngressConfig {
    /// Where the brokers are (requests are produced, outcomes consumed there).
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic names: requests are written to one, outcomes read from another.
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Schema registry: the request schema is registered and outcomes decoded through it.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Log filter and format.
    #[command(flatten)]
    pub log: LogArgs,
    /// Address the HTTP API (and its /health and /metrics) listens on, host:port.
    #[arg(
        long,
        env = "FLASHSALE_INGRESS_LISTEN",
        default_value = "127.0.0.1:18080"
    )]
    pub listen: SocketAddr,
    /// Optional second listener serving only /health and /metrics (the ops
    /// endpoint every flashsale service can expose), host:port; none when unset.
    #[arg(long, env = "FLASHSALE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// The read models (only read: the ingress never migrates or writes them).
    #[command(flatten)]
    pub store: StoreArgs,
    /// How long a request waits for its outcome before answering 202
    /// "pending", in milliseconds (1..=60000).
    #[arg(
        long,
        env = "FLASHSALE_INGRESS_WAIT_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(1..=60_000)
    )]
    pub wait_ms: u64,
    /// Largest quantity one purchase may ask for, in units (1..=1000000).
    #[arg(
        long,
        env = "FLASHSALE_QUANTITY_MAX",
        default_value_t = 100,
        value_parser = clap::value_parser!(i32).range(1..=i64::from(QUANTITY_MAX))
    )]
    pub quantity_max: i32,
    /// Largest accepted request body, in bytes (over it: 413).
    #[arg(
        long,
        env = "FLASHSALE_BODY_BYTES_MAX",
        default_value_t = 16_384,
        value_parser = RangedU64ValueParser::<usize>::new().range(64..=1_048_576)
    )]
    pub body_bytes_max: usize,
    /// Most requests waiting for an outcome at once, in requests (over it: 503).
    #[arg(
        long,
        env = "FLASHSALE_PENDING_MAX",
        default_value_t = 100_000,
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000_000)
    )]
    pub pending_max: usize,
    /// Name of this instance in logs and Kafka client IDs (default: ingress-<pid>).
    #[arg(long, env = "FLASHSALE_INSTANCE_ID")]
    pub instance_id: Option<String>,
}

impl IngressConfig {
    /// This instance's name.
    pub fn instance(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("ingress-{}", std::process::id()))
    }

    /// The outcome wait as a duration.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Proves the clap definition is consistent (no duplicate flags, valid
    /// defaults) and the documented defaults are the ones parsed, by parsing
    /// an empty command line with clap's own debug assertions. A value the
    /// test environment overrides through its variable is not compared.
    #[test]
    fn defaults_parse() {
        IngressConfig::command().debug_assert();
        let cfg = IngressConfig::try_parse_from(["flashsale-ingress"]).expect("defaults parse");
        let unset = |var: &str| std::env::var_os(var).is_none();
        let checks = [
            (
                "FLASHSALE_INGRESS_LISTEN",
                cfg.listen.to_string() == "127.0.0.1:18080",
            ),
            (
                "FLASHSALE_INGRESS_WAIT_MS",
                cfg.wait() == Duration::from_millis(2000),
            ),
            ("FLASHSALE_QUANTITY_MAX", cfg.quantity_max == 100),
            ("FLASHSALE_BODY_BYTES_MAX", cfg.body_bytes_max == 16_384),
            ("FLASHSALE_PENDING_MAX", cfg.pending_max == 100_000),
        ];
        for (var, matches_default) in checks {
            assert!(!unset(var) || matches_default, "default of {var}");
        }
    }

    /// Proves out-of-range limits are refused at start instead of silently
    /// disabling a limit, by parsing a zero pending limit.
    #[test]
    fn zero_limits_refused() {
        let parsed = IngressConfig::try_parse_from(["flashsale-ingress", "--pending-max", "0"]);
        assert!(parsed.is_err());
        let parsed = IngressConfig::try_parse_from(["flashsale-ingress", "--quantity-max", "0"]);
        assert!(parsed.is_err());
    }
}
