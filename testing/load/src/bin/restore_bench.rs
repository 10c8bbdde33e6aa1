//! `flashsale-restore-bench`: how long a processor takes to restore a
//! partition whose log holds many requests (default 1 M), with snapshots and
//! without, using the real processor binary against the real broker.
//!
//! 1. Creates fresh topics and writes N requests into one partition (sale
//!    commands, then purchases whose keys all hash to partition 0).
//! 2. Runs `flashsale-processor` until the group has committed the whole
//!    partition (this also reports the decision rate).
//! 3. SIGKILLs it and starts a new one: its "partition restored" log line is
//!    the restore from the newest snapshot plus the log tail.
//! 4. Starts one more against an empty snapshots topic: the restore by
//!    replaying the whole log, for comparison.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rust_decimal::Decimal;

use flashsale_admin::topics::create_topics as create;
use flashsale_runtime::config::{KafkaArgs, RegistryArgs, TopicArgs};
use flashsale_runtime::kafka::producer_config;
use flashsale_schemas::partition::partition_for;
use flashsale_schemas::registry::{Contract, ContractTopics};
use flashsale_schemas::{
    ConfigureSale, ProductId, PurchaseRequest, Request, RequestId, SaleTerms, UserId,
};

/// Measures partition restore time with and without snapshots.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Purchase requests written into the partition.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Products (all on partition 0).
    #[arg(long, default_value_t = 1_000)]
    products: u64,
    /// Partitions of the restore benchmark's topics.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Snapshot interval given to the processor, in records.
    #[arg(long, default_value_t = 50_000)]
    snapshot_every_records: u64,
    /// The processor binary (default: next to this one).
    #[arg(long)]
    processor_bin: Option<PathBuf>,
    /// Where the processors' logs go.
    #[arg(long, default_value = ".dev/logs")]
    log_dir: PathBuf,
    /// Longest wait for any phase, in seconds.
    #[arg(long, default_value_t = 1_800)]
    phase_timeout_s: u64,
}

/// Names of the restore benchmark's topics.
struct Topics {
    requests: String,
    outcomes: String,
    dead_letter: String,
    snapshots: String,
    empty_snapshots: String,
    group: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!("rb-{}", std::process::id());
    let t = Topics {
        requests: format!("{run}.requests"),
        outcomes: format!("{run}.outcomes"),
        dead_letter: format!("{run}.dead-letter"),
        snapshots: format!("{run}.snapshots"),
        empty_snapshots: format!("{run}.snapshots-empty"),
        group: format!("{run}-processors"),
    };
    create_topics(&args, &t).await?;
    let topics = ContractTopics {
        requests: &t.requests,
        outcomes: &t.outcomes,
        dead_letter: &t.dead_letter,
        snapshots: &t.snapshots,
    };
    let contract = Contract::register(&args.registry.schema_registry_url, &topics).await?;
    let written = Instant::now();
    let high = write_log(&args, &t, &contract).await?;
    let write_s = written.elapsed().as_secs_f64();
    println!(
        "wrote {high} records to {} partition 0 in {write_s:.1} s",
        t.requests
    );

    let bin = processor_bin(&args)?;
    let deciding = Instant::now();
    let mut first = spawn(&args, &bin, &t, &t.snapshots, "decide")?;
    wait_committed(&args, &t, high).await?;
    let decide_s = deciding.elapsed().as_secs_f64();
    println!("processor decided {high} records in {decide_s:.1} s ({:.0} records/s, restore and start-up included)", high as f64 / decide_s);
    first.kill()?;
    first.wait()?;

    let (with_snapshot, log) = timed_restore(&args, &bin, &t, &t.snapshots, "restore-snapshot")?;
    println!(
        "restore from snapshot + tail: {with_snapshot}   ({})",
        log.display()
    );
    let (full, log) = timed_restore(&args, &bin, &t, &t.empty_snapshots, "restore-full-log")?;
    println!(
        "restore by replaying the whole log: {full}   ({})",
        log.display()
    );
    Ok(())
}

/// Creates the restore benchmark's topics the way a deployment's are made
/// (`flashsale-admin create-topics`): twice, the second time only to add the
/// empty snapshots topic that the whole-log restore reads.
async fn create_topics(args: &Args, t: &Topics) -> anyhow::Result<()> {
    let mut topics = TopicArgs {
        requests_topic: t.requests.clone(),
        outcomes_topic: t.outcomes.clone(),
        dead_letter_topic: t.dead_letter.clone(),
        snapshots_topic: t.snapshots.clone(),
    };
    create(&args.kafka.brokers, &topics, args.partitions, 1).await?;
    topics.snapshots_topic = t.empty_snapshots.clone();
    create(&args.kafka.brokers, &topics, args.partitions, 1).await
}

fn products(args: &Args) -> Vec<ProductId> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while (out.len() as u64) < args.products {
        let candidate = format!("rb-product-{i}");
        if partition_for(candidate.as_bytes(), args.partitions) == 0 {
            if let Ok(p) = ProductId::parse(&candidate) {
                out.push(p);
            }
        }
        i += 1;
    }
    out
}

/// Writes sale commands, then purchases; returns the partition's end offset.
async fn write_log(args: &Args, t: &Topics, contract: &Contract) -> anyhow::Result<i64> {
    let producer: FutureProducer =
        producer_config(&args.kafka.brokers, "restore-bench").create()?;
    let products = products(args);
    let stock = (args.records / args.products / 2).max(1) as i64;
    let mut requests: Vec<Request> = products
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(Request::ConfigureSale(ConfigureSale {
                command_id: RequestId::parse(&format!("rb-sale-{i}"))?,
                product_id: p.clone(),
                terms: SaleTerms {
                    stock,
                    per_user_limit: 5,
                    price: Decimal::new(999, 2),
                    starts_at_ms: None,
                    ends_at_ms: None,
                },
                issued_at_ms: 0,
            }))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut last = 0;
    for chunk_start in (0..args.records).step_by(20_000) {
        for i in chunk_start..(chunk_start + 20_000).min(args.records) {
            requests.push(Request::Purchase(PurchaseRequest {
                request_id: RequestId::parse(&format!("rb-req-{i}"))?,
                user_id: UserId::parse(&format!("rb-user-{}", i % 50_000))?,
                product_id: products[(i % args.products) as usize].clone(),
                quantity: 1,
                received_at_ms: i as i64,
            }));
        }
        last = send_all(
            &producer,
            &t.requests,
            contract,
            std::mem::take(&mut requests),
        )
        .await?;
    }
    Ok(last + 1)
}

async fn send_all(
    producer: &FutureProducer,
    topic: &str,
    contract: &Contract,
    batch: Vec<Request>,
) -> anyhow::Result<i64> {
    let payloads: Vec<(String, Vec<u8>)> = batch
        .iter()
        .map(|r| Ok((r.product_id().to_string(), contract.encode_request(r)?)))
        .collect::<anyhow::Result<_>>()?;
    let sends = payloads.iter().map(|(key, payload)| {
        producer.send(
            FutureRecord::to(topic)
                .key(key.as_str())
                .payload(payload.as_slice()),
            Duration::from_secs(120),
        )
    });
    let mut last = 0;
    for delivery in futures::future::join_all(sends).await {
        let d = delivery.map_err(|(e, _)| e)?;
        anyhow::ensure!(
            d.partition == 0,
            "a key landed on partition {}",
            d.partition
        );
        last = last.max(d.offset);
    }
    Ok(last)
}

fn processor_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.processor_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("flashsale-processor"))
}

fn spawn(
    args: &Args,
    bin: &Path,
    t: &Topics,
    snapshots: &str,
    phase: &str,
) -> anyhow::Result<Child> {
    std::fs::create_dir_all(&args.log_dir)?;
    let log = std::fs::File::create(args.log_dir.join(format!("{}-{phase}.log", t.group)))?;
    Ok(Command::new(bin)
        .env("FLASHSALE_BROKERS", &args.kafka.brokers)
        .env(
            "FLASHSALE_SCHEMA_REGISTRY_URL",
            &args.registry.schema_registry_url,
        )
        .env("FLASHSALE_REQUESTS_TOPIC", &t.requests)
        .env("FLASHSALE_OUTCOMES_TOPIC", &t.outcomes)
        .env("FLASHSALE_DEAD_LETTER_TOPIC", &t.dead_letter)
        .env("FLASHSALE_SNAPSHOTS_TOPIC", snapshots)
        .env("FLASHSALE_PROCESSOR_GROUP", &t.group)
        .env(
            "FLASHSALE_SNAPSHOT_EVERY_RECORDS",
            args.snapshot_every_records.to_string(),
        )
        .env("FLASHSALE_LOG_JSON", "true")
        .env_remove("FLASHSALE_METRICS_LISTEN")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?)
}

async fn wait_committed(args: &Args, t: &Topics, high: i64) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.brokers)
        .set("group.id", &t.group)
        .set("enable.auto.commit", "false")
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(args.phase_timeout_s);
    while Instant::now() < deadline {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&t.requests, 0);
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        if let Some(Offset::Offset(o)) =
            committed.find_partition(&t.requests, 0).map(|e| e.offset())
        {
            if o >= high {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("the processor did not commit offset {high} in time")
}

/// Starts a processor, waits for its restore of partition 0, stops it.
fn timed_restore(
    args: &Args,
    bin: &Path,
    t: &Topics,
    snapshots: &str,
    phase: &str,
) -> anyhow::Result<(String, PathBuf)> {
    let log = args.log_dir.join(format!("{}-{phase}.log", t.group));
    let mut child = spawn(args, bin, t, snapshots, phase)?;
    let deadline = Instant::now() + Duration::from_secs(args.phase_timeout_s);
    let found = loop {
        if let Some(line) = restore_line(&log) {
            break Some(line);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill()?;
    child.wait()?;
    let fields =
        found.ok_or_else(|| anyhow::anyhow!("no restore of partition 0 in {}", log.display()))?;
    let text = format!(
        "{} ms (from offset {} to {}, {} records replayed)",
        fields["elapsed_ms"],
        fields["from"],
        fields["to"],
        fields["to"].as_i64().unwrap_or(0) - fields["from"].as_i64().unwrap_or(0)
    );
    Ok((text, log))
}

fn restore_line(log: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["fields"].clone())
        .find(|f| f["message"] == "partition restored" && f["partition"] == 0)
}
