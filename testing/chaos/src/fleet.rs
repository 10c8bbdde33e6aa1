//! The chaos test's own processes: processors, sinks and an ingress started
//! as children of the test, on the run's own topics and consumer groups.
//!
//! Every child logs to `.dev/logs/<name>.log` and has a pid file
//! `.dev/pids/<name>.pid`, the layout of `dev/lib.sh`, so `dev/down` stops
//! whatever a crashed test run left behind. [`FleetGuard`] stops them all
//! when the test ends, whether it passed, failed or panicked.
//!
//! The fleet doubles as the supervisor that a deployment would have: the
//! services are crash-only (a fatal error ends the process; the next start
//! rebuilds its state), so a child that exits without being told to is
//! started again by [`Fleet::supervise`], and the exit is recorded for the
//! report.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(20);
/// A child that exited on its own is started again at most this often.
const RESPAWN_INTERVAL_MIN: Duration = Duration::from_secs(2);

/// What a child process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// `flashsale-processor`, a member of the run's processor group.
    Processor,
    /// `flashsale-sink --store mysql`.
    SinkMysql,
    /// `flashsale-sink --store redis`.
    SinkRedis,
    /// `flashsale-ingress` on the run's own port.
    Ingress,
}

impl Role {
    fn binary(self) -> &'static str {
        match self {
            Role::Processor => "flashsale-processor",
            Role::SinkMysql | Role::SinkRedis => "flashsale-sink",
            Role::Ingress => "flashsale-ingress",
        }
    }

    fn args(self) -> &'static [&'static str] {
        match self {
            Role::SinkMysql => &["--store", "mysql"],
            Role::SinkRedis => &["--store", "redis"],
            Role::Processor | Role::Ingress => &[],
        }
    }

    /// Whether the chaos may SIGKILL it (the ingress is the clients' only
    /// door in this test, so it is left alone).
    pub fn killable(self) -> bool {
        self != Role::Ingress
    }
}

/// How to start the children.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Prefix of every child's name, log and pid file (`chaos-<id>`).
    pub run_name: String,
    /// `.dev/logs`.
    pub logs_dir: PathBuf,
    /// `.dev/pids`.
    pub pids_dir: PathBuf,
    /// Where the workspace binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// Environment every child gets (endpoints, topics).
    pub common_env: Vec<(String, String)>,
    /// Extra environment per role (groups, listen address, snapshots).
    pub role_env: BTreeMap<Role, Vec<(String, String)>>,
}

/// One child slot. `child` is `None` while the chaos holds it down.
struct Member {
    role: Role,
    child: Option<Child>,
    /// The pid of the current (or last) process, for signals and the report.
    pid: u32,
    /// When the current process was started.
    started: Instant,
    /// It exited on its own and is to be started again.
    respawn: bool,
}

/// A child that exited although nobody stopped it.
#[derive(Debug, Clone)]
pub struct SelfExit {
    /// The child's name.
    pub name: String,
    /// Its pid.
    pub pid: u32,
    /// How it ended.
    pub status: String,
    /// Whether the status says it panicked (Rust exits 101 on a panic).
    pub panicked: bool,
}

/// The run's children.
pub struct Fleet {
    cfg: FleetConfig,
    /// The children; `None` once [`Fleet::shutdown`] ran: nothing may start
    /// any more (a fault task still running during a failing test's unwind
    /// must not leave a process behind).
    members: Mutex<Option<BTreeMap<String, Member>>>,
    self_exits: Mutex<Vec<SelfExit>>,
    extra_processors: Mutex<u32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `signal` (a name such as `STOP`) to `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running kill(1)")?;
    anyhow::ensure!(status.success(), "kill -s {signal} {pid}: {status}");
    Ok(())
}

fn describe(status: ExitStatus) -> (String, bool) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (format!("exit status {code}"), code == 101),
        (None, Some(sig)) => (format!("killed by signal {sig}"), false),
        _ => (status.to_string(), false),
    }
}

impl Fleet {
    /// A fleet with no child yet.
    pub fn new(cfg: FleetConfig) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            members: Mutex::new(Some(BTreeMap::new())),
            self_exits: Mutex::new(Vec::new()),
            extra_processors: Mutex::new(0),
        })
    }

    /// `.dev/logs/<name>.log`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.cfg.logs_dir.join(format!("{name}.log"))
    }

    fn pid_path(&self, name: &str) -> PathBuf {
        self.cfg.pids_dir.join(format!("{name}.pid"))
    }

    /// The child name for `suffix` (`chaos-<id>-<suffix>`).
    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.cfg.run_name)
    }

    fn spawn(&self, name: &str, role: Role) -> anyhow::Result<Child> {
        let bin = self.cfg.bin_dir.join(role.binary());
        anyhow::ensure!(
            bin.is_file(),
            "{} is missing: build it with `cargo build --workspace --bins` (dev/up does)",
            bin.display()
        );
        std::fs::create_dir_all(&self.cfg.logs_dir)?;
        std::fs::create_dir_all(&self.cfg.pids_dir)?;
        let log_path = self.log_path(name);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        writeln!(
            log,
            "\n===== {} starting {name}: {} {}",
            unix_time_text(),
            bin.display(),
            role.args().join(" ")
        )?;
        let mut command = Command::new(&bin);
        command
            .args(role.args())
            .env_remove("FLASHSALE_METRICS_LISTEN")
            .envs(self.cfg.common_env.iter().map(|(k, v)| (k, v)))
            .envs(
                self.cfg
                    .role_env
                    .get(&role)
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k, v)),
            )
            .env("FLASHSALE_INSTANCE_ID", name)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        // Written after the start, as dev/lib.sh's fs_pid expects.
        std::fs::write(self.pid_path(name), format!("{}\n", child.id()))?;
        Ok(child)
    }

    /// Runs `f` on the children, unless the fleet was shut down.
    fn with_members<R>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Member>) -> anyhow::Result<R>,
    ) -> anyhow::Result<R> {
        match lock(&self.members).as_mut() {
            Some(members) => f(members),
            None => anyhow::bail!("the fleet was shut down"),
        }
    }

    /// Starts a child called `name`; replaces nothing.
    pub fn start(&self, name: &str, role: Role) -> anyhow::Result<u32> {
        self.with_members(|members| self.start_in(members, name, role))
    }

    fn start_in(
        &self,
        members: &mut BTreeMap<String, Member>,
        name: &str,
        role: Role,
    ) -> anyhow::Result<u32> {
        anyhow::ensure!(!members.contains_key(name), "{name} already exists");
        let child = self.spawn(name, role)?;
        let pid = child.id();
        members.insert(
            name.to_owned(),
            Member {
                role,
                child: Some(child),
                pid,
                started: Instant::now(),
                respawn: false,
            },
        );
        Ok(pid)
    }

    /// Starts one more processor (a scale-up: the group rebalances).
    pub fn start_extra_processor(&self) -> anyhow::Result<(String, u32)> {
        let n = {
            let mut extra = lock(&self.extra_processors);
            *extra += 1;
            *extra
        };
        let name = self.child_name(&format!("processor-extra-{n}"));
        let pid = self.start(&name, Role::Processor)?;
        Ok((name, pid))
    }

    /// Names of the running children with `role` (all roles when `None`).
    pub fn names(&self, role: Option<Role>) -> Vec<String> {
        self.with_members(|members| {
            Ok(members
                .iter()
                .filter(|(_, m)| m.child.is_some() && role.is_none_or(|r| m.role == r))
                .map(|(n, _)| n.clone())
                .collect())
        })
        .unwrap_or_default()
    }

    /// The role of `name`.
    pub fn role(&self, name: &str) -> Option<Role> {
        self.with_members(|members| Ok(members.get(name).map(|m| m.role)))
            .ok()
            .flatten()
    }

    /// The pid of `name`'s current process, if it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.with_members(|members| {
            Ok(members
                .get(name)
                .filter(|m| m.child.is_some())
                .map(|m| m.pid))
        })
        .ok()
        .flatten()
    }

    fn take_child(&self, name: &str) -> anyhow::Result<(Child, u32)> {
        self.with_members(|members| {
            let member = members
                .get_mut(name)
                .with_context(|| format!("no child called {name}"))?;
            let child = member
                .child
                .take()
                .with_context(|| format!("{name} is not running"))?;
            Ok((child, member.pid))
        })
    }

    /// SIGKILLs `name` and reaps it; it stays down until [`Fleet::restart`].
    /// Returns the killed pid.
    pub fn kill(&self, name: &str) -> anyhow::Result<u32> {
        let (mut child, pid) = self.take_child(name)?;
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(self.pid_path(name));
        Ok(pid)
    }

    /// Starts `name` again after [`Fleet::kill`]. Returns the new pid.
    pub fn restart(&self, name: &str) -> anyhow::Result<u32> {
        self.with_members(|members| {
            let member = members
                .get_mut(name)
                .with_context(|| format!("no child called {name}"))?;
            anyhow::ensure!(member.child.is_none(), "{name} is already running");
            let child = self.spawn(name, member.role)?;
            member.respawn = false;
            member.pid = child.id();
            member.started = Instant::now();
            member.child = Some(child);
            Ok(member.pid)
        })
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to `name`'s process.
    pub fn signal(&self, name: &str, signal: &str) -> anyhow::Result<u32> {
        let pid = self
            .pid(name)
            .with_context(|| format!("{name} is not running"))?;
        send_signal(pid, signal)?;
        Ok(pid)
    }

    /// Stops `name` for good: SIGTERM, a bounded wait for a clean exit,
    /// SIGKILL past it. Returns how it ended.
    pub async fn retire(&self, name: &str) -> anyhow::Result<String> {
        let (mut child, pid) = self.take_child(name)?;
        let _ = send_signal(pid, "CONT");
        send_signal(pid, "TERM")?;
        let deadline = Instant::now() + TERM_GRACE;
        let how = loop {
            if let Some(status) = child.try_wait()? {
                break describe(status).0;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let status = child.wait()?;
                break format!("ignored SIGTERM for {TERM_GRACE:?}, {}", describe(status).0);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let _ = self.with_members(|members| Ok(members.remove(name)));
        let _ = std::fs::remove_file(self.pid_path(name));
        Ok(how)
    }

    /// Restarts every child that exited although nobody stopped it (the
    /// crash-only services' supervisor) and returns those exits. A child
    /// that dies again at once is restarted at most every
    /// `RESPAWN_INTERVAL_MIN`, on a later call.
    pub fn supervise(&self) -> Vec<SelfExit> {
        let mut found = Vec::new();
        let mut guard = lock(&self.members);
        let Some(members) = guard.as_mut() else {
            return found;
        };
        for (name, member) in members.iter_mut() {
            if let Some(child) = member.child.as_mut() {
                let Ok(Some(status)) = child.try_wait() else {
                    continue;
                };
                let (status, panicked) = describe(status);
                found.push(SelfExit {
                    name: name.clone(),
                    pid: member.pid,
                    status,
                    panicked,
                });
                member.child = None;
                member.respawn = true;
                let _ = std::fs::remove_file(self.pid_path(name));
            }
            if !member.respawn || member.started.elapsed() < RESPAWN_INTERVAL_MIN {
                continue;
            }
            match self.spawn(name, member.role) {
                Ok(child) => {
                    member.pid = child.id();
                    member.started = Instant::now();
                    member.child = Some(child);
                    member.respawn = false;
                }
                Err(e) => eprintln!("chaos: could not restart {name}: {e:#}"),
            }
        }
        drop(guard);
        lock(&self.self_exits).extend(found.iter().cloned());
        found
    }

    /// Every exit [`Fleet::supervise`] has seen.
    pub fn self_exits(&self) -> Vec<SelfExit> {
        lock(&self.self_exits).clone()
    }

    /// Every log file of the fleet, including retired children's.
    pub fn log_files(&self) -> Vec<PathBuf> {
        let prefix = format!("{}-", self.cfg.run_name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.cfg.logs_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
            })
            .collect();
        files.sort();
        files
    }

    /// Stops every child: SIGCONT (a paused one must be able to exit),
    /// SIGTERM, a bounded wait, SIGKILL for the rest; removes the pid files.
    pub fn shutdown(&self) {
        let mut children: Vec<(String, Child)> = {
            let all = lock(&self.members).take().unwrap_or_default();
            all.into_iter()
                .filter_map(|(n, m)| m.child.map(|c| (n, c)))
                .collect()
        };
        for (_, child) in &children {
            let _ = send_signal(child.id(), "CONT");
            let _ = send_signal(child.id(), "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline
            && children
                .iter_mut()
                .any(|(_, c)| matches!(c.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (name, child) in &mut children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
            let _ = std::fs::remove_file(self.pid_path(name));
        }
    }
}

/// Stops the whole fleet when dropped: the test's processes never outlive
/// it, even when an assertion fails or a task panics.
pub struct FleetGuard(pub Arc<Fleet>);

impl Drop for FleetGuard {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// Seconds since the epoch with milliseconds, for log headers and events.
pub fn unix_time_text() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

/// Appends one line to `path` (best effort: the event log is for humans).
pub fn append_line(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

/// The text of `path` from byte `offset` on (lossy UTF-8; empty when it
/// cannot be read), for log scans.
pub fn read_text_from(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// The whole text of `path` (lossy UTF-8; empty when it cannot be read).
pub fn read_text(path: &Path) -> String {
    read_text_from(path, 0)
}
