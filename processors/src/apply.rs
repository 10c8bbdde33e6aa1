//! Replay/apply glue: applies one input record to its partition's state
//! (`apply`), emitting its outcome or dead letter when live and nothing
//! when restoring, and applies whole ranges read outside the group
//! (`replay_range`).
//!
//! Live decisions, gap fills and restores all go through `apply`, so a
//! record is classified and decided the same way whichever path reads it:
//! that sameness is what makes a re-decided tail emit identical outcomes.

use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use flashsale_core::{DedupeLimits, PartitionState, Position};
use flashsale_schemas::records::DeadLetterReason;
use flashsale_schemas::registry::Contract;
use flashsale_schemas::DeadLetter;

use crate::classify::{classify, Classified, RawRecord};
use crate::emitter::Emitter;
use crate::error::RunError;
use crate::metrics::ProcessorMetrics;
use crate::replay::Replayer;

/// What applying a record needs besides the state.
pub(crate) struct ApplyCtx<'a> {
    /// Decodes requests.
    pub(crate) contract: &'a Contract,
    /// Partitions of the requests topic, for the murmur2 ownership check.
    pub(crate) partition_count: i32,
    /// The requests topic, named in dead letters.
    pub(crate) source_topic: &'a str,
    /// Dedupe limits (deterministic configuration).
    pub(crate) limits: DedupeLimits,
    /// Counters.
    pub(crate) metrics: &'a ProcessorMetrics,
    /// Shutdown, for registry retries.
    pub(crate) cancel: &'a CancellationToken,
}

/// Applies one record to its partition's state, emitting its outcome or dead
/// letter when `emitter` is given (live) and silently otherwise (restore).
pub(crate) async fn apply(
    ctx: &ApplyCtx<'_>,
    state: &mut PartitionState,
    message: &OwnedMessage,
    emitter: Option<&mut Emitter>,
) -> Result<(), RunError> {
    let raw = RawRecord {
        key: message.key(),
        value: message.payload(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
    };
    let classified = classify(
        ctx.contract,
        ctx.partition_count,
        &raw,
        ctx.metrics,
        ctx.cancel,
    )
    .await?;
    match classified {
        Classified::Decide(request) => {
            let at = Position {
                partition: raw.partition,
                offset: raw.offset,
            };
            let outcome = state.decide(at, &request, ctx.limits);
            match emitter {
                Some(e) => e.outcome(&outcome).await?,
                None => ctx.metrics.replayed.inc(),
            }
        }
        Classified::Refuse { reason, detail } => {
            state.skip(raw.offset);
            if let Some(e) = emitter {
                tracing::warn!(reason = reason.code(), %detail, partition = raw.partition, offset = raw.offset, "record dead-lettered");
                e.dead_letter(&dead_letter(ctx.source_topic, &raw, reason, detail))
                    .await?;
            }
        }
    }
    Ok(())
}

fn dead_letter(
    topic: &str,
    raw: &RawRecord<'_>,
    reason: DeadLetterReason,
    detail: String,
) -> DeadLetter {
    DeadLetter {
        reason: reason.code().to_owned(),
        detail,
        source_topic: topic.to_owned(),
        source_partition: raw.partition,
        source_offset: raw.offset,
        source_timestamp_ms: raw.timestamp_ms,
        key: raw.key.map(<[u8]>::to_vec),
        value: raw.value.map(<[u8]>::to_vec),
    }
}

/// Applies `[from, to)` of a partition read outside the group.
pub(crate) async fn replay_range(
    replayer: &mut Replayer,
    ctx: &ApplyCtx<'_>,
    state: &mut PartitionState,
    mut emitter: Option<&mut Emitter>,
    (partition, from, to): (i32, i64, i64),
) -> Result<(), RunError> {
    replayer.start(ctx.source_topic, partition, from, to)?;
    while let Some(message) = replayer.next().await? {
        if message.offset() < state.next_offset {
            continue;
        }
        apply(ctx, state, &message, emitter.as_deref_mut()).await?;
    }
    // Offsets in [from, to) that the log does not hold are gaps; step over them.
    if state.next_offset < to {
        state.skip(to - 1);
    }
    Ok(())
}
