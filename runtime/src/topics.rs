//! Topic metadata, as the broker reports it.
//!
//! The partition count is what the single-writer rule rests on (a key's
//! partition is murmur2 modulo the count), so every service asks for it the
//! same way, here.

use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;

/// The partition IDs of `topic`, in the broker's order; empty when the
/// topic does not exist.
pub fn partition_ids<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<Vec<i32>> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// How many partitions `topic` has; 0 when it does not exist.
pub fn partition_count<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<i32> {
    let ids = partition_ids(consumer, topic, timeout)?;
    // Kafka partition IDs are i32, so their number fits one.
    Ok(i32::try_from(ids.len()).unwrap_or(i32::MAX))
}
