//! Operator commands behind `flashsale-admin`.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::BaseConsumer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use flashsale_runtime::config::TopicArgs;
use flashsale_runtime::retry::{retry, Backoff, RetryError};
use flashsale_runtime::topics::partition_count;
use tokio_util::sync::CancellationToken;

/// Broker calls give up after this long.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One topic to create and how.
struct TopicSpec<'a> {
    /// Topic name.
    name: &'a str,
    /// Topic configs (`retention.ms`, `cleanup.policy`).
    configs: Vec<(&'a str, &'a str)>,
}

/// Creates the pipeline's topics if missing (idempotent) and checks that
/// existing ones have the expected partition count: changing it would move
/// keys between partitions and split a product's stock between two writers.
pub async fn create_topics(
    brokers: &str,
    topics: &TopicArgs,
    partitions: i32,
    replication: i32,
) -> anyhow::Result<()> {
    anyhow::ensure!(partitions > 0, "partitions must be at least 1");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let specs = [
        // The log is the source of truth for stock: keep it forever.
        TopicSpec {
            name: &topics.requests_topic,
            configs: vec![("retention.ms", "-1")],
        },
        TopicSpec {
            name: &topics.outcomes_topic,
            configs: vec![],
        },
        TopicSpec {
            name: &topics.dead_letter_topic,
            configs: vec![("retention.ms", "-1")],
        },
        // Latest snapshot per key is all a restore needs.
        TopicSpec {
            name: &topics.snapshots_topic,
            configs: vec![("cleanup.policy", "compact")],
        },
    ];
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(s.name, partitions, TopicReplication::Fixed(replication)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(name) => println!("created topic {name} ({partitions} partitions)"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => println!("topic {name} exists"),
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    verify_partitions(brokers, &specs, partitions).await
}

/// How long a just-created topic may take to show its partitions in
/// metadata: 20 looks, 250 ms apart.
const VISIBLE_BACKOFF: Backoff = Backoff::fixed(20, Duration::from_millis(250));

/// Checks every topic's partition count. A topic created a moment ago can
/// still read as having none (metadata lags the creation), so a count of 0
/// is looked at again; any other wrong count is final.
async fn verify_partitions(
    brokers: &str,
    specs: &[TopicSpec<'_>],
    partitions: i32,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "flashsale-admin")
        .create()?;
    // A one-shot command: nothing else can ask it to stop mid-retry.
    let never = CancellationToken::new();
    for spec in specs {
        let count = retry("topic metadata", VISIBLE_BACKOFF, &never, || async {
            // A blocking lookup, as before: this is a one-shot command, and
            // it runs under any runtime flavour (tests, benches) this way.
            match partition_count(&consumer, spec.name, ADMIN_TIMEOUT) {
                Ok(0) => Err(anyhow::anyhow!(
                    "topic {} shows no partitions yet",
                    spec.name
                )),
                other => Ok(other?),
            }
        })
        .await;
        let count = match count {
            Ok(c) => c,
            Err(RetryError::Exhausted { last, .. }) => return Err(last),
            Err(e) => return Err(e.into()),
        };
        anyhow::ensure!(
            count == partitions,
            "topic {} has {count} partitions, expected {partitions}",
            spec.name
        );
    }
    Ok(())
}
