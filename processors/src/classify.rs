//! Turns a raw input record into a request to decide, or a refusal.
//!
//! Errors are classified by whose fault they are:
//! * the record's (bad bytes, unknown schema, invalid content, wrong
//!   partition, key mismatch): deterministic, so the record is dead-lettered
//!   and the partition keeps flowing, on every replay alike;
//! * the registry's (unavailable): transient, so we retry with bounded
//!   backoff and never dead-letter a good record for it. Past the bound the
//!   processor stops rather than decide on a partial view.

use std::time::Duration;

use flashsale_runtime::retry::{retry, Backoff, RetryError};
use flashsale_schemas::avro::ContractError;
use flashsale_schemas::partition::partition_for;
use flashsale_schemas::records::DeadLetterReason;
use flashsale_schemas::registry::{Contract, DecodeError};
use flashsale_schemas::{ProductId, Request};
use tokio_util::sync::CancellationToken;

use crate::metrics::ProcessorMetrics;

/// Schema lookups while the registry is unavailable: 40 tries from 50 ms,
/// doubling to at most 2 s apart (about a minute in all).
const REGISTRY_BACKOFF: Backoff = Backoff {
    attempts_max: 40,
    first: Duration::from_millis(50),
    max: Duration::from_millis(2_000),
};

/// A record as read from the requests topic.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Record key: must be the product ID as UTF-8.
    pub key: Option<&'a [u8]>,
    /// Record value: Confluent-framed Avro.
    pub value: Option<&'a [u8]>,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its Kafka timestamp, if any.
    pub timestamp_ms: Option<i64>,
}

/// What to do with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Decide it.
    Decide(Request),
    /// Refuse it: send it to the dead-letter topic with this reason.
    Refuse {
        /// Stable reason.
        reason: DeadLetterReason,
        /// Operator-facing detail.
        detail: String,
    },
}

/// Why classification could not finish.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The registry stayed unavailable past the retry bound.
    #[error("schema registry unavailable after {attempts} attempts: {last}")]
    RegistryDown {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// Shutdown was requested while waiting for the registry.
    #[error("cancelled")]
    Cancelled,
}

fn refuse(reason: DeadLetterReason, detail: impl Into<String>) -> Classified {
    Classified::Refuse {
        reason,
        detail: detail.into(),
    }
}

/// Checks the key: present, a valid product ID, and owned by the partition
/// the record arrived on under murmur2.
pub fn check_key(raw: &RawRecord<'_>, partition_count: i32) -> Result<ProductId, Classified> {
    let Some(key) = raw.key else {
        return Err(refuse(DeadLetterReason::KeyMismatch, "record has no key"));
    };
    let text = std::str::from_utf8(key)
        .map_err(|_| refuse(DeadLetterReason::KeyMismatch, "key is not UTF-8"))?;
    let product = ProductId::parse(text)
        .map_err(|e| refuse(DeadLetterReason::KeyMismatch, format!("key: {e}")))?;
    let owner = partition_for(key, partition_count);
    if owner != raw.partition {
        return Err(refuse(
            DeadLetterReason::WrongPartition,
            format!(
                "key {text} belongs to partition {owner} of {partition_count} under murmur2, arrived on {}",
                raw.partition
            ),
        ));
    }
    Ok(product)
}

fn refusal_for(err: &DecodeError) -> Classified {
    let reason = match err {
        DecodeError::UnknownSchema { .. } => DeadLetterReason::UnknownSchema,
        DecodeError::Contract(ContractError::BadId(_)) => DeadLetterReason::InvalidContent,
        _ => DeadLetterReason::Undecodable,
    };
    refuse(reason, err.to_string())
}

/// Classifies one record. Deterministic for a given record and registry
/// content; only registry outages are retried.
pub async fn classify(
    contract: &Contract,
    partition_count: i32,
    raw: &RawRecord<'_>,
    metrics: &ProcessorMetrics,
    cancel: &CancellationToken,
) -> Result<Classified, ClassifyError> {
    let product = match check_key(raw, partition_count) {
        Ok(p) => p,
        Err(refusal) => return Ok(refusal),
    };
    let Some(value) = raw.value else {
        return Ok(refuse(DeadLetterReason::Undecodable, "record has no value"));
    };
    let request = match decode_with_retry(contract, value, metrics, cancel).await? {
        Ok(r) => r,
        Err(e) => return Ok(refusal_for(&e)),
    };
    if request.product_id() != &product {
        return Ok(refuse(
            DeadLetterReason::KeyMismatch,
            format!("key {product} but product_id {}", request.product_id()),
        ));
    }
    if let Err(why) = request.validate() {
        return Ok(refuse(DeadLetterReason::InvalidContent, why));
    }
    Ok(Classified::Decide(request))
}

async fn decode_with_retry(
    contract: &Contract,
    value: &[u8],
    metrics: &ProcessorMetrics,
    cancel: &CancellationToken,
) -> Result<Result<Request, DecodeError>, ClassifyError> {
    // Only an unavailable registry is retried; every other answer, good or
    // bad, is final and goes back to the caller as it is.
    let decoded = retry("schema lookup", REGISTRY_BACKOFF, cancel, || async {
        match contract.decode_request(value).await {
            Err(DecodeError::RegistryUnavailable(e)) => {
                metrics.registry_retries.inc();
                Err(e)
            }
            other => Ok(other),
        }
    })
    .await;
    decoded.map_err(|e| match e {
        RetryError::Cancelled { .. } => ClassifyError::Cancelled,
        RetryError::Exhausted { attempts, last, .. } => {
            ClassifyError::RegistryDown { attempts, last }
        }
    })
}
