//! `flashsale-restore-bench`: how long a partition whose log holds many
//! requests (default 1 M) takes to decide again after its owner is killed,
//! ours (snapshot + log tail) against the Kafka Streams peer
//! (peers/kafka-streams: changelog restore, with 0 and with 1 standby
//! replica), using the real binaries against the real broker (issue #12).
//!
//! 1. Creates fresh topics and writes N purchase requests into one
//!    partition (sale commands, then purchases whose keys all hash to
//!    partition 0). Every system reads this same requests topic and writes
//!    its own outcomes topic.
//! 2. Per system, the owner decides the whole partition (until its group
//!    has committed it: this also gives the decision rate), then is
//!    SIGKILLed; a probe purchase goes to partition 0 at once and the figure
//!    is the time from the SIGKILL until the probe's outcome is readable
//!    (read_committed) on the outcomes topic:
//!    * `ours`: a new `flashsale-processor` joins the same group at once
//!      (a replacement machine); it restores from the newest snapshot plus
//!      the log tail;
//!    * `kstreams-standby0`: a new peer instance joins the same application
//!      at once, with a fresh state dir (a replacement machine: under
//!      exactly-once the killed task's local state is dirty anyway); it
//!      restores the task's stores from their changelogs;
//!    * `kstreams-standby1`: two instances from the start, each with its own
//!      state dir; once the standby of partition 0 has caught up with the
//!      changelogs the active owner is killed and the standby takes over.
//!
//!    From the logs: when the new owner got the partition, how long its
//!    restore took (ours: "partition restored" elapsed_ms; the peer: its
//!    `restore started` / `restore done` lines) and when it was ready.
//! 3. Ours also keeps the older comparison: one more processor against an
//!    empty snapshots topic, i.e. the restore by replaying the whole log.
//!
//! Everything made is deleted at the end, also on failure: topics
//! (changelogs included), consumer groups, registry subjects, peer state
//! dirs. The processes' logs stay in `--log-dir`. Run it from the
//! repository root, against the running stack (`eval "$(dev/env)"`): the
//! defaults of `--peer`, `--peer-state-dir` and `--log-dir` are relative.
//!
//! `cargo build --release -p flashsale-processors -p flashsale-load &&
//! target/release/flashsale-restore-bench --json bench/restore.json`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use rust_decimal::Decimal;
use serde::Serialize;

use flashsale_admin::topics::create_topics as create;
use flashsale_runtime::config::{KafkaArgs, RegistryArgs, TopicArgs};
use flashsale_runtime::kafka::{assign_consumer_config, producer_config};
use flashsale_schemas::partition::partition_for;
use flashsale_schemas::registry::{Contract, ContractTopics};
use flashsale_schemas::{
    ConfigureSale, ProductId, PurchaseRequest, Request, RequestId, SaleTerms, UserId,
};

/// Both implementations' consumer session timeout (ours: runtime/src/kafka.rs;
/// the peer gets it explicitly): a killed member is noticed after it.
const SESSION_TIMEOUT_MS: u64 = 10_000;
/// Longest wait for a broker, registry or process call that should be quick.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopped process gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Measures how long a killed partition owner takes to be replaced, ours
/// against the Kafka Streams peer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Which implementation(s) to measure.
    #[arg(long, value_enum, default_value_t = SystemArg::All)]
    system: SystemArg,
    /// Purchase requests written into the partition.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Products (all on partition 0).
    #[arg(long, default_value_t = 1_000)]
    products: u64,
    /// Partitions of the restore benchmark's topics.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Snapshot interval given to our processor, in records.
    #[arg(long, default_value_t = 50_000)]
    snapshot_every_records: u64,
    /// Skip ours' restore by replaying the whole log (the older comparison).
    #[arg(long)]
    skip_whole_log: bool,
    /// The processor binary (default: next to this one).
    #[arg(long)]
    processor_bin: Option<PathBuf>,
    /// The peer's launcher, run as `PEER run` (builds the peer if needed).
    #[arg(long, default_value = "dev/peer")]
    peer: PathBuf,
    /// Where each peer instance gets a fresh state dir of its own.
    #[arg(long, default_value = ".dev/peer-state")]
    peer_state_dir: PathBuf,
    /// Where the processes' logs go.
    #[arg(long, default_value = ".dev/logs")]
    log_dir: PathBuf,
    /// Also write the figures to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Longest wait for any phase, in seconds.
    #[arg(long, default_value_t = 1_800)]
    phase_timeout_s: u64,
}

/// The `--system` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SystemArg {
    /// Ours: snapshot + log tail, replacement processor.
    Ours,
    /// The peer, no standby: replacement instance, changelog restore.
    KstreamsStandby0,
    /// The peer, one standby replica: the standby takes over.
    KstreamsStandby1,
    /// All three, in this order.
    All,
}

/// Names of the restore benchmark's topics and groups.
struct Topics {
    /// Prefix of everything this run makes (`rb-<pid>`).
    run: String,
    /// The requests topic every system reads.
    requests: String,
    /// Ours' outcomes.
    outcomes: String,
    /// Ours' dead letters.
    dead_letter: String,
    /// Ours' snapshots.
    snapshots: String,
    /// Always empty: ours' whole-log restore reads it.
    empty_snapshots: String,
    /// Ours' consumer group.
    group: String,
}

impl Topics {
    /// The peer's names for one variant: its application ID (its group and
    /// its changelogs' prefix) and its own outcome topics.
    fn peer(&self, variant: &str) -> PeerNames {
        PeerNames {
            app: format!("{}-{variant}", self.run),
            outcomes: format!("{}.{variant}.outcomes", self.run),
            dead_letter: format!("{}.{variant}.dead-letter", self.run),
        }
    }
}

/// One peer variant's names.
struct PeerNames {
    /// `application.id`.
    app: String,
    /// Its outcomes topic.
    outcomes: String,
    /// Its dead-letter topic.
    dead_letter: String,
}

/// What one run needs besides its arguments.
struct Bench<'a> {
    /// The command line.
    args: &'a Args,
    /// The run's names.
    t: &'a Topics,
    /// Encodes probes, decodes outcomes.
    contract: &'a Contract,
    /// Sends the probes.
    producer: FutureProducer,
}

/// The figures of one system, as printed and written to `--json`.
#[derive(Debug, Serialize)]
struct Figures {
    /// `ours`, `kstreams-standby0` or `kstreams-standby1`.
    system: &'static str,
    /// Purchase requests in the partition.
    records: u64,
    /// Records in partition 0 when this system started (sale commands and
    /// earlier systems' probes included).
    log_records: i64,
    /// The first owner's time to decide and commit the whole partition,
    /// start-up included, in seconds.
    decide_s: f64,
    /// SIGKILL of the owner to the probe's outcome on the outcomes topic.
    kill_to_probe_outcome_ms: u64,
    /// SIGKILL to the new owner getting partition 0 (ours: its "partitions
    /// assigned"; the peer: its first restore of the task's stores, else
    /// the task starting), from the logs.
    handover_ms: Option<i64>,
    /// The restore alone (ours: "partition restored" elapsed_ms; the peer:
    /// first `restore started` to last `restore done` of the task's stores).
    restore_ms: Option<i64>,
    /// Records the restore read (ours: log tail replayed after the
    /// snapshot; the peer: changelog records).
    restore_records: Option<i64>,
    /// SIGKILL to the new owner ready to decide, from the logs.
    ready_ms: Option<i64>,
    /// Ours only: a restore by replaying the whole log, in ms.
    whole_log_restore_ms: Option<i64>,
    /// How the partition changed hands.
    rebalance_note: &'static str,
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
        run,
    };
    let result = run_all(&args, &t).await;
    // Always, also after a failure: nothing of this run may outlive it.
    if let Err(e) = cleanup(&args, &t).await {
        eprintln!("warning: cleanup of {} incomplete: {e:#}", t.run);
    }
    let figures = result?;
    print_table(&figures);
    if let Some(path) = &args.json {
        write_json(&args, path, &figures)?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}

/// Writes the log once, then measures every chosen system on it.
async fn run_all(args: &Args, t: &Topics) -> anyhow::Result<Vec<Figures>> {
    create_topics(args, t).await?;
    let topics = ContractTopics {
        requests: &t.requests,
        outcomes: &t.outcomes,
        dead_letter: &t.dead_letter,
        snapshots: &t.snapshots,
    };
    let contract = Contract::register(&args.registry.schema_registry_url, &topics).await?;
    let written = Instant::now();
    let high = write_log(args, t, &contract).await?;
    let write_s = written.elapsed().as_secs_f64();
    println!(
        "wrote {high} records to {} partition 0 in {write_s:.1} s",
        t.requests
    );
    let bench = Bench {
        args,
        t,
        contract: &contract,
        producer: producer_config(&args.kafka.brokers, &format!("{}-probe", t.run)).create()?,
    };
    let all = args.system == SystemArg::All;
    let mut figures = Vec::new();
    if all || args.system == SystemArg::Ours {
        figures.push(measure_ours(&bench).await?);
    }
    if all || args.system == SystemArg::KstreamsStandby0 {
        figures.push(measure_peer_replaced(&bench).await?);
    }
    if all || args.system == SystemArg::KstreamsStandby1 {
        figures.push(measure_peer_standby(&bench).await?);
    }
    Ok(figures)
}

/// Creates the restore benchmark's topics the way a deployment's are made
/// (`flashsale-admin create-topics`, idempotent): ours' set, once more for
/// the empty snapshots topic the whole-log restore reads, and the peer
/// variants' outcome topics.
async fn create_topics(args: &Args, t: &Topics) -> anyhow::Result<()> {
    let mut topics = TopicArgs {
        requests_topic: t.requests.clone(),
        outcomes_topic: t.outcomes.clone(),
        dead_letter_topic: t.dead_letter.clone(),
        snapshots_topic: t.snapshots.clone(),
    };
    create(&args.kafka.brokers, &topics, args.partitions, 1).await?;
    topics.snapshots_topic = t.empty_snapshots.clone();
    create(&args.kafka.brokers, &topics, args.partitions, 1).await?;
    topics.snapshots_topic = t.snapshots.clone();
    for variant in ["ks0", "ks1"] {
        let names = t.peer(variant);
        topics.outcomes_topic = names.outcomes;
        topics.dead_letter_topic = names.dead_letter;
        create(&args.kafka.brokers, &topics, args.partitions, 1).await?;
    }
    Ok(())
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

// ----------------------------------------------------------------- ours

/// Ours: decide, SIGKILL, a replacement processor, the probe; then the
/// older whole-log restore.
async fn measure_ours(b: &Bench<'_>) -> anyhow::Result<Figures> {
    let (args, t) = (b.args, b.t);
    println!("\n== ours: flashsale-processor, snapshot + log tail");
    let bin = processor_bin(args)?;
    let high = end_offset(args, &t.requests)?;
    let deciding = Instant::now();
    let first = spawn(args, &bin, t, &t.snapshots, "decide")?;
    wait_committed(args, &t.group, &t.requests, high).await?;
    let decide_s = deciding.elapsed().as_secs_f64();
    println!("processor decided {high} records in {decide_s:.1} s ({:.0} records/s, restore and start-up included)", high as f64 / decide_s);

    let tail = tail_outcomes(args, &t.outcomes)?;
    let (killed, killed_ms) = (Instant::now(), epoch_ms());
    first.sigkill()?;
    let replacement = spawn(args, &bin, t, &t.snapshots, "replace")?;
    send_probe(b, "ours").await?;
    let answered = await_probe(b, &tail, "ours").await?;
    let kill_to_probe = answered.duration_since(killed);
    let taken = ours_takeover(&replacement.log);
    let replacement_log = replacement.log.clone();
    // A clean stop: it leaves the group, so the next processor need not
    // wait out its session.
    replacement.stop()?;
    let restored = taken.restored.as_ref();
    let mut figures = Figures {
        system: "ours",
        records: args.records,
        log_records: high,
        decide_s,
        kill_to_probe_outcome_ms: kill_to_probe.as_millis() as u64,
        handover_ms: taken.assigned_ms.map(|at| at - killed_ms),
        restore_ms: restored.and_then(|f| f["elapsed_ms"].as_i64()),
        restore_records: restored.and_then(|f| Some(f["to"].as_i64()? - f["from"].as_i64()?)),
        ready_ms: taken.restored_ms.map(|at| at - killed_ms),
        whole_log_restore_ms: None,
        rebalance_note: "a new member joins the group at once; partition 0 moves to it when the \
            killed member's 10 s session expires (cooperative-sticky, classic protocol)",
    };
    if let Some(f) = restored {
        println!(
            "restore from snapshot + tail: {} ms (from offset {} to {})   ({})",
            f["elapsed_ms"],
            f["from"],
            f["to"],
            replacement_log.display()
        );
    }
    if !args.skip_whole_log {
        let (text, ms, log) = timed_restore(args, &bin, t, &t.empty_snapshots, "restore-full-log")?;
        println!(
            "restore by replaying the whole log: {text}   ({})",
            log.display()
        );
        figures.whole_log_restore_ms = ms;
    }
    Ok(figures)
}

fn processor_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.processor_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("flashsale-processor"))
}

/// Starts one of our processors on the run's topics, logging to
/// `<log-dir>/<group>-<phase>.log`.
fn spawn(
    args: &Args,
    bin: &Path,
    t: &Topics,
    snapshots: &str,
    phase: &str,
) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(&args.log_dir)?;
    let path = args.log_dir.join(format!("{}-{phase}.log", t.group));
    let log = std::fs::File::create(&path)?;
    let child = Command::new(bin)
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
        .spawn()?;
    Ok(Proc { child, log: path })
}

/// What a replacement processor's log says about its takeover of
/// partition 0.
struct OursTakeover {
    /// When it was assigned partition 0 (wall clock, ms).
    assigned_ms: Option<i64>,
    /// When it had restored partition 0 (wall clock, ms).
    restored_ms: Option<i64>,
    /// The "partition restored" line's fields.
    restored: Option<serde_json::Value>,
}

fn ours_takeover(log: &Path) -> OursTakeover {
    let mut taken = OursTakeover {
        assigned_ms: None,
        restored_ms: None,
        restored: None,
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for v in text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    {
        let at = v["timestamp"].as_str().and_then(rfc3339_utc_ms);
        let f = &v["fields"];
        if f["message"] == "partitions assigned"
            && taken.assigned_ms.is_none()
            && f["partitions"].as_str().is_some_and(lists_partition_0)
        {
            taken.assigned_ms = at;
        }
        if f["message"] == "partition restored" && f["partition"] == 0 && taken.restored.is_none() {
            taken.restored_ms = at;
            taken.restored = Some(f.clone());
        }
    }
    taken
}

/// Whether a logged partition list (`[0, 1, 2]`) holds partition 0.
fn lists_partition_0(list: &str) -> bool {
    list.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .any(|p| p.trim() == "0")
}

async fn wait_committed(args: &Args, group: &str, topic: &str, high: i64) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(args.phase_timeout_s);
    while Instant::now() < deadline {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let committed = consumer.committed_offsets(tpl, CALL_TIMEOUT)?;
        if let Some(Offset::Offset(o)) = committed.find_partition(topic, 0).map(|e| e.offset()) {
            if o >= high {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("group {group} did not commit offset {high} in time")
}

/// Starts a processor, waits for its restore of partition 0, stops it
/// (SIGTERM: it leaves the group, which cleanup then deletes at once);
/// returns the restore as text, its elapsed ms, and the log.
fn timed_restore(
    args: &Args,
    bin: &Path,
    t: &Topics,
    snapshots: &str,
    phase: &str,
) -> anyhow::Result<(String, Option<i64>, PathBuf)> {
    let child = spawn(args, bin, t, snapshots, phase)?;
    let deadline = Instant::now() + Duration::from_secs(args.phase_timeout_s);
    let found = loop {
        if let Some(line) = restore_line(&child.log) {
            break Some(line);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = child.log.clone();
    child.stop()?;
    let fields =
        found.ok_or_else(|| anyhow::anyhow!("no restore of partition 0 in {}", log.display()))?;
    let text = format!(
        "{} ms (from offset {} to {}, {} records replayed)",
        fields["elapsed_ms"],
        fields["from"],
        fields["to"],
        fields["to"].as_i64().unwrap_or(0) - fields["from"].as_i64().unwrap_or(0)
    );
    Ok((text, fields["elapsed_ms"].as_i64(), log))
}

fn restore_line(log: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["fields"].clone())
        .find(|f| f["message"] == "partition restored" && f["partition"] == 0)
}

// ----------------------------------------------------------------- the peer

/// The peer without standby: decide, SIGKILL, a replacement instance with a
/// fresh state dir, the probe.
async fn measure_peer_replaced(b: &Bench<'_>) -> anyhow::Result<Figures> {
    let (args, t) = (b.args, b.t);
    let names = t.peer("ks0");
    println!("\n== kstreams-standby0: the peer, no standby; a replacement instance restores the changelogs");
    let high = end_offset(args, &t.requests)?;
    let deciding = Instant::now();
    let first = spawn_peer(args, t, &names, "a", 0)?;
    wait_committed(args, &names.app, &t.requests, high).await?;
    let decide_s = deciding.elapsed().as_secs_f64();
    println!(
        "peer decided {high} records in {decide_s:.1} s ({:.0} records/s, start-up included)",
        high as f64 / decide_s
    );

    let tail = tail_outcomes(args, &names.outcomes)?;
    let (killed, killed_ms) = (Instant::now(), epoch_ms());
    first.sigkill()?;
    let replacement = spawn_peer(args, t, &names, "b", 0)?;
    send_probe(b, "ks0").await?;
    let answered = await_probe(b, &tail, "ks0").await?;
    let taken = peer_takeover(&replacement.log, killed_ms);
    println!("new owner's log: {}", replacement.log.display());
    replacement.stop()?;
    let measured = Measured {
        log_records: high,
        decide_s,
        kill_to_probe: answered.duration_since(killed),
        killed_ms,
    };
    Ok(peer_figures(
        "kstreams-standby0",
        args,
        &measured,
        &taken,
        "a new instance (fresh state dir) joins at once; the task moves to it when the killed \
         member's 10 s session expires, then its stores are restored from the changelogs",
    ))
}

/// The peer with one standby: two instances; once the standby of
/// partition 0 has caught up, SIGKILL the active owner, the probe.
async fn measure_peer_standby(b: &Bench<'_>) -> anyhow::Result<Figures> {
    let (args, t) = (b.args, b.t);
    let names = t.peer("ks1");
    println!("\n== kstreams-standby1: the peer, two instances, one standby replica takes over");
    let high = end_offset(args, &t.requests)?;
    let deciding = Instant::now();
    let pair = [
        spawn_peer(args, t, &names, "a", 1)?,
        spawn_peer(args, t, &names, "b", 1)?,
    ];
    wait_committed(args, &names.app, &t.requests, high).await?;
    let decide_s = deciding.elapsed().as_secs_f64();
    println!("peer decided {high} records in {decide_s:.1} s ({:.0} records/s, start-up and standby included)", high as f64 / decide_s);
    let (owner, standby) = await_standby_caught_up(args, &names, pair).await?;

    let tail = tail_outcomes(args, &names.outcomes)?;
    let (killed, killed_ms) = (Instant::now(), epoch_ms());
    owner.sigkill()?;
    send_probe(b, "ks1").await?;
    let answered = await_probe(b, &tail, "ks1").await?;
    let taken = peer_takeover(&standby.log, killed_ms);
    println!("new owner's log: {}", standby.log.display());
    standby.stop()?;
    let measured = Measured {
        log_records: high,
        decide_s,
        kill_to_probe: answered.duration_since(killed),
        killed_ms,
    };
    Ok(peer_figures(
        "kstreams-standby1",
        args,
        &measured,
        &taken,
        "no new member: when the killed member's 10 s session expires the surviving instance, \
         whose standby had caught up, is made the task's active owner",
    ))
}

/// Starts one peer instance of `names.app` with a fresh state dir of its
/// own, logging to `<log-dir>/<app>-<instance>.log`.
fn spawn_peer(
    args: &Args,
    t: &Topics,
    names: &PeerNames,
    instance: &str,
    standbys: u32,
) -> anyhow::Result<Proc> {
    let state = std::path::absolute(
        args.peer_state_dir
            .join(format!("{}-{instance}", names.app)),
    )?;
    // Never another instance's or an earlier run's stores: a replacement
    // machine starts empty.
    if state.exists() {
        std::fs::remove_dir_all(&state)?;
    }
    std::fs::create_dir_all(&args.log_dir)?;
    let path = args.log_dir.join(format!("{}-{instance}.log", names.app));
    let log = std::fs::File::create(&path)?;
    let child = Command::new(&args.peer)
        .arg("run")
        .env("FLASHSALE_BROKERS", &args.kafka.brokers)
        .env(
            "FLASHSALE_SCHEMA_REGISTRY_URL",
            &args.registry.schema_registry_url,
        )
        .env("FLASHSALE_REQUESTS_TOPIC", &t.requests)
        .env("FLASHSALE_OUTCOMES_TOPIC", &names.outcomes)
        .env("FLASHSALE_DEAD_LETTER_TOPIC", &names.dead_letter)
        .env("FLASHSALE_PEER_APPLICATION_ID", &names.app)
        .env("FLASHSALE_PEER_STATE_DIR", &state)
        .env("FLASHSALE_PEER_GUARANTEE", "exactly_once_v2")
        .env("FLASHSALE_PEER_STANDBY_REPLICAS", standbys.to_string())
        .env(
            "FLASHSALE_PEER_SESSION_TIMEOUT_MS",
            SESSION_TIMEOUT_MS.to_string(),
        )
        .env("FLASHSALE_PEER_AUTO_OFFSET_RESET", "earliest")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()?;
    Ok(Proc { child, log: path })
}

/// Waits until exactly one of the two instances is the active owner of
/// partition 0 and the other's standby of it has reached the end of every
/// changelog; returns (owner, standby).
async fn await_standby_caught_up(
    args: &Args,
    names: &PeerNames,
    pair: [Proc; 2],
) -> anyhow::Result<(Proc, Proc)> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.phase_timeout_s);
    while Instant::now() < deadline {
        let owns = [
            owns_partition_0(&pair[0].log),
            owns_partition_0(&pair[1].log),
        ];
        if owns[0] != owns[1] {
            let standby = usize::from(owns[0]);
            let ends = changelog_ends(args, &names.app)?;
            if !ends.is_empty() && standby_caught_up(&pair[standby].log, &ends) {
                println!(
                    "standby of partition 0 caught up with {} changelogs ({} s after the decisions were committed)",
                    ends.len(),
                    started.elapsed().as_secs()
                );
                let [a, b] = pair;
                return Ok(if standby == 1 { (a, b) } else { (b, a) });
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("the standby of partition 0 did not catch up in time")
}

/// Whether the instance's latest word on task 0_0 is that it decides it.
fn owns_partition_0(log: &Path) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut owns = false;
    for line in text.lines() {
        if line.contains("task 0_0 active:") {
            owns = true;
        } else if line.contains("task 0_0 closed") {
            owns = false;
        }
    }
    owns
}

/// Partition 0's end offset in each of the application's changelog topics,
/// by store name.
fn changelog_ends(args: &Args, app: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.brokers)
        .create()?;
    let metadata = consumer.fetch_metadata(None, CALL_TIMEOUT)?;
    let prefix = format!("{app}-");
    let mut ends = Vec::new();
    for topic in metadata.topics() {
        let store = topic
            .name()
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_suffix("-changelog"));
        if let Some(store) = store {
            let (_, high) = consumer.fetch_watermarks(topic.name(), 0, CALL_TIMEOUT)?;
            ends.push((store.to_string(), high));
        }
    }
    Ok(ends)
}

/// Whether the standby's newest logged position in each store reaches the
/// changelog's last record: the end offset minus 2, as under exactly-once
/// every changelog ends with a transaction's commit marker.
fn standby_caught_up(log: &Path, ends: &[(String, i64)]) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    ends.iter().all(|(store, end)| {
        let position = text
            .lines()
            .filter_map(|l| peer_fields(l, "standby at:"))
            .filter(|f| {
                field(f, "store") == Some(store.as_str()) && field(f, "partition") == Some("0")
            })
            .filter_map(|f| field(&f, "offset")?.parse::<i64>().ok())
            .next_back();
        *end == 0 || position.is_some_and(|p| p >= end - 2)
    })
}

/// What the new owner's log says about its takeover of partition 0 after
/// the kill (wall-clock ms).
struct PeerTakeover {
    /// The first `restore started` of one of the task's stores.
    restore_started_ms: Option<i64>,
    /// The last `restore done` of one of them.
    restore_done_ms: Option<i64>,
    /// Changelog records the restore read, over all stores.
    restored_records: Option<i64>,
    /// `task 0_0 active`: the processor is ready to decide.
    active_ms: Option<i64>,
}

fn peer_takeover(log: &Path, since_ms: i64) -> PeerTakeover {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut taken = PeerTakeover {
        restore_started_ms: None,
        restore_done_ms: None,
        restored_records: None,
        active_ms: None,
    };
    let at = |f: &[(&str, &str)]| {
        field(f, "at_ms")?
            .parse::<i64>()
            .ok()
            .filter(|&at| at >= since_ms)
    };
    for line in text.lines() {
        if let Some(f) =
            peer_fields(line, "restore started:").filter(|f| field(f, "partition") == Some("0"))
        {
            taken.restore_started_ms = taken.restore_started_ms.or(at(&f));
        }
        if let Some(f) =
            peer_fields(line, "restore done:").filter(|f| field(f, "partition") == Some("0"))
        {
            if let Some(done) = at(&f) {
                taken.restore_done_ms = Some(done);
                let records = field(&f, "records").and_then(|r| r.parse::<i64>().ok());
                taken.restored_records =
                    Some(taken.restored_records.unwrap_or(0) + records.unwrap_or(0));
            }
        }
        if let Some(f) = peer_fields(line, "task 0_0 active:") {
            taken.active_ms = taken.active_ms.or(at(&f));
        }
    }
    taken
}

/// The `key=value` pairs after `marker` in a peer log line (none when the
/// line has no such marker).
fn peer_fields<'a>(line: &'a str, marker: &str) -> Option<Vec<(&'a str, &'a str)>> {
    let (_, rest) = line.split_once(marker)?;
    Some(
        rest.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect(),
    )
}

fn field<'a>(fields: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// What every system's measurement has in common.
struct Measured {
    /// Records in partition 0 when the system started.
    log_records: i64,
    /// The first owner's time to decide everything, in seconds.
    decide_s: f64,
    /// SIGKILL to the probe's outcome.
    kill_to_probe: Duration,
    /// The SIGKILL, by the wall clock (ms), to place the log lines.
    killed_ms: i64,
}

fn peer_figures(
    system: &'static str,
    args: &Args,
    m: &Measured,
    taken: &PeerTakeover,
    rebalance_note: &'static str,
) -> Figures {
    Figures {
        system,
        records: args.records,
        log_records: m.log_records,
        decide_s: m.decide_s,
        kill_to_probe_outcome_ms: m.kill_to_probe.as_millis() as u64,
        handover_ms: taken
            .restore_started_ms
            .or(taken.active_ms)
            .map(|at| at - m.killed_ms),
        restore_ms: taken
            .restore_started_ms
            .zip(taken.restore_done_ms)
            .map(|(started, done)| done - started),
        restore_records: taken.restored_records,
        ready_ms: taken.active_ms.map(|at| at - m.killed_ms),
        whole_log_restore_ms: None,
        rebalance_note,
    }
}

// ----------------------------------------------------------------- common

/// A child process of the bench (a processor or a peer instance), killed
/// when dropped, so that no error path leaves one running.
struct Proc {
    /// The process.
    child: Child,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl Proc {
    /// SIGKILL: a crash, no shutdown at all.
    fn sigkill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, SIGKILL after a grace period: a stop that leaves the group
    /// at once, so the group can be deleted afterwards.
    fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.sigkill()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Partition 0's end offset.
fn end_offset(args: &Args, topic: &str) -> anyhow::Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.brokers)
        .create()?;
    Ok(consumer.fetch_watermarks(topic, 0, CALL_TIMEOUT)?.1)
}

/// A read_committed consumer over every partition of `topic`, from its
/// current end: it sees only what is decided from now on.
fn tail_outcomes(args: &Args, topic: &str) -> anyhow::Result<StreamConsumer> {
    let mut config = assign_consumer_config(
        &args.kafka.brokers,
        &format!("rb-{}-tail", std::process::id()),
    );
    config.set("enable.partition.eof", "false");
    let consumer: StreamConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..args.partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, CALL_TIMEOUT)?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

fn probe_id(t: &Topics, system: &str) -> String {
    format!("{}-probe-{system}", t.run)
}

/// Produces the probe purchase to partition 0.
async fn send_probe(b: &Bench<'_>, system: &str) -> anyhow::Result<()> {
    let products = products(b.args);
    let product = products
        .first()
        .ok_or_else(|| anyhow::anyhow!("no product on partition 0"))?;
    let probe = Request::Purchase(PurchaseRequest {
        request_id: RequestId::parse(&probe_id(b.t, system))?,
        user_id: UserId::parse("rb-probe-user")?,
        product_id: product.clone(),
        quantity: 1,
        received_at_ms: b.args.records as i64,
    });
    let payload = b.contract.encode_request(&probe)?;
    let key = product.to_string();
    let delivery = b
        .producer
        .send(
            FutureRecord::to(&b.t.requests)
                .key(key.as_str())
                .payload(payload.as_slice()),
            CALL_TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e)?;
    anyhow::ensure!(
        delivery.partition == 0,
        "the probe landed on partition {}",
        delivery.partition
    );
    Ok(())
}

/// Reads the outcomes until the probe's; returns when it was read.
async fn await_probe(
    b: &Bench<'_>,
    tail: &StreamConsumer,
    system: &str,
) -> anyhow::Result<Instant> {
    let probe = probe_id(b.t, system);
    let deadline = Instant::now() + Duration::from_secs(b.args.phase_timeout_s);
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tail.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => {
                eprintln!("outcomes consumer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Ok(m)) => {
                let read = Instant::now();
                if let Some(payload) = m.payload() {
                    if let Ok(o) = b.contract.decode_outcome(payload).await {
                        if o.request_id.as_str() == probe {
                            return Ok(read);
                        }
                    }
                }
            }
        }
    }
    anyhow::bail!("no outcome for the probe {probe} in time")
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch of a UTC RFC 3339 time as `tracing` writes
/// it (`2026-12-04T19:39:33.944047Z`); None for any other shape.
fn rfc3339_utc_ms(s: &str) -> Option<i64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (t.next()??, t.next()??, t.next()??);
    let ms = format!("{fraction:0<3}").get(..3)?.parse::<i64>().ok()?;
    let days = days_from_civil(year, month, day);
    Some((((days * 24 + hour) * 60 + minute) * 60 + second) * 1_000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

// ----------------------------------------------------------------- output

fn ms(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

fn print_table(figures: &[Figures]) {
    println!(
        "\n{:<18} {:>11} {:>9} {:>13} {:>10} {:>22} {:>10}",
        "system", "log records", "decide s", "kill→probe", "handover", "restore (records)", "ready"
    );
    for f in figures {
        let restore = match (f.restore_ms, f.restore_records) {
            (Some(ms), Some(r)) => format!("{ms} ms ({r})"),
            (Some(ms), None) => format!("{ms} ms"),
            _ => "-".to_string(),
        };
        println!(
            "{:<18} {:>11} {:>9.1} {:>10} ms {:>10} {:>22} {:>10}",
            f.system,
            f.log_records,
            f.decide_s,
            f.kill_to_probe_outcome_ms,
            ms(f.handover_ms),
            restore,
            ms(f.ready_ms)
        );
    }
    for f in figures {
        if let Some(whole) = f.whole_log_restore_ms {
            println!(
                "{}: restore by replaying the whole log: {whole} ms",
                f.system
            );
        }
        println!("{}: {}", f.system, f.rebalance_note);
    }
}

fn write_json(args: &Args, path: &Path, figures: &[Figures]) -> anyhow::Result<()> {
    let doc = serde_json::json!({
        "records": args.records,
        "products": args.products,
        "partitions": args.partitions,
        "snapshot_every_records": args.snapshot_every_records,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "bench_build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "processor_bin": processor_bin(args)?,
        "results": figures,
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
    Ok(())
}

// ----------------------------------------------------------------- cleanup

/// Deletes what the run made: its topics (the peer's changelogs included),
/// consumer groups, registry subjects and the peer's state dirs.
async fn cleanup(args: &Args, t: &Topics) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.kafka.brokers)
        .create()?;
    let metadata = consumer.fetch_metadata(None, CALL_TIMEOUT)?;
    let mine = |name: &str| {
        name.starts_with(&format!("{}.", t.run)) || name.starts_with(&format!("{}-", t.run))
    };
    let doomed: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|x| x.name())
        .filter(|n| mine(n))
        .collect();
    if !doomed.is_empty() {
        for result in admin.delete_topics(&doomed, &options).await? {
            if let Err((topic, code)) = result {
                eprintln!("warning: deleting topic {topic}: {code}");
            }
        }
    }
    let groups = [t.group.clone(), t.peer("ks0").app, t.peer("ks1").app];
    delete_groups(&admin, &options, &groups).await;
    for variant in ["ks0", "ks1"] {
        for instance in ["a", "b"] {
            let dir = args
                .peer_state_dir
                .join(format!("{}-{instance}", t.peer(variant).app));
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    delete_subjects(args, &t.run).await?;
    println!(
        "deleted {} topics, the groups, subjects and state dirs of {}",
        doomed.len(),
        t.run
    );
    Ok(())
}

/// Deletes the groups; one whose killed member's session has not expired
/// yet is still "not empty": retried for up to twice the session timeout.
async fn delete_groups(
    admin: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
    groups: &[String],
) {
    use rdkafka::types::RDKafkaErrorCode;
    let mut left: Vec<&str> = groups.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_millis(2 * SESSION_TIMEOUT_MS);
    while !left.is_empty() {
        let Ok(results) = admin.delete_groups(&left, options).await else {
            break;
        };
        let busy: Vec<String> = results
            .into_iter()
            .filter_map(|r| match r {
                Err((g, RDKafkaErrorCode::NonEmptyGroup)) => Some(g),
                _ => None,
            })
            .collect();
        left.retain(|g| busy.iter().any(|b| b == g));
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    if !left.is_empty() {
        eprintln!("warning: consumer groups not deleted: {left:?}");
    }
}

/// Deletes the run's registry subjects (soft, then for good).
async fn delete_subjects(args: &Args, run: &str) -> anyhow::Result<()> {
    let base = args.registry.schema_registry_url.trim_end_matches('/');
    let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?;
    let subjects: Vec<String> = http
        .get(format!("{base}/subjects"))
        .send()
        .await?
        .json()
        .await?;
    for subject in subjects
        .iter()
        .filter(|s| s.starts_with(&format!("{run}.")))
    {
        for suffix in ["", "?permanent=true"] {
            http.delete(format!("{base}/subjects/{subject}{suffix}"))
                .send()
                .await?;
        }
    }
    Ok(())
}
