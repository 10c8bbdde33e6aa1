//! The broker's ceiling (issue #12): how many records per second of the
//! pipeline's own request size the broker alone takes and delivers, the
//! physical limit the pipeline is measured against (the pipeline cannot
//! decide requests faster than the broker accepts and hands them back).
//!
//! Per settings [`Variant`], on fresh scratch topics made by
//! `flashsale-admin`'s code:
//!
//! 1. **produce**: N purchase requests as fast as the producer accepts them,
//!    `acks=all` + idempotence; timed from the first send to the last
//!    delivery report, every record acknowledged;
//! 2. **consume**: a fresh consumer group reads those N records from the
//!    earliest offset; timed from the first record to the last (the group
//!    join is reported apart);
//! 3. **end to end** (optional): a new group on a new topic, then records
//!    produced at a fixed rate (open loop) while the group reads them; the
//!    latency runs from the record's *intended* send instant, carried in its
//!    request ID, to its arrival at the consumer.
//!
//! Clients: librdkafka's `BaseProducer` and `BaseConsumer`, each polled by a
//! dedicated thread: the cheapest path through rust-rdkafka (no future or
//! waker per record), so as little client CPU as possible competes with the
//! broker for the cores. Settings: the pipeline's own
//! ([`flashsale_runtime::kafka`]); [`Variant::BigBatch`] changes the
//! producer's batching and the consumer's fetch backoff, nothing else.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;

use flashsale_runtime::kafka::{group_consumer_config, producer_config};
use flashsale_schemas::avro::{self, SCHEMAS};
use flashsale_schemas::partition::partition_for;
use flashsale_schemas::wire::{self, HEADER_LEN};
use flashsale_schemas::{ProductId, PurchaseRequest, Request, RequestId, UserId};

/// Which client settings a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The pipeline's producer and group consumer unchanged
    /// (`producer_config`: `linger.ms=2`; `group_consumer_config`): the
    /// ceiling the pipeline's own clients can reach.
    Pipeline,
    /// Larger producer batches (`linger.ms=10`, up to 100 000 records per
    /// batch) and a consumer that does not pause its fetches for 1 s when
    /// its prefetch queue is full: what the broker takes and delivers at
    /// best.
    BigBatch,
}

impl Variant {
    /// Both variants, the pipeline's first.
    pub const ALL: [Variant; 2] = [Variant::Pipeline, Variant::BigBatch];

    /// The variant's name in tables, topic names and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Pipeline => "pipeline",
            Variant::BigBatch => "big-batch",
        }
    }
}

/// The producer settings of `variant`, then `extra` (`--producer-property`).
pub fn producer_settings(
    variant: Variant,
    brokers: &str,
    client_id: &str,
    extra: &[(String, String)],
) -> ClientConfig {
    // acks=all, idempotence, murmur2, linger 2 ms, no compression, 200 000
    // queued records, 30 s delivery timeout: what the ingress and the
    // processors produce with, so the ceiling is theirs.
    let mut c = producer_config(brokers, client_id);
    for (key, value) in variant_producer_overrides(variant) {
        c.set(key, value);
    }
    // An explicit experiment of the caller's, reported with the figures.
    for (key, value) in extra {
        c.set(key, value);
    }
    c
}

/// What `variant` changes in `producer_config`.
pub fn variant_producer_overrides(variant: Variant) -> Vec<(&'static str, &'static str)> {
    match variant {
        Variant::Pipeline => vec![],
        Variant::BigBatch => vec![
            // Wait up to 10 ms for a partition's batch to fill instead of
            // 2 ms: fewer, larger produce requests, the broker's cheapest
            // way in.
            ("linger.ms", "10"),
            // librdkafka's default record cap (10 000) would end a batch of
            // our ~80-byte records at ~0.8 MB; lift it so the byte cap
            // decides.
            ("batch.num.messages", "100000"),
            // The byte cap: librdkafka's largest batch (its default, stated
            // here because this variant relies on it), under the broker's
            // default max.message.bytes (1 MiB + 12).
            ("batch.size", "1000000"),
        ],
    }
}

/// What `variant` changes in `group_consumer_config`.
pub fn variant_consumer_overrides(variant: Variant) -> Vec<(&'static str, &'static str)> {
    match variant {
        Variant::Pipeline => vec![],
        // librdkafka stops fetching a partition for fetch.queue.backoff.ms
        // (default 1 s) whenever more than queued.min.messages (100 000)
        // of its records wait in the local queue. A reader draining a
        // backlog faster than that stalls on it and measures the pause,
        // not the broker: resume after 10 ms instead.
        Variant::BigBatch => vec![("fetch.queue.backoff.ms", "10")],
    }
}

/// The consumer settings of `variant`: the processors' group consumer
/// (cooperative-sticky, `read_committed`, a new group starts at the
/// earliest offset, `fetch.wait.max.ms=10`, nothing auto-committed: the
/// group is thrown away afterwards), the variant's changes, then `extra`
/// (`--consumer-property`).
pub fn consumer_settings(
    variant: Variant,
    brokers: &str,
    group: &str,
    extra: &[(String, String)],
) -> ClientConfig {
    let mut c = group_consumer_config(brokers, group, group);
    for (key, value) in variant_consumer_overrides(variant) {
        c.set(key, value);
    }
    // An explicit experiment of the caller's, reported with the figures.
    for (key, value) in extra {
        c.set(key, value);
    }
    c
}

/// Length of a hyphenated UUID.
const UUID_LEN: usize = 36;
/// Where a hyphenated UUID has its hyphens.
const UUID_HYPHENS: [usize; 4] = [8, 13, 18, 23];
/// Lower-case hex digits.
const HEX: &[u8; 16] = b"0123456789abcdef";
/// Schema ID framed into the template. The registry's real ID would do as
/// well: the frame holds any ID in the same 4 bytes, so the size is the same.
const TEMPLATE_SCHEMA_ID: u32 = 1;
/// Sequence number of the producer's untimed warm-up records.
const WARM_UP_SEQ: u64 = u64::MAX;
/// Longest the producer's warm-up may take.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(10);
/// The template's request ID, replaced in every record.
const TEMPLATE_REQUEST_ID: &str = "00000000-0000-4000-8000-000000000000";

/// One purchase request as the ingress writes it, and where its varying
/// fields sit: every record is a copy with its own request ID and product
/// written in place, so all records have the same size and no encoder runs
/// on the measured path.
#[derive(Debug, Clone)]
pub struct RecordShape {
    /// The Confluent-framed Avro value of a typical purchase.
    pub template: Vec<u8>,
    /// Byte offset of the 36-character request ID in `template`.
    request_id_at: usize,
    /// Byte offset of the product ID in `template`.
    product_at: usize,
    /// The product IDs, which are also the keys; all the same length.
    pub products: Vec<String>,
}

impl RecordShape {
    /// A typical purchase (request ID a UUID, user `user-12345`, product
    /// `phone-001`, quantity 1, received now), encoded with the contract's
    /// request schema and framed, over `products` product IDs
    /// `phone-000`, `phone-001`, ...
    pub fn purchase(products: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(products > 0, "at least one product");
        let width = (products - 1).to_string().len().max(3);
        let products: Vec<String> = (0..products)
            .map(|i| format!("phone-{i:0width$}"))
            .collect();
        let sample = products.get(1).or(products.first()).context("no product")?;
        let received_at_ms =
            i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
        let request = Request::Purchase(PurchaseRequest {
            request_id: RequestId::parse(TEMPLATE_REQUEST_ID)?,
            user_id: UserId::parse("user-12345")?,
            product_id: ProductId::parse(sample)?,
            quantity: 1,
            received_at_ms,
        });
        let body = avro::write_body(&SCHEMAS.request, avro::request_to_value(&request))?;
        let template = wire::frame(TEMPLATE_SCHEMA_ID, &body);
        // Proves the template is a request our processors would decode.
        let value = avro::read_body(&SCHEMAS.request, template.get(HEADER_LEN..).unwrap_or(&[]))?;
        let decoded = avro::request_from_value(&SCHEMAS.request, value)?;
        anyhow::ensure!(decoded == request, "template does not round-trip");
        let request_id_at = find(&template, TEMPLATE_REQUEST_ID.as_bytes())?;
        let product_at = find(&template, sample.as_bytes())?;
        Ok(Self {
            template,
            request_id_at,
            product_at,
            products,
        })
    }

    /// Bytes of every record's value.
    pub fn value_bytes(&self) -> usize {
        self.template.len()
    }

    /// Bytes of every record's key.
    pub fn key_bytes(&self) -> usize {
        self.products.first().map_or(0, String::len)
    }

    /// Writes record `seq` into `buf` (a copy of the template): product
    /// `product` or else `seq mod products`, request ID carrying `stamp_us`
    /// and `seq`. Returns the record's key.
    fn fill(
        &self,
        buf: &mut [u8],
        seq: u64,
        stamp_us: u64,
        product: Option<usize>,
    ) -> anyhow::Result<&str> {
        let index = match product {
            Some(i) => i,
            None => usize::try_from(seq % self.products.len() as u64)?,
        };
        let product = self.products.get(index).context("product index")?;
        let at = self.product_at;
        buf.get_mut(at..at + product.len())
            .context("record buffer too short for the product")?
            .copy_from_slice(product.as_bytes());
        let id = buf
            .get_mut(self.request_id_at..self.request_id_at + UUID_LEN)
            .context("record buffer too short for the request ID")?;
        write_uuid(id, stamp_us, seq);
        Ok(product)
    }

    /// The send stamp and sequence number carried by a consumed value.
    fn read(&self, value: &[u8]) -> Option<(u64, u64)> {
        read_uuid(value.get(self.request_id_at..self.request_id_at + UUID_LEN)?)
    }

    /// How many of `records` records land on each of `partitions`
    /// partitions (murmur2 of the key, as the producer partitions).
    pub fn partition_spread(&self, records: u64, partitions: i32) -> Vec<u64> {
        let mut counts = vec![0u64; usize::try_from(partitions).unwrap_or(0)];
        let n = self.products.len() as u64;
        for (i, product) in self.products.iter().enumerate() {
            // Record seq goes to product seq mod n.
            let share = records / n + u64::from((i as u64) < records % n);
            let p = usize::try_from(partition_for(product.as_bytes(), partitions)).unwrap_or(0);
            if let Some(c) = counts.get_mut(p) {
                *c += share;
            }
        }
        counts
    }
}

/// Offset of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> anyhow::Result<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .context("field not found in the encoded template")
}

/// The positions of a hyphenated UUID's 32 hex digits.
fn uuid_digits() -> impl Iterator<Item = usize> {
    (0..UUID_LEN).filter(|i| !UUID_HYPHENS.contains(i))
}

/// Writes `hi` then `lo` as the 32 hex digits of a UUID-shaped string
/// (hyphens kept): the request ID stays a valid, 36-character ID.
fn write_uuid(dst: &mut [u8], hi: u64, lo: u64) {
    let nibbles = (0..32u32).map(|k| {
        let word = if k < 16 { hi } else { lo };
        (word >> (4 * (15 - k % 16))) & 0xf
    });
    for (pos, nibble) in uuid_digits().zip(nibbles) {
        if let (Some(d), Some(&h)) = (dst.get_mut(pos), HEX.get(nibble as usize)) {
            *d = h;
        }
    }
}

/// Reads back what [`write_uuid`] wrote.
fn read_uuid(src: &[u8]) -> Option<(u64, u64)> {
    let mut words = [0u64; 2];
    for (k, pos) in uuid_digits().enumerate() {
        let digit = char::from(*src.get(pos)?).to_digit(16)?;
        let word = words.get_mut(k / 16)?;
        *word = (*word << 4) | u64::from(digit);
    }
    Some((words[0], words[1]))
}

/// Microseconds from `origin` to now.
fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// How fast records are offered to the producer.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each as soon as the producer takes it; stamped when sent.
    AsFastAsAccepted,
    /// Record `i` is due `i / rate` seconds after the start, whatever
    /// happened before (open loop); stamped with that due instant, so a
    /// stall shows in the latency of every record queued behind it.
    RatePerS(f64),
}

impl Pace {
    /// When record `seq` is due, if paced.
    fn due(self, start: Instant, seq: u64) -> Option<Instant> {
        match self {
            Pace::AsFastAsAccepted => None,
            Pace::RatePerS(rate) => Some(start + Duration::from_secs_f64(seq as f64 / rate)),
        }
    }
}

/// Counts delivery reports as librdkafka serves them (on the thread that
/// polls the producer).
struct DeliveryCount {
    /// Records acknowledged by the broker.
    delivered: AtomicU64,
    /// Records that failed for good.
    failed: AtomicU64,
    /// When the latest report arrived, µs after `origin`.
    last_us: AtomicU64,
    /// The run's clock origin.
    origin: Instant,
    /// The first failure's error, for the report.
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCount {}

impl ProducerContext for DeliveryCount {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
        self.last_us
            .store(micros_since(self.origin), Ordering::Relaxed);
    }
}

/// One produce run.
#[derive(Debug, Clone)]
pub struct ProduceJob {
    /// Producer settings.
    pub config: ClientConfig,
    /// Topic written.
    pub topic: String,
    /// The records.
    pub shape: Arc<RecordShape>,
    /// How many records.
    pub records: u64,
    /// How fast.
    pub pace: Pace,
    /// The run's clock origin (shared with the consumer for latencies).
    pub origin: Instant,
    /// Set on Ctrl-C: give up at once.
    pub stop: Arc<AtomicBool>,
    /// Longest the whole run may take.
    pub timeout: Duration,
}

/// What a produce run measured.
#[derive(Debug, Clone)]
pub struct ProduceFigures {
    /// Records acknowledged.
    pub records: u64,
    /// From the first send to the last delivery report, seconds.
    pub elapsed_s: f64,
    /// When the first record was sent.
    pub started_at: Instant,
}

/// Produces `job.records` records and waits for every delivery report.
/// Blocking: run it on a thread of its own.
pub fn produce(job: &ProduceJob) -> anyhow::Result<ProduceFigures> {
    let context = DeliveryCount {
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_us: AtomicU64::new(0),
        origin: job.origin,
        first_error: Mutex::new(None),
    };
    let producer: BaseProducer<DeliveryCount> = job.config.create_with_context(context)?;
    let deadline = Instant::now() + job.timeout;
    let warm = warm_up(&producer, job, deadline)?;
    let mut buf = job.shape.template.clone();
    let start = Instant::now();
    let start_us = micros_since(job.origin);
    for seq in 0..job.records {
        let due = job.pace.due(start, seq);
        if let Some(due) = due {
            wait_until(&producer, due);
        }
        let stamp = due.map_or_else(|| micros_since(job.origin), |d| micros(d, job.origin));
        let key = job.shape.fill(&mut buf, seq, stamp, None)?;
        send_one(&producer, job, key, &buf, deadline)?;
        // Serve delivery reports regularly so their callbacks keep up.
        if seq % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let delivered = await_reports(&producer, job, warm + job.records, deadline)?;
    let last_us = producer.context().last_us.load(Ordering::Relaxed);
    Ok(ProduceFigures {
        records: delivered.saturating_sub(warm),
        elapsed_s: last_us.saturating_sub(start_us) as f64 / 1e6,
        started_at: start,
    })
}

/// Sends one untimed record to every partition the run's keys reach and
/// waits for them, so the connection, the idempotent producer ID and each
/// partition's leader are in place before the clock starts. Returns how
/// many were sent. Consumers skip them (sequence [`WARM_UP_SEQ`]).
fn warm_up(
    producer: &BaseProducer<DeliveryCount>,
    job: &ProduceJob,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let partitions = producer
        .client()
        .fetch_metadata(Some(&job.topic), WARM_UP_TIMEOUT)?
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    let partitions = i32::try_from(partitions)?;
    anyhow::ensure!(partitions > 0, "topic {} has no partitions", job.topic);
    let mut buf = job.shape.template.clone();
    let mut sent = 0;
    for partition in 0..partitions {
        let product = job
            .shape
            .products
            .iter()
            .position(|p| partition_for(p.as_bytes(), partitions) == partition);
        if let Some(index) = product {
            let key = job.shape.fill(&mut buf, WARM_UP_SEQ, 0, Some(index))?;
            send_one(producer, job, key, &buf, deadline)?;
            sent += 1;
        }
    }
    await_reports(
        producer,
        job,
        sent,
        deadline.min(Instant::now() + WARM_UP_TIMEOUT),
    )?;
    Ok(sent)
}

/// Waits until `expected` delivery reports are in (all successes), serving
/// them; returns the number delivered.
fn await_reports(
    producer: &BaseProducer<DeliveryCount>,
    job: &ProduceJob,
    expected: u64,
    deadline: Instant,
) -> anyhow::Result<u64> {
    let context = producer.context();
    let reported =
        || context.delivered.load(Ordering::Relaxed) + context.failed.load(Ordering::Relaxed);
    while reported() < expected {
        check_running(job.stop.as_ref(), deadline, "waiting for delivery reports")?;
        producer.poll(Duration::from_millis(100));
    }
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = context.first_error.lock().ok().and_then(|e| e.clone());
        anyhow::bail!("{failed} records failed, first: {first:?}");
    }
    Ok(context.delivered.load(Ordering::Relaxed))
}

/// Microseconds from `origin` to `at`.
fn micros(at: Instant, origin: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
}

/// Sleeps until `due`, serving delivery reports meanwhile. Never spins:
/// the broker needs the cores.
fn wait_until(producer: &BaseProducer<DeliveryCount>, due: Instant) {
    loop {
        let gap = due.saturating_duration_since(Instant::now());
        if gap.is_zero() {
            return;
        }
        if gap >= Duration::from_millis(1) {
            // poll's timeout has millisecond resolution; it returns early
            // when it served a report, hence the loop.
            producer.poll(gap);
        } else {
            std::thread::sleep(gap);
        }
    }
}

/// Hands one record to the producer, waiting while its queue is full.
fn send_one(
    producer: &BaseProducer<DeliveryCount>,
    job: &ProduceJob,
    key: &str,
    value: &[u8],
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let record = BaseRecord::to(&job.topic).key(key).payload(value);
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // The local queue (queue.buffering.max.messages) is full:
                // the broker is the bottleneck, which is what we measure.
                check_running(job.stop.as_ref(), deadline, "producing")?;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Fails when Ctrl-C was pressed or the phase's time is up.
fn check_running(stop: &AtomicBool, deadline: Instant, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(!stop.load(Ordering::Relaxed), "interrupted while {what}");
    anyhow::ensure!(Instant::now() < deadline, "timed out while {what}");
    Ok(())
}

/// One consume run.
#[derive(Debug, Clone)]
pub struct ConsumeJob {
    /// Consumer settings (with the group ID).
    pub config: ClientConfig,
    /// Topic read.
    pub topic: String,
    /// Partitions of the topic: the group is ready when it owns them all.
    pub partitions: i32,
    /// The records' shape, to read their stamps.
    pub shape: Arc<RecordShape>,
    /// How many records to read (sequence numbers `0..records`).
    pub records: u64,
    /// The run's clock origin (shared with the producer).
    pub origin: Instant,
    /// Record each record's latency from its stamp.
    pub latencies: bool,
    /// Set on Ctrl-C: give up at once.
    pub stop: Arc<AtomicBool>,
    /// Longest the whole run may take.
    pub timeout: Duration,
}

/// What a consume run measured.
#[derive(Debug, Clone)]
pub struct ConsumeFigures {
    /// Distinct records read.
    pub records: u64,
    /// Records read again or not ours (must be 0 for a valid run).
    pub extra: u64,
    /// From subscribing to the first record, seconds (the group join).
    pub join_s: f64,
    /// From the first record to the last, seconds.
    pub read_s: f64,
    /// When the last record arrived.
    pub last_at: Instant,
    /// Latency from stamp to arrival, µs, when asked for.
    pub latency_us: Option<Histogram<u64>>,
}

/// Progress of a consume run.
struct Reading {
    /// Which sequence numbers have been read, one bit each.
    seen: Vec<u64>,
    /// How many distinct ones.
    distinct: u64,
    /// Repeats and foreign records.
    extra: u64,
    /// When the first record arrived.
    first: Option<Instant>,
    /// When the latest record arrived.
    last: Option<Instant>,
    /// Latencies, µs.
    latency_us: Option<Histogram<u64>>,
}

impl Reading {
    /// Counts one consumed value.
    fn record(&mut self, job: &ConsumeJob, value: &[u8]) {
        let now = Instant::now();
        let Some((stamp_us, seq)) = job.shape.read(value) else {
            self.extra += 1;
            return;
        };
        if seq == WARM_UP_SEQ {
            return;
        }
        self.first.get_or_insert(now);
        self.last = Some(now);
        let (word, bit) = (usize::try_from(seq / 64).unwrap_or(usize::MAX), seq % 64);
        match self.seen.get_mut(word) {
            Some(w) if seq < job.records && *w & (1 << bit) == 0 => {
                *w |= 1 << bit;
                self.distinct += 1;
            }
            _ => self.extra += 1,
        }
        if let Some(h) = self.latency_us.as_mut() {
            h.saturating_record(micros(now, job.origin).saturating_sub(stamp_us).max(1));
        }
    }
}

/// Joins a fresh group on `job.topic` and reads until every record
/// `0..job.records` has arrived; `on_ready` runs once the group owns every
/// partition. Blocking: run it on a thread of its own.
pub fn consume(job: &ConsumeJob, mut on_ready: impl FnMut()) -> anyhow::Result<ConsumeFigures> {
    let consumer: BaseConsumer = job.config.create()?;
    consumer.subscribe(&[job.topic.as_str()])?;
    let subscribed = Instant::now();
    let deadline = subscribed + job.timeout;
    let mut ready = false;
    let mut reading = Reading {
        seen: vec![0; usize::try_from(job.records.div_ceil(64))?],
        distinct: 0,
        extra: 0,
        first: None,
        last: None,
        latency_us: job
            .latencies
            .then(|| Histogram::new_with_bounds(1, 3_600_000_000, 3))
            .transpose()?,
    };
    while reading.distinct < job.records {
        check_running(job.stop.as_ref(), deadline, "consuming")?;
        // Asked only until the group is ready: the call copies the list.
        if !ready && consumer.assignment()?.count() == usize::try_from(job.partitions)? {
            ready = true;
            on_ready();
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => reading.record(job, m.payload().unwrap_or(&[])),
            // Transient (e.g. a partition's leader moving): the deadline
            // bounds how long they may last.
            Some(Err(e)) => eprintln!("consumer error (continuing): {e}"),
        }
    }
    let first = reading.first.unwrap_or(subscribed);
    let last_at = reading.last.unwrap_or(first);
    Ok(ConsumeFigures {
        last_at,
        records: reading.distinct,
        extra: reading.extra,
        join_s: first.duration_since(subscribed).as_secs_f64(),
        read_s: last_at.duration_since(first).as_secs_f64(),
        latency_us: reading.latency_us,
    })
}

/// How fast the end-to-end phase produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum E2eRate {
    /// This fraction of the variant's measured produce rate.
    Load(f64),
    /// This many records per second.
    PerS(f64),
    /// As fast as the producer accepts (latency then includes the
    /// producer's local queue).
    Max,
}

/// What to measure, for every variant alike.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Bootstrap brokers.
    pub brokers: String,
    /// Partitions of the scratch topics (the pipeline's: 8).
    pub partitions: i32,
    /// The records.
    pub shape: Arc<RecordShape>,
    /// Records of the produce and consume phases.
    pub records: u64,
    /// Records of the end-to-end phase; `None`: skip it.
    pub e2e_records: Option<u64>,
    /// Pace of the end-to-end phase.
    pub e2e_rate: E2eRate,
    /// Longest any phase may take.
    pub phase_timeout: Duration,
    /// Producer settings set after the variant's (experiments only).
    pub producer_extra: Vec<(String, String)>,
    /// Consumer settings set after the pipeline's (experiments only).
    pub consumer_extra: Vec<(String, String)>,
    /// Prefix of every scratch topic and group of this run.
    pub run_id: String,
    /// The run's clock origin.
    pub origin: Instant,
    /// Set on Ctrl-C.
    pub stop: Arc<AtomicBool>,
}

/// Topics and groups this run made, to delete at the end whatever happens.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Scratch topics (four per `create_topics` call).
    pub topics: Vec<String>,
    /// Consumer groups.
    pub groups: Vec<String>,
}

/// One variant's figures, as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct VariantFigures {
    /// Which producer settings.
    pub variant: Variant,
    /// Settings changed from the pipeline's `producer_config`: the
    /// variant's (none for `pipeline`), then `--producer-property`.
    pub producer_overrides: BTreeMap<String, String>,
    /// Settings changed from the pipeline's `group_consumer_config`: the
    /// variant's (none for `pipeline`), then `--consumer-property`.
    pub consumer_overrides: BTreeMap<String, String>,
    /// Records produced and consumed.
    pub records: u64,
    /// Bytes of each record's value (Confluent frame + Avro body).
    pub record_bytes: usize,
    /// Bytes of each record's key (a product ID).
    pub key_bytes: usize,
    /// Fewest records any partition received.
    pub partition_records_min: u64,
    /// Most records any partition received.
    pub partition_records_max: u64,
    /// Produce: first send to last acknowledgement, seconds.
    pub produce_s: f64,
    /// Produce: records acknowledged per second.
    pub produce_rps: f64,
    /// Produce: MiB of values per second (keys excluded, as
    /// `kafka-producer-perf-test` counts).
    pub produce_mbps: f64,
    /// Consume: subscribe to first record (group join), seconds.
    pub consume_join_s: f64,
    /// Consume: first record to last, seconds.
    pub consume_s: f64,
    /// Consume: records per second (join excluded).
    pub consume_rps: f64,
    /// Consume: MiB of values per second.
    pub consume_mbps: f64,
    /// End to end: records, if run.
    pub e2e_records: Option<u64>,
    /// End to end: the rate offered (`None`: as fast as accepted).
    pub e2e_target_rps: Option<f64>,
    /// End to end: records consumed per second, first send to last arrival.
    pub e2e_rps: Option<f64>,
    /// End to end: median intended-send-to-consume latency, ms.
    pub e2e_p50_ms: Option<f64>,
    /// End to end: 99th percentile latency, ms.
    pub e2e_p99_ms: Option<f64>,
    /// End to end: 99.9th percentile latency, ms.
    pub e2e_p999_ms: Option<f64>,
    /// End to end: worst latency, ms.
    pub e2e_max_ms: Option<f64>,
}

/// What the end-to-end phase measured.
struct E2eFigures {
    /// Records.
    records: u64,
    /// Offered rate, if paced.
    target_rps: Option<f64>,
    /// Consumed records per second.
    rps: f64,
    /// Latencies, µs.
    latency_us: Histogram<u64>,
}

/// A variant's settings, then the caller's (which win, as they are set
/// last), as a map for the report.
fn owned(variant: Vec<(&str, &str)>, extra: &[(String, String)]) -> BTreeMap<String, String> {
    variant
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .chain(extra.iter().cloned())
        .collect()
}

/// Values per second as MiB/s.
fn mib_per_s(records_per_s: f64, value_bytes: usize) -> f64 {
    records_per_s * value_bytes as f64 / (1024.0 * 1024.0)
}

/// `records / seconds`, 0 when no time passed.
fn rate(records: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        records as f64 / seconds
    } else {
        0.0
    }
}

/// Creates a scratch topic set named `{prefix}.*` with `flashsale-admin`'s
/// code (all four pipeline topics; only the requests topic is used) and
/// returns the requests topic.
async fn scratch_topics(
    plan: &Plan,
    prefix: &str,
    scratch: &mut Scratch,
) -> anyhow::Result<String> {
    let topics = flashsale_runtime::config::TopicArgs {
        requests_topic: format!("{prefix}.requests"),
        outcomes_topic: format!("{prefix}.outcomes"),
        dead_letter_topic: format!("{prefix}.dead-letter"),
        snapshots_topic: format!("{prefix}.snapshots"),
    };
    // Recorded first, so a half-done creation is cleaned up too.
    scratch.topics.extend([
        topics.requests_topic.clone(),
        topics.outcomes_topic.clone(),
        topics.dead_letter_topic.clone(),
        topics.snapshots_topic.clone(),
    ]);
    // Replication 1: the local stack has one broker. create_topics itself
    // waits out the moment a just-created topic shows no partitions yet.
    flashsale_admin::topics::create_topics(&plan.brokers, &topics, plan.partitions, 1).await?;
    Ok(topics.requests_topic)
}

/// A produce job on `topic` with `variant`'s settings.
fn produce_job(plan: &Plan, variant: Variant, topic: &str, records: u64, pace: Pace) -> ProduceJob {
    let client_id = format!("{}-producer", plan.run_id);
    ProduceJob {
        config: producer_settings(variant, &plan.brokers, &client_id, &plan.producer_extra),
        topic: topic.to_owned(),
        shape: Arc::clone(&plan.shape),
        records,
        pace,
        origin: plan.origin,
        stop: Arc::clone(&plan.stop),
        timeout: plan.phase_timeout,
    }
}

/// A consume job on `topic` with `variant`'s settings, in a new group named
/// `{run_id}-{variant}-{phase}`.
fn consume_job(
    plan: &Plan,
    variant: Variant,
    topic: &str,
    phase: &str,
    records: u64,
    scratch: &mut Scratch,
) -> ConsumeJob {
    let group = format!("{}-{}-{phase}", plan.run_id, variant.name());
    scratch.groups.push(group.clone());
    ConsumeJob {
        config: consumer_settings(variant, &plan.brokers, &group, &plan.consumer_extra),
        topic: topic.to_owned(),
        partitions: plan.partitions,
        shape: Arc::clone(&plan.shape),
        records,
        origin: plan.origin,
        latencies: false,
        stop: Arc::clone(&plan.stop),
        timeout: plan.phase_timeout,
    }
}

/// Runs a blocking measurement on a thread of its own.
async fn on_thread<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .context("measurement thread")?
}

/// Measures one variant: produce, consume, then (if planned) end to end.
pub async fn measure(
    plan: &Plan,
    variant: Variant,
    scratch: &mut Scratch,
) -> anyhow::Result<VariantFigures> {
    let topic = scratch_topics(
        plan,
        &format!("{}-{}", plan.run_id, variant.name()),
        scratch,
    )
    .await?;
    let job = produce_job(plan, variant, &topic, plan.records, Pace::AsFastAsAccepted);
    let produced = on_thread(move || produce(&job)).await?;
    let produce_rps = rate(produced.records, produced.elapsed_s);
    println!(
        "{}: produced {} records in {:.2} s",
        variant.name(),
        produced.records,
        produced.elapsed_s
    );

    let job = consume_job(plan, variant, &topic, "read", plan.records, scratch);
    let consumed = on_thread(move || consume(&job, || {})).await?;
    anyhow::ensure!(
        consumed.extra == 0,
        "consumer saw {} unexpected records",
        consumed.extra
    );
    println!(
        "{}: consumed {} records in {:.2} s (+{:.2} s group join)",
        variant.name(),
        consumed.records,
        consumed.read_s,
        consumed.join_s
    );

    let e2e = match plan.e2e_records {
        Some(records) => Some(end_to_end(plan, variant, records, produce_rps, scratch).await?),
        None => None,
    };
    Ok(figures(plan, variant, &produced, &consumed, e2e.as_ref()))
}

/// The figures of one variant's phases.
fn figures(
    plan: &Plan,
    variant: Variant,
    produced: &ProduceFigures,
    consumed: &ConsumeFigures,
    e2e: Option<&E2eFigures>,
) -> VariantFigures {
    let spread = plan.shape.partition_spread(plan.records, plan.partitions);
    let value_bytes = plan.shape.value_bytes();
    let produce_rps = rate(produced.records, produced.elapsed_s);
    let consume_rps = rate(consumed.records, consumed.read_s);
    let quantile_ms = |q: f64| e2e.map(|e| e.latency_us.value_at_quantile(q) as f64 / 1e3);
    VariantFigures {
        variant,
        producer_overrides: owned(variant_producer_overrides(variant), &plan.producer_extra),
        consumer_overrides: owned(variant_consumer_overrides(variant), &plan.consumer_extra),
        records: plan.records,
        record_bytes: value_bytes,
        key_bytes: plan.shape.key_bytes(),
        partition_records_min: spread.iter().copied().min().unwrap_or(0),
        partition_records_max: spread.iter().copied().max().unwrap_or(0),
        produce_s: produced.elapsed_s,
        produce_rps,
        produce_mbps: mib_per_s(produce_rps, value_bytes),
        consume_join_s: consumed.join_s,
        consume_s: consumed.read_s,
        consume_rps,
        consume_mbps: mib_per_s(consume_rps, value_bytes),
        e2e_records: e2e.map(|e| e.records),
        e2e_target_rps: e2e.and_then(|e| e.target_rps),
        e2e_rps: e2e.map(|e| e.rps),
        e2e_p50_ms: quantile_ms(0.5),
        e2e_p99_ms: quantile_ms(0.99),
        e2e_p999_ms: quantile_ms(0.999),
        e2e_max_ms: e2e.map(|e| e.latency_us.max() as f64 / 1e3),
    }
}

/// Produces and consumes at once on a fresh topic: the group joins first
/// (so the join is not in the latencies), then records are produced at the
/// planned pace while it reads them.
async fn end_to_end(
    plan: &Plan,
    variant: Variant,
    records: u64,
    produce_rps: f64,
    scratch: &mut Scratch,
) -> anyhow::Result<E2eFigures> {
    let target_rps = match plan.e2e_rate {
        E2eRate::Load(fraction) => Some((produce_rps * fraction).max(1.0)),
        E2eRate::PerS(rps) => Some(rps),
        E2eRate::Max => None,
    };
    let pace = target_rps.map_or(Pace::AsFastAsAccepted, Pace::RatePerS);
    let topic = scratch_topics(
        plan,
        &format!("{}-{}-e2e", plan.run_id, variant.name()),
        scratch,
    )
    .await?;
    let mut job = consume_job(plan, variant, &topic, "e2e", records, scratch);
    job.latencies = true;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready_tx = Some(ready_tx);
    let consumer = tokio::task::spawn_blocking(move || {
        consume(&job, || {
            if let Some(tx) = ready_tx.take() {
                // The receiver only goes away when the run is failing anyway.
                let _ = tx.send(());
            }
        })
    });
    let ready = tokio::time::timeout(plan.phase_timeout, ready_rx).await;
    if !matches!(ready, Ok(Ok(()))) {
        // The consumer failed (its error comes first) or never owned every
        // partition; either way it has stopped or stops at its deadline.
        consumer.await.context("consumer thread")??;
        anyhow::bail!("the end-to-end group never owned every partition");
    }
    let job = produce_job(plan, variant, &topic, records, pace);
    let produced = match on_thread(move || produce(&job)).await {
        Ok(p) => p,
        Err(e) => {
            // The consumer would otherwise wait for records that never come.
            plan.stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    let consumed = consumer.await.context("consumer thread")??;
    let elapsed_s = consumed
        .last_at
        .saturating_duration_since(produced.started_at)
        .as_secs_f64();
    println!(
        "{}: end to end, {records} records in {elapsed_s:.2} s",
        variant.name()
    );
    Ok(E2eFigures {
        records,
        target_rps,
        rps: rate(consumed.records, elapsed_s),
        latency_us: consumed.latency_us.context("no latencies recorded")?,
    })
}

/// Deletes the run's scratch topics and groups (only those).
pub async fn clean_up(brokers: &str, scratch: &Scratch) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let env = flashsale_testkit::Env {
        brokers: brokers.to_owned(),
        ..flashsale_testkit::Env::from_env()
    };
    let topics: Vec<&str> = scratch.topics.iter().map(String::as_str).collect();
    if !topics.is_empty() {
        flashsale_testkit::kafka::delete_topics(&env, &topics).await?;
    }
    let groups: Vec<&str> = scratch.groups.iter().map(String::as_str).collect();
    if groups.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_groups(&groups, &options).await? {
        match result {
            // A group that never committed may already be gone.
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((group, code)) => anyhow::bail!("deleting group {group}: {code}"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a record's request ID carries its stamp and sequence number
    /// and stays a valid 36-character ID.
    #[test]
    fn request_id_round_trips() {
        let mut id = TEMPLATE_REQUEST_ID.as_bytes().to_vec();
        write_uuid(&mut id, 0x0123_4567_89ab_cdef, 42);
        let text = std::str::from_utf8(&id).expect("ascii");
        assert_eq!(text, "01234567-89ab-cdef-0000-00000000002a");
        assert!(RequestId::parse(text).is_ok());
        assert_eq!(read_uuid(&id), Some((0x0123_4567_89ab_cdef, 42)));
        assert_eq!(read_uuid(b"not a uuid"), None);
    }

    /// Proves every record keeps the template's size and decodes as the
    /// purchase it stands for, with key = product ID.
    #[test]
    fn records_are_real_purchases_of_one_size() {
        let shape = RecordShape::purchase(100).expect("shape");
        assert_eq!(shape.key_bytes(), "phone-001".len());
        let mut buf = shape.template.clone();
        let key = shape
            .fill(&mut buf, 1234, 99, None)
            .expect("fill")
            .to_owned();
        assert_eq!(buf.len(), shape.value_bytes());
        let value = avro::read_body(&SCHEMAS.request, &buf[HEADER_LEN..]).expect("body");
        let Request::Purchase(p) =
            avro::request_from_value(&SCHEMAS.request, value).expect("request")
        else {
            panic!("not a purchase");
        };
        assert_eq!(key, "phone-034");
        assert_eq!(p.product_id.as_str(), key);
        assert_eq!(shape.read(&buf), Some((99, 1234)));
    }

    /// Proves the spread accounts for every record.
    #[test]
    fn spread_counts_every_record() {
        let shape = RecordShape::purchase(100).expect("shape");
        let spread = shape.partition_spread(1_000_003, 8);
        assert_eq!(spread.len(), 8);
        assert_eq!(spread.iter().sum::<u64>(), 1_000_003);
    }
}
