//! Sink metrics, registered on the ops endpoint's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Counters of one sink worker.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Outcomes written (including repeats, which change nothing).
    pub outcomes_written: IntCounter,
    /// Failed store writes that were retried, by store.
    pub write_retries: IntCounterVec,
    /// Records on the outcomes topic that are not outcomes (never ours).
    pub undecodable: IntCounter,
    /// Seconds per successful batch write.
    pub batch_seconds: Histogram,
}

impl SinkMetrics {
    /// Creates and registers the metrics.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            outcomes_written: IntCounter::new(
                "flashsale_sink_outcomes_written_total",
                "Outcomes written to the store",
            )?,
            write_retries: IntCounterVec::new(
                Opts::new("flashsale_sink_write_retries_total", "Store writes retried"),
                &["store"],
            )?,
            undecodable: IntCounter::new(
                "flashsale_sink_undecodable_total",
                "Records on the outcomes topic that do not decode as outcomes",
            )?,
            batch_seconds: Histogram::with_opts(HistogramOpts::new(
                "flashsale_sink_batch_seconds",
                "Time to write one batch",
            ))?,
        };
        registry.register(Box::new(m.outcomes_written.clone()))?;
        registry.register(Box::new(m.write_retries.clone()))?;
        registry.register(Box::new(m.undecodable.clone()))?;
        registry.register(Box::new(m.batch_seconds.clone()))?;
        Ok(m)
    }
}
