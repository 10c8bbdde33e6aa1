//! Outcome delivery: the waiter registry and the outcome listener.
//!
//! A request registers a [`Waiter`] under its request ID *before* its record
//! is produced, so its outcome cannot slip past. Every ingress instance runs
//! one [`OutcomeListener`] reading *all* partitions of the outcomes topic
//! (assign mode, no consumer group), so whichever processor decides a request
//! and whichever instance produced it, the waiting instance sees the outcome.
//! The listener is positioned at each partition's high watermark, fetched at
//! start before the HTTP server serves: everything produced after start is
//! read, nothing older is replayed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus::IntGauge;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use flashsale_runtime::kafka::assign_consumer_config;
use flashsale_schemas::registry::Contract;
use flashsale_schemas::{Outcome, ProductId, RequestId};

use crate::metrics::IngressMetrics;

/// Broker round-trips (metadata, watermarks) give up after this long.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the listener looks for partitions added to the outcomes topic.
const PARTITION_REFRESH: Duration = Duration::from_secs(30);
/// Pause after a consumer error, so a broker outage is not a busy loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// Registration refused: `pending_max` requests are already waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{pending_max} requests are already waiting for outcomes")]
pub struct Overloaded {
    /// The limit in force.
    pub pending_max: usize,
}

/// One registered waiter inside the registry.
struct Slot {
    /// Identifies the waiter, so a timed-out request removes only itself.
    token: u64,
    /// The product asked about: an outcome with the same request ID for
    /// another product (another partition, decided independently) is not
    /// this request's outcome.
    product_id: ProductId,
    /// Where the outcome goes.
    sender: oneshot::Sender<Arc<Outcome>>,
}

/// The registry's mutable part, behind one lock.
#[derive(Default)]
struct Slots {
    /// Waiters by request ID; several HTTP requests may share one ID.
    by_request: HashMap<RequestId, Vec<Slot>>,
    /// Total waiters across all IDs (the bounded quantity).
    count: usize,
}

/// Requests waiting for their outcome, bounded by `pending_max`.
pub struct Waiters {
    /// The waiters; critical sections are a few map operations.
    slots: Mutex<Slots>,
    /// Most waiters at once; registration beyond it is refused.
    pending_max: usize,
    /// Source of waiter tokens.
    next_token: AtomicU64,
    /// Mirrors `count` for `/metrics`.
    gauge: IntGauge,
}

impl Waiters {
    /// An empty registry holding at most `pending_max` waiters.
    pub fn new(pending_max: usize, gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(Slots::default()),
            pending_max,
            next_token: AtomicU64::new(0),
            gauge,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (each operation is a single insert/remove), so keep going.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a waiter for `request_id` about `product_id`.
    pub fn register(
        self: &Arc<Self>,
        request_id: &RequestId,
        product_id: &ProductId,
    ) -> Result<Waiter, Overloaded> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        let mut slots = self.lock();
        if slots.count >= self.pending_max {
            return Err(Overloaded {
                pending_max: self.pending_max,
            });
        }
        slots
            .by_request
            .entry(request_id.clone())
            .or_default()
            .push(Slot {
                token,
                product_id: product_id.clone(),
                sender,
            });
        slots.count += 1;
        self.gauge.set(slots.count as i64);
        Ok(Waiter {
            waiters: Arc::clone(self),
            request_id: request_id.clone(),
            token,
            receiver,
            settled: false,
        })
    }

    /// Hands `outcome` to every waiter of its request ID and product, and
    /// forgets them. Returns how many were waiting.
    pub fn deliver(&self, outcome: Outcome) -> usize {
        let mut slots = self.lock();
        let Some(list) = slots.by_request.remove(&outcome.request_id) else {
            return 0;
        };
        let (mine, others): (Vec<Slot>, Vec<Slot>) = list
            .into_iter()
            .partition(|s| s.product_id == outcome.product_id);
        if !others.is_empty() {
            slots.by_request.insert(outcome.request_id.clone(), others);
        }
        slots.count -= mine.len();
        self.gauge.set(slots.count as i64);
        drop(slots);
        let woken = mine.len();
        let outcome = Arc::new(outcome);
        for slot in mine {
            // Err: the request gave up (timeout, disconnect) meanwhile.
            let _ = slot.sender.send(Arc::clone(&outcome));
        }
        woken
    }

    /// Requests currently waiting.
    pub fn pending(&self) -> usize {
        self.lock().count
    }

    /// Removes one waiter if it is still registered.
    fn remove(&self, request_id: &RequestId, token: u64) {
        let mut slots = self.lock();
        let Some(list) = slots.by_request.get_mut(request_id) else {
            return;
        };
        let before = list.len();
        list.retain(|s| s.token != token);
        let removed = before - list.len();
        if list.is_empty() {
            slots.by_request.remove(request_id);
        }
        slots.count -= removed;
        self.gauge.set(slots.count as i64);
    }
}

/// One request's claim on its outcome. Dropping it (timeout, client gone,
/// produce failure) unregisters it, so abandoned waiters never accumulate.
pub struct Waiter {
    /// The registry to leave on drop.
    waiters: Arc<Waiters>,
    /// The key it is registered under.
    request_id: RequestId,
    /// Its token within that key.
    token: u64,
    /// Receives the outcome.
    receiver: oneshot::Receiver<Arc<Outcome>>,
    /// True once the outcome arrived (the registry already forgot it).
    settled: bool,
}

impl Waiter {
    /// Waits for the outcome. Cancel-safe: may be raced in `select!` and
    /// polled again. `None` only if the registry dropped the waiter.
    pub async fn outcome(&mut self) -> Option<Arc<Outcome>> {
        let outcome = (&mut self.receiver).await.ok();
        self.settled = true;
        outcome
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.settled {
            self.waiters.remove(&self.request_id, self.token);
        }
    }
}

/// Why the listener could not be positioned.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The outcomes topic does not exist (yet).
    #[error("topic {0} has no partitions (not created yet?)")]
    NoTopic(String),
}

/// Tails every partition of the outcomes topic and delivers each outcome to
/// its waiters.
pub struct OutcomeListener {
    /// Assign-mode consumer over all partitions (no group, no commits).
    consumer: StreamConsumer,
    /// Decodes outcomes (writer schemas by ID from the registry).
    contract: Contract,
    /// Where outcomes go.
    waiters: Arc<Waiters>,
    /// The outcomes topic.
    topic: String,
    /// Partitions assigned so far (0..partitions).
    partitions: i32,
    /// Decode error counter.
    metrics: IngressMetrics,
}

impl OutcomeListener {
    /// Creates the consumer and assigns every partition of `topic` at its
    /// current high watermark. Blocking broker calls: run it inside
    /// `block_in_place` or before the runtime is busy.
    pub fn positioned(
        brokers: &str,
        client_id: &str,
        topic: &str,
        contract: Contract,
        waiters: Arc<Waiters>,
        metrics: IngressMetrics,
    ) -> Result<Self, ListenerError> {
        let mut config = assign_consumer_config(brokers, client_id);
        // Partition ends mean nothing to a tail that never stops.
        config.set("enable.partition.eof", "false");
        let consumer: StreamConsumer = config.create()?;
        let partitions = partition_count(&consumer, topic)?;
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            let (_low, high) = consumer.fetch_watermarks(topic, partition, BROKER_CALL_TIMEOUT)?;
            assignment.add_partition_offset(topic, partition, Offset::Offset(high))?;
            tracing::debug!(topic, partition, high, "outcome listener positioned");
        }
        consumer.assign(&assignment)?;
        tracing::info!(
            topic,
            partitions,
            "outcome listener assigned at high watermarks"
        );
        Ok(Self {
            consumer,
            contract,
            waiters,
            topic: topic.to_owned(),
            partitions,
            metrics,
        })
    }

    /// Delivers outcomes until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut refresh = tokio::time::interval(PARTITION_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = refresh.tick() => self.pick_up_new_partitions(),
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        let payload = message.payload().map(<[u8]>::to_vec);
                        let at = (message.partition(), message.offset());
                        drop(message);
                        self.handle(payload, at).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "outcome consumer error");
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                },
            }
        }
        tracing::info!("outcome listener stopped");
    }

    /// Decodes one outcome record and completes its waiters.
    async fn handle(&self, payload: Option<Vec<u8>>, (partition, offset): (i32, i64)) {
        // An outcome can only be awaited if its waiter registered before the
        // request was produced, hence before the outcome was read: with no
        // waiter at all, nothing read now can be awaited.
        if self.waiters.pending() == 0 {
            return;
        }
        let Some(bytes) = payload else {
            tracing::warn!(partition, offset, "outcome record without a value");
            return;
        };
        match self.contract.decode_outcome(&bytes).await {
            Ok(outcome) => {
                let request_id = outcome.request_id.clone();
                let woken = self.waiters.deliver(outcome);
                if woken > 0 {
                    tracing::debug!(%request_id, woken, partition, offset, "outcome delivered");
                }
            }
            Err(e) => {
                self.metrics.outcome_decode_errors.inc();
                tracing::warn!(error = %e, partition, offset, "undecodable outcome skipped");
            }
        }
    }

    /// Assigns partitions added to the topic since start, from their
    /// beginning: everything in a new partition is newer than our start.
    fn pick_up_new_partitions(&mut self) {
        let topic = self.topic.clone();
        let count = tokio::task::block_in_place(|| partition_count(&self.consumer, &topic));
        let count = match count {
            Ok(c) if c > self.partitions => c,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "outcome partition refresh failed");
                return;
            }
        };
        let mut added = TopicPartitionList::new();
        for partition in self.partitions..count {
            if let Err(e) = added.add_partition_offset(&topic, partition, Offset::Beginning) {
                tracing::warn!(error = %e, partition, "cannot add partition");
                return;
            }
        }
        match self.consumer.incremental_assign(&added) {
            Ok(()) => {
                tracing::info!(
                    from = self.partitions,
                    to = count,
                    "outcome partitions added"
                );
                self.partitions = count;
            }
            Err(e) => tracing::warn!(error = %e, "assigning new outcome partitions failed"),
        }
    }
}

fn partition_count(consumer: &StreamConsumer, topic: &str) -> Result<i32, ListenerError> {
    match flashsale_runtime::topics::partition_count(consumer, topic, BROKER_CALL_TIMEOUT)? {
        0 => Err(ListenerError::NoTopic(topic.to_owned())),
        count => Ok(count),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flashsale_schemas::{OutcomeKind, Status};

    /// A minimal accepted purchase outcome for tests.
    pub(crate) fn outcome(request_id: &str, product_id: &str) -> Outcome {
        Outcome {
            request_id: RequestId::parse(request_id).expect("test id"),
            product_id: ProductId::parse(product_id).expect("test id"),
            kind: OutcomeKind::Purchase,
            status: Status::Accepted,
            reason: None,
            user_id: None,
            quantity: 1,
            order_id: None,
            unit_price: None,
            remaining: 0,
            stock: 0,
            user_total: 0,
            sale: None,
            source_partition: 0,
            source_offset: 0,
            decided_at_ms: 0,
        }
    }

    fn ids(r: &str, p: &str) -> (RequestId, ProductId) {
        (
            RequestId::parse(r).expect("id"),
            ProductId::parse(p).expect("id"),
        )
    }

    fn registry(max: usize) -> Arc<Waiters> {
        Waiters::new(max, IntGauge::new("g", "g").expect("gauge"))
    }

    /// Proves several requests sharing one request ID all receive the same
    /// outcome and leave the registry empty: two waiters, one delivery.
    #[tokio::test]
    async fn shared_request_id_all_woken() {
        let waiters = registry(10);
        let (r, p) = ids("r1", "p1");
        let mut a = waiters.register(&r, &p).expect("room");
        let mut b = waiters.register(&r, &p).expect("room");
        assert_eq!(waiters.deliver(outcome("r1", "p1")), 2);
        let (oa, ob) = (a.outcome().await.expect("a"), b.outcome().await.expect("b"));
        assert!(Arc::ptr_eq(&oa, &ob));
        assert_eq!(waiters.pending(), 0);
        assert_eq!(waiters.gauge.get(), 0);
    }

    /// Proves an outcome for the same request ID but another product does not
    /// complete a waiter (it is another partition's independent decision).
    #[tokio::test]
    async fn other_product_not_delivered() {
        let waiters = registry(10);
        let (r, p) = ids("r1", "p1");
        let _w = waiters.register(&r, &p).expect("room");
        assert_eq!(waiters.deliver(outcome("r1", "p2")), 0);
        assert_eq!(waiters.pending(), 1);
    }

    /// Proves the bound: registration beyond pending_max is refused, and
    /// dropping a waiter (timeout/disconnect) frees its place and removes
    /// only itself, not a sibling with the same request ID.
    #[tokio::test]
    async fn bounded_and_drop_unregisters() {
        let waiters = registry(2);
        let (r, p) = ids("r1", "p1");
        let first = waiters.register(&r, &p).expect("room");
        let mut second = waiters.register(&r, &p).expect("room");
        assert_eq!(
            waiters.register(&r, &p).err(),
            Some(Overloaded { pending_max: 2 })
        );
        drop(first);
        assert_eq!(waiters.pending(), 1);
        assert_eq!(waiters.deliver(outcome("r1", "p1")), 1);
        assert!(second.outcome().await.is_some());
        drop(second);
        assert_eq!(waiters.pending(), 0);
    }

    /// Proves an outcome nobody waits for is ignored without side effects.
    #[test]
    fn unknown_request_ignored() {
        let waiters = registry(1);
        assert_eq!(waiters.deliver(outcome("nobody", "p1")), 0);
        assert_eq!(waiters.pending(), 0);
    }
}
