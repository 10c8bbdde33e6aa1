//! Migrations against the real MariaDB/MySQL of the local stack (`dev/up`;
//! `FLASHSALE_MYSQL_URL`).

use flashsale_sinks::mysql::MysqlStore;

fn url_with_database(url: &str, database: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(head, _)| head);
    format!("{base}/{database}")
}

/// Proves workers that start together never corrupt the schema: eight
/// stores migrate a fresh database at the same moment, and every one
/// succeeds with every migration recorded once as applied. (MariaDB ignores
/// sqlx's own migration lock; a chaos run once left two sinks retrying
/// "migration 2 is partially applied" forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_migrate_a_fresh_database_once() {
    let url = std::env::var("FLASHSALE_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://flashsale:flashsale@127.0.0.1:13306/flashsale".into());
    let database = format!("migrate_{}", std::process::id());
    let admin = sqlx::MySqlPool::connect(&url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE `{database}`"))
        .execute(&admin)
        .await
        .unwrap();
    let target = url_with_database(&url, &database);
    let runs = (0..8).map(|_| {
        let target = target.clone();
        tokio::spawn(async move { MysqlStore::connect_lazy(&target).unwrap().migrate().await })
    });
    let results = futures::future::join_all(runs).await;
    let pool = sqlx::MySqlPool::connect(&target).await.unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    sqlx::query(&format!("DROP DATABASE `{database}`"))
        .execute(&admin)
        .await
        .unwrap();
    for r in results {
        r.unwrap().unwrap();
    }
    assert_eq!(applied, vec![(1, true), (2, true)]);
}

/// Proves the contract's table names are the tables the migrations make:
/// `flashsale_schemas::names::MYSQL_TABLES` is what operators and other
/// crates are told, and the migrations (the source of the schema) agree.
#[test]
fn migrations_create_exactly_the_contract_tables() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut created = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let sql = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in sql.lines() {
            if let Some(rest) = line.trim().strip_prefix("CREATE TABLE IF NOT EXISTS ") {
                created.push(rest.split_whitespace().next().unwrap().to_owned());
            }
        }
    }
    created.sort();
    created.dedup();
    assert_eq!(created, flashsale_schemas::names::MYSQL_TABLES.to_vec());
}
