//! # flashsale-chaos: the pipeline under faults
//!
//! The chaos test (`tests/chaos.rs`, run by `dev/test`) runs a flash sale
//! on its own processes and topics while it kills, pauses and restarts
//! them, then checks that nothing was oversold, lost or recorded twice.
//! Its machinery:
//!
//! * [`fleet`]: the run's own processors, sinks and ingress, started,
//!   killed, paused ("zombies") and restarted;
//! * [`workload`]: the sale and its retrying clients;
//! * [`faults`]: the scheduled faults (kills, rebalances, a zombie pause,
//!   broker, Redis and MySQL restarts);
//! * [`verify`]: the checks that judge the run against the outcomes log;
//! * [`rng`]: the seeded generator that makes a run repeatable;
//! * this file: the run's databases and the `flashsale-admin` runner.
//!
//! May depend on: the contract, the runtime's client settings and the test
//! kit. Never on a service crate: services are run as processes.

pub mod faults;
pub mod fleet;
pub mod rng;
pub mod verify;
pub mod workload;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

/// The repository root (this crate lives in `<root>/testing/chaos`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Where the workspace binaries are: `FLASHSALE_BIN_DIR` as in
/// `dev/lib.sh`, else `<root>/target/debug`.
pub fn bin_dir(root: &Path) -> PathBuf {
    std::env::var_os("FLASHSALE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/debug"))
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The output and exit status of one `flashsale-admin` run.
#[derive(Debug)]
pub struct AdminRun {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// stdout and stderr, in that order.
    pub output: String,
}

/// Runs `flashsale-admin ARGS` with `env` added, bounded by `timeout`.
pub async fn admin(
    bin_dir: &Path,
    env: &[(String, String)],
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<AdminRun> {
    let bin = bin_dir.join("flashsale-admin");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --workspace --bins` (dev/up does)",
        bin.display()
    );
    let child = tokio::process::Command::new(&bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, child)
        .await
        .with_context(|| {
            format!(
                "flashsale-admin {} did not finish within {timeout:?}",
                args.join(" ")
            )
        })?
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(AdminRun {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// `url` (a `mysql://…/db` URL) with its database replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{database}{query}", &base[..host_end])
}

/// Creates (if missing) the database `name` on the server of `url`.
///
/// One connection to the server of `url`, to create or drop database
/// `name` (refused unless it is a plain identifier: it is spliced into SQL).
async fn server_pool(url: &str, name: &str) -> anyhow::Result<sqlx::MySqlPool> {
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "bad database name {name}"
    );
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to MySQL")
}

/// The run keeps its read model in a database of its own because order IDs
/// are derived from the requests topic's partition and offset (`o-P-O`),
/// unique within one requests topic only: another topic's orders in the
/// same `orders` table (the shared stack's, an earlier run's) would collide
/// with this run's, and the MySQL sink keeps the older row.
pub async fn create_database(url: &str, name: &str) -> anyhow::Result<()> {
    let pool = server_pool(url, name).await?;
    sqlx::query(&format!(
        "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .execute(&pool)
    .await
    .with_context(|| format!("creating database {name}"))?;
    Ok(())
}

/// Drops the database `name` on the server of `url`.
pub async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let pool = server_pool(url, name).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
        .execute(&pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    /// Proves the database part of a MySQL URL is replaced and the rest
    /// (credentials, host, port, query) kept.
    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("mysql://u:p@127.0.0.1:13306/flashsale", "x_1"),
            "mysql://u:p@127.0.0.1:13306/x_1"
        );
        assert_eq!(
            with_database("mysql://u:p@h:1/db?ssl-mode=disabled", "y"),
            "mysql://u:p@h:1/y?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://h:1", "z"), "mysql://h:1/z");
    }
}
