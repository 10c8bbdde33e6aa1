//! Folds samples into counts, per-product sales and a latency histogram,
//! and turns them into a [`Report`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::client::{DriverConfig, Mode, Sample};
use crate::target::Verdict;
use crate::workload::Workload;

/// Highest latency the histogram tracks exactly (one hour, in µs); anything
/// slower is clamped to it rather than dropped.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// What the answers say about one product.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProductTally {
    /// Units asked for by all its requests (each request counted once).
    pub demand_units: i64,
    /// Units in requests answered `accepted` (by the first send or its
    /// duplicate: the client was told it bought them either way).
    pub accepted_units: i64,
    /// Requests answered `accepted`.
    pub accepted_requests: u64,
    /// Units in requests whose fate the client never learnt (timeouts,
    /// errors, 202s not retried): the stores are the only truth for these.
    pub undecided_units: i64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest request.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The final report of one run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// Base URL or name of the system.
    pub target: String,
    /// `open` or `closed`.
    pub mode: String,
    /// Open loop: the target rate (requests/s).
    pub rate_rps: Option<f64>,
    /// Closed loop: the number of connections.
    pub connections: Option<usize>,
    /// Products on sale.
    pub products: usize,
    /// Logical requests (retries and duplicates not counted).
    pub requests: u64,
    /// HTTP requests sent, retries and duplicates included.
    pub http_attempts: u64,
    /// Requests answered `accepted`.
    pub accepted_requests: u64,
    /// Units in those requests.
    pub accepted_units: i64,
    /// Units asked for in all requests.
    pub demand_units: i64,
    /// Requests answered `rejected`, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Requests left undecided, by kind (`timeout`, `http_503`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Requests that took more than one attempt.
    pub retried_requests: u64,
    /// Duplicate sends (same request ID after an answer).
    pub duplicates_sent: u64,
    /// Duplicates answered accepted where the first answer was a rejection,
    /// or the reverse: an idempotency failure as the client sees it.
    pub duplicate_flips: u64,
    /// Wall time from the first send to the last answer (s).
    pub elapsed_s: f64,
    /// Logical requests answered per second.
    pub throughput_rps: f64,
    /// Logical requests sent per second, from the first request's first
    /// attempt to the last one's. Open loop: below `rate_rps` when the
    /// client fell behind its own schedule.
    pub sent_rps: f64,
    /// 99th percentile of the send lag (ms): intended send to first attempt.
    pub send_lag_p99_ms: f64,
    /// Largest send lag (ms).
    pub send_lag_max_ms: f64,
    /// 99th percentile from the first attempt's actual send to the final
    /// answer (ms): the latency without the client's own lateness. Only for
    /// telling the client's lag from the system's: from the actual send, a
    /// closed loop or a full in-flight cap hides the system's backlog.
    pub service_p99_ms: f64,
    /// Open loop: times a request was due while the in-flight cap was full,
    /// so the system's backlog held the sending back (0 in a closed loop).
    pub in_flight_cap_waits: u64,
    /// Latency from intended send to final answer.
    pub latency_ms: Latency,
    /// Stock of each product, when the run configured the sales.
    pub stock_per_product: Option<i64>,
    /// Sum over products of accepted units above stock, by the answers.
    pub oversold_units_by_answers: Option<i64>,
    /// Sum over products whose demand exceeded stock of units not accepted.
    pub unsold_units_with_excess_demand_by_answers: Option<i64>,
}

/// Running totals of one run.
pub struct Tally {
    /// Latencies in µs.
    histogram: Histogram<u64>,
    /// Send lags in µs.
    send_lags: Histogram<u64>,
    /// Latencies from the actual send in µs.
    service: Histogram<u64>,
    /// First attempt of the earliest-sent request.
    first_sent: Option<Instant>,
    /// First attempt of the latest-sent request.
    last_sent: Option<Instant>,
    /// Set by [`Tally::finish`]: see [`Report::in_flight_cap_waits`].
    in_flight_cap_waits: u64,
    /// Per product, same order as the workload's products.
    pub products: Vec<ProductTally>,
    /// Logical requests seen.
    requests: u64,
    /// HTTP attempts, duplicates included.
    attempts: u64,
    /// Final verdict label -> count.
    verdicts: BTreeMap<String, u64>,
    /// Requests with more than one attempt.
    retried: u64,
    /// Duplicate sends.
    duplicates: u64,
    /// Duplicates that contradicted the first answer.
    flips: u64,
    /// Set by [`Tally::finish`].
    elapsed: Duration,
    /// Terminal progress (hidden when not wanted or not a terminal).
    bar: ProgressBar,
    /// Pacing, for the report.
    mode: Mode,
}

impl Tally {
    /// An empty tally for `workload`.
    pub fn new(workload: &Workload, config: &DriverConfig) -> anyhow::Result<Self> {
        let bar = if config.progress {
            let bar = ProgressBar::new(workload.spec.requests);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} eta {eta} {msg}",
                )
                .context("progress bar template")?
                .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Ok(Self {
            histogram: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?,
            send_lags: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?,
            service: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?,
            first_sent: None,
            last_sent: None,
            in_flight_cap_waits: 0,
            products: vec![ProductTally::default(); workload.spec.products.len()],
            requests: 0,
            attempts: 0,
            verdicts: BTreeMap::new(),
            retried: 0,
            duplicates: 0,
            flips: 0,
            elapsed: Duration::ZERO,
            bar,
            mode: config.mode,
        })
    }

    /// Adds one sample.
    pub fn record(&mut self, s: &Sample) {
        self.requests += 1;
        self.attempts += u64::from(s.attempts) + u64::from(s.duplicate.is_some());
        self.retried += u64::from(s.attempts > 1);
        let us = |d: Duration| (d.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        // In bounds by the clamp, so recording cannot fail.
        let _ = self.histogram.record(us(s.latency));
        let _ = self.send_lags.record(us(s.send_lag));
        let _ = self
            .service
            .record(us(s.latency.saturating_sub(s.send_lag)));
        self.first_sent = Some(self.first_sent.map_or(s.sent_at, |f| f.min(s.sent_at)));
        self.last_sent = Some(self.last_sent.map_or(s.sent_at, |l| l.max(s.sent_at)));
        let accepted = s.verdict == Verdict::Accepted || s.duplicate == Some(Verdict::Accepted);
        if let Some(d) = &s.duplicate {
            self.duplicates += 1;
            let contradicts = d.is_decided()
                && s.verdict.is_decided()
                && (*d == Verdict::Accepted) != (s.verdict == Verdict::Accepted);
            self.flips += u64::from(contradicts);
        }
        let label = if accepted {
            "accepted".to_owned()
        } else {
            s.verdict.label()
        };
        *self.verdicts.entry(label).or_default() += 1;
        let product = &mut self.products[s.product];
        let units = i64::from(s.quantity);
        product.demand_units += units;
        if accepted {
            product.accepted_units += units;
            product.accepted_requests += 1;
        } else if !s.verdict.is_decided() {
            product.undecided_units += units;
        }
        self.bar.inc(1);
        if self.requests.is_multiple_of(1000) {
            let accepted = self.verdicts.get("accepted").copied().unwrap_or(0);
            self.bar.set_message(format!("accepted {accepted}"));
        }
    }

    /// Stops the clock, keeps the sender's in-flight cap waits, and clears
    /// the progress bar.
    pub fn finish(&mut self, elapsed: Duration, in_flight_cap_waits: u64) {
        self.elapsed = elapsed;
        self.in_flight_cap_waits = in_flight_cap_waits;
        self.bar.finish_and_clear();
    }

    /// Requests sent per second: `n` requests on schedule span `(n - 1)`
    /// intervals from the first send to the last. Fewer than two requests
    /// (or no measurable span): the answered rate.
    fn sent_rps(&self, answered_rps: f64) -> f64 {
        match (self.first_sent, self.last_sent) {
            (Some(first), Some(last)) if self.requests > 1 && last > first => {
                (self.requests - 1) as f64 / (last - first).as_secs_f64()
            }
            _ => answered_rps,
        }
    }

    /// The report; `stock` (per product) enables the oversold/unsold figures.
    pub fn report(&self, target: &str, stock: Option<i64>) -> Report {
        let (mut rejected, mut errors) = (BTreeMap::new(), BTreeMap::new());
        let mut accepted_requests = 0;
        for (label, n) in &self.verdicts {
            if label == "accepted" {
                accepted_requests = *n;
            } else if is_error_label(label) {
                errors.insert(label.clone(), *n);
            } else {
                rejected.insert(label.clone(), *n);
            }
        }
        let h = &self.histogram;
        let ms = |us: u64| us as f64 / 1000.0;
        let (mode, rate_rps, connections) = match self.mode {
            Mode::Open { rate } => ("open", Some(rate), None),
            Mode::Closed { connections } => ("closed", None, Some(connections)),
        };
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let throughput_rps = self.requests as f64 / secs;
        Report {
            target: target.to_owned(),
            mode: mode.to_owned(),
            rate_rps,
            connections,
            products: self.products.len(),
            requests: self.requests,
            http_attempts: self.attempts,
            accepted_requests,
            accepted_units: self.products.iter().map(|p| p.accepted_units).sum(),
            demand_units: self.products.iter().map(|p| p.demand_units).sum(),
            rejected,
            errors,
            retried_requests: self.retried,
            duplicates_sent: self.duplicates,
            duplicate_flips: self.flips,
            elapsed_s: self.elapsed.as_secs_f64(),
            throughput_rps,
            sent_rps: self.sent_rps(throughput_rps),
            send_lag_p99_ms: ms(self.send_lags.value_at_quantile(0.99)),
            send_lag_max_ms: ms(self.send_lags.max()),
            service_p99_ms: ms(self.service.value_at_quantile(0.99)),
            in_flight_cap_waits: self.in_flight_cap_waits,
            latency_ms: Latency {
                p50: ms(h.value_at_quantile(0.5)),
                p90: ms(h.value_at_quantile(0.9)),
                p99: ms(h.value_at_quantile(0.99)),
                p99_9: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
                mean: h.mean() / 1000.0,
            },
            stock_per_product: stock,
            oversold_units_by_answers: stock.map(|s| oversold(self.accepted_per_product(), s)),
            unsold_units_with_excess_demand_by_answers: stock.map(|s| {
                unsold_with_excess_demand(
                    self.products
                        .iter()
                        .map(|p| (p.demand_units, p.accepted_units)),
                    s,
                )
            }),
        }
    }

    fn accepted_per_product(&self) -> impl Iterator<Item = i64> + '_ {
        self.products.iter().map(|p| p.accepted_units)
    }
}

/// Whether a verdict label names an undecided outcome rather than a reason.
fn is_error_label(label: &str) -> bool {
    label.starts_with("http_") || matches!(label, "timeout" | "transport" | "pending_202")
}

/// Units sold above stock, summed over products.
pub fn oversold(sold: impl Iterator<Item = i64>, stock: i64) -> i64 {
    sold.map(|s| (s - stock).max(0)).sum()
}

/// Over products whose demand exceeded their stock, the stock not sold:
/// units a flash sale should have sold and did not. `(demand, sold)` pairs.
pub fn unsold_with_excess_demand(products: impl Iterator<Item = (i64, i64)>, stock: i64) -> i64 {
    products
        .filter(|(demand, _)| *demand > stock)
        .map(|(_, sold)| (stock - sold).max(0))
        .sum()
}

impl Report {
    /// Prints the report for a human.
    pub fn print(&self) {
        let pace = match (self.rate_rps, self.connections) {
            (Some(r), _) => format!("open loop at {r:.0}/s"),
            (_, Some(c)) => format!("closed loop, {c} connections"),
            _ => String::new(),
        };
        println!("== {} ({pace})", self.target);
        println!(
            "  requests {:>9}   http attempts {:>9}   retried {:>7}   duplicates {:>7} (flips {})",
            self.requests,
            self.http_attempts,
            self.retried_requests,
            self.duplicates_sent,
            self.duplicate_flips
        );
        println!(
            "  accepted {:>9} ({} units of {} demanded)",
            self.accepted_requests, self.accepted_units, self.demand_units
        );
        for (reason, n) in &self.rejected {
            println!("  rejected {reason:<22} {n:>9}");
        }
        for (kind, n) in &self.errors {
            println!("  error    {kind:<22} {n:>9}");
        }
        let l = &self.latency_ms;
        println!(
            "  throughput {:.0} requests/s over {:.2} s; sent {:.0}/s, send lag p99 {:.1} ms, max {:.1} ms",
            self.throughput_rps,
            self.elapsed_s,
            self.sent_rps,
            self.send_lag_p99_ms,
            self.send_lag_max_ms
        );
        if self.in_flight_cap_waits > 0 {
            println!(
                "  the in-flight cap was full {} time(s) when a request was due",
                self.in_flight_cap_waits
            );
        }
        println!(
            "  latency ms  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean
        );
        if let (Some(over), Some(unsold)) = (
            self.oversold_units_by_answers,
            self.unsold_units_with_excess_demand_by_answers,
        ) {
            println!("  oversold units (answers) {over}   unsold units despite demand (answers) {unsold}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadSpec;

    fn tally() -> Tally {
        let workload = Workload::new(WorkloadSpec {
            run: "t".into(),
            products: vec!["a".into(), "b".into()],
            requests: 4,
            users: 4,
            sequential_users: true,
            zipf_exponent: 0.0,
            quantity_max: 1,
            retry_fraction: 0.0,
            duplicate_fraction: 0.0,
            seed: 1,
        });
        let config = DriverConfig {
            mode: Mode::Closed { connections: 1 },
            retry_attempts: 0,
            retry_backoff: Duration::ZERO,
            max_in_flight: 1,
            progress: false,
        };
        Tally::new(&workload, &config).unwrap()
    }

    fn sample(
        product: usize,
        quantity: i32,
        verdict: Verdict,
        duplicate: Option<Verdict>,
    ) -> Sample {
        Sample {
            product,
            quantity,
            latency: Duration::from_millis(5),
            sent_at: Instant::now(),
            send_lag: Duration::ZERO,
            verdict,
            attempts: 1,
            duplicate,
        }
    }

    /// Proves how answers are counted: a request is accepted if its first
    /// send or its duplicate said so (the buyer was told it bought), a
    /// contradicting duplicate is a flip, an undecided request counts as an
    /// error and its units as undecided, and oversold/unsold follow from the
    /// per-product accepted units against stock 2.
    #[test]
    fn counts_answers_once_per_request() {
        let mut t = tally();
        let busy = || Verdict::Rejected("busy".into());
        t.record(&sample(0, 2, Verdict::Accepted, None));
        t.record(&sample(0, 1, busy(), Some(Verdict::Accepted)));
        t.record(&sample(1, 3, Verdict::Timeout, None));
        t.record(&sample(1, 1, busy(), None));
        t.finish(Duration::from_secs(1), 0);
        let r = t.report("x", Some(2));
        assert_eq!((r.requests, r.http_attempts), (4, 5));
        assert_eq!((r.accepted_requests, r.accepted_units), (2, 3));
        assert_eq!(r.duplicate_flips, 1);
        assert_eq!(r.errors.get("timeout"), Some(&1));
        assert_eq!(r.rejected.get("busy"), Some(&1));
        assert_eq!(t.products[1].undecided_units, 3);
        assert_eq!(r.oversold_units_by_answers, Some(1));
        assert_eq!(r.unsold_units_with_excess_demand_by_answers, Some(2));
    }
}
