//! `flashsale-broker-ceiling`: the broker's ceiling (issue #12). How many
//! records per second of the pipeline's own purchase-request size the broker
//! alone takes (produce, `acks=all` + idempotence, every record
//! acknowledged) and delivers (a fresh consumer group reading them back),
//! and, optionally, the produce-to-consume latency with both at once: the
//! physical limit the pipeline is measured against. See
//! [`flashsale_load::ceiling`] for the method.
//!
//! Every scratch topic (made with `flashsale-admin`'s code) and group is
//! named `ceiling-<random>-...` and deleted at the end, also after an error
//! or Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use serde_json::json;

use flashsale_load::ceiling::{self, E2eRate, Plan, RecordShape, Scratch, Variant, VariantFigures};

/// Measures the broker's produce and consume ceiling for our record size.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "The broker's ceiling: records/s of our purchase-request size it takes \
             (acks=all, idempotent) and delivers (a consumer group), and the \
             produce-to-consume latency"
)]
struct Args {
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "FLASHSALE_BROKERS", default_value = "127.0.0.1:19092")]
    brokers: String,
    /// Records produced, then consumed, per variant.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Products the records are spread over (keys `phone-000`, ...).
    #[arg(long, default_value_t = 100)]
    products: usize,
    /// Partitions of the scratch topics (the pipeline's count).
    #[arg(long, env = "FLASHSALE_PARTITIONS", default_value_t = 8)]
    partitions: i32,
    /// Client settings to measure: `pipeline` (ours unchanged),
    /// `big-batch` (larger producer batches, no 1 s consumer fetch backoff).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Variant::ALL)]
    variants: Vec<Variant>,
    /// Records of the end-to-end phase (default: half of --records).
    #[arg(long)]
    e2e_records: Option<u64>,
    /// Pace of the end-to-end phase: a fraction of the variant's measured
    /// produce rate (`0.5x`), records per second (`50000`), or `max`.
    #[arg(long, default_value = "0.5x")]
    e2e_rate: RateArg,
    /// Skip the end-to-end phase.
    #[arg(long)]
    no_e2e: bool,
    /// Experiment: a librdkafka producer setting applied after the
    /// variant's, KEY=VALUE (repeatable; reported with the figures).
    #[arg(long, value_parser = key_value)]
    producer_property: Vec<(String, String)>,
    /// Experiment: a librdkafka consumer setting applied after the
    /// pipeline's, KEY=VALUE (repeatable; reported with the figures).
    #[arg(long, value_parser = key_value)]
    consumer_property: Vec<(String, String)>,
    /// Longest any phase may take, in seconds.
    #[arg(long, default_value_t = 120)]
    phase_timeout_s: u64,
    /// Also write the figures as a JSON object to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `--e2e-rate` as given.
#[derive(Debug, Clone, Copy)]
struct RateArg(E2eRate);

impl FromStr for RateArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let positive = |v: &str| match v.parse::<f64>() {
            Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
            _ => Err(format!(
                "{s:?}: expected a fraction like 0.5x, a rate like 50000, or max"
            )),
        };
        if s == "max" {
            Ok(Self(E2eRate::Max))
        } else if let Some(fraction) = s.strip_suffix('x') {
            Ok(Self(E2eRate::Load(positive(fraction)?)))
        } else {
            Ok(Self(E2eRate::PerS(positive(s)?)))
        }
    }
}

/// Parses `KEY=VALUE`.
fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.records > 0, "--records must be at least 1");
    anyhow::ensure!(args.partitions > 0, "--partitions must be at least 1");
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = Arc::clone(&stop);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let shape = Arc::new(RecordShape::purchase(args.products)?);
    let plan = Plan {
        brokers: args.brokers.clone(),
        partitions: args.partitions,
        shape,
        records: args.records,
        e2e_records: (!args.no_e2e).then(|| args.e2e_records.unwrap_or(args.records / 2).max(1)),
        e2e_rate: args.e2e_rate.0,
        phase_timeout: Duration::from_secs(args.phase_timeout_s),
        producer_extra: args.producer_property.clone(),
        consumer_extra: args.consumer_property.clone(),
        run_id: flashsale_testkit::unique("ceiling"),
        origin: Instant::now(),
        stop,
    };
    println!(
        "broker ceiling {}: {} records of {} B (key {} B), {} products over {} partitions, broker {}",
        plan.run_id,
        plan.records,
        plan.shape.value_bytes(),
        plan.shape.key_bytes(),
        args.products,
        plan.partitions,
        plan.brokers
    );
    let mut scratch = Scratch::default();
    let mut figures = Vec::new();
    let mut outcome = Ok(());
    for &variant in &args.variants {
        match ceiling::measure(&plan, variant, &mut scratch).await {
            Ok(f) => figures.push(f),
            Err(e) => {
                outcome = Err(e.context(format!("variant {}", variant.name())));
                break;
            }
        }
    }
    // Always, also after a failure: the broker is shared.
    let cleaned = ceiling::clean_up(&plan.brokers, &scratch).await;
    print_table(&figures);
    if let Some(path) = &args.json {
        write_json(path, &plan, &figures)?;
    }
    outcome?;
    cleaned.context("deleting the scratch topics and groups")
}

/// Prints one row per variant.
fn print_table(figures: &[VariantFigures]) {
    println!();
    println!(
        "{:<10} {:>13} {:>7} {:>13} {:>7} {:>7} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8}",
        "variant",
        "produce rec/s",
        "MiB/s",
        "consume rec/s",
        "MiB/s",
        "join s",
        "e2e offered",
        "e2e rec/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms"
    );
    let opt = |v: Option<f64>, digits: usize| {
        v.map_or_else(|| "-".to_owned(), |x| format!("{x:.digits$}"))
    };
    for f in figures {
        let offered = match (f.e2e_records, f.e2e_target_rps) {
            (None, _) => "-".to_owned(),
            (Some(_), None) => "max".to_owned(),
            (Some(_), Some(r)) => format!("{r:.0}"),
        };
        println!(
            "{:<10} {:>13.0} {:>7.1} {:>13.0} {:>7.1} {:>7.1} {:>11} {:>11} {:>8} {:>8} {:>8} {:>8}",
            f.variant.name(),
            f.produce_rps,
            f.produce_mbps,
            f.consume_rps,
            f.consume_mbps,
            f.consume_join_s,
            offered,
            opt(f.e2e_rps, 0),
            opt(f.e2e_p50_ms, 2),
            opt(f.e2e_p99_ms, 2),
            opt(f.e2e_p999_ms, 2),
            opt(f.e2e_max_ms, 1),
        );
    }
    let list = |settings: &BTreeMap<String, String>| {
        if settings.is_empty() {
            return "unchanged".to_owned();
        }
        let pairs: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(" ")
    };
    println!();
    for f in figures {
        println!(
            "{}: producer_config {}; group_consumer_config {}",
            f.variant.name(),
            list(&f.producer_overrides),
            list(&f.consumer_overrides)
        );
    }
    println!("MiB/s: record values only; e2e latency: intended send -> consumed");
}

/// Writes the figures as one JSON object.
fn write_json(path: &PathBuf, plan: &Plan, figures: &[VariantFigures]) -> anyhow::Result<()> {
    let value = json!({
        "run": plan.run_id,
        "brokers": plan.brokers,
        "partitions": plan.partitions,
        "products": plan.shape.products.len(),
        "records": plan.records,
        "record_bytes": plan.shape.value_bytes(),
        "key_bytes": plan.shape.key_bytes(),
        "mbps_unit": "MiB/s of record values (keys excluded)",
        "e2e_latency_from": "intended send instant (open loop) to arrival at the consumer",
        "variants": figures,
    });
    let text = serde_json::to_string_pretty(&value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
