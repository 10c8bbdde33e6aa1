//! A baseline served on its own thread and Tokio runtime, so it competes for
//! the CPU with the load generator the way a separate process would, yet
//! starts in milliseconds inside a test (or `flashsale-bench
//! --baseline-in-process`; the benchmark otherwise runs each baseline as
//! its own process, [`super::BaselineProcess`], so its CPU can be measured).

use std::net::SocketAddr;

use anyhow::Context;
use tokio::sync::oneshot;

use super::{connect, http, BaselineConfig, Strategy};

/// A running baseline server.
pub struct BaselineServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it runs.
    pub strategy: Strategy,
    /// Asks it to stop; `None` once sent.
    shutdown: Option<oneshot::Sender<()>>,
    /// Its thread; ends after a graceful stop and the queue drain.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BaselineServer {
    /// Starts `strategy` on `listen` (port 0: any free port) with its own
    /// runtime of `worker_threads` threads.
    pub async fn start(
        strategy: Strategy,
        config: &BaselineConfig,
        listen: SocketAddr,
        worker_threads: usize,
    ) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name(format!("baseline-{}", strategy.name()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(worker_threads.max(1))
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(serve(strategy, config, listen, ready_tx, stop_rx)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                    }
                }
            })
            .context("spawning the baseline thread")?;
        let addr = ready_rx
            .await
            .context("the baseline thread ended before it was ready")??;
        Ok(Self {
            addr,
            strategy,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, finishes in-flight requests, drains the redis-lua
    /// queue, and waits for all of it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .context("joining the baseline thread")?
                .map_err(|_| anyhow::anyhow!("the baseline thread panicked"))?;
        }
        Ok(())
    }
}

impl Drop for BaselineServer {
    /// A server dropped without `stop` still shuts down (in the background).
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    strategy: Strategy,
    config: BaselineConfig,
    listen: SocketAddr,
    ready: oneshot::Sender<anyhow::Result<SocketAddr>>,
    stop: oneshot::Receiver<()>,
) {
    let started = async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let (shared, worker) = connect(strategy, &config).await?;
        anyhow::Ok((listener, addr, shared, worker))
    }
    .await;
    let (listener, addr, shared, worker) = match started {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(addr));
    let served = axum::serve(listener, http::router(shared))
        .with_graceful_shutdown(async {
            let _ = stop.await;
        })
        .await;
    if let Err(e) = served {
        eprintln!("baseline {}: server error: {e}", strategy.name());
    }
    // The router (and with it the queue's sender) is gone: the worker
    // drains what is queued and ends.
    if let Some(worker) = worker {
        let _ = worker.await;
    }
}
