//! The output side of the loop: produces outcomes and dead letters
//! (`Emitter`) and tracks the broker's acknowledgements batch by batch
//! (`Deliveries`), so that a batch's input offsets are handed out for
//! commit only once every record of it, and of every older batch, is
//! acknowledged.
//!
//! The ordering rules live in `Deliveries`, apart from the encoding, so
//! they can be tested against librdkafka's mock cluster without a schema
//! registry:
//! * a decided batch is sealed as one `InFlight` with its commit list;
//! * `Deliveries::settle` returns commit lists oldest first, and stops at
//!   the first batch not fully acknowledged, even if newer ones are;
//! * a failed delivery is an error, and its batch's commit list is never
//!   returned: from then on every wait fails the same way (the loop stops at
//!   the first, and the restart re-decides from the last commit).

use std::collections::VecDeque;
use std::time::Duration;

use futures::FutureExt as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;

use flashsale_schemas::registry::Contract;
use flashsale_schemas::{DeadLetter, Outcome};

use crate::error::RunError;
use crate::metrics::ProcessorMetrics;

/// Flush produced records once this many await acknowledgement (memory bound).
const PENDING_DELIVERIES_MAX: usize = 20_000;
/// Retries of a produce refused because librdkafka's queue is full
/// ([`QUEUE_FULL_WAIT_MS`] apart).
const QUEUE_FULL_RETRIES_MAX: u32 = 2_000;
/// Wait before retrying a produce refused because the queue is full.
const QUEUE_FULL_WAIT_MS: u64 = 5;

/// Records produced and not yet seen acknowledged, grouped by the batch they
/// were decided in, each batch holding back its input offsets.
pub(crate) struct Deliveries {
    /// Idempotent, acks=all, murmur2 producer.
    producer: FutureProducer,
    /// Produced for the batch being decided, not yet acknowledged.
    pending: Vec<DeliveryFuture>,
    /// Sealed batches awaiting acknowledgement, oldest first.
    inflight: VecDeque<InFlight>,
    /// The first delivery failure (or record that could not be produced);
    /// once set, nothing is flushed or settled again, so no batch behind a
    /// lost record is ever handed out for commit.
    failure: Option<String>,
}

/// A decided batch whose records the broker has not all acknowledged yet,
/// and the input offsets to commit once it has.
pub(crate) struct InFlight {
    /// Deliveries not yet seen to complete.
    deliveries: Vec<DeliveryFuture>,
    /// Next offsets of the batch's partitions.
    commits: TopicPartitionList,
}

/// A delivery's result as a loop error; a failure is kept in `failure`
/// (the first one only).
fn delivered(
    result: Result<OwnedDeliveryResult, futures::channel::oneshot::Canceled>,
    failure: &mut Option<String>,
) -> Result<(), RunError> {
    let detail = match result {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err((e, _))) => e.to_string(),
        Err(_) => "delivery report dropped".to_owned(),
    };
    Err(RunError::Delivery(failure.get_or_insert(detail).clone()))
}

impl Deliveries {
    /// Tracks what `producer` sends through [`Deliveries::enqueue`].
    pub(crate) fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            pending: Vec::new(),
            inflight: VecDeque::new(),
            failure: None,
        }
    }

    /// The first delivery failure, if one happened, as an error.
    fn failed(&self) -> Result<(), RunError> {
        match &self.failure {
            Some(detail) => Err(RunError::Delivery(detail.clone())),
            None => Ok(()),
        }
    }

    /// Hands `record` to the producer as part of the batch being decided.
    /// A full local queue is waited out, a bounded number of times; past
    /// [`PENDING_DELIVERIES_MAX`] unacknowledged records, waits for them.
    /// A record that could not be handed over counts as a failed delivery.
    pub(crate) async fn enqueue(
        &mut self,
        record: FutureRecord<'_, str, [u8]>,
    ) -> Result<(), RunError> {
        let mut record = record;
        for _ in 0..QUEUE_FULL_RETRIES_MAX {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push(delivery);
                    if self.pending.len() >= PENDING_DELIVERIES_MAX {
                        self.flush().await?;
                    }
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(QUEUE_FULL_WAIT_MS)).await;
                }
                Err((e, _)) => {
                    self.failure
                        .get_or_insert_with(|| format!("not produced: {e}"));
                    return Err(e.into());
                }
            }
        }
        let detail = self
            .failure
            .get_or_insert("producer queue stayed full".into());
        Err(RunError::Delivery(detail.clone()))
    }

    /// Waits until every record of the batch being decided is acknowledged.
    pub(crate) async fn flush(&mut self) -> Result<(), RunError> {
        self.failed()?;
        for delivery in self.pending.drain(..) {
            delivered(delivery.await, &mut self.failure)?;
        }
        Ok(())
    }

    /// Seals what was produced since the last seal as one in-flight batch
    /// whose input offsets are `commits`.
    pub(crate) fn seal(&mut self, commits: TopicPartitionList) {
        let deliveries = std::mem::take(&mut self.pending);
        self.inflight.push_back(InFlight {
            deliveries,
            commits,
        });
    }

    /// The commit lists of the oldest in-flight batches that are fully
    /// acknowledged, oldest first. Waits for the oldest batches while more
    /// than `keep_max` are in flight (0: wait for all).
    pub(crate) async fn settle(
        &mut self,
        keep_max: usize,
    ) -> Result<Vec<TopicPartitionList>, RunError> {
        self.failed()?;
        let mut settled = Vec::new();
        loop {
            let must_wait = self.inflight.len() > keep_max;
            let Some(front) = self.inflight.front_mut() else {
                break;
            };
            if must_wait {
                for delivery in front.deliveries.drain(..) {
                    delivered(delivery.await, &mut self.failure)?;
                }
            } else {
                let mut i = 0;
                while i < front.deliveries.len() {
                    match (&mut front.deliveries[i]).now_or_never() {
                        Some(result) => {
                            delivered(result, &mut self.failure)?;
                            drop(front.deliveries.swap_remove(i));
                        }
                        None => i += 1,
                    }
                }
                if !front.deliveries.is_empty() {
                    break;
                }
            }
            if let Some(batch) = self.inflight.pop_front() {
                settled.push(batch.commits);
            }
        }
        Ok(settled)
    }
}

/// Produces outcomes and dead letters and tracks their acknowledgements.
pub(crate) struct Emitter {
    /// Produced records and the commit lists they hold back.
    deliveries: Deliveries,
    /// Encodes records with the registered schema IDs.
    contract: Contract,
    /// Where outcomes go.
    outcomes_topic: String,
    /// Where refused records go.
    dead_letter_topic: String,
    /// Counters.
    metrics: ProcessorMetrics,
}

impl Emitter {
    /// An emitter producing through `producer` to `outcomes_topic` and
    /// `dead_letter_topic`, encoding with `contract`.
    pub(crate) fn new(
        producer: FutureProducer,
        contract: Contract,
        (outcomes_topic, dead_letter_topic): (String, String),
        metrics: ProcessorMetrics,
    ) -> Self {
        Self {
            deliveries: Deliveries::new(producer),
            contract,
            outcomes_topic,
            dead_letter_topic,
            metrics,
        }
    }

    /// Produces `o` to the outcomes topic, keyed by its product.
    pub(crate) async fn outcome(&mut self, o: &Outcome) -> Result<(), RunError> {
        let payload = self.contract.encode_outcome(o)?;
        let topic = self.outcomes_topic.clone();
        let record = FutureRecord::to(&topic)
            .key(o.product_id.as_str())
            .payload(payload.as_slice());
        self.deliveries.enqueue(record).await?;
        let (kind, status) = (o.kind.code(), o.status.code());
        let reason = o.reason.map_or("", |r| r.code());
        self.metrics
            .decisions
            .with_label_values(&[kind, status, reason])
            .inc();
        Ok(())
    }

    /// Produces `letter` to the dead-letter topic, its source in headers.
    pub(crate) async fn dead_letter(&mut self, letter: &DeadLetter) -> Result<(), RunError> {
        let payload = self.contract.encode_dead_letter(letter)?;
        let partition = letter.source_partition.to_string();
        let offset = letter.source_offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(header("flashsale.dlq.reason", &letter.reason))
            .insert(header("flashsale.dlq.source.topic", &letter.source_topic))
            .insert(header("flashsale.dlq.source.partition", &partition))
            .insert(header("flashsale.dlq.source.offset", &offset));
        let topic = self.dead_letter_topic.clone();
        let key = letter.key.as_deref().map(String::from_utf8_lossy);
        let mut record = FutureRecord::to(&topic)
            .payload(payload.as_slice())
            .headers(headers);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        self.deliveries.enqueue(record).await?;
        self.metrics
            .dead_letters
            .with_label_values(&[letter.reason.as_str()])
            .inc();
        Ok(())
    }

    /// See [`Deliveries::flush`].
    pub(crate) async fn flush(&mut self) -> Result<(), RunError> {
        self.deliveries.flush().await
    }

    /// See [`Deliveries::seal`].
    pub(crate) fn seal(&mut self, commits: TopicPartitionList) {
        self.deliveries.seal(commits);
    }

    /// See [`Deliveries::settle`].
    pub(crate) async fn settle(
        &mut self,
        keep_max: usize,
    ) -> Result<Vec<TopicPartitionList>, RunError> {
        self.deliveries.settle(keep_max).await
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// The ordering rules of [`Deliveries`], against librdkafka's mock cluster
/// (in-process brokers, no network beyond localhost, no registry), through
/// the same producer configuration the processor uses.
///
/// Acknowledgements are steered with per-broker round-trip times: a "slow"
/// partition led by a broker that answers after [`SLOW_RTT_MS`], a "fast"
/// one led by a broker that answers at once. Whether a record is already
/// acknowledged is then known without sleeping: librdkafka reports the
/// deliveries of one partition in order, so once a later "probe" record
/// sent straight through the producer is acknowledged, every earlier record
/// of that partition is too.
#[cfg(test)]
mod tests {
    use super::*;
    use flashsale_runtime::kafka::producer_config;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::DefaultProducerContext;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    use rdkafka::Offset;

    /// The topic the tests produce to.
    const TOPIC: &str = "emitter-test";
    /// Partition led by the slow broker.
    const SLOW: i32 = 0;
    /// Partition led by the fast broker.
    const FAST: i32 = 1;
    /// Mock broker leading [`SLOW`] (mock broker IDs start at 1).
    const SLOW_BROKER: i32 = 1;
    /// Mock broker leading [`FAST`].
    const FAST_BROKER: i32 = 2;
    /// Round trip of the slow broker: far above anything the fast one takes.
    const SLOW_RTT_MS: u64 = 3_000;
    /// Wait for a probe's acknowledgement before the test fails.
    const PROBE_TIMEOUT_MS: u64 = 10_000;

    type Cluster = MockCluster<'static, DefaultProducerContext>;

    /// A two-broker mock cluster with [`TOPIC`]'s [`SLOW`] partition on
    /// [`SLOW_BROKER`] and [`FAST`] on [`FAST_BROKER`], and a producer on it
    /// that has already delivered to both (connections and producer ID set
    /// up, so later round trips are only the brokers' own).
    async fn cluster() -> (Cluster, FutureProducer) {
        let cluster = MockCluster::new(2).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        cluster
            .partition_leader(TOPIC, SLOW, Some(SLOW_BROKER))
            .expect("slow leader");
        cluster
            .partition_leader(TOPIC, FAST, Some(FAST_BROKER))
            .expect("fast leader");
        let producer: FutureProducer = producer_config(&cluster.bootstrap_servers(), "emitter")
            .create()
            .expect("producer");
        probe(&producer, SLOW).await;
        probe(&producer, FAST).await;
        (cluster, producer)
    }

    /// Makes [`SLOW_BROKER`] answer after [`SLOW_RTT_MS`].
    fn slow_down(cluster: &Cluster) {
        cluster
            .broker_round_trip_time(SLOW_BROKER, Duration::from_millis(SLOW_RTT_MS))
            .expect("round-trip time");
    }

    fn record(partition: i32) -> FutureRecord<'static, str, [u8]> {
        FutureRecord::to(TOPIC)
            .partition(partition)
            .key("product")
            .payload(b"outcome".as_slice())
    }

    /// Sends a record straight through `producer` and waits for its ack:
    /// afterwards every record sent earlier to `partition` is acknowledged.
    async fn probe(producer: &FutureProducer, partition: i32) {
        let sent = producer.send(record(partition), Duration::ZERO);
        let acked = tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), sent)
            .await
            .expect("probe acknowledged in time");
        acked.expect("probe delivered");
    }

    /// Produces one record per entry of `partitions` through `deliveries`
    /// and seals them as one batch whose commit list is `commit` (of
    /// partition [`SLOW`] here: only its identity matters).
    async fn batch(deliveries: &mut Deliveries, partitions: &[i32], commit: i64) {
        for &p in partitions {
            deliveries.enqueue(record(p)).await.expect("enqueued");
        }
        let mut commits = TopicPartitionList::new();
        commits
            .add_partition_offset(TOPIC, SLOW, Offset::Offset(commit))
            .expect("commit list");
        deliveries.seal(commits);
    }

    /// The batches `settled` names, by their commit offset, in order.
    fn ids(settled: &[TopicPartitionList]) -> Vec<i64> {
        settled
            .iter()
            .flat_map(|tpl| tpl.elements())
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                other => panic!("unexpected offset {other:?}"),
            })
            .collect()
    }

    /// Proves commits come back in log order, and only once a batch and
    /// every older batch are fully acknowledged. Batch 1 has a fast and a
    /// slow record, batch 2 a fast one. Once the fast partition's probe is
    /// acknowledged, batch 2 is complete and batch 1 half so: a settle that
    /// does not wait hands out neither (batch 1 lacks its slow record,
    /// batch 2 is behind batch 1). Once the slow partition's probe is
    /// acknowledged, both come back in one settle, oldest first.
    #[tokio::test]
    async fn commits_follow_log_order_and_wait_for_older_batches() {
        let (cluster, producer) = cluster().await;
        slow_down(&cluster);
        let mut deliveries = Deliveries::new(producer.clone());
        batch(&mut deliveries, &[FAST, SLOW], 1).await;
        batch(&mut deliveries, &[FAST], 2).await;

        probe(&producer, FAST).await;
        let early = deliveries.settle(usize::MAX).await.expect("settle");
        assert!(early.is_empty(), "settled early: {:?}", ids(&early));

        probe(&producer, SLOW).await;
        let settled = deliveries.settle(usize::MAX).await.expect("settle");
        assert_eq!(ids(&settled), vec![1, 2]);
        assert!(deliveries.settle(0).await.expect("settle").is_empty());
    }

    /// Proves `settle(0)` waits for everything in flight (what the loop
    /// does before acting on a rebalance, writing a snapshot and stopping):
    /// with the slow broker still holding batches 1 and 3, and nothing
    /// probed, one call returns all three batches, oldest first, and leaves
    /// nothing in flight.
    #[tokio::test]
    async fn settle_zero_waits_for_everything_in_flight() {
        let (cluster, producer) = cluster().await;
        slow_down(&cluster);
        let mut deliveries = Deliveries::new(producer);
        batch(&mut deliveries, &[SLOW], 1).await;
        batch(&mut deliveries, &[FAST], 2).await;
        batch(&mut deliveries, &[FAST, SLOW], 3).await;

        let settled = deliveries.settle(0).await.expect("settle");
        assert_eq!(ids(&settled), vec![1, 2, 3]);
        assert!(deliveries.inflight.is_empty());
        assert!(deliveries.pending.is_empty());
    }

    /// Proves `settle(k)` waits only for the oldest batches beyond `k`:
    /// batch 1 is fast, batches 2 and 3 are slow. `settle(2)` with three in
    /// flight must wait for batch 1 and returns it alone: had it waited for
    /// anything more, the slow batches would have come back too. Two stay in
    /// flight; `settle(0)` then waits for them.
    #[tokio::test]
    async fn settle_k_waits_only_for_the_oldest_beyond_k() {
        let (cluster, producer) = cluster().await;
        slow_down(&cluster);
        let mut deliveries = Deliveries::new(producer);
        batch(&mut deliveries, &[FAST], 1).await;
        batch(&mut deliveries, &[SLOW], 2).await;
        batch(&mut deliveries, &[SLOW], 3).await;

        let settled = deliveries.settle(2).await.expect("settle");
        assert_eq!(ids(&settled), vec![1]);
        assert_eq!(deliveries.inflight.len(), 2);

        let settled = deliveries.settle(0).await.expect("settle");
        assert_eq!(ids(&settled), vec![2, 3]);
    }

    /// Proves a delivery the broker refuses is an error and its batch's
    /// offsets are never handed out for commit. The mock broker is told to
    /// fail the next produce request with a non-retriable error
    /// (`MSG_SIZE_TOO_LARGE`; `TOPIC_AUTHORIZATION_FAILED` would also make
    /// the client refuse the topic locally afterwards). Batch 1, acknowledged
    /// before, still settles; batch 2 fails; batch 3, acknowledged after the
    /// failure, is behind the lost record and must not settle either, on
    /// any later call.
    #[tokio::test]
    async fn failed_delivery_is_an_error_and_never_committed() {
        let (cluster, producer) = cluster().await;
        let mut deliveries = Deliveries::new(producer.clone());
        batch(&mut deliveries, &[FAST], 1).await;
        probe(&producer, FAST).await;
        assert_eq!(
            ids(&deliveries.settle(usize::MAX).await.expect("settle")),
            vec![1]
        );

        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        batch(&mut deliveries, &[FAST], 2).await;
        let failed = deliveries.settle(0).await;
        assert!(
            matches!(&failed, Err(RunError::Delivery(d)) if d.contains("too large")),
            "{failed:?}"
        );

        batch(&mut deliveries, &[FAST], 3).await;
        probe(&producer, FAST).await;
        for keep_max in [usize::MAX, 0] {
            let again = deliveries.settle(keep_max).await;
            assert!(matches!(again, Err(RunError::Delivery(_))), "{again:?}");
        }
        assert!(deliveries.flush().await.is_err());
    }

    /// Proves a record the producer refuses outright (over
    /// `message.max.bytes`, 1 MB by default) is an error, and the batch it
    /// belonged to never settles even though its other record was delivered.
    #[tokio::test]
    async fn refused_record_is_an_error_and_never_committed() {
        let (_cluster, producer) = cluster().await;
        let mut deliveries = Deliveries::new(producer.clone());
        deliveries.enqueue(record(FAST)).await.expect("enqueued");
        let big = vec![0u8; 2_000_000];
        let refused = deliveries
            .enqueue(
                FutureRecord::to(TOPIC)
                    .partition(FAST)
                    .payload(big.as_slice()),
            )
            .await;
        assert!(matches!(refused, Err(RunError::Kafka(_))), "{refused:?}");
        deliveries.seal(TopicPartitionList::new());
        probe(&producer, FAST).await;
        let settled = deliveries.settle(0).await;
        assert!(matches!(settled, Err(RunError::Delivery(_))), "{settled:?}");
    }

    /// A producer like the processor's but whose local queue holds one record.
    fn one_record_producer(cluster: &Cluster) -> FutureProducer {
        producer_config(&cluster.bootstrap_servers(), "emitter-queue")
            .set("queue.buffering.max.messages", "1")
            .create()
            .expect("producer")
    }

    /// Proves a full producer queue is waited out: with room for one record
    /// and one not yet delivered (it waits at least `linger.ms`), a direct
    /// send is refused with `QueueFull`, yet `enqueue` of the same record
    /// succeeds once the first is delivered, and the batch settles.
    #[tokio::test]
    async fn queue_full_is_waited_out() {
        let (cluster, _warm) = cluster().await;
        let producer = one_record_producer(&cluster);
        let mut deliveries = Deliveries::new(producer.clone());
        deliveries.enqueue(record(FAST)).await.expect("first");
        let direct = producer.send_result(record(FAST));
        assert!(
            matches!(
                direct,
                Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    _
                ))
            ),
            "the queue should be full"
        );
        deliveries.enqueue(record(FAST)).await.expect("second");
        deliveries.seal(TopicPartitionList::new());
        let settled = deliveries.settle(0).await.expect("settle");
        assert_eq!(settled.len(), 1);
    }

    /// Proves the `QueueFull` retries are bounded: with every broker down
    /// the one-record queue never drains, so `enqueue` gives up after
    /// [`QUEUE_FULL_RETRIES_MAX`] waits of [`QUEUE_FULL_WAIT_MS`] (tokio's
    /// clock is paused and jumps over each wait) with an error, and the
    /// batch never settles.
    #[tokio::test(start_paused = true)]
    async fn queue_full_gives_up_after_the_bound() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(TOPIC, 2, 1).expect("topic");
        cluster.broker_down(-1).expect("brokers down");
        let mut deliveries = Deliveries::new(one_record_producer(&cluster));
        deliveries.enqueue(record(FAST)).await.expect("first");
        let started = tokio::time::Instant::now();
        let full = deliveries.enqueue(record(FAST)).await;
        assert!(
            matches!(&full, Err(RunError::Delivery(d)) if d.contains("stayed full")),
            "{full:?}"
        );
        let waited_ms = u64::from(QUEUE_FULL_RETRIES_MAX) * QUEUE_FULL_WAIT_MS;
        assert!(started.elapsed() >= Duration::from_millis(waited_ms));
        deliveries.seal(TopicPartitionList::new());
        assert!(deliveries.settle(usize::MAX).await.is_err());
    }
}
