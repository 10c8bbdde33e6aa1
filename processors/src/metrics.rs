//! Processor metrics, registered on the ops endpoint's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and gauges of one processor instance.
#[derive(Clone)]
pub struct ProcessorMetrics {
    /// Decisions emitted, by kind, status and reason.
    pub decisions: IntCounterVec,
    /// Records sent to the dead-letter topic, by reason.
    pub dead_letters: IntCounterVec,
    /// Records applied without emitting (state rebuilt from the log).
    pub replayed: IntCounter,
    /// Duration of partition restores, in seconds.
    pub restore_seconds: Histogram,
    /// Records per batch.
    pub batch_records: Histogram,
    /// Partitions this instance owns and has restored.
    pub partitions_owned: IntGauge,
    /// Registry lookups retried because the registry was unavailable.
    pub registry_retries: IntCounter,
    /// Snapshots written.
    pub snapshots_written: IntCounter,
    /// Size of the last snapshot written, in bytes.
    pub snapshot_bytes: IntGauge,
    /// Restores that started from a snapshot rather than the log's start.
    pub restores_from_snapshot: IntCounter,
}

impl ProcessorMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            decisions: IntCounterVec::new(
                Opts::new("flashsale_processor_decisions_total", "Decisions emitted"),
                &["kind", "status", "reason"],
            )?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "flashsale_processor_dead_letters_total",
                    "Records dead-lettered",
                ),
                &["reason"],
            )?,
            replayed: IntCounter::new(
                "flashsale_processor_replayed_records_total",
                "Records applied silently while restoring state",
            )?,
            restore_seconds: Histogram::with_opts(HistogramOpts::new(
                "flashsale_processor_restore_seconds",
                "Time to restore one partition's state",
            ))?,
            batch_records: Histogram::with_opts(
                HistogramOpts::new("flashsale_processor_batch_records", "Records per batch")
                    .buckets(vec![1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0]),
            )?,
            partitions_owned: IntGauge::new(
                "flashsale_processor_partitions_owned",
                "Partitions owned and restored",
            )?,
            registry_retries: IntCounter::new(
                "flashsale_processor_registry_retries_total",
                "Decodes retried because the schema registry was unavailable",
            )?,
            snapshots_written: IntCounter::new(
                "flashsale_processor_snapshots_written_total",
                "Partition state snapshots written",
            )?,
            snapshot_bytes: IntGauge::new(
                "flashsale_processor_snapshot_bytes",
                "Size of the last snapshot written",
            )?,
            restores_from_snapshot: IntCounter::new(
                "flashsale_processor_restores_from_snapshot_total",
                "Partition restores that started from a snapshot",
            )?,
        };
        registry.register(Box::new(m.snapshots_written.clone()))?;
        registry.register(Box::new(m.snapshot_bytes.clone()))?;
        registry.register(Box::new(m.restores_from_snapshot.clone()))?;
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.dead_letters.clone()))?;
        registry.register(Box::new(m.replayed.clone()))?;
        registry.register(Box::new(m.restore_seconds.clone()))?;
        registry.register(Box::new(m.batch_records.clone()))?;
        registry.register(Box::new(m.partitions_owned.clone()))?;
        registry.register(Box::new(m.registry_retries.clone()))?;
        Ok(m)
    }
}
