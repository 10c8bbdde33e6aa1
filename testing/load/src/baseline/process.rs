//! A baseline served by its own `flashsale-baseline` process, so its CPU
//! time and memory are its own in `/proc`, not mixed with the load
//! generator's (the benchmark's default; [`super::BaselineServer`] keeps
//! the in-process form for tests).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{BaselineConfig, Strategy};

/// Longest wait for the process to connect to its stores and listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for `/health` once it printed its address.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a graceful stop (in-flight requests, the redis-lua
/// queue) before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between `/health` polls.
const HEALTH_POLL: Duration = Duration::from_millis(100);
/// The start-up line's prefix after which the address follows.
const LISTENING: &str = " listening on http://";

/// A running `flashsale-baseline` child process.
pub struct BaselineProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it runs.
    pub strategy: Strategy,
    /// Its process ID, for `/proc/<pid>`.
    pub pid: u32,
    /// The process; killed if dropped without [`BaselineProcess::stop`].
    child: Child,
    /// Reads the rest of its stdout (so it never blocks on a full pipe) and
    /// keeps the last line: the counters it prints as it exits.
    stdout: JoinHandle<Option<String>>,
}

impl BaselineProcess {
    /// `flashsale-baseline` beside the running executable (Cargo puts every
    /// binary of this crate in one directory).
    pub fn binary_beside_current_exe() -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("locating the running executable")?;
        let dir = exe
            .parent()
            .with_context(|| format!("{} has no parent directory", exe.display()))?;
        Ok(dir.join("flashsale-baseline"))
    }

    /// Starts `binary --strategy S` on `listen` (port 0: any free port)
    /// with `worker_threads` runtime threads, and waits until it answers
    /// `/health`.
    pub async fn spawn(
        binary: &Path,
        strategy: Strategy,
        config: &BaselineConfig,
        listen: SocketAddr,
        worker_threads: usize,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .arg("--strategy")
            .arg(strategy.name())
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--worker-threads")
            .arg(worker_threads.max(1).to_string())
            .args(config.to_args())
            .envs(config.url_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the baseline process has no PID")?;
        let stdout = child.stdout.take().context("the baseline's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = match tokio::time::timeout(START_TIMEOUT, read_address(&mut lines)).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(e)) => return Err(e.context(exit_note(&mut child))),
            Err(_) => anyhow::bail!(
                "{} did not listen within {START_TIMEOUT:?}",
                strategy.name()
            ),
        };
        let stdout = tokio::spawn(last_line(lines));
        let process = Self {
            addr,
            strategy,
            pid,
            child,
            stdout,
        };
        process.wait_healthy().await?;
        Ok(process)
    }

    /// `http://addr`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = format!("{}/health", self.base_url());
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        while Instant::now() < deadline {
            let answer = http.get(&url).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
        anyhow::bail!("{} is not answering {url}", self.strategy.name())
    }

    /// Asks it to stop as Ctrl-C would (SIGINT, via `kill`: this crate
    /// does not link libc): it finishes in-flight requests, drains the
    /// redis-lua queue and exits. Killed after a minute. Returns
    /// the last line it printed (its counters as JSON), if any.
    pub async fn stop(mut self) -> anyhow::Result<Option<String>> {
        let signalled = Command::new("kill")
            .arg("-INT")
            .arg(self.pid.to_string())
            .status()
            .await
            .is_ok_and(|s| s.success());
        let exited = if signalled {
            tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .ok()
        } else {
            None
        };
        let killed = exited.is_none();
        let status = match exited {
            Some(status) => status?,
            None => {
                eprintln!(
                    "baseline {} (pid {}) did not stop on SIGINT: killing it",
                    self.strategy.name(),
                    self.pid
                );
                self.child.kill().await?;
                self.child.wait().await?
            }
        };
        let last = self.stdout.await.unwrap_or(None);
        anyhow::ensure!(
            status.success() || killed,
            "baseline {} exited with {status}",
            self.strategy.name()
        );
        Ok(last)
    }
}

/// Reads start-up lines until `... listening on http://ADDR`, boundedly.
async fn read_address(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<SocketAddr> {
    const LINES_MAX: usize = 100;
    for _ in 0..LINES_MAX {
        let Some(line) = lines.next_line().await? else {
            anyhow::bail!("the baseline process ended before it listened");
        };
        if let Some((_, addr)) = line.split_once(LISTENING) {
            return addr
                .trim()
                .parse()
                .with_context(|| format!("parsing the address in {line:?}"));
        }
    }
    anyhow::bail!("no \"listening on\" line in the first {LINES_MAX} lines")
}

/// Drains the remaining output; the last non-empty line.
async fn last_line(mut lines: Lines<BufReader<ChildStdout>>) -> Option<String> {
    let mut last = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.trim().is_empty() {
            last = Some(line);
        }
    }
    last
}

/// How the child ended, for an error message (it may still be running).
fn exit_note(child: &mut Child) -> String {
    match child.try_wait() {
        Ok(Some(status)) => format!("the baseline process exited with {status}"),
        _ => "the baseline process did not start".to_owned(),
    }
}
