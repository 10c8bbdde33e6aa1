//! The processor loop.
//!
//! Delivery guarantee: **at-least-once emission, exactly-once effect.** For
//! each batch: poll records, decide them in log order, produce one outcome
//! (or one dead letter) per record; a batch's input offsets are committed
//! only once the broker has acknowledged every record of that batch and of
//! every older one (`acks=all`, idempotent producer). Up to
//! [`INFLIGHT_BATCHES_MAX`] batches await acknowledgement while the next is
//! decided, so deciding overlaps the broker's round trip; commits still
//! follow log order (kept by [`crate::emitter`]). A crash between produce
//! and commit re-decides the tail on restart; because the decision core
//! ([`flashsale_core`]) is deterministic, the re-emitted outcomes are
//! identical and every consumer treats them as no-ops.
//!
//! Single writer: a partition's state exists only between its assignment and
//! its revocation. On assignment, before deciding anything, the state is
//! rebuilt by applying the partition's log up to the group's committed offset
//! without emitting ([`crate::replay`], [`crate::apply`]). A paused "zombie"
//! that resumes after losing its partitions can only emit the same decisions
//! as the new owner, since both derive state from the same log prefix.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use flashsale_core::PartitionState;
use flashsale_runtime::group::StallWatch;
use flashsale_runtime::kafka::{collect_batch, group_consumer_config, producer_config};
use flashsale_runtime::topics::partition_count;
use flashsale_schemas::registry::Contract;

use crate::apply::{apply, replay_range, ApplyCtx};
use crate::config::ProcessorConfig;
use crate::emitter::Emitter;
use crate::error::broker_call;
pub use crate::error::RunError;
use crate::metrics::ProcessorMetrics;
use crate::rebalance::{GroupContext, RebalanceEvent};
use crate::replay::Replayer;
use crate::snapshot_store::SnapshotStore;

/// Broker round-trips (metadata, offsets) give up after this long.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the loop waits for a first record before looking at rebalances.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// Decided batches awaiting the broker's acknowledgement while the next one
/// is decided. Bounds memory (with the batch size) and the work a crash
/// makes the next owner re-decide; commits wait for the oldest batch.
pub const INFLIGHT_BATCHES_MAX: usize = 4;

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
        let context = GroupContext::new(cfg.topics.requests_topic.clone(), events.clone());
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
        let emitter = Emitter::new(
            producer,
            contract.clone(),
            (
                cfg.topics.outcomes_topic.clone(),
                cfg.topics.dead_letter_topic.clone(),
            ),
            metrics.clone(),
        );
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
    /// hand is finished (produced, acknowledged, committed) before return;
    /// a cancel met while retrying a broker call (a restore, a metadata
    /// lookup) stops the same way, since nothing is in flight then.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), RunError> {
        match self.serve(&cancel).await {
            Err(e) if cancel.is_cancelled() && e.cancelled_step().is_some() => {
                let step = e.cancelled_step();
                tracing::info!(step, "shutdown requested while waiting for the broker");
            }
            result => result?,
        }
        self.emitter.flush().await?;
        self.commit_settled(0, CommitMode::Sync).await?;
        tracing::info!("processor stopped");
        Ok(())
    }

    /// Subscribes, then polls, decides and commits batches until `cancel`
    /// fires; leaves the final flush and commit to [`Runner::run`].
    async fn serve(&mut self, cancel: &CancellationToken) -> Result<(), RunError> {
        self.partition_count = self.fetch_partition_count(cancel).await?;
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
                self.handle_events(cancel).await?;
            }
            if !batch.is_empty() {
                self.process_batch(&batch, cancel).await?;
            }
            self.commit_settled(INFLIGHT_BATCHES_MAX, CommitMode::Async)
                .await?;
            self.rejoin_if_stalled()?;
        }
        Ok(())
    }

    /// Leaves and rejoins the group when [`StallWatch`] says it stalled.
    fn rejoin_if_stalled(&mut self) -> Result<(), RunError> {
        if let Some(watch) = self.stall_watch.as_mut() {
            watch.rejoin_if_stalled(&self.consumer, &self.cfg.topics.requests_topic)?;
        }
        Ok(())
    }

    async fn fetch_partition_count(&self, cancel: &CancellationToken) -> Result<i32, RunError> {
        let topic = &self.cfg.topics.requests_topic;
        let count = broker_call("metadata", cancel, || {
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
                    self.partition_count = self.fetch_partition_count(cancel).await?;
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
        let (low, high) = broker_call("watermarks", cancel, || {
            self.consumer
                .fetch_watermarks(&topic, partition, BROKER_CALL_TIMEOUT)
        })
        .await?;
        let committed = self.committed_offset(partition, cancel).await?;
        let to = committed.unwrap_or(low).clamp(low, high);
        let (mut state, snapshot_ms) = self.starting_state(partition, (low, high), cancel).await?;
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

    /// The state a restore starts from: the partition's newest snapshot if
    /// it lies within the log's `(low, high)` watermarks, else an empty state
    /// at `low`; and how long finding the snapshot took, in milliseconds.
    async fn starting_state(
        &mut self,
        partition: i32,
        (low, high): (i64, i64),
        cancel: &CancellationToken,
    ) -> Result<(PartitionState, u64), RunError> {
        let snapshot_started = Instant::now();
        let snapshot = self.snapshots.latest(partition, cancel).await?;
        // Reported apart from the replay: the two costs grow with different
        // things (the dedupe memory, the tail since the snapshot).
        let snapshot_ms = snapshot_started.elapsed().as_millis() as u64;
        let state = match snapshot {
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
        Ok((state, snapshot_ms))
    }

    async fn committed_offset(
        &self,
        partition: i32,
        cancel: &CancellationToken,
    ) -> Result<Option<i64>, RunError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.cfg.topics.requests_topic, partition);
        let committed = broker_call("committed offsets", cancel, || {
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
