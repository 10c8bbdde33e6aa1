//! Schema evolution through the registry: a v2 request schema that adds an
//! optional field (with a default) is accepted as BACKWARD compatible, and
//! records written with it are decided by the running processor; an
//! incompatible schema is refused by the registry.

use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::Schema;
use flashsale_schemas::avro::{self, REQUEST_SCHEMA};
use flashsale_schemas::registry::{value_subject, Contract};
use flashsale_schemas::wire;
use flashsale_testkit::kafka::{contract, produce_request, producer};
use flashsale_testkit::{unique, Api, Env};
use schema_registry_converter::async_impl::schema_registry::post_schema;
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

fn v2_schema() -> String {
    let v2 = REQUEST_SCHEMA.replacen(
        "\"fields\": [\n      {\"name\": \"request_id\"",
        "\"fields\": [\n      {\"name\": \"channel\", \"type\": [\"null\", \"string\"], \"default\": null, \"doc\": \"Where the buyer came from (v2).\"},\n      {\"name\": \"request_id\"",
        1,
    );
    assert_ne!(v2, REQUEST_SCHEMA);
    v2
}

/// Registers v2 (compatible: new optional field), produces a purchase
/// written with v2 straight to the topic, and proves the processor decided
/// it (accepted, visible through the API). Then proves the registry refuses
/// a v3 that changes `quantity` from int to string, and that our subject is
/// configured BACKWARD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_writer_is_decided_and_incompatible_schema_is_refused() {
    let env = Env::from_env();
    let api = Api::new(&env.ingress_url);
    let contract = contract(&env).await.unwrap();
    let subject = value_subject(&env.requests_topic);

    let v2_text = v2_schema();
    let registered = post_schema(
        contract.settings(),
        subject.clone(),
        SuppliedSchema::new(None, SchemaType::Avro, v2_text.clone()),
    )
    .await
    .expect("v2 is backward compatible");
    assert_ne!(registered.id, contract.request_schema_id());

    let product = unique("evolve");
    api.configure_sale(&product, 3, 3).await.unwrap();
    let request_id = unique("v2req");
    let payload = v2_purchase(&v2_text, registered.id, &request_id, &product);
    produce_request(&env, &producer(&env).unwrap(), &product, &payload, None)
        .await
        .unwrap();
    let decided = api
        .await_get(
            &format!("/api/v1/purchases/{request_id}"),
            Duration::from_secs(30),
            |a| a.body["status"] == "accepted" && a.body["remaining"] == 1,
        )
        .await;
    assert!(decided, "the v2 record was decided");

    incompatible_v3_is_refused(&contract, &subject).await;
    let config: serde_json::Value = reqwest::get(format!("{}/config/{subject}", env.registry_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["compatibilityLevel"], "BACKWARD");
}

/// The wire bytes of a purchase of 2 units written with v2 (`v2_text`,
/// registered as `schema_id`), its new `channel` field set.
fn v2_purchase(v2_text: &str, schema_id: u32, request_id: &str, product: &str) -> Vec<u8> {
    let v2 = Schema::parse_str(v2_text).unwrap();
    let value = Value::Union(
        0,
        Box::new(Value::Record(vec![
            (
                "channel".into(),
                Value::Union(1, Box::new(Value::String("mobile".into()))),
            ),
            ("request_id".into(), Value::String(request_id.into())),
            ("user_id".into(), Value::String("v2-user".into())),
            ("product_id".into(), Value::String(product.into())),
            ("quantity".into(), Value::Int(2)),
            ("received_at".into(), Value::TimestampMillis(1)),
        ])),
    );
    wire::frame(schema_id, &avro::write_body(&v2, value).unwrap())
}

/// The registry refuses a v3 that changes `quantity` from int to string.
async fn incompatible_v3_is_refused(contract: &Contract, subject: &str) {
    let v3 = REQUEST_SCHEMA.replacen(
        "{\"name\": \"quantity\", \"type\": \"int\"",
        "{\"name\": \"quantity\", \"type\": \"string\"",
        1,
    );
    assert_ne!(v3, REQUEST_SCHEMA);
    let refused = post_schema(
        contract.settings(),
        subject.to_owned(),
        SuppliedSchema::new(None, SchemaType::Avro, v3),
    )
    .await;
    assert!(refused.is_err(), "an incompatible schema must be refused");
}
