//! Reads a range of one partition of the requests topic outside the consumer
//! group: to rebuild a partition's state on assignment, and to fill a gap
//! when the group consumer hands us a record past the state's position.
//!
//! Delivery guarantee: every record with an offset in `[from, to)` that
//! exists in the log is returned once, in offset order; missing offsets
//! (gaps in the log) are simply absent. Nothing is committed.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use flashsale_runtime::kafka::assign_consumer_config;
use flashsale_runtime::retry::{retry, Backoff, RetryError};
use tokio_util::sync::CancellationToken;

/// Pause between two watermark lookups while the broker is away.
const WATERMARKS_RETRY_MS: u64 = 500;

/// Why a replay read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The broker did not deliver the range in time.
    #[error("replay of partition {partition} stalled at offset {at} (wanted up to {to})")]
    Stalled {
        /// Partition.
        partition: i32,
        /// Next offset expected.
        at: i64,
        /// End of the range (exclusive).
        to: i64,
    },
    /// A client error.
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    /// Shutdown was requested while a broker call was being retried.
    #[error("{0}: shutdown requested while retrying")]
    Cancelled(&'static str),
}

/// A cursor over one partition range at a time.
pub struct Replayer {
    /// Assign-mode consumer; never joins the group, never commits.
    consumer: StreamConsumer,
    /// Longest wait for the next record of a range.
    wait: Duration,
    /// The range being read: partition, next offset expected, end (exclusive).
    range: Option<(i32, i64, i64)>,
}

impl Replayer {
    /// Creates the replay consumer.
    pub fn new(brokers: &str, client_id: &str, wait: Duration) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = assign_consumer_config(brokers, client_id).create()?;
        Ok(Self {
            consumer,
            wait,
            range: None,
        })
    }

    /// The low and high watermarks of a partition, retried 500 ms apart
    /// while the broker is unreachable, for about the replay wait in all;
    /// stops retrying when `cancel` fires.
    pub async fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        cancel: &CancellationToken,
    ) -> Result<(i64, i64), ReplayError> {
        let every = Duration::from_millis(WATERMARKS_RETRY_MS);
        let attempts = u32::try_from(self.wait.as_millis() / u128::from(WATERMARKS_RETRY_MS))
            .unwrap_or(u32::MAX)
            .max(1);
        let fetch = || {
            std::future::ready(tokio::task::block_in_place(|| {
                self.consumer
                    .fetch_watermarks(topic, partition, Duration::from_secs(5))
            }))
        };
        retry("watermarks", Backoff::fixed(attempts, every), cancel, fetch)
            .await
            .map_err(|e| match e {
                RetryError::Exhausted { last, .. } => ReplayError::Kafka(last),
                RetryError::Cancelled { what } => ReplayError::Cancelled(what),
            })
    }

    /// Starts reading `[from, to)` of `topic`'s `partition`.
    pub fn start(
        &mut self,
        topic: &str,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<(), ReplayError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
        self.consumer.assign(&tpl)?;
        self.range = Some((partition, from, to));
        Ok(())
    }

    /// The next record of the range, or `None` once the range is done.
    pub async fn next(&mut self) -> Result<Option<OwnedMessage>, ReplayError> {
        let Some((partition, at, to)) = self.range else {
            return Ok(None);
        };
        if at >= to {
            return self.finish();
        }
        // The wait bounds the time without progress; client errors (e.g. a
        // broker restarting) are transient: librdkafka reconnects by itself.
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let received = tokio::time::timeout_at(deadline, self.consumer.recv()).await;
            let message = match received {
                Err(_) => return Err(ReplayError::Stalled { partition, at, to }),
                Ok(Err(KafkaError::PartitionEOF(_))) => return self.finish(),
                Ok(Err(e)) => {
                    tracing::warn!(partition, error = %e, "replay read error; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Ok(Ok(m)) => m,
            };
            let offset = message.offset();
            if message.partition() != partition || offset < at {
                continue; // a stale fetch from a previous assignment
            }
            if offset >= to {
                return self.finish();
            }
            let owned = message.detach();
            self.range = Some((partition, offset + 1, to));
            return Ok(Some(owned));
        }
    }

    fn finish(&mut self) -> Result<Option<OwnedMessage>, ReplayError> {
        self.range = None;
        self.consumer.unassign()?;
        Ok(None)
    }
}
