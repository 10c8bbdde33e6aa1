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

/// Consumer context for group members that act on records only (sinks,
/// listeners): logs every change of assignment and every failed offset
/// commit, so an operator can see which member owns what and when.
#[derive(Debug, Clone, Default)]
pub struct LoggingContext {
    /// Names the member in the logs.
    pub member: String,
}

impl rdkafka::ClientContext for LoggingContext {}

impl rdkafka::consumer::ConsumerContext for LoggingContext {
    fn post_rebalance(
        &self,
        _: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &rdkafka::consumer::Rebalance<'_>,
    ) {
        use rdkafka::consumer::Rebalance;
        let partitions = |tpl: &rdkafka::TopicPartitionList| -> Vec<(String, i32)> {
            tpl.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(member = %self.member, partitions = ?partitions(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(member = %self.member, partitions = ?partitions(tpl), "partitions revoked")
            }
            Rebalance::Error(e) => {
                tracing::warn!(member = %self.member, error = %e, "rebalance error")
            }
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _: &rdkafka::TopicPartitionList,
    ) {
        if let Err(e) = result {
            tracing::warn!(member = %self.member, error = %e, "offset commit failed");
        }
    }
}

/// Watches for a consumer group that has stopped consuming: some partition
/// holds records beyond the group's committed offset, that offset has not
/// moved for `stall_after`, and this member owns no partition at all.
///
/// Why: a group whose rebalance ends with no member assigned anything (a
/// broker or coordinator defect, e.g. when the member that led the group
/// died mid-rebalance) never rebalances again by itself, and its partitions
/// stay unowned for good: a sale that silently stops deciding. An idle
/// member that sees this leaves and rejoins the group, which forces a new
/// rebalance. It is a defence against brokers we do not control, not a
/// workaround of the local one. A member that owns
/// partitions never acts, so a slow owner (a store outage) is not disturbed,
/// and on a healthy broker the watch only costs a few lookups a minute.
#[derive(Debug)]
pub struct StallWatch {
    /// The subscribed topic.
    topic: String,
    /// How long a lagging partition may go without committed progress.
    stall_after: std::time::Duration,
    /// Time between looks (each costs `partitions + 2` broker round trips).
    check_every: std::time::Duration,
    /// When it last looked.
    checked_at: std::time::Instant,
    /// Per lagging partition: the committed position last seen, and since when.
    progress: std::collections::HashMap<i32, (i64, std::time::Instant)>,
}

/// Broker lookups of the stall watch give up after this long.
const STALL_WATCH_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl StallWatch {
    /// A watch over `topic` that reports a stall after `stall_after`.
    pub fn new(topic: &str, stall_after: std::time::Duration) -> Self {
        Self {
            topic: topic.to_owned(),
            stall_after,
            check_every: (stall_after / 3).max(std::time::Duration::from_secs(1)),
            checked_at: std::time::Instant::now(),
            progress: std::collections::HashMap::new(),
        }
    }

    /// Looks (at most every `stall_after / 3`); true when this member should
    /// leave and rejoin the group. Makes blocking broker calls: call it from
    /// `tokio::task::block_in_place` in async code.
    pub fn stalled<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &impl rdkafka::consumer::Consumer<C>,
    ) -> bool {
        if self.checked_at.elapsed() < self.check_every {
            return false;
        }
        self.checked_at = std::time::Instant::now();
        let owned = consumer.assignment().map_or(1, |a| a.count());
        if owned > 0 {
            self.progress.clear();
            return false;
        }
        match self.lagging_positions(consumer) {
            Ok(positions) => self.note(positions),
            Err(e) => {
                tracing::debug!(error = %e, "stall watch lookup failed");
                false
            }
        }
    }

    /// Committed position of every partition that has records beyond it.
    fn lagging_positions<C: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &impl rdkafka::consumer::Consumer<C>,
    ) -> rdkafka::error::KafkaResult<Vec<(i32, i64)>> {
        let metadata = consumer.fetch_metadata(Some(&self.topic), STALL_WATCH_CALL_TIMEOUT)?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for t in metadata.topics().iter().filter(|t| t.name() == self.topic) {
            for p in t.partitions() {
                tpl.add_partition(&self.topic, p.id());
            }
        }
        let committed = consumer.committed_offsets(tpl, STALL_WATCH_CALL_TIMEOUT)?;
        let mut lagging = Vec::new();
        for e in committed.elements() {
            let (low, high) =
                consumer.fetch_watermarks(&self.topic, e.partition(), STALL_WATCH_CALL_TIMEOUT)?;
            let position = match e.offset() {
                rdkafka::Offset::Offset(o) => o.max(low),
                _ => low,
            };
            if position < high {
                lagging.push((e.partition(), position));
            }
        }
        Ok(lagging)
    }

    /// Records the positions seen now; true when one has not moved for
    /// `stall_after`.
    fn note(&mut self, lagging: Vec<(i32, i64)>) -> bool {
        let now = std::time::Instant::now();
        let mut seen = std::collections::HashMap::with_capacity(lagging.len());
        let mut stalled = Vec::new();
        for (partition, position) in lagging {
            let since = match self.progress.get(&partition) {
                Some((p, since)) if *p == position => *since,
                _ => now,
            };
            if now.duration_since(since) >= self.stall_after {
                stalled.push(partition);
            }
            seen.insert(partition, (position, since));
        }
        self.progress = seen;
        if stalled.is_empty() {
            return false;
        }
        tracing::warn!(topic = %self.topic, partitions = ?stalled, stall_after_s = self.stall_after.as_secs(),
            "partitions lag with no committed progress while this member owns none: the group is stalled; rejoining");
        self.progress.clear();
        true
    }
}

/// Leaves the group and joins it again as a new member, which makes the
/// coordinator run a new rebalance (see [`StallWatch`]).
pub fn rejoin<C: rdkafka::consumer::ConsumerContext>(
    consumer: &impl rdkafka::consumer::Consumer<C>,
    topic: &str,
) -> rdkafka::error::KafkaResult<()> {
    consumer.unsubscribe();
    consumer.subscribe(&[topic])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Proves the stall rule: a lagging partition whose committed position
    /// does not move for `stall_after` is a stall; one that moves, or whose
    /// lag is gone, resets the clock.
    #[test]
    fn stall_needs_lag_without_progress_for_the_whole_period() {
        let mut watch = StallWatch::new("t", Duration::from_millis(40));
        assert!(!watch.note(vec![(0, 5), (1, 7)]));
        std::thread::sleep(Duration::from_millis(50));
        // Partition 0 moved, partition 1 did not: 1 is stalled.
        assert!(watch.note(vec![(0, 6), (1, 7)]));
        // A stall resets the watch (the member rejoins).
        assert!(!watch.note(vec![(0, 6), (1, 7)]));
        std::thread::sleep(Duration::from_millis(50));
        // No lag left on 1, progress on 0: nothing is stalled.
        assert!(!watch.note(vec![(0, 9)]));
    }
}
