//! Submitting a request: register a waiter, produce the record, wait for
//! the outcome.
//!
//! Order matters: the waiter is registered *before* the record is produced,
//! so the outcome cannot arrive unobserved. The wait ends at the first of:
//! the outcome arrives (answer it), the produce fails (503), or the wait
//! budget runs out after the broker acknowledged the record (202 pending:
//! the record is durably in the log and will be decided). A 202 is never
//! given for a record the broker has not acknowledged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::Instrument;

use flashsale_schemas::registry::Contract;
use flashsale_schemas::{Outcome, Request};

use crate::error::ApiError;
use crate::outcomes::Waiters;

/// What a submission came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// The processor decided it in time.
    Decided(Arc<Outcome>),
    /// The record is in the log, but its outcome did not arrive in time.
    Pending,
}

/// Produces a request and waits for its outcome. The HTTP handlers depend
/// only on this, so they are testable without Kafka.
#[async_trait]
pub trait Submitter: Send + Sync {
    /// Submits `request` and waits (bounded) for its outcome.
    async fn submit(&self, request: Request) -> Result<Submitted, ApiError>;
}

/// Why a record was not written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The local producer queue is full: back-pressure, retry later.
    #[error("producer queue is full")]
    QueueFull,
    /// The broker refused or lost the record, or could not be reached.
    #[error("kafka: {0}")]
    Unavailable(String),
    /// Our own record did not encode (a bug, not bad input).
    #[error("encoding the request: {0}")]
    Encode(String),
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::QueueFull => ApiError::Overloaded(e.to_string()),
            PublishError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            PublishError::Encode(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Writes one request to the requests topic and resolves once the broker
/// has acknowledged it.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Produces `request`; `Ok` means acknowledged by all in-sync replicas.
    async fn publish(&self, request: &Request) -> Result<(), PublishError>;
}

/// The Kafka publisher: Confluent-framed Avro, key = product ID.
pub struct KafkaPublisher {
    /// Idempotent, acks=all, murmur2 producer (`flashsale_runtime::kafka`).
    producer: FutureProducer,
    /// Encodes with the registered request schema ID.
    contract: Contract,
    /// The requests topic.
    topic: String,
}

impl KafkaPublisher {
    /// A publisher writing to `topic`.
    pub fn new(producer: FutureProducer, contract: Contract, topic: String) -> Self {
        Self {
            producer,
            contract,
            topic,
        }
    }
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, request: &Request) -> Result<(), PublishError> {
        let payload = self
            .contract
            .encode_request(request)
            .map_err(|e| PublishError::Encode(e.to_string()))?;
        let record = FutureRecord::to(&self.topic)
            .key(request.product_id().as_str())
            .payload(payload.as_slice());
        let delivery = self
            .producer
            .send_result(record)
            .map_err(|(e, _)| match e {
                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => {
                    PublishError::QueueFull
                }
                other => PublishError::Unavailable(other.to_string()),
            })?;
        // Bounded by the producer's message.timeout.ms.
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(PublishError::Unavailable(e.to_string())),
            Err(_) => Err(PublishError::Unavailable("delivery report dropped".into())),
        }
    }
}

/// The real [`Submitter`]: registers a waiter, publishes, waits.
pub struct WaitingSubmitter {
    /// Waiters the outcome listener completes.
    waiters: Arc<Waiters>,
    /// Writes the record.
    publisher: Arc<dyn Publisher>,
    /// Wait budget per request, counted from registration.
    wait: Duration,
}

impl WaitingSubmitter {
    /// A submitter waiting at most `wait` for each outcome.
    pub fn new(waiters: Arc<Waiters>, publisher: Arc<dyn Publisher>, wait: Duration) -> Self {
        Self {
            waiters,
            publisher,
            wait,
        }
    }

    async fn submit_inner(&self, request: Request) -> Result<Submitted, ApiError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut waiter = self
            .waiters
            .register(request.request_id(), request.product_id())
            .map_err(|e| ApiError::Overloaded(e.to_string()))?;
        // Until the broker acks, the outcome may still win the race (it can
        // be read before the delivery report is): take whichever comes first.
        tokio::select! {
            outcome = waiter.outcome() => return Ok(decided(outcome)),
            published = self.publisher.publish(&request) => published?,
        }
        match tokio::time::timeout_at(deadline, waiter.outcome()).await {
            Ok(outcome) => Ok(decided(outcome)),
            Err(_) => {
                tracing::debug!("outcome wait timed out");
                Ok(Submitted::Pending)
            }
        }
    }
}

/// `None` means the registry let go of the waiter, which it never does
/// while the waiter lives; answer "pending" rather than fail.
fn decided(outcome: Option<Arc<Outcome>>) -> Submitted {
    outcome.map_or(Submitted::Pending, Submitted::Decided)
}

#[async_trait]
impl Submitter for WaitingSubmitter {
    async fn submit(&self, request: Request) -> Result<Submitted, ApiError> {
        let kind = match request {
            Request::Purchase(_) => "purchase",
            Request::ConfigureSale(_) => "configure_sale",
        };
        let span = tracing::info_span!(
            "submit",
            kind,
            request_id = %request.request_id(),
            product_id = %request.product_id(),
        );
        self.submit_inner(request).instrument(span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcomes::tests::outcome;
    use flashsale_schemas::{ProductId, PurchaseRequest, RequestId, UserId};
    use prometheus::IntGauge;

    fn purchase(request_id: &str) -> Request {
        Request::Purchase(PurchaseRequest {
            request_id: RequestId::parse(request_id).expect("id"),
            user_id: UserId::parse("u1").expect("id"),
            product_id: ProductId::parse("p1").expect("id"),
            quantity: 1,
            received_at_ms: 0,
        })
    }

    /// A publisher that succeeds and, like a processor plus the listener,
    /// optionally delivers an outcome before returning.
    struct Scripted {
        /// Registry to deliver into.
        waiters: Arc<Waiters>,
        /// Whether to deliver an outcome for the request.
        decide: bool,
        /// Failure to return instead, if any.
        fail: Option<PublishError>,
        /// Waiters seen registered at publish time.
        seen_pending: std::sync::Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl Publisher for Scripted {
        async fn publish(&self, request: &Request) -> Result<(), PublishError> {
            let pending = self.waiters.pending();
            self.seen_pending.lock().expect("lock").push(pending);
            if let Some(e) = self.fail.clone() {
                return Err(e);
            }
            if self.decide {
                let o = outcome(request.request_id().as_str(), request.product_id().as_str());
                self.waiters.deliver(o);
            }
            Ok(())
        }
    }

    fn setup(decide: bool, fail: Option<PublishError>) -> (Arc<Scripted>, WaitingSubmitter) {
        let waiters = Waiters::new(10, IntGauge::new("g", "g").expect("gauge"));
        let publisher = Arc::new(Scripted {
            waiters: waiters.clone(),
            decide,
            fail,
            seen_pending: std::sync::Mutex::new(Vec::new()),
        });
        let submitter =
            WaitingSubmitter::new(waiters, publisher.clone(), Duration::from_millis(50));
        (publisher, submitter)
    }

    /// Proves the waiter is registered before the record is produced (the
    /// publisher sees one pending waiter) and the outcome is returned.
    #[tokio::test]
    async fn registers_before_producing() {
        let (publisher, submitter) = setup(true, None);
        let result = submitter.submit(purchase("r1")).await.expect("submitted");
        assert!(matches!(result, Submitted::Decided(o) if o.request_id.as_str() == "r1"));
        assert_eq!(*publisher.seen_pending.lock().expect("lock"), vec![1]);
        assert_eq!(publisher.waiters.pending(), 0);
    }

    /// Proves a missing outcome ends as Pending after the wait budget and
    /// the waiter is removed (the registry is empty afterwards).
    #[tokio::test]
    async fn timeout_is_pending_and_unregisters() {
        let (publisher, submitter) = setup(false, None);
        let result = submitter.submit(purchase("r1")).await.expect("submitted");
        assert_eq!(result, Submitted::Pending);
        assert_eq!(publisher.waiters.pending(), 0);
    }

    /// Proves produce failures map to 503 codes (unavailable, overloaded)
    /// and leave no waiter behind.
    #[tokio::test]
    async fn produce_failure_is_503() {
        let (publisher, submitter) = setup(false, Some(PublishError::Unavailable("down".into())));
        let err = submitter.submit(purchase("r1")).await.expect_err("fails");
        assert_eq!(err.code(), "unavailable");
        assert_eq!(publisher.waiters.pending(), 0);
        let (_, submitter) = setup(false, Some(PublishError::QueueFull));
        let err = submitter.submit(purchase("r1")).await.expect_err("fails");
        assert_eq!(err.code(), "overloaded");
    }
}
