//! The sink loop.
//!
//! Delivery guarantee: **at-least-once, idempotent effect.** Poll a batch of
//! outcomes, write it to the store (one transaction or one pipeline),
//! and commit the offsets only after the store has it. A crash in between
//! replays the batch, which the store absorbs: upserts by request ID, stock
//! values guarded by input offset. A store outage is retried with bounded
//! backoff for as long as it lasts; no outcome is ever skipped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use flashsale_runtime::group::{LoggingContext, StallWatch};
use flashsale_runtime::kafka::{collect_batch, group_consumer_config};
use flashsale_runtime::retry::{retry, Backoff};
use flashsale_schemas::registry::{Contract, DecodeError};
use flashsale_schemas::Outcome;

use crate::config::SinkConfig;
use crate::metrics::SinkMetrics;
use crate::mysql::MysqlStore;
use crate::redis_store::RedisStore;

/// How long the loop waits for a first record before checking for shutdown.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// First pause after a failed write; doubles up to the configured maximum.
const BACKOFF_MS_MIN: u64 = 50;

/// The store a worker writes.
#[derive(Clone)]
pub enum Store {
    /// MySQL/MariaDB.
    Mysql(MysqlStore),
    /// Redis.
    Redis(RedisStore),
}

impl Store {
    /// Writes a batch; the error text is for logs.
    pub async fn apply(&self, outcomes: &[Outcome]) -> Result<(), String> {
        match self {
            Store::Mysql(s) => s.apply(outcomes).await.map_err(|e| e.to_string()),
            Store::Redis(s) => s.apply(outcomes).await.map_err(|e| e.to_string()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Store::Mysql(_) => "mysql",
            Store::Redis(_) => "redis",
        }
    }
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// One sink worker.
pub struct SinkRunner {
    /// Settings.
    cfg: SinkConfig,
    /// Decodes outcomes.
    contract: Contract,
    /// Group member on the outcomes topic.
    consumer: StreamConsumer<LoggingContext>,
    /// Where outcomes go.
    store: Store,
    /// Counters.
    metrics: SinkMetrics,
    /// Rejoins the group when it stalled with this worker idle.
    stall_watch: Option<StallWatch>,
}

impl SinkRunner {
    /// Creates the consumer.
    pub fn new(
        cfg: SinkConfig,
        contract: Contract,
        store: Store,
        metrics: SinkMetrics,
    ) -> Result<Self, SinkError> {
        let stall_watch = cfg.kafka.stall_watch(&cfg.topics.outcomes_topic);
        let context = LoggingContext {
            member: cfg.instance(),
        };
        let consumer: StreamConsumer<LoggingContext> =
            group_consumer_config(&cfg.kafka.brokers, &cfg.group(), &cfg.instance())
                .create_with_context(context)?;
        Ok(Self {
            cfg,
            contract,
            consumer,
            store,
            metrics,
            stall_watch,
        })
    }

    /// Runs until `cancel` fires. A batch interrupted by shutdown is not
    /// committed, so the next owner writes it again (harmlessly).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), SinkError> {
        self.consumer
            .subscribe(&[&self.cfg.topics.outcomes_topic])?;
        tracing::info!(store = self.store.name(), group = %self.cfg.group(), "sink subscribed");
        while !cancel.is_cancelled() {
            let batch = tokio::select! {
                _ = cancel.cancelled() => break,
                b = collect_batch(
                    &self.consumer,
                    self.cfg.batch_records_max,
                    IDLE_POLL,
                    Duration::from_millis(self.cfg.batch_wait_ms),
                    &|| false,
                ) => b,
            };
            if batch.is_empty() {
                self.rejoin_if_stalled()?;
                continue;
            }
            let Some(outcomes) = self.decode(&batch, &cancel).await else {
                break;
            };
            if !self.write(&outcomes, &cancel).await {
                break;
            }
            self.commit(&batch)?;
        }
        tracing::info!(store = self.store.name(), "sink stopped");
        Ok(())
    }

    /// Leaves and rejoins the group when [`StallWatch`] says it stalled.
    fn rejoin_if_stalled(&mut self) -> Result<(), SinkError> {
        if let Some(watch) = self.stall_watch.as_mut() {
            watch.rejoin_if_stalled(&self.consumer, &self.cfg.topics.outcomes_topic)?;
        }
        Ok(())
    }

    /// The backoff of every retry here: unbounded attempts, by design. A
    /// sink that gave up would have to skip outcomes or exit; waiting keeps
    /// its place in the log, and shutdown still ends the wait at once.
    fn backoff(&self) -> Backoff {
        Backoff {
            attempts_max: u32::MAX,
            first: Duration::from_millis(BACKOFF_MS_MIN),
            max: Duration::from_millis(self.cfg.backoff_ms_max.max(BACKOFF_MS_MIN)),
        }
    }

    /// Decodes a batch; `None` when shutdown interrupted a registry retry.
    async fn decode(
        &self,
        batch: &[OwnedMessage],
        cancel: &CancellationToken,
    ) -> Option<Vec<Outcome>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            let Some(payload) = m.payload() else {
                self.metrics.undecodable.inc();
                continue;
            };
            // Only an unavailable registry is retried; any other answer is final.
            let decoded = retry("outcome decode", self.backoff(), cancel, || async {
                match self.contract.decode_outcome(payload).await {
                    Err(e @ DecodeError::RegistryUnavailable(_)) => Err(e),
                    other => Ok(other),
                }
            })
            .await;
            match decoded.ok()? {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    // Not an outcome at all: nothing a read model could hold.
                    self.metrics.undecodable.inc();
                    tracing::error!(error = %e, partition = m.partition(), offset = m.offset(), "undecodable record on the outcomes topic");
                }
            }
        }
        Some(outcomes)
    }

    /// Writes until the store takes the batch; `false` on shutdown.
    async fn write(&self, outcomes: &[Outcome], cancel: &CancellationToken) -> bool {
        let written = retry("store write", self.backoff(), cancel, || async {
            let started = Instant::now();
            let result = self.store.apply(outcomes).await;
            match &result {
                Ok(()) => self
                    .metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64()),
                Err(_) => self
                    .metrics
                    .write_retries
                    .with_label_values(&[self.store.name()])
                    .inc(),
            }
            result
        })
        .await;
        if written.is_ok() {
            self.metrics.outcomes_written.inc_by(outcomes.len() as u64);
        }
        written.is_ok()
    }

    fn commit(&self, batch: &[OwnedMessage]) -> Result<(), SinkError> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for m in batch {
            let entry = next.entry(m.partition()).or_insert(0);
            *entry = (*entry).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            tpl.add_partition_offset(
                &self.cfg.topics.outcomes_topic,
                partition,
                Offset::Offset(offset),
            )?;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            // E.g. partitions revoked meanwhile: the new owner rewrites the
            // batch, which the store absorbs.
            tracing::warn!(error = %e, "commit failed");
        }
        Ok(())
    }
}
