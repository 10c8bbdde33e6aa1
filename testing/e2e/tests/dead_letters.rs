//! Bad records on the requests topic go to the dead-letter topic with a
//! reason header, are counted in metrics, and the partition keeps flowing.
//! Records are produced straight to the topic, as an external producer
//! would, with a real Kafka client against the real broker.

use std::time::Duration;

use apache_avro::types::Value;
use flashsale_schemas::avro::{self, SCHEMAS};
use flashsale_schemas::partition::partition_for;
use flashsale_schemas::wire;
use flashsale_schemas::{DeadLetter, ProductId, PurchaseRequest, Request, RequestId, UserId};
use flashsale_testkit::kafka::{contract, find, header, producer, tail};
use flashsale_testkit::{product_on_partition, unique, Api, Env};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;

const WAIT: Duration = Duration::from_secs(30);

fn partitions() -> i32 {
    std::env::var("FLASHSALE_PARTITIONS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8)
}

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

    let id = contract.request_schema_id();
    let body = |v: Value| wire::frame(id, &avro::write_body(&SCHEMAS.request, v).unwrap());
    let other = product_on_partition("dlq-other", (partition + 1) % n, n);
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "undecodable",
            product.clone(),
            b"definitely not avro".to_vec(),
        ),
        (
            "unknown_schema",
            product.clone(),
            wire::frame(2_000_000_000, b"\x02"),
        ),
        (
            "invalid_content",
            product.clone(),
            body(purchase_value(&unique("r"), "u", &product, 0)),
        ),
        (
            "invalid_content",
            product.clone(),
            body(purchase_value("", "u", &product, 1)),
        ),
        (
            "key_mismatch",
            product.clone(),
            body(purchase_value(&unique("r"), "u", &other, 1)),
        ),
        (
            "wrong_partition",
            other.clone(),
            body(purchase_value(&unique("r"), "u", &other, 1)),
        ),
    ];
    let mut offsets = Vec::new();
    for (_, key, value) in &cases {
        let record = FutureRecord::to(&env.requests_topic)
            .key(key.as_str())
            .payload(value)
            .partition(partition);
        let delivery = producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        assert_eq!(delivery.partition, partition);
        offsets.push(delivery.offset);
    }
    let good = Request::Purchase(PurchaseRequest {
        request_id: RequestId::parse(&unique("good")).unwrap(),
        user_id: UserId::parse("dlq-user").unwrap(),
        product_id: ProductId::parse(&product).unwrap(),
        quantity: 1,
        received_at_ms: 1,
    });
    let payload = contract.encode_request(&good).unwrap();
    producer
        .send(
            FutureRecord::to(&env.requests_topic)
                .key(product.as_str())
                .payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    for ((reason, _, value), offset) in cases.iter().zip(&offsets) {
        let found = find(&dlq, WAIT, |m| {
            let source_offset = header(m, "flashsale.dlq.source.offset")?;
            (source_offset == offset.to_string()
                && header(m, "flashsale.dlq.source.partition")? == partition.to_string())
            .then(|| m.clone())
        })
        .await
        .unwrap_or_else(|| panic!("no dead letter for {reason} at offset {offset}"));
        assert_eq!(
            header(&found, "flashsale.dlq.reason").as_deref(),
            Some(*reason)
        );
        assert_eq!(
            header(&found, "flashsale.dlq.source.topic").as_deref(),
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

    let request_id = good.request_id().to_string();
    let decided = flashsale_testkit::eventually(WAIT, || {
        let (api, request_id) = (api.clone(), request_id.clone());
        async move {
            Ok(api
                .get(&format!("/api/v1/purchases/{request_id}"))
                .await?
                .body["status"]
                == "accepted")
        }
    })
    .await;
    assert!(
        decided,
        "the valid purchase behind the bad records was decided"
    );

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
