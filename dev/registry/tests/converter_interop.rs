//! Interop test: schema_registry_converter (the Rust client our services use)
//! against the stand-in served over real HTTP on a loopback port.

use apache_avro::types::Value;
use flashsale_dev_registry::{app, AppState};
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

const CONFIGURE_SALE: &str = r#"{"type":"record","name":"ConfigureSale","namespace":"flashsale.v1","fields":[{"name":"sale_id","type":"string"},{"name":"stock","type":"long"}]}"#;

/// The request topic's value schema (top-level union of two records), with
/// `extra` appended to PurchaseRequest's fields.
fn request_union(extra: &str) -> String {
    format!(
        r#"[{{"type":"record","name":"PurchaseRequest","namespace":"flashsale.v1","fields":[{{"name":"request_id","type":"string"}},{{"name":"quantity","type":"int"}}{extra}]}},{CONFIGURE_SALE}]"#
    )
}

/// Serves the stand-in on a free loopback port; returns its base URL.
async fn serve(dir: &std::path::Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = app(AppState::open(dir).unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// A topic-name strategy that registers `schema` under `requests-value`.
fn strategy(schema: String) -> SubjectNameStrategy {
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema);
    SubjectNameStrategy::TopicNameStrategyWithSchema("requests".into(), false, supplied)
}

fn purchase() -> Value {
    Value::Union(
        0,
        Box::new(Value::Record(vec![
            ("request_id".into(), Value::String("r-1".into())),
            ("quantity".into(), Value::Int(2)),
        ])),
    )
}

// Proves the Rust producer/consumer path works against the stand-in: the
// encoder auto-registers the top-level union (id 1) and frames the record with
// it, the decoder fetches the schema by id and gets the same union value back;
// a compatible v2 gets id 2, and a breaking v3 is refused (the 409 surfaces as
// an encoder error), by running each step through the converter's public API.
#[tokio::test]
async fn converter_registers_encodes_and_decodes_union() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(dir.path()).await;
    let settings = || {
        SrSettings::new_builder(url.clone())
            .no_proxy()
            .build()
            .unwrap()
    };

    let encoder = AvroEncoder::new(settings());
    let bytes = encoder
        .encode_value(purchase(), &strategy(request_union("")))
        .await
        .unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 1], "magic byte then schema id 1");
    let decoded = AvroDecoder::new(settings())
        .decode(Some(&bytes))
        .await
        .unwrap();
    assert_eq!(decoded.value, purchase());

    let channel = r#",{"name":"channel","type":["null","string"],"default":null}"#;
    let v2 = AvroEncoder::new(settings());
    let with_channel = Value::Union(
        0,
        Box::new(Value::Record(vec![
            ("request_id".into(), Value::String("r-2".into())),
            ("quantity".into(), Value::Int(1)),
            (
                "channel".into(),
                Value::Union(1, Box::new(Value::String("app".into()))),
            ),
        ])),
    );
    let bytes = v2
        .encode_value(with_channel, &strategy(request_union(channel)))
        .await
        .unwrap();
    assert_eq!(&bytes[..5], &[0, 0, 0, 0, 2]);

    let breaking = request_union(r#",{"name":"store","type":"string"}"#);
    let err = AvroEncoder::new(settings())
        .encode_value(purchase(), &strategy(breaking))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("409"), "{err}");
}
