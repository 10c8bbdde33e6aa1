//! The faults, injected on a schedule while the load runs.
//!
//! One cycle of [`CYCLE`] holds every fault the issue asks for: SIGKILLs of
//! random processors and sinks (each restarted a moment later), a processor
//! added and later removed with SIGTERM (two rebalances), a processor
//! SIGSTOPped for longer than the group's session timeout and then
//! SIGCONTed (a zombie that resumes after its partitions moved on), a broker
//! crash-restart (`dev/restart --crash kafka`: durable storage, everything
//! reconnects), a Redis restart (`dev/restart redis`: appendonly) and a
//! MySQL restart (`dev/restart mariadb`: the sinks retry, then catch up). Cycles
//! repeat until the load is over, and the first one always completes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::seq::IndexedRandom as _;

use crate::fleet::{append_line, Fleet, Role};
use crate::rng::{seeded, Rng};

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL a random processor or sink, start it again shortly after.
    Kill,
    /// Start one more processor (the group rebalances).
    ScaleUp,
    /// SIGTERM the newest extra processor (the group rebalances).
    ScaleDown,
    /// SIGSTOP a processor past the session timeout, then SIGCONT it.
    Pause,
    /// `dev/restart --crash kafka` (SIGKILL; the storage is durable).
    RestartBroker,
    /// `dev/restart redis`.
    RestartRedis,
    /// `dev/restart mariadb`.
    RestartMysql,
}

/// One cycle of faults.
pub const CYCLE: [Fault; 12] = [
    Fault::Kill,
    Fault::ScaleUp,
    Fault::Kill,
    Fault::Pause,
    Fault::ScaleDown,
    Fault::Kill,
    Fault::RestartBroker,
    Fault::Kill,
    Fault::RestartRedis,
    Fault::Kill,
    Fault::RestartMysql,
    Fault::Kill,
];

/// What the faults did, for the report.
#[derive(Debug, Clone, Default)]
pub struct FaultCounts {
    /// SIGKILLs (each followed by a restart).
    pub kills: u32,
    /// Processors added plus processors removed.
    pub rebalances: u32,
    /// SIGSTOP/SIGCONT pairs.
    pub pauses: u32,
    /// Broker restarts.
    pub broker_restarts: u32,
    /// Redis restarts.
    pub redis_restarts: u32,
    /// MySQL (MariaDB) restarts.
    pub mysql_restarts: u32,
}

/// How the faults are paced.
#[derive(Debug, Clone)]
pub struct FaultSpec {
    /// Pause between two faults.
    pub gap: Duration,
    /// How long a processor stays SIGSTOPped (above the 10 s session timeout).
    pub pause: Duration,
    /// How long a SIGKILLed process stays down before its restart.
    pub down: Duration,
    /// The repository root (for `dev/restart`).
    pub root: PathBuf,
    /// Where each fault is logged with a timestamp.
    pub events_log: PathBuf,
    /// At most this many cycles, whatever the load does.
    pub cycles_max: usize,
    /// `host:port` of the broker, probed after its restart.
    pub broker_addr: String,
    /// `host:port` of Redis, probed after its restart.
    pub redis_addr: String,
    /// `host:port` of MySQL, probed after its restart.
    pub mysql_addr: String,
    /// Bootstrap brokers, asked for metadata after a broker restart.
    pub brokers: String,
    /// A topic of the run, whose metadata the probe asks for.
    pub probe_topic: String,
}

/// How long the broker gets, after `dev/restart` saw it list itself, until
/// it answers metadata for the run's topic (its log recovery after a
/// SIGKILL and the partitions' leadership come back in that time).
const BROKER_SETTLE_MAX: Duration = Duration::from_secs(60);

/// Whether the broker answers a metadata request about `topic` with the
/// topic and no error (a leader for every partition is not required).
async fn broker_answers(brokers: &str, topic: &str) -> bool {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: rdkafka::consumer::BaseConsumer = match rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        rdkafka::consumer::Consumer::fetch_metadata(&consumer, Some(&topic), Duration::from_secs(5))
            .is_ok_and(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == topic && t.error().is_none())
            })
    })
    .await
    .unwrap_or(false)
}

/// Records an event on stderr and in the events log.
pub fn event(log: &Path, started: Instant, text: &str) {
    let line = format!("[chaos +{:>6.1}s] {text}", started.elapsed().as_secs_f64());
    eprintln!("{line}");
    append_line(log, &line);
}

/// Runs faults until the first cycle is complete and `load_done` is set.
pub async fn run(
    fleet: Arc<Fleet>,
    spec: FaultSpec,
    load_done: Arc<AtomicBool>,
    seed: u64,
    started: Instant,
) -> anyhow::Result<FaultCounts> {
    let mut injector = Injector {
        fleet,
        spec,
        rng: seeded(seed),
        counts: FaultCounts::default(),
        extras: Vec::new(),
        started,
    };
    let total = CYCLE.len() * injector.spec.cycles_max.max(1);
    for i in 0..total {
        if i >= CYCLE.len() && load_done.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(injector.spec.gap).await;
        let fault = CYCLE[i % CYCLE.len()];
        injector
            .apply(fault)
            .await
            .with_context(|| format!("fault {fault:?}"))?;
    }
    // A processor added in a cycle cut short is removed too.
    injector.retire_extras().await?;
    Ok(injector.counts)
}

/// What the faults act on and what they have done so far.
struct Injector {
    /// The run's processes.
    fleet: Arc<Fleet>,
    /// Pacing, targets and the events log.
    spec: FaultSpec,
    /// Picks the kill and pause targets.
    rng: Rng,
    /// What happened, for the report.
    counts: FaultCounts,
    /// Processors added by [`Fault::ScaleUp`] and not yet removed, oldest first.
    extras: Vec<String>,
    /// When the run started (event timestamps are relative to it).
    started: Instant,
}

impl Injector {
    /// Records an event of the run (see [`event`]).
    fn event(&self, text: &str) {
        event(&self.spec.events_log, self.started, text);
    }

    /// Injects one fault.
    async fn apply(&mut self, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Kill => self.kill().await,
            Fault::ScaleUp => self.scale_up(),
            Fault::ScaleDown => self.scale_down().await,
            Fault::Pause => self.pause().await,
            Fault::RestartBroker => self.restart_broker().await,
            Fault::RestartRedis => self.restart_redis().await,
            Fault::RestartMysql => self.restart_mysql().await,
        }
    }

    /// SIGKILLs a random processor or sink and restarts it after `spec.down`.
    async fn kill(&mut self) -> anyhow::Result<()> {
        let targets: Vec<String> = self
            .fleet
            .names(None)
            .into_iter()
            .filter(|n| self.fleet.role(n).is_some_and(Role::killable))
            .collect();
        let Some(name) = targets.choose(&mut self.rng).cloned() else {
            self.event("kill: nothing to kill");
            return Ok(());
        };
        // It may have exited on its own since it was picked: the
        // supervisor restarts it, and this kill is skipped.
        let pid = match self.fleet.kill(&name) {
            Ok(pid) => pid,
            Err(e) => {
                self.event(&format!("kill: skipped {name}: {e:#}"));
                return Ok(());
            }
        };
        self.counts.kills += 1;
        self.event(&format!("kill: SIGKILL {name} (pid {pid})"));
        tokio::time::sleep(self.spec.down).await;
        let pid = self.fleet.restart(&name)?;
        self.event(&format!("kill: restarted {name} (pid {pid})"));
        Ok(())
    }

    /// Starts one more processor (a rebalance).
    fn scale_up(&mut self) -> anyhow::Result<()> {
        let (name, pid) = self.fleet.start_extra_processor()?;
        self.extras.push(name.clone());
        self.counts.rebalances += 1;
        self.event(&format!("scale up: started {name} (pid {pid})"));
        Ok(())
    }

    /// SIGTERMs the newest extra processor, if any (a rebalance).
    async fn scale_down(&mut self) -> anyhow::Result<()> {
        if let Some(name) = self.extras.pop() {
            self.retire(&name).await?;
        }
        Ok(())
    }

    /// SIGTERMs every extra processor still running, oldest first.
    async fn retire_extras(&mut self) -> anyhow::Result<()> {
        for name in std::mem::take(&mut self.extras) {
            self.retire(&name).await?;
        }
        Ok(())
    }

    /// SIGTERMs the extra processor `name` (a rebalance).
    async fn retire(&mut self, name: &str) -> anyhow::Result<()> {
        let how = self.fleet.retire(name).await?;
        self.counts.rebalances += 1;
        self.event(&format!("scale down: SIGTERM {name} ({how})"));
        Ok(())
    }

    /// SIGSTOPs a random processor for `spec.pause`, then SIGCONTs it.
    async fn pause(&mut self) -> anyhow::Result<()> {
        let processors = self.fleet.names(Some(Role::Processor));
        let Some(name) = processors.choose(&mut self.rng).cloned() else {
            self.event("pause: no processor");
            return Ok(());
        };
        let pid = self.fleet.signal(&name, "STOP")?;
        self.counts.pauses += 1;
        self.event(&format!(
            "pause: SIGSTOP {name} (pid {pid}) for {:?}",
            self.spec.pause
        ));
        tokio::time::sleep(self.spec.pause).await;
        // The chaos owns this process until now: nothing else signals it.
        self.fleet.signal(&name, "CONT")?;
        self.event(&format!(
            "pause: SIGCONT {name} (pid {pid}): a zombie resumes"
        ));
        Ok(())
    }

    /// Crash-restarts the broker and waits until it answers metadata again.
    async fn restart_broker(&mut self) -> anyhow::Result<()> {
        let spec = &self.spec;
        // A crash, not a graceful stop: Kafka then recovers unflushed
        // segments on start, the harder case for every client.
        self.event("broker: dev/restart --crash kafka");
        restart(spec, &["--crash", "kafka"], &spec.broker_addr, self.started).await?;
        self.counts.broker_restarts += 1;
        let deadline = Instant::now() + BROKER_SETTLE_MAX;
        while !broker_answers(&spec.brokers, &spec.probe_topic).await {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the broker answers no metadata for {} {BROKER_SETTLE_MAX:?} after its restart: \
                 see .dev/logs/kafka-server.log",
                spec.probe_topic
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.event("broker: back, answering metadata requests");
        Ok(())
    }

    /// Restarts Redis.
    async fn restart_redis(&mut self) -> anyhow::Result<()> {
        self.event("redis: dev/restart redis");
        restart(&self.spec, &["redis"], &self.spec.redis_addr, self.started).await?;
        self.counts.redis_restarts += 1;
        self.event("redis: back");
        Ok(())
    }

    /// Restarts MySQL (MariaDB).
    async fn restart_mysql(&mut self) -> anyhow::Result<()> {
        self.event("mysql: dev/restart mariadb");
        restart(
            &self.spec,
            &["mariadb"],
            &self.spec.mysql_addr,
            self.started,
        )
        .await?;
        self.counts.mysql_restarts += 1;
        self.event("mysql: back");
        Ok(())
    }
}

/// Runs `dev/restart ARGS`, its output appended to the events log, then
/// checks that the restarted process accepts connections on `addr` again. A
/// non-zero exit of the script alone is reported, not fatal: `dev/up` also
/// checks the shared stack's own services, which are not this test's
/// business.
async fn restart(
    spec: &FaultSpec,
    args: &[&str],
    addr: &str,
    started: Instant,
) -> anyhow::Result<()> {
    let what = args.join(" ");
    let script = spec.root.join("dev/restart");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.events_log)?;
    let mut child = tokio::process::Command::new(&script)
        .args(args)
        .current_dir(&spec.root)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", script.display()))?;
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
        .await
        .with_context(|| format!("dev/restart {what} did not finish within 300 s"))??;
    if !status.success() {
        event(
            &spec.events_log,
            started,
            &format!("warning: dev/restart {what} exited with {status} (see the lines above)"),
        );
    }
    for _ in 0..120 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    anyhow::bail!("nothing accepts connections on {addr} after dev/restart {what}")
}
