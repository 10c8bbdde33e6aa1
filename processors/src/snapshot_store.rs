//! Writes and finds partition-state snapshots on the snapshots topic.
//!
//! A snapshot of requests partition `p` is written, in chunks, to partition
//! `p` of the snapshots topic (keys `<p>/<chunk>`, so compaction keeps the
//! newest chunk of each index). To find the newest complete snapshot, the
//! tail of that partition is read backwards in growing windows. Chunks of
//! different snapshots may interleave (a paused zombie may write too): any
//! complete snapshot is correct, since state is a function of the log
//! prefix, so the newest complete one wins.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use flashsale_schemas::registry::Contract;
use flashsale_schemas::SnapshotChunk;
use tokio_util::sync::CancellationToken;

use crate::replay::{ReplayError, Replayer};
use flashsale_core::snapshot::{self, ENCODING, ENCODINGS_READ};
use flashsale_core::PartitionState;

/// First tail window read when looking for a snapshot, in records.
const WINDOW_RECORDS_MIN: i64 = 64;
/// How long a snapshot write waits for its acknowledgements.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotStoreError {
    /// Reading the snapshots topic failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Writing failed.
    #[error("snapshot write: {0}")]
    Write(String),
}

/// The snapshots topic, seen from one processor.
pub struct SnapshotStore {
    /// Producer shared with the runner (a cheap handle).
    producer: FutureProducer,
    /// Encodes and decodes chunks.
    contract: Contract,
    /// The snapshots topic.
    topic: String,
    /// The requests topic whose partitions the snapshots describe.
    requests_topic: String,
    /// Largest chunk payload, in bytes (below the broker's record limit).
    chunk_bytes: usize,
    /// Reads the snapshots topic outside the group.
    reader: Replayer,
}

impl SnapshotStore {
    /// A store on `topic` for the partitions of `requests_topic`.
    pub fn new(
        producer: FutureProducer,
        contract: Contract,
        (topic, requests_topic): (&str, &str),
        chunk_bytes: usize,
        reader: Replayer,
    ) -> Self {
        assert!(chunk_bytes > 0, "snapshot chunks hold at least one byte");
        Self {
            producer,
            contract,
            topic: topic.to_owned(),
            requests_topic: requests_topic.to_owned(),
            chunk_bytes,
            reader,
        }
    }

    /// Writes a snapshot of `state` for `partition` and waits for the
    /// broker's acknowledgements. Returns the encoded size in bytes.
    pub async fn write(
        &self,
        partition: i32,
        state: &PartitionState,
    ) -> Result<usize, SnapshotStoreError> {
        let data = snapshot::encode(state);
        let chunks: Vec<&[u8]> = data.chunks(self.chunk_bytes).collect();
        let count = i32::try_from(chunks.len().max(1))
            .map_err(|_| SnapshotStoreError::Write("too many chunks".into()))?;
        let mut payloads = Vec::with_capacity(chunks.len());
        for (index, bytes) in chunks.iter().enumerate() {
            let chunk = SnapshotChunk {
                source_topic: self.requests_topic.clone(),
                source_partition: partition,
                next_offset: state.next_offset,
                chunk_index: index as i32,
                chunk_count: count,
                encoding: ENCODING.to_owned(),
                data: bytes.to_vec(),
            };
            let payload = self
                .contract
                .encode_snapshot(&chunk)
                .map_err(|e| SnapshotStoreError::Write(e.to_string()))?;
            payloads.push((format!("{partition}/{index}"), payload));
        }
        let deliveries = payloads.iter().map(|(key, payload)| {
            let record = FutureRecord::to(&self.topic)
                .partition(partition)
                .key(key.as_str())
                .payload(payload.as_slice());
            self.producer.send(record, WRITE_TIMEOUT)
        });
        for delivery in futures::future::join_all(deliveries).await {
            delivery.map_err(|(e, _)| SnapshotStoreError::Write(e.to_string()))?;
        }
        Ok(data.len())
    }

    /// The newest complete snapshot of `partition`, if any.
    pub async fn latest(
        &mut self,
        partition: i32,
        cancel: &CancellationToken,
    ) -> Result<Option<PartitionState>, SnapshotStoreError> {
        let (low, high) = self
            .reader
            .watermarks(&self.topic, partition, cancel)
            .await?;
        let mut window = WINDOW_RECORDS_MIN;
        loop {
            let from = low.max(high - window);
            let read_started = std::time::Instant::now();
            let chunks = self.read_chunks(partition, from, high).await?;
            let read_ms = read_started.elapsed().as_millis() as u64;
            let decode_started = std::time::Instant::now();
            let found = newest_complete(&chunks);
            tracing::debug!(
                partition,
                from,
                to = high,
                chunks = chunks.len(),
                read_ms,
                decode_ms = decode_started.elapsed().as_millis() as u64,
                complete = found.is_some(),
                "snapshot window read"
            );
            if let Some(state) = found {
                return Ok(Some(state));
            }
            if from == low {
                return Ok(None);
            }
            window = window.saturating_mul(4);
        }
    }

    async fn read_chunks(
        &mut self,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Vec<SnapshotChunk>, SnapshotStoreError> {
        let mut chunks = Vec::new();
        self.reader.start(&self.topic, partition, from, to)?;
        while let Some(message) = self.reader.next().await? {
            let Some(payload) = message.payload() else {
                continue;
            };
            match self.contract.decode_snapshot(payload).await {
                Ok(c)
                    if c.source_partition == partition
                        && c.source_topic == self.requests_topic
                        && ENCODINGS_READ.contains(&c.encoding.as_str()) =>
                {
                    chunks.push(c)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(partition, offset = message.offset(), error = %e, "skipping an unreadable snapshot chunk")
                }
            }
        }
        Ok(chunks)
    }
}

/// Assembles the newest snapshot whose chunks are all present.
fn newest_complete(chunks: &[SnapshotChunk]) -> Option<PartitionState> {
    let mut by_offset: BTreeMap<i64, Vec<&SnapshotChunk>> = BTreeMap::new();
    for c in chunks {
        by_offset.entry(c.next_offset).or_default().push(c);
    }
    for (offset, parts) in by_offset.iter().rev() {
        let count = parts[0].chunk_count;
        let mut slots: Vec<Option<&SnapshotChunk>> =
            vec![None; usize::try_from(count).unwrap_or(0)];
        for p in parts.iter().filter(|p| p.chunk_count == count) {
            if let Some(slot) = usize::try_from(p.chunk_index)
                .ok()
                .and_then(|i| slots.get_mut(i))
            {
                *slot = Some(p);
            }
        }
        if slots.is_empty() || slots.iter().any(Option::is_none) {
            continue;
        }
        let data: Vec<u8> = slots
            .iter()
            .flatten()
            .flat_map(|c| c.data.iter().copied())
            .collect();
        match snapshot::decode(&data) {
            Ok(state) if state.next_offset == *offset => return Some(state),
            Ok(_) => tracing::warn!(offset, "snapshot offset disagrees with its chunks; skipped"),
            Err(e) => tracing::warn!(offset, error = %e, "snapshot does not decode; skipped"),
        }
    }
    None
}
