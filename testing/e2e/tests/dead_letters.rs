//! Bad records on the requests topic go to the dead-letter topic with a
//! reason header, are counted in metrics, and the partition keeps flowing.
//! Records are produced straight to the topic, as an external producer
//! would, with a real Kafka client against the real broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use flashsale_schemas::avro::{self, SCHEMAS};
use flashsale_schemas::partition::partition_for;
use flashsale_schemas::registry::Contract;
use flashsale_schemas::wire;
use flashsale_schemas::{DeadLetter, ProductId, PurchaseRequest, Request, RequestId, UserId};
use flashsale_testkit::kafka::{contract, find, header, produce_request, producer, tail};
use flashsale_testkit::{partitions, product_on_partition, unique, Api, Env};
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{Message, OwnedMessage};

const WAIT: Duration = Duration::from_secs(30);

/// One bad record: the dead-letter reason it must get, its key, its value.
type BadRecord = (&'static str, String, Vec<u8>);

fn purchase_value(request_id: &str, user_id: &str, product: &str, quantity: i32) -> Value {
    Value::Union(
        0,
        Box::new(Value::Record(vec![
            ("request_id".into(), Value::String(request_id.into())),
            ("user_id".into(), Value::String(user_id.into())),
            ("product_id".into(), Value::String(product.into())),
            ("quantity".into(), Value::Int(quantity)),
            ("received_at".into(), Value::TimestampMillis(0)),
        ])),
    )
}

/// Produces, on one partition: garbage bytes, an unknown schema ID, a
/// quantity of 0, an empty request ID, a key/product mismatch, and (on that
/// partition, with an explicit partition) a key that belongs elsewhere; then
/// a valid purchase. Proves each bad record reaches the dead-letter topic
/// with its reason and source headers and its original bytes, the metrics
/// count them, and the valid purchase behind them is still decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_and_the_partition_keeps_flowing() {
    let env = Env::from_env();
    let api = Api::new(&env.ingress_url);
    let contract = contract(&env).await.unwrap();
    let producer = producer(&env).unwrap();
    let n = partitions();
    let product = product_on_partition("dlq", 3 % n, n);
    let partition = partition_for(product.as_bytes(), n);
    api.configure_sale(&product, 10, 10).await.unwrap();
    let dlq = tail(&env, &env.dead_letter_topic).unwrap();

    let other = product_on_partition("dlq-other", (partition + 1) % n, n);
    let cases = bad_records(&contract, &product, &other);
    let mut offsets = Vec::new();
    for (_, key, value) in &cases {
        let (delivered_to, offset) = produce_request(&env, &producer, key, value, Some(partition))
            .await
            .unwrap();
        assert_eq!(delivered_to, partition);
        offsets.push(offset);
    }
    let good = good_purchase(&product);
    let payload = contract.encode_request(&good).unwrap();
    produce_request(&env, &producer, &product, &payload, None)
        .await
        .unwrap();

    // Dead letters land on the partitions of their keys, so they arrive in
    // no particular order across partitions: gather them all, then check.
    let letters = dead_letters_of(&dlq, partition, &offsets).await;
    for (case, offset) in cases.iter().zip(&offsets) {
        is_dead_lettered(&env, &contract, &letters, case, *offset).await;
    }

    let request_id = good.request_id().to_string();
    let decided = api
        .await_get(&format!("/api/v1/purchases/{request_id}"), WAIT, |a| {
            a.body["status"] == "accepted"
        })
        .await;
    assert!(
        decided,
        "the valid purchase behind the bad records was decided"
    );
    metrics_count_every_reason(&api).await;
}

/// The bad records, in the order they are produced: `product` is the
/// partition's own key, `other` one that hashes to another partition.
fn bad_records(contract: &Contract, product: &str, other: &str) -> Vec<BadRecord> {
    let id = contract.request_schema_id();
    let body = |v: Value| wire::frame(id, &avro::write_body(&SCHEMAS.request, v).unwrap());
    vec![
        (
            "undecodable",
            product.to_owned(),
            b"definitely not avro".to_vec(),
        ),
        (
            "unknown_schema",
            product.to_owned(),
            wire::frame(2_000_000_000, b"\x02"),
        ),
        (
            "invalid_content",
            product.to_owned(),
            body(purchase_value(&unique("r"), "u", product, 0)),
        ),
        (
            "invalid_content",
            product.to_owned(),
            body(purchase_value("", "u", product, 1)),
        ),
        (
            "key_mismatch",
            product.to_owned(),
            body(purchase_value(&unique("r"), "u", other, 1)),
        ),
        (
            "wrong_partition",
            other.to_owned(),
            body(purchase_value(&unique("r"), "u", other, 1)),
        ),
    ]
}

/// A valid purchase of one unit of `product`.
fn good_purchase(product: &str) -> Request {
    Request::Purchase(PurchaseRequest {
        request_id: RequestId::parse(&unique("good")).unwrap(),
        user_id: UserId::parse("dlq-user").unwrap(),
        product_id: ProductId::parse(product).unwrap(),
        quantity: 1,
        received_at_ms: 1,
    })
}

/// The dead letters of the records at `offsets` of `partition`, by source
/// offset, read from `dlq` until all are there or [`WAIT`] passes.
async fn dead_letters_of(
    dlq: &StreamConsumer,
    partition: i32,
    offsets: &[i64],
) -> HashMap<i64, OwnedMessage> {
    let mut letters = HashMap::new();
    let deadline = Instant::now() + WAIT;
    while letters.len() < offsets.len() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = find(dlq, left, |m| {
            let source_offset: i64 = header(m, "flashsale.dlq.source.offset")?.parse().ok()?;
            (offsets.contains(&source_offset)
                && header(m, "flashsale.dlq.source.partition")? == partition.to_string())
            .then(|| (source_offset, m.clone()))
        })
        .await;
        match next {
            Some((offset, m)) => letters.insert(offset, m),
            None => break,
        };
    }
    letters
}

/// Waits for the dead letter of the bad record produced at `offset` of
/// `partition` and checks its reason and source headers and that it keeps
/// the record's original bytes.
async fn is_dead_lettered(
    env: &Env,
    contract: &Contract,
    letters: &HashMap<i64, OwnedMessage>,
    (reason, _, value): &BadRecord,
    offset: i64,
) {
    let found = letters
        .get(&offset)
        .unwrap_or_else(|| panic!("no dead letter for {reason} at offset {offset}"));
    assert_eq!(
        header(found, "flashsale.dlq.reason").as_deref(),
        Some(*reason)
    );
    assert_eq!(
        header(found, "flashsale.dlq.source.topic").as_deref(),
        Some(env.requests_topic.as_str())
    );
    let letter: DeadLetter = contract
        .decode_dead_letter(found.payload().unwrap())
        .await
        .unwrap();
    assert_eq!(letter.reason, *reason);
    assert_eq!(
        letter.value.as_deref(),
        Some(value.as_slice()),
        "original bytes kept"
    );
}

/// The processor's metrics count dead letters of every reason.
async fn metrics_count_every_reason(api: &Api) {
    // dev/env exports the base URL of the processor's ops endpoint.
    let ops = std::env::var("FLASHSALE_PROCESSOR_METRICS_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:19101".into());
    let text = api
        .client
        .get(format!("{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "undecodable",
        "unknown_schema",
        "invalid_content",
        "key_mismatch",
        "wrong_partition",
    ] {
        let line = format!("flashsale_processor_dead_letters_total{{reason=\"{reason}\"}}");
        assert!(text.contains(&line), "metrics count {reason}:\n{text}");
    }
}
