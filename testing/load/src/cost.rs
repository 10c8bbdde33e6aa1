//! What one scenario cost each process that did its work: CPU seconds from
//! `/proc/<pid>/stat` (`utime + stime`, every thread of the process) as the
//! delta over the scenario, per 1 000 requests, and peak resident memory
//! from `/proc/<pid>/status` (`VmHWM`).
//!
//! `VmHWM` is the peak since the process started unless it can be reset:
//! at the start of each scenario the meter writes `5` to
//! `/proc/<pid>/clear_refs` (Linux ≥ 4.0; needs the right to ptrace the
//! process), which sets the peak to the current RSS. Each figure says which
//! it is ([`RssPeakSince`]).
//!
//! CPU ticks are converted with `getconf CLK_TCK`, read once (this crate
//! does not link libc for `sysconf`); if that fails, 100 Hz is assumed and
//! the report says so.
//!
//! The window runs from the end of the sales' configuration to the end of
//! settling, so work done after the answers (redis-lua's persistence, the
//! pipeline's sinks) counts. Processes shared with other work (the stores,
//! or a stack another client is also using) count that work too, and every
//! process's idle cost grows with the window.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

/// The pipeline's own processes and the stores it uses, by the names of
/// their `.dev/pids/<name>.pid` files. The registry is left out: clients
/// cache schemas, so it does no per-request work.
pub const PIPELINE_PROCESSES: [(&str, Role); 7] = [
    ("processor", Role::System),
    ("sink-mysql", Role::System),
    ("sink-redis", Role::System),
    ("ingress", Role::System),
    ("kafka", Role::Store),
    ("mariadb", Role::Store),
    ("redis", Role::Store),
];

/// The stores every baseline uses (its own server process is added by
/// whoever started it).
pub const BASELINE_STORES: [(&str, Role); 2] = [("mariadb", Role::Store), ("redis", Role::Store)];

/// Name of the benchmark's own process in reports.
const LOAD_GENERATOR: &str = "load-generator";
/// What is assumed when `getconf CLK_TCK` cannot be read.
const CLOCK_TICKS_ASSUMED: u64 = 100;

/// What a process is to the system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The system's own code: a baseline server, or the pipeline's
    /// processor, sinks and ingress.
    System,
    /// A store it uses (Kafka, MariaDB, Redis).
    Store,
}

/// One process to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// Name in reports.
    pub name: String,
    /// Its process ID.
    pub pid: u32,
    /// What it is to the system.
    pub role: Role,
}

/// The processes of one system under test.
#[derive(Debug, Clone, Default)]
pub struct Watchlist {
    /// Found and measurable.
    pub processes: Vec<Watched>,
    /// Named but not found, with why: reported, never silently dropped.
    pub unmeasured: BTreeMap<String, String>,
}

impl Watchlist {
    /// Reads `<dir>/<name>.pid` for each name; a missing file or a dead PID
    /// goes to [`Watchlist::unmeasured`].
    pub fn from_pid_files(dir: &Path, names: &[(&str, Role)]) -> Self {
        let mut list = Self::default();
        for (name, role) in names {
            match read_pid_file(dir, name) {
                Ok(pid) => list.add(name, pid, *role),
                Err(e) => {
                    list.unmeasured.insert((*name).to_owned(), format!("{e:#}"));
                }
            }
        }
        list
    }

    /// Adds a process known by its PID.
    pub fn add(&mut self, name: &str, pid: u32, role: Role) {
        self.processes.push(Watched {
            name: name.to_owned(),
            pid,
            role,
        });
    }
}

fn read_pid_file(dir: &Path, name: &str) -> anyhow::Result<u32> {
    let path = dir.join(format!("{name}.pid"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} holds no PID", path.display()))?;
    anyhow::ensure!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} (from {}) is not running",
        path.display()
    );
    Ok(pid)
}

/// How CPU ticks became seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockTicks {
    /// Ticks per second.
    pub per_s: u64,
    /// `getconf CLK_TCK`, or `assumed` when it could not be read.
    pub source: &'static str,
}

/// The clock tick, from `getconf CLK_TCK` once per process.
pub fn clock_ticks() -> ClockTicks {
    static TICKS: OnceLock<ClockTicks> = OnceLock::new();
    *TICKS.get_or_init(|| {
        let read = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .filter(|t| *t > 0);
        match read {
            Some(per_s) => ClockTicks {
                per_s,
                source: "getconf CLK_TCK",
            },
            None => ClockTicks {
                per_s: CLOCK_TICKS_ASSUMED,
                source: "assumed",
            },
        }
    })
}

/// A process's CPU counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    /// `utime + stime`, in clock ticks.
    cpu_ticks: u64,
    /// `starttime`: tells a restarted process (a reused PID) from the one
    /// measured at the start.
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses
/// and may hold spaces or parentheses itself, so fields are counted after
/// the last `)`: there, field 3 (`state`) is index 0, `utime` (14) index
/// 11, `stime` (15) index 12 and `starttime` (22) index 19.
fn parse_stat(text: &str) -> Option<Reading> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Reading {
        cpu_ticks: field(11)? + field(12)?,
        start_ticks: field(19)?,
    })
}

fn read_stat(pid: u32) -> anyhow::Result<Reading> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat(&text).with_context(|| format!("parsing {path}"))
}

/// `VmHWM` in kB from `/proc/<pid>/status` (absent for kernel threads).
fn parse_hwm_kib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn read_hwm_kib(pid: u32) -> Option<u64> {
    parse_hwm_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Resets the peak RSS to the current RSS; `false` when not permitted (or
/// the kernel is too old), and the peak then counts from process start.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// What a peak RSS covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RssPeakSince {
    /// Reset at the scenario's start: the peak during the scenario.
    Scenario,
    /// Could not be reset: the peak since the process started.
    ProcessStart,
}

/// One process's cost over one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessCost {
    /// Its process ID.
    pub pid: u32,
    /// What it is to the system.
    pub role: Role,
    /// CPU time (user + system, all threads) over the window (s).
    pub cpu_s: f64,
    /// `cpu_s` per 1 000 logical requests.
    pub cpu_s_per_1k_requests: f64,
    /// Peak resident set (`VmHWM`), MiB; `None` when unreadable.
    pub rss_peak_mb: Option<f64>,
    /// Whether that peak is the scenario's or the process's whole life.
    pub rss_peak_since: RssPeakSince,
}

/// The cost of one scenario on one system.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostReport {
    /// Length of the measured window: the load and settling (s).
    pub window_s: f64,
    /// Logical requests the per-1k figures divide by.
    pub requests: u64,
    /// How ticks became seconds.
    pub clock_ticks: ClockTicks,
    /// One clock tick in `cpu_s_per_1k_requests` units: each process's
    /// figure is exact only to about this much (the kernel counts whole
    /// ticks), so a short scenario's figures are mostly this noise.
    pub cpu_tick_s_per_1k_requests: f64,
    /// Per process of the system and its stores.
    pub processes: BTreeMap<String, ProcessCost>,
    /// Processes that should have been measured and were not, with why.
    pub unmeasured: BTreeMap<String, String>,
    /// CPU over `processes` (s).
    pub cpu_s: f64,
    /// `cpu_s` per 1 000 logical requests.
    pub cpu_s_per_1k_requests: f64,
    /// Of that, the system's own processes ([`Role::System`]).
    pub system_cpu_s_per_1k_requests: f64,
    /// Of that, the stores ([`Role::Store`]).
    pub stores_cpu_s_per_1k_requests: f64,
    /// The benchmark's own process (the load generator, and an in-process
    /// baseline when run that way); not in the sums above.
    pub load_generator: Option<ProcessCost>,
}

/// One process's state at the window's start.
#[derive(Debug, Clone)]
struct Start {
    /// Which process.
    process: Watched,
    /// Its counters then, or why they could not be read.
    reading: Result<Reading, String>,
    /// Whether its peak RSS was reset.
    hwm_reset: bool,
}

impl Start {
    fn take(process: Watched) -> Self {
        let hwm_reset = reset_hwm(process.pid);
        let reading = read_stat(process.pid).map_err(|e| format!("{e:#}"));
        Self {
            process,
            reading,
            hwm_reset,
        }
    }

    /// The cost since `take`, or why there is none.
    fn cost(&self, requests: u64, ticks: ClockTicks) -> Result<ProcessCost, String> {
        let before = self.reading.clone()?;
        let after = read_stat(self.process.pid).map_err(|e| format!("{e:#}"))?;
        if after.start_ticks != before.start_ticks || after.cpu_ticks < before.cpu_ticks {
            return Err(format!(
                "process {} restarted during the scenario",
                self.process.pid
            ));
        }
        let cpu_s = (after.cpu_ticks - before.cpu_ticks) as f64 / ticks.per_s as f64;
        Ok(ProcessCost {
            pid: self.process.pid,
            role: self.process.role,
            cpu_s,
            cpu_s_per_1k_requests: per_1k(cpu_s, requests),
            rss_peak_mb: read_hwm_kib(self.process.pid).map(|kib| kib as f64 / 1024.0),
            rss_peak_since: if self.hwm_reset {
                RssPeakSince::Scenario
            } else {
                RssPeakSince::ProcessStart
            },
        })
    }
}

fn per_1k(cpu_s: f64, requests: u64) -> f64 {
    cpu_s * 1000.0 / requests.max(1) as f64
}

/// Measures a watchlist over one window.
#[derive(Debug)]
pub struct Meter {
    /// The watched processes' starting states.
    starts: Vec<Start>,
    /// The benchmark's own process's.
    own: Start,
    /// Carried over from the watchlist.
    unmeasured: BTreeMap<String, String>,
    /// When the window opened.
    started: Instant,
}

impl Meter {
    /// Opens the window: resets peak RSS where permitted, reads CPU.
    pub fn start(watch: &Watchlist) -> Self {
        let own = Watched {
            name: LOAD_GENERATOR.to_owned(),
            pid: std::process::id(),
            role: Role::System,
        };
        Self {
            starts: watch.processes.iter().cloned().map(Start::take).collect(),
            own: Start::take(own),
            unmeasured: watch.unmeasured.clone(),
            started: Instant::now(),
        }
    }

    /// Closes the window over `requests` logical requests.
    pub fn finish(self, requests: u64) -> CostReport {
        let ticks = clock_ticks();
        let mut processes = BTreeMap::new();
        let mut unmeasured = self.unmeasured;
        for start in &self.starts {
            match start.cost(requests, ticks) {
                Ok(cost) => {
                    processes.insert(start.process.name.clone(), cost);
                }
                Err(why) => {
                    unmeasured.insert(start.process.name.clone(), why);
                }
            }
        }
        let sum = |role: Option<Role>| -> f64 {
            processes
                .values()
                .filter(|c| role.is_none_or(|r| c.role == r))
                // A fold from +0.0: an empty f64 `sum` is -0.0.
                .fold(0.0, |total, c| total + c.cpu_s)
        };
        let cpu_s = sum(None);
        CostReport {
            window_s: self.started.elapsed().as_secs_f64(),
            requests,
            clock_ticks: ticks,
            cpu_tick_s_per_1k_requests: per_1k(1.0 / ticks.per_s as f64, requests),
            cpu_s,
            cpu_s_per_1k_requests: per_1k(cpu_s, requests),
            system_cpu_s_per_1k_requests: per_1k(sum(Some(Role::System)), requests),
            stores_cpu_s_per_1k_requests: per_1k(sum(Some(Role::Store)), requests),
            load_generator: self.own.cost(requests, ticks).ok(),
            processes,
            unmeasured,
        }
    }
}

impl CostReport {
    /// Prints the totals and one line per process.
    pub fn print(&self) {
        let load_gen = self.load_generator.as_ref().map_or_else(String::new, |c| {
            format!("; load generator {:.3}", c.cpu_s_per_1k_requests)
        });
        println!(
            "  cpu s per 1k requests {:.3} (system {:.3}, stores {:.3}; +-{:.3} per process) over {:.1} s{load_gen}",
            self.cpu_s_per_1k_requests,
            self.system_cpu_s_per_1k_requests,
            self.stores_cpu_s_per_1k_requests,
            self.cpu_tick_s_per_1k_requests,
            self.window_s
        );
        for (name, c) in &self.processes {
            let rss = c
                .rss_peak_mb
                .map_or_else(|| "?".to_owned(), |m| format!("{m:.0}"));
            let since = match c.rss_peak_since {
                RssPeakSince::Scenario => "",
                RssPeakSince::ProcessStart => " (since process start)",
            };
            println!(
                "    {name:<14} cpu {:>7.2} s  {:>7.3} s/1k  rss peak {rss:>6} MiB{since}",
                c.cpu_s, c.cpu_s_per_1k_requests
            );
        }
        for (name, why) in &self.unmeasured {
            println!("    {name:<14} not measured: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves fields are counted after the last `)`, so a command name with
    /// spaces and parentheses cannot shift them.
    #[test]
    fn stat_fields_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 8 0 123456 1000 200 18446744073709551615";
        let r = parse_stat(stat).unwrap();
        assert_eq!(r.cpu_ticks, 300);
        assert_eq!(r.start_ticks, 123_456);
        assert_eq!(parse_stat("42 (x) S 1"), None);
    }

    /// Proves VmHWM is read in kB from the status file.
    #[test]
    fn hwm_from_status() {
        let status = "Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t   14040 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_hwm_kib(status), Some(14_040));
        assert_eq!(parse_hwm_kib("Name:\tkthread\n"), None);
    }

    /// Proves the meter measures a live process (this one) and reports a
    /// missing one instead of dropping it.
    #[test]
    fn meters_this_process() {
        let mut watch = Watchlist::from_pid_files(Path::new("/nonexistent"), &BASELINE_STORES);
        watch.add("me", std::process::id(), Role::System);
        let meter = Meter::start(&watch);
        let spin = Instant::now();
        let mut x = 0u64;
        // Spin (not sleep) so the process uses CPU: 5 ticks at 100 Hz.
        while spin.elapsed().as_millis() < 50 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let report = meter.finish(500);
        let me = &report.processes["me"];
        assert!(me.cpu_s > 0.0, "{report:?}");
        assert!((me.cpu_s_per_1k_requests - me.cpu_s * 2.0).abs() < 1e-9);
        assert!(me.rss_peak_mb.is_some_and(|m| m > 0.0));
        assert_eq!(report.unmeasured.len(), 2, "{report:?}");
        let tick_s = 1.0 / clock_ticks().per_s as f64;
        assert!((report.cpu_tick_s_per_1k_requests - tick_s * 2.0).abs() < 1e-9);
    }
}
