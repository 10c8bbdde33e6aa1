//! The processor loop.
//!
//! Delivery guarantee: **at-least-once emission, exactly-once effect.** For
//! each batch: poll records, decide them in log order, produce one outcome
//! (or one dead letter) per record; a batch's input offsets are committed
//! only once the broker has acknowledged every record of that batch and of
//! every older one (`acks=all`, idempotent producer). Up to
//! [`INFLIGHT_BATCHES_MAX`] batches await acknowledgement while the next is
//! decided, so deciding overlaps the broker's round trip; commits still
//! follow log order. A crash between produce and commit re-decides the tail
//! on restart; because [`crate::core`] is deterministic, the re-emitted
//! outcomes are identical and every consumer treats them as no-ops.
//!
//! Single writer: a partition's state exists only between its assignment and
//! its revocation. On assignment, before deciding anything, the state is
//! rebuilt by applying the partition's log up to the group's committed offset
//! without emitting ([`crate::replay`]). A paused "zombie" that resumes after
//! losing its partitions can only emit the same decisions as the new owner,
//! since both derive state from the same log prefix.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use flashsale_runtime::group::{rejoin, StallWatch};
use flashsale_runtime::kafka::{collect_batch, group_consumer_config, producer_config};
use flashsale_runtime::topics::partition_count;
use flashsale_schemas::avro::ContractError;
use flashsale_schemas::records::DeadLetterReason;
use flashsale_schemas::registry::Contract;
use flashsale_schemas::{DeadLetter, Outcome};

use crate::classify::{classify, Classified, ClassifyError, RawRecord};
use crate::config::ProcessorConfig;
use crate::metrics::ProcessorMetrics;
use crate::replay::{ReplayError, Replayer};
use crate::snapshot_store::{SnapshotStore, SnapshotStoreError};
use flashsale_core::{DedupeLimits, PartitionState, Position};

/// Broker round-trips (metadata, offsets) give up after this long.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the loop waits for a first record before looking at rebalances.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Flush produced records once this many await acknowledgement (memory bound).
const PENDING_DELIVERIES_MAX: usize = 20_000;
/// Decided batches awaiting the broker's acknowledgement while the next one
/// is decided. Bounds memory (with the batch size) and the work a crash
/// makes the next owner re-decide; commits wait for the oldest batch.
pub const INFLIGHT_BATCHES_MAX: usize = 4;
/// Attempts of a broker call (metadata, offsets) while the broker is away, 1 s apart.
const BROKER_CALL_ATTEMPTS_MAX: u32 = 60;
/// Retries of a produce refused because librdkafka's queue is full (5 ms apart).
const QUEUE_FULL_RETRIES_MAX: u32 = 2_000;

/// Why the loop stopped. Every variant is fatal for this process: the
/// in-memory state may be ahead of what was acknowledged, so the only safe
/// continuation is a restart that rebuilds state from the log (crash-only).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A replay read failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The registry stayed down.
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    /// An outcome could not be encoded (a bug: our own records).
    #[error("encoding: {0}")]
    Encode(#[from] ContractError),
    /// The broker refused or lost a produced record.
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The requests topic does not exist.
    #[error("topic {0} not found")]
    NoTopic(String),
    /// A snapshot could not be read or written.
    #[error(transparent)]
    Snapshot(#[from] SnapshotStoreError),
}

/// Runs a blocking broker call, retrying while the broker is unreachable
/// (a restart), a bounded number of times.
async fn broker_call<T>(
    what: &str,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, RunError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match tokio::task::block_in_place(&mut call) {
            Ok(v) => return Ok(v),
            Err(e) if attempt < BROKER_CALL_ATTEMPTS_MAX => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A change of this member's partitions, in the order librdkafka reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// Partitions added to this member.
    Assigned(Vec<i32>),
    /// Partitions taken away (revoked or lost).
    Revoked(Vec<i32>),
}

/// Consumer context that records rebalances for the loop to act on. The
/// callbacks run inside `recv()`, so the loop sees them before any record
/// fetched under the new assignment.
pub struct GroupContext {
    /// Topic whose partitions we track.
    topic: String,
    /// Rebalances not yet acted on, oldest first.
    events: Arc<Mutex<VecDeque<RebalanceEvent>>>,
}

impl GroupContext {
    fn push(&self, event: RebalanceEvent) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.push_back(event);
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = self.partitions(tpl);
            tracing::info!(?partitions, "partitions revoked");
            self.push(RebalanceEvent::Revoked(partitions));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions(tpl);
                tracing::info!(?partitions, "partitions assigned");
                self.push(RebalanceEvent::Assigned(partitions));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Produces outcomes and dead letters and tracks their acknowledgements.
struct Emitter {
    /// Idempotent, acks=all, murmur2 producer.
    producer: FutureProducer,
    /// Encodes records with the registered schema IDs.
    contract: Contract,
    /// Where outcomes go.
    outcomes_topic: String,
    /// Where refused records go.
    dead_letter_topic: String,
    /// Produced for the batch being decided, not yet acknowledged.
    pending: Vec<DeliveryFuture>,
    /// Sealed batches awaiting acknowledgement, oldest first.
    inflight: VecDeque<InFlight>,
    /// Counters.
    metrics: ProcessorMetrics,
}

/// A decided batch whose records the broker has not all acknowledged yet,
/// and the input offsets to commit once it has.
struct InFlight {
    /// Deliveries not yet seen to complete.
    deliveries: Vec<DeliveryFuture>,
    /// Next offsets of the batch's partitions.
    commits: TopicPartitionList,
}

/// A delivery's result as a loop error.
fn delivered(
    result: Result<
        rdkafka::producer::future_producer::OwnedDeliveryResult,
        futures::channel::oneshot::Canceled,
    >,
) -> Result<(), RunError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(RunError::Delivery(e.to_string())),
        Err(_) => Err(RunError::Delivery("delivery report dropped".into())),
    }
}

impl Emitter {
    async fn enqueue(&mut self, record: FutureRecord<'_, str, [u8]>) -> Result<(), RunError> {
        let mut record = record;
        for _ in 0..QUEUE_FULL_RETRIES_MAX {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push(delivery);
                    if self.pending.len() >= PENDING_DELIVERIES_MAX {
                        self.flush().await?;
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        Err(RunError::Delivery("producer queue stayed full".into()))
    }

    async fn outcome(&mut self, o: &Outcome) -> Result<(), RunError> {
        let payload = self.contract.encode_outcome(o)?;
        let topic = self.outcomes_topic.clone();
        let record = FutureRecord::to(&topic)
            .key(o.product_id.as_str())
            .payload(payload.as_slice());
        self.enqueue(record).await?;
        let (kind, status) = (o.kind.code(), o.status.code());
        let reason = o.reason.map_or("", |r| r.code());
        self.metrics
            .decisions
            .with_label_values(&[kind, status, reason])
            .inc();
        Ok(())
    }

    async fn dead_letter(&mut self, letter: &DeadLetter) -> Result<(), RunError> {
        let payload = self.contract.encode_dead_letter(letter)?;
        let partition = letter.source_partition.to_string();
        let offset = letter.source_offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(header("flashsale.dlq.reason", &letter.reason))
            .insert(header("flashsale.dlq.source.topic", &letter.source_topic))
            .insert(header("flashsale.dlq.source.partition", &partition))
            .insert(header("flashsale.dlq.source.offset", &offset));
        let topic = self.dead_letter_topic.clone();
        let key = letter.key.as_deref().map(String::from_utf8_lossy);
        let mut record = FutureRecord::to(&topic)
            .payload(payload.as_slice())
            .headers(headers);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        self.enqueue(record).await?;
        self.metrics
            .dead_letters
            .with_label_values(&[letter.reason.as_str()])
            .inc();
        Ok(())
    }

    /// Waits until every record of the batch being decided is acknowledged.
    async fn flush(&mut self) -> Result<(), RunError> {
        for delivery in self.pending.drain(..) {
            delivered(delivery.await)?;
        }
        Ok(())
    }

    /// Seals what was produced since the last seal as one in-flight batch
    /// whose input offsets are `commits`.
    fn seal(&mut self, commits: TopicPartitionList) {
        let deliveries = std::mem::take(&mut self.pending);
        self.inflight.push_back(InFlight {
            deliveries,
            commits,
        });
    }

    /// The commit lists of the oldest in-flight batches that are fully
    /// acknowledged, oldest first. Waits for the oldest batches while more
    /// than `keep_max` are in flight (0: wait for all).
    async fn settle(&mut self, keep_max: usize) -> Result<Vec<TopicPartitionList>, RunError> {
        let mut settled = Vec::new();
        loop {
            let must_wait = self.inflight.len() > keep_max;
            let Some(front) = self.inflight.front_mut() else {
                break;
            };
            if must_wait {
                for delivery in front.deliveries.drain(..) {
                    delivered(delivery.await)?;
                }
            } else {
                let mut i = 0;
                while i < front.deliveries.len() {
                    match (&mut front.deliveries[i]).now_or_never() {
                        Some(result) => {
                            delivered(result)?;
                            drop(front.deliveries.swap_remove(i));
                        }
                        None => i += 1,
                    }
                }
                if !front.deliveries.is_empty() {
                    break;
                }
            }
            if let Some(batch) = self.inflight.pop_front() {
                settled.push(batch.commits);
            }
        }
        Ok(settled)
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// What applying a record needs besides the state.
struct ApplyCtx<'a> {
    /// Decodes requests.
    contract: &'a Contract,
    /// Partitions of the requests topic, for the murmur2 ownership check.
    partition_count: i32,
    /// The requests topic, named in dead letters.
    source_topic: &'a str,
    /// Dedupe limits (deterministic configuration).
    limits: DedupeLimits,
    /// Counters.
    metrics: &'a ProcessorMetrics,
    /// Shutdown, for registry retries.
    cancel: &'a CancellationToken,
}

/// Applies one record to its partition's state, emitting its outcome or dead
/// letter when `emitter` is given (live) and silently otherwise (restore).
async fn apply(
    ctx: &ApplyCtx<'_>,
    state: &mut PartitionState,
    message: &OwnedMessage,
    emitter: Option<&mut Emitter>,
) -> Result<(), RunError> {
    let raw = RawRecord {
        key: message.key(),
        value: message.payload(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
    };
    let classified = classify(
        ctx.contract,
        ctx.partition_count,
        &raw,
        ctx.metrics,
        ctx.cancel,
    )
    .await?;
    match classified {
        Classified::Decide(request) => {
            let at = Position {
                partition: raw.partition,
                offset: raw.offset,
            };
            let outcome = state.decide(at, &request, ctx.limits);
            match emitter {
                Some(e) => e.outcome(&outcome).await?,
                None => ctx.metrics.replayed.inc(),
            }
        }
        Classified::Refuse { reason, detail } => {
            state.skip(raw.offset);
            if let Some(e) = emitter {
                tracing::warn!(reason = reason.code(), %detail, partition = raw.partition, offset = raw.offset, "record dead-lettered");
                e.dead_letter(&dead_letter(ctx.source_topic, &raw, reason, detail))
                    .await?;
            }
        }
    }
    Ok(())
}

fn dead_letter(
    topic: &str,
    raw: &RawRecord<'_>,
    reason: DeadLetterReason,
    detail: String,
) -> DeadLetter {
    DeadLetter {
        reason: reason.code().to_owned(),
        detail,
        source_topic: topic.to_owned(),
        source_partition: raw.partition,
        source_offset: raw.offset,
        source_timestamp_ms: raw.timestamp_ms,
        key: raw.key.map(<[u8]>::to_vec),
        value: raw.value.map(<[u8]>::to_vec),
    }
}

/// Applies `[from, to)` of a partition read outside the group.
async fn replay_range(
    replayer: &mut Replayer,
    ctx: &ApplyCtx<'_>,
    state: &mut PartitionState,
    mut emitter: Option<&mut Emitter>,
    (partition, from, to): (i32, i64, i64),
) -> Result<(), RunError> {
    replayer.start(ctx.source_topic, partition, from, to)?;
    while let Some(message) = replayer.next().await? {
        if message.offset() < state.next_offset {
            continue;
        }
        apply(ctx, state, &message, emitter.as_deref_mut()).await?;
    }
    // Offsets in [from, to) that the log does not hold are gaps; step over them.
    if state.next_offset < to {
        state.skip(to - 1);
    }
    Ok(())
}

/// One processor instance: a consumer-group member and its partitions' state.
pub struct Runner {
    /// Settings.
    cfg: ProcessorConfig,
    /// Registered schemas.
    contract: Contract,
    /// Group member on the requests topic.
    consumer: StreamConsumer<GroupContext>,
    /// Rebalances reported by the consumer's context.
    events: Arc<Mutex<VecDeque<RebalanceEvent>>>,
    /// Output side.
    emitter: Emitter,
    /// Reads partition history outside the group.
    replayer: Replayer,
    /// State of every partition owned and restored, by partition.
    partitions: HashMap<i32, PartitionState>,
    /// Partitions of the requests topic, refreshed on every assignment.
    partition_count: i32,
    /// Where snapshots go and come from.
    snapshots: SnapshotStore,
    /// Per owned partition: records since its last snapshot, and when it was.
    snapshot_due: HashMap<i32, (u64, Instant)>,
    /// Counters.
    metrics: ProcessorMetrics,
    /// Rejoins the group when it stalled with this member idle.
    stall_watch: Option<StallWatch>,
}

impl Runner {
    /// Creates the clients. Nothing is consumed until [`Runner::run`].
    pub fn new(
        cfg: ProcessorConfig,
        contract: Contract,
        metrics: ProcessorMetrics,
    ) -> Result<Self, RunError> {
        let instance = cfg.instance();
        let cfg_stall_watch = cfg.kafka.stall_watch(&cfg.topics.requests_topic);
        let events = Arc::new(Mutex::new(VecDeque::new()));
        let context = GroupContext {
            topic: cfg.topics.requests_topic.clone(),
            events: events.clone(),
        };
        let consumer: StreamConsumer<GroupContext> =
            group_consumer_config(&cfg.kafka.brokers, &cfg.group_id, &instance)
                .create_with_context(context)?;
        let producer: FutureProducer = producer_config(&cfg.kafka.brokers, &instance).create()?;
        let snapshot_reader = Replayer::new(
            &cfg.kafka.brokers,
            &format!("{instance}-snapshots"),
            Duration::from_millis(cfg.replay_timeout_ms),
        )?;
        let snapshots = SnapshotStore::new(
            producer.clone(),
            contract.clone(),
            (&cfg.topics.snapshots_topic, &cfg.topics.requests_topic),
            cfg.snapshot_chunk_bytes,
            snapshot_reader,
        );
        let replayer = Replayer::new(
            &cfg.kafka.brokers,
            &format!("{instance}-replay"),
            Duration::from_millis(cfg.replay_timeout_ms),
        )?;
        let emitter = Emitter {
            producer,
            contract: contract.clone(),
            outcomes_topic: cfg.topics.outcomes_topic.clone(),
            dead_letter_topic: cfg.topics.dead_letter_topic.clone(),
            pending: Vec::new(),
            inflight: VecDeque::new(),
            metrics: metrics.clone(),
        };
        Ok(Self {
            cfg,
            contract,
            consumer,
            events,
            emitter,
            replayer,
            partitions: HashMap::new(),
            partition_count: 0,
            snapshots,
            snapshot_due: HashMap::new(),
            metrics,
            stall_watch: cfg_stall_watch,
        })
    }

    /// Runs until `cancel` fires or a fatal error. On cancel the batch in
    /// hand is finished (produced, acknowledged, committed) before return.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), RunError> {
        self.partition_count = self.fetch_partition_count().await?;
        self.consumer
            .subscribe(&[&self.cfg.topics.requests_topic])?;
        tracing::info!(topic = %self.cfg.topics.requests_topic, partitions = self.partition_count, "processor subscribed");
        while !cancel.is_cancelled() {
            let batch = tokio::select! {
                _ = cancel.cancelled() => break,
                batch = self.collect_batch() => batch,
            };
            if self.events_pending() {
                // Partitions change hands only with nothing in flight.
                self.commit_settled(0, CommitMode::Async).await?;
                self.handle_events(&cancel).await?;
            }
            if !batch.is_empty() {
                self.process_batch(&batch, &cancel).await?;
            }
            self.commit_settled(INFLIGHT_BATCHES_MAX, CommitMode::Async)
                .await?;
            self.rejoin_if_stalled()?;
        }
        self.emitter.flush().await?;
        self.commit_settled(0, CommitMode::Sync).await?;
        tracing::info!("processor stopped");
        Ok(())
    }

    /// Leaves and rejoins the group when [`StallWatch`] says it stalled.
    fn rejoin_if_stalled(&mut self) -> Result<(), RunError> {
        let Some(watch) = self.stall_watch.as_mut() else {
            return Ok(());
        };
        let consumer = &self.consumer;
        if tokio::task::block_in_place(|| watch.stalled(consumer)) {
            rejoin(consumer, &self.cfg.topics.requests_topic)?;
        }
        Ok(())
    }

    async fn fetch_partition_count(&self) -> Result<i32, RunError> {
        let topic = &self.cfg.topics.requests_topic;
        let count = broker_call("metadata", || {
            partition_count(&self.consumer, topic, BROKER_CALL_TIMEOUT)
        })
        .await?;
        if count == 0 {
            return Err(RunError::NoTopic(topic.clone()));
        }
        Ok(count)
    }

    fn events_pending(&self) -> bool {
        !self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Collects a batch; stops early when a rebalance is pending so it is
    /// acted on before any record fetched under the new assignment.
    async fn collect_batch(&self) -> Vec<OwnedMessage> {
        collect_batch(
            &self.consumer,
            self.cfg.batch_records_max,
            IDLE_POLL,
            Duration::from_millis(self.cfg.batch_wait_ms),
            &|| self.events_pending(),
        )
        .await
    }

    /// Acts on rebalances in the order they happened.
    async fn handle_events(&mut self, cancel: &CancellationToken) -> Result<(), RunError> {
        loop {
            let event = self
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front();
            match event {
                None => return Ok(()),
                Some(RebalanceEvent::Revoked(partitions)) => {
                    for p in partitions {
                        self.partitions.remove(&p);
                        self.snapshot_due.remove(&p);
                    }
                }
                Some(RebalanceEvent::Assigned(partitions)) => {
                    self.partition_count = self.fetch_partition_count().await?;
                    for p in partitions {
                        self.restore(p, cancel).await?;
                    }
                }
            }
            self.metrics
                .partitions_owned
                .set(self.partitions.len() as i64);
        }
    }

    /// Rebuilds a partition's state from its log up to the group's committed
    /// offset, emitting nothing: those records' outcomes were acknowledged
    /// before the offsets were committed.
    async fn restore(
        &mut self,
        partition: i32,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let started = Instant::now();
        let topic = self.cfg.topics.requests_topic.clone();
        let (low, high) = broker_call("watermarks", || {
            self.consumer
                .fetch_watermarks(&topic, partition, BROKER_CALL_TIMEOUT)
        })
        .await?;
        let committed = self.committed_offset(partition).await?;
        let to = committed.unwrap_or(low).clamp(low, high);
        let snapshot_started = Instant::now();
        let snapshot = self.snapshots.latest(partition).await?;
        // Reported apart from the replay: the two costs grow with different
        // things (the dedupe memory, the tail since the snapshot).
        let snapshot_ms = snapshot_started.elapsed().as_millis() as u64;
        let mut state = match snapshot {
            Some(s) if (low..=high).contains(&s.next_offset) => {
                self.metrics.restores_from_snapshot.inc();
                s
            }
            Some(s) => {
                tracing::warn!(
                    partition,
                    snapshot = s.next_offset,
                    low,
                    high,
                    "snapshot outside the log; replaying from the start"
                );
                PartitionState::starting_at(low)
            }
            None => PartitionState::starting_at(low),
        };
        let from = state.next_offset;
        let ctx = ApplyCtx {
            contract: &self.contract,
            partition_count: self.partition_count,
            source_topic: &topic,
            limits: self.cfg.dedupe_limits(),
            metrics: &self.metrics,
            cancel,
        };
        // A snapshot newer than the committed offset is fine: every outcome
        // below its offset was acknowledged before it was written.
        if from < to {
            replay_range(
                &mut self.replayer,
                &ctx,
                &mut state,
                None,
                (partition, from, to),
            )
            .await?;
        }
        let elapsed = started.elapsed();
        self.metrics.restore_seconds.observe(elapsed.as_secs_f64());
        tracing::info!(
            partition,
            from,
            to,
            products = state.sales.len(),
            snapshot_ms,
            elapsed_ms = elapsed.as_millis() as u64,
            "partition restored"
        );
        self.partitions.insert(partition, state);
        self.snapshot_due.insert(partition, (0, Instant::now()));
        Ok(())
    }

    async fn committed_offset(&self, partition: i32) -> Result<Option<i64>, RunError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.topics.requests_topic, partition);
        let committed = broker_call("committed offsets", || {
            self.consumer
                .committed_offsets(tpl.clone(), BROKER_CALL_TIMEOUT)
        })
        .await?;
        let offset = committed
            .find_partition(&self.cfg.topics.requests_topic, partition)
            .map(|e| e.offset());
        Ok(match offset {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
    }

    /// Decides a batch in log order per partition, produces the outcomes and
    /// seals them as an in-flight batch; its input offsets are committed by
    /// [`Runner::commit_settled`] once it and every older batch are acknowledged.
    async fn process_batch(
        &mut self,
        batch: &[OwnedMessage],
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        self.metrics.batch_records.observe(batch.len() as f64);
        let mut by_partition: BTreeMap<i32, Vec<&OwnedMessage>> = BTreeMap::new();
        for m in batch {
            by_partition.entry(m.partition()).or_default().push(m);
        }
        let topic = self.cfg.topics.requests_topic.clone();
        let mut commits = TopicPartitionList::new();
        let counts: BTreeMap<i32, u64> = by_partition
            .iter()
            .map(|(p, m)| (*p, m.len() as u64))
            .collect();
        for (partition, messages) in by_partition {
            // Records of partitions we no longer own belong to the new owner.
            let Some(mut state) = self.partitions.remove(&partition) else {
                continue;
            };
            let result = self.decide_partition(&mut state, &messages, cancel).await;
            let next = state.next_offset;
            self.partitions.insert(partition, state);
            result?;
            commits.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        self.emitter.seal(commits);
        self.snapshot_if_due(&counts).await
    }

    /// Commits the input offsets of every in-flight batch that is fully
    /// acknowledged, in log order, waiting while more than `keep_max` are in
    /// flight. Async commits are sent in order and a lost one is covered by
    /// the next; at-least-once holds because the outcomes are acknowledged.
    async fn commit_settled(&mut self, keep_max: usize, mode: CommitMode) -> Result<(), RunError> {
        for commits in self.emitter.settle(keep_max).await? {
            if commits.count() > 0 {
                self.consumer.commit(&commits, mode)?;
            }
        }
        Ok(())
    }

    /// Snapshots every partition that is due, after its outcomes were
    /// acknowledged (so a restore from it never skips an unsent outcome).
    async fn snapshot_if_due(&mut self, counts: &BTreeMap<i32, u64>) -> Result<(), RunError> {
        let (every_records, every_ms) =
            (self.cfg.snapshot_every_records, self.cfg.snapshot_every_ms);
        for (partition, n) in counts {
            let Some(due) = self.snapshot_due.get_mut(partition) else {
                continue;
            };
            due.0 += n;
            let by_count = every_records > 0 && due.0 >= every_records;
            let by_time = every_ms > 0 && due.1.elapsed() >= Duration::from_millis(every_ms);
            if !(by_count || by_time) {
                continue;
            }
            *due = (0, Instant::now());
            if !self.partitions.contains_key(partition) {
                continue;
            }
            // A snapshot must never cover an unacknowledged outcome.
            self.commit_settled(0, CommitMode::Async).await?;
            let Some(state) = self.partitions.get(partition) else {
                continue;
            };
            let started = Instant::now();
            let bytes = self.snapshots.write(*partition, state).await?;
            self.metrics.snapshots_written.inc();
            self.metrics.snapshot_bytes.set(bytes as i64);
            tracing::info!(
                partition,
                next_offset = state.next_offset,
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot written"
            );
        }
        Ok(())
    }

    async fn decide_partition(
        &mut self,
        state: &mut PartitionState,
        messages: &[&OwnedMessage],
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let topic = self.cfg.topics.requests_topic.clone();
        let ctx = ApplyCtx {
            contract: &self.contract,
            partition_count: self.partition_count,
            source_topic: &topic,
            limits: self.cfg.dedupe_limits(),
            metrics: &self.metrics,
            cancel,
        };
        for message in messages {
            let offset = message.offset();
            if offset < state.next_offset {
                continue; // already applied (re-fetch after a rebalance)
            }
            if offset > state.next_offset {
                let range = (message.partition(), state.next_offset, offset);
                tracing::info!(
                    partition = range.0,
                    from = range.1,
                    to = range.2,
                    "filling a gap before deciding"
                );
                replay_range(
                    &mut self.replayer,
                    &ctx,
                    state,
                    Some(&mut self.emitter),
                    range,
                )
                .await?;
            }
            apply(&ctx, state, message, Some(&mut self.emitter)).await?;
        }
        Ok(())
    }
}
