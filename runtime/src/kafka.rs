//! librdkafka client settings. Every option the pipeline's correctness leans
//! on is set explicitly here, with the reason, so no service depends on a
//! library default that may change.

use rdkafka::ClientConfig;

/// A producer for any flashsale topic.
///
/// Guarantees: `acks=all` + idempotence give at-least-once delivery without
/// reordering or broker-side duplicates from retries; murmur2 partitioning
/// keeps every key on the partition its single writer owns.
pub fn producer_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", client_id)
        // A write is acknowledged only once every in-sync replica has it.
        .set("acks", "all")
        // Retries cannot duplicate or reorder records within a partition.
        .set("enable.idempotence", "true")
        // Java-compatible key hashing (null keys: random), see partition.rs.
        .set("partitioner", "murmur2_random")
        // Small batching window: latency matters more than batch size here.
        .set("linger.ms", "2")
        // Give up on a record after 30 s; callers treat that as an error.
        .set("message.timeout.ms", "30000")
        // Bounded local queue: producers get QueueFull instead of unbounded memory.
        .set("queue.buffering.max.messages", "200000")
        // No compression: records of a few hundred bytes gain little from it,
        // and it costs CPU on the path every decision takes.
        .set("compression.type", "none");
    c
}

/// A consumer-group member.
///
/// Guarantees: offsets are committed only by our code, explicitly, after the
/// effects of the records are durable (at-least-once); cooperative-sticky
/// keeps partitions where they are across rebalances, so state moves rarely.
pub fn group_consumer_config(brokers: &str, group_id: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("client.id", client_id)
        // Incremental rebalancing: unaffected partitions keep flowing.
        .set("partition.assignment.strategy", "cooperative-sticky")
        // We commit after effects are durable, never on a timer.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the beginning: every input must be decided.
        .set("auto.offset.reset", "earliest")
        // Records of an external producer's open transaction are held back
        // until it commits, and aborted ones are never seen, live or in a
        // replay (which reads the same way), so decisions stay a function of
        // the committed log (README, "Transactional producers").
        .set("isolation.level", "read_committed")
        // A member that stops heartbeating loses its partitions after 10 s.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // A stuck loop loses its partitions after 5 minutes.
        .set("max.poll.interval.ms", "300000")
        // Low fetch latency: a flash sale is latency-bound.
        .set("fetch.wait.max.ms", "10")
        .set("enable.partition.eof", "false");
    c
}

/// A consumer that is not a group member (explicit `assign`), used to read a
/// partition's history or to tail every partition of a topic.
pub fn assign_consumer_config(brokers: &str, client_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // librdkafka wants a group.id even for manual assignment; nothing is
        // ever committed under it.
        .set("group.id", format!("{client_id}-assign"))
        .set("client.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Replays must see exactly what the group consumer saw: committed
        // records only (see group_consumer_config).
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        // Lets restore loops see where a partition's log ends.
        .set("enable.partition.eof", "true");
    c
}

/// Collects one batch from a consumer: waits up to `idle` for a first record,
/// then up to `wait` for more, at most `records_max` in all, and stops early
/// as soon as `interrupt()` is true (e.g. a rebalance is waiting to be acted
/// on). Records are detached (owned) so they can be held across awaits.
pub async fn collect_batch<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &rdkafka::consumer::StreamConsumer<C>,
    records_max: usize,
    idle: std::time::Duration,
    wait: std::time::Duration,
    interrupt: &dyn Fn() -> bool,
) -> Vec<rdkafka::message::OwnedMessage> {
    let mut batch = Vec::new();
    match tokio::time::timeout(idle, consumer.recv()).await {
        Err(_) => return batch,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "consumer error");
            return batch;
        }
        Ok(Ok(m)) => batch.push(m.detach()),
    }
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < records_max && !interrupt() {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(m.detach()),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}
