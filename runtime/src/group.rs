//! Consumer-group helpers: a context that logs every change of ownership,
//! and the stall watch that repairs a group left with unowned partitions.

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

    /// From async code: looks (the broker calls run in `block_in_place`)
    /// and, when the group stalled, leaves and rejoins it on `topic`.
    pub fn rejoin_if_stalled<C: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &impl rdkafka::consumer::Consumer<C>,
        topic: &str,
    ) -> rdkafka::error::KafkaResult<()> {
        if tokio::task::block_in_place(|| self.stalled(consumer)) {
            rejoin(consumer, topic)?;
        }
        Ok(())
    }

    /// Committed position of every partition that has records beyond it.
    fn lagging_positions<C: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &impl rdkafka::consumer::Consumer<C>,
    ) -> rdkafka::error::KafkaResult<Vec<(i32, i64)>> {
        let mut tpl = rdkafka::TopicPartitionList::new();
        for id in crate::topics::partition_ids(consumer, &self.topic, STALL_WATCH_CALL_TIMEOUT)? {
            tpl.add_partition(&self.topic, id);
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
