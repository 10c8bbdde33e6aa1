//! Rebalance capture: the consumer context that records this member's
//! partition changes ([`GroupContext`]) as [`RebalanceEvent`]s, in the order
//! librdkafka reported them.
//!
//! The callbacks only record; the loop acts on the events between batches,
//! with nothing in flight, so a partition's state is dropped and rebuilt at
//! a point where every outcome of it has been acknowledged and committed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};

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
    /// A context tracking `topic`'s partitions, recording into `events`
    /// (shared with the loop, which pops them).
    pub fn new(topic: String, events: Arc<Mutex<VecDeque<RebalanceEvent>>>) -> Self {
        Self { topic, events }
    }

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
