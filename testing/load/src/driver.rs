//! Sends the workload: open loop at a fixed rate, or closed loop over N
//! connections, and collects one [`Sample`] per logical request.
//!
//! Open loop is the honest way to measure latency: request `i` is *due* at
//! `start + i / rate` whether or not earlier requests have been answered, and
//! its latency is measured from that intended instant. A system that stalls
//! therefore shows the stall in every request that queued behind it, instead
//! of the client politely waiting and hiding it ("coordinated omission").
//! Closed loop (each connection sends its next request when the previous one
//! is answered) measures the most a system can do at a given concurrency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::client::{DriverConfig, Mode, Sample};
use crate::tally::Tally;
use crate::target::Target;
use crate::workload::{Plan, Workload};

/// Sends `plan` (retrying as its client would), then its duplicate if any.
async fn execute(
    target: &Target,
    workload: &Workload,
    plan: Plan,
    intended: Instant,
    config: &DriverConfig,
) -> Sample {
    let product = &workload.spec.products[plan.product];
    let sent_at = Instant::now();
    let mut attempts = 0;
    let verdict = loop {
        attempts += 1;
        let verdict = target.purchase(product, &plan).await;
        if verdict.is_decided() || !plan.retries || attempts > config.retry_attempts {
            break verdict;
        }
        tokio::time::sleep(config.retry_backoff * attempts).await;
    };
    let latency = intended.elapsed();
    let duplicate = if plan.duplicate {
        Some(target.purchase(product, &plan).await)
    } else {
        None
    };
    Sample {
        product: plan.product,
        quantity: plan.quantity,
        latency,
        sent_at,
        send_lag: sent_at.saturating_duration_since(intended),
        verdict,
        attempts,
        duplicate,
    }
}

/// Runs the whole workload against `target` and tallies it.
pub async fn run(
    target: &Target,
    workload: &Workload,
    config: &DriverConfig,
) -> anyhow::Result<Tally> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let mut tally = Tally::new(workload, config)?;
    let started = Instant::now();
    let sender = {
        let (target, workload, config) = (target.clone(), workload.clone(), config.clone());
        tokio::spawn(async move {
            match config.mode {
                Mode::Open { rate } => open_loop(target, workload, config, rate, tx).await,
                Mode::Closed { connections } => {
                    closed_loop(target, workload, config, connections, tx).await
                }
            }
        })
    };
    // The channel closes when the last request task drops its sender.
    while let Some(sample) = rx.recv().await {
        tally.record(&sample);
    }
    let in_flight_cap_waits = sender.await.context("the load generator task failed")??;
    tally.finish(started.elapsed(), in_flight_cap_waits);
    Ok(tally)
}

/// Schedules request `i` at `start + i / rate`. Whatever is due is spawned
/// at once, then the scheduler sleeps until the next one is due: timers tick
/// in milliseconds, so above 1000/s requests leave in small bursts, each
/// still timed from its own intended instant. Returns how often the
/// in-flight cap was full when a request was due: then the system's
/// backlog, not the client, held the sending back.
async fn open_loop(
    target: Target,
    workload: Workload,
    config: DriverConfig,
    rate: f64,
    tx: mpsc::UnboundedSender<Sample>,
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        rate.is_finite() && rate > 0.0,
        "rate must be positive, got {rate}"
    );
    let total = workload.spec.requests;
    let gate = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let (target, workload, config) = (Arc::new(target), Arc::new(workload), Arc::new(config));
    let start = Instant::now();
    let due_at = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
    let mut next = 0u64;
    let mut cap_waits = 0u64;
    while next < total {
        let due = (((start.elapsed().as_secs_f64()) * rate) as u64 + 1).min(total);
        while next < due {
            let permit = match gate.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    cap_waits += 1;
                    gate.clone().acquire_owned().await?
                }
            };
            let (target, workload, config, tx) =
                (target.clone(), workload.clone(), config.clone(), tx.clone());
            let intended = due_at(next);
            let plan = workload.plan(next);
            tokio::spawn(async move {
                let sample = execute(&target, &workload, plan, intended, &config).await;
                // The collector only goes away when the run is abandoned.
                let _ = tx.send(sample);
                drop(permit);
            });
            next += 1;
        }
        if next < total {
            tokio::time::sleep_until(due_at(next).into()).await;
        }
    }
    Ok(cap_waits)
}

/// `connections` workers share one counter: each takes the next index, sends
/// it, waits for the answer, and takes another. Returns 0, as the open loop
/// returns its in-flight cap waits: a closed loop has no cap.
async fn closed_loop(
    target: Target,
    workload: Workload,
    config: DriverConfig,
    connections: usize,
    tx: mpsc::UnboundedSender<Sample>,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let (target, workload, config) = (Arc::new(target), Arc::new(workload), Arc::new(config));
    let mut workers = JoinSet::new();
    for _ in 0..connections.max(1) {
        let (target, workload, config, tx, next) = (
            target.clone(),
            workload.clone(),
            config.clone(),
            tx.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= workload.spec.requests {
                    break;
                }
                let sample = execute(
                    &target,
                    &workload,
                    workload.plan(i),
                    Instant::now(),
                    &config,
                )
                .await;
                let _ = tx.send(sample);
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a closed-loop worker panicked")?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::WorkloadSpec;
    use axum::routing::post;

    /// A stub purchase API that takes `delay` per request and accepts all.
    async fn stub(delay: Duration) -> String {
        let app = axum::Router::new().route(
            "/api/v1/sales/{product}/purchases",
            post(move || async move {
                tokio::time::sleep(delay).await;
                axum::Json(serde_json::json!({"status": "accepted"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn workload(requests: u64) -> Workload {
        Workload::new(WorkloadSpec {
            run: "t".into(),
            products: vec!["p0".into(), "p1".into()],
            requests,
            users: 10,
            sequential_users: false,
            zipf_exponent: 1.0,
            quantity_max: 1,
            retry_fraction: 0.0,
            duplicate_fraction: 0.0,
            seed: 3,
        })
    }

    fn config(mode: Mode, max_in_flight: usize) -> DriverConfig {
        DriverConfig {
            mode,
            retry_attempts: 0,
            retry_backoff: Duration::ZERO,
            max_in_flight,
            progress: false,
        }
    }

    /// Proves the open loop measures from the intended send time: 20
    /// requests due every 10 ms, a server taking 50 ms each, and room for one
    /// request at a time. Each request waits behind the previous ones, so
    /// the last is answered ~800 ms after it was due although the server
    /// spent 50 ms on it; a client timing from its actual send would report
    /// 50 ms throughout and hide the backlog (coordinated omission).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_counts_the_backlog() {
        let target = Target::new(
            &stub(Duration::from_millis(50)).await,
            Duration::from_secs(5),
        )
        .unwrap();
        let tally = run(
            &target,
            &workload(20),
            &config(Mode::Open { rate: 100.0 }, 1),
        )
        .await
        .unwrap();
        let report = tally.report("stub", None);
        assert_eq!((report.requests, report.accepted_requests), (20, 20));
        assert!(report.latency_ms.max >= 600.0, "{report:?}");
        assert!(report.latency_ms.p50 >= 200.0, "{report:?}");
        // The backlog held the sending back, and the report says it was the
        // cap (the system), not the client's own pace.
        assert!(report.in_flight_cap_waits > 0, "{report:?}");
        assert!(report.sent_rps < 90.0, "{report:?}");
    }

    /// Proves the sent rate is the offered rate when nothing holds the
    /// client back: 100 requests due every 5 ms to a 1 ms server, room for
    /// all of them, leave at about 200/s with no cap waits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_sends_at_the_offered_rate() {
        let target = Target::new(
            &stub(Duration::from_millis(1)).await,
            Duration::from_secs(5),
        )
        .unwrap();
        let tally = run(
            &target,
            &workload(100),
            &config(Mode::Open { rate: 200.0 }, 1000),
        )
        .await
        .unwrap();
        let report = tally.report("stub", None);
        assert_eq!(report.in_flight_cap_waits, 0, "{report:?}");
        assert!((160.0..=240.0).contains(&report.sent_rps), "{report:?}");
    }

    /// Proves the closed loop sends every request once over its connections
    /// and times each from its actual send (no backlog: ~50 ms each).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_sends_everything() {
        let target = Target::new(
            &stub(Duration::from_millis(50)).await,
            Duration::from_secs(5),
        )
        .unwrap();
        let tally = run(
            &target,
            &workload(40),
            &config(Mode::Closed { connections: 8 }, 1),
        )
        .await
        .unwrap();
        let report = tally.report("stub", Some(100));
        assert_eq!((report.requests, report.http_attempts), (40, 40));
        assert_eq!(report.accepted_units, 40);
        assert!(report.latency_ms.p50 < 200.0, "{report:?}");
        assert_eq!(report.oversold_units_by_answers, Some(0));
    }
}
