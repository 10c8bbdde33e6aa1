//! Proves the Avro schemas in `schemas/avro/` and the Rust types agree:
//! every record round-trips through its schema (the writer validates each
//! value against the schema, so a type or name mismatch fails), every schema
//! field is written by the Rust side and no other, every field and record has
//! a doc and a namespace, and a compatible v2 writer is read by today's
//! reader.

use apache_avro::types::Value;
use apache_avro::Schema;
use flashsale_schemas::avro::{self, SCHEMAS};
use flashsale_schemas::records::DeadLetter;
use flashsale_schemas::{
    ConfigureSale, OrderId, Outcome, OutcomeKind, ProductId, PurchaseRequest, RejectReason,
    Request, RequestId, SaleTerms, Status, UserId,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn id_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:@-]{1,64}"
}

fn terms_strategy() -> impl Strategy<Value = SaleTerms> {
    (
        0i64..1_000_000,
        1i32..100,
        0i64..10_000_000_000,
        prop::option::of(0i64..i64::MAX / 2),
        prop::option::of(0i64..i64::MAX / 2),
    )
        .prop_map(
            |(stock, per_user_limit, cents, starts_at_ms, ends_at_ms)| SaleTerms {
                stock,
                per_user_limit,
                price: Decimal::new(cents, 2),
                starts_at_ms,
                ends_at_ms,
            },
        )
}

fn request_strategy() -> impl Strategy<Value = Request> {
    let purchase = (
        id_strategy(),
        id_strategy(),
        id_strategy(),
        1i32..1000,
        any::<i64>(),
    )
        .prop_map(|(r, u, p, quantity, received_at_ms)| {
            Request::Purchase(PurchaseRequest {
                request_id: RequestId::parse(&r).unwrap(),
                user_id: UserId::parse(&u).unwrap(),
                product_id: ProductId::parse(&p).unwrap(),
                quantity,
                received_at_ms,
            })
        });
    let configure = (id_strategy(), id_strategy(), terms_strategy(), any::<i64>()).prop_map(
        |(c, p, terms, issued_at_ms)| {
            Request::ConfigureSale(ConfigureSale {
                command_id: RequestId::parse(&c).unwrap(),
                product_id: ProductId::parse(&p).unwrap(),
                terms,
                issued_at_ms,
            })
        },
    );
    prop_oneof![purchase, configure]
}

fn outcome_strategy() -> impl Strategy<Value = Outcome> {
    (
        (id_strategy(), id_strategy(), any::<bool>(), any::<bool>()),
        prop::option::of(prop::sample::select(RejectReason::ALL.to_vec())),
        prop::option::of(id_strategy()),
        (any::<i32>(), any::<i64>(), any::<i64>(), any::<i32>()),
        prop::option::of(terms_strategy()),
        (
            any::<i32>(),
            any::<i64>(),
            any::<i64>(),
            prop::option::of(-1_000_000i64..1_000_000),
        ),
    )
        .prop_map(
            |((r, p, purchase, accepted), reason, user, nums, sale, pos)| Outcome {
                request_id: RequestId::parse(&r).unwrap(),
                product_id: ProductId::parse(&p).unwrap(),
                kind: if purchase {
                    OutcomeKind::Purchase
                } else {
                    OutcomeKind::SaleConfigured
                },
                status: if accepted {
                    Status::Accepted
                } else {
                    Status::Rejected
                },
                reason,
                user_id: user.map(|u| UserId::parse(&u).unwrap()),
                quantity: nums.0,
                order_id: Some(OrderId::for_input(pos.0, pos.1)),
                unit_price: pos.3.map(|c| Decimal::new(c, 2)),
                remaining: nums.1,
                stock: nums.2,
                user_total: nums.3,
                sale,
                source_partition: pos.0,
                source_offset: pos.1,
                decided_at_ms: pos.2,
            },
        )
}

proptest! {
    /// Requests round-trip through the registered writer schema.
    #[test]
    fn requests_round_trip(r in request_strategy()) {
        let body = avro::write_body(&SCHEMAS.request, avro::request_to_value(&r)).unwrap();
        let value = avro::read_body(&SCHEMAS.request, &body).unwrap();
        prop_assert_eq!(avro::request_from_value(&SCHEMAS.request, value).unwrap(), r);
    }

    /// Outcomes round-trip, including negative and large money amounts.
    #[test]
    fn outcomes_round_trip(o in outcome_strategy()) {
        let body = avro::write_body(&SCHEMAS.outcome, avro::outcome_to_value(&o)).unwrap();
        let value = avro::read_body(&SCHEMAS.outcome, &body).unwrap();
        prop_assert_eq!(avro::outcome_from_value(value).unwrap(), o);
    }
}

/// Dead letters round-trip, with and without key and value.
#[test]
fn dead_letters_round_trip() {
    for (key, value) in [
        (None, None),
        (Some(b"k".to_vec()), Some(vec![0, 1, 2, 255])),
    ] {
        let d = DeadLetter {
            reason: "undecodable".into(),
            detail: "bad magic".into(),
            source_topic: "flashsale.requests".into(),
            source_partition: 3,
            source_offset: 42,
            source_timestamp_ms: Some(1),
            key,
            value,
        };
        let body = avro::write_body(&SCHEMAS.dead_letter, avro::dead_letter_to_value(&d)).unwrap();
        let back =
            avro::dead_letter_from_value(avro::read_body(&SCHEMAS.dead_letter, &body).unwrap())
                .unwrap();
        assert_eq!(back, d);
    }
}

fn record_field_names(schema: &Schema) -> Vec<String> {
    match schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        other => panic!("not a record: {other:?}"),
    }
}

fn value_field_names(value: &Value) -> Vec<String> {
    match value {
        Value::Record(fields) => fields.iter().map(|(n, _)| n.clone()).collect(),
        Value::Union(_, inner) => value_field_names(inner),
        other => panic!("not a record value: {other:?}"),
    }
}

/// The Rust side writes exactly the schema's fields, in schema order, for
/// every record type (so a field added to an .avsc without Rust support, or
/// the reverse, fails here).
#[test]
fn rust_writes_exactly_the_schema_fields() {
    let Schema::Union(union) = &SCHEMAS.request else {
        panic!("request schema is a union")
    };
    let purchase = Request::Purchase(PurchaseRequest {
        request_id: RequestId::parse("r").unwrap(),
        user_id: UserId::parse("u").unwrap(),
        product_id: ProductId::parse("p").unwrap(),
        quantity: 1,
        received_at_ms: 0,
    });
    let configure = Request::ConfigureSale(ConfigureSale {
        command_id: RequestId::parse("c").unwrap(),
        product_id: ProductId::parse("p").unwrap(),
        terms: SaleTerms {
            stock: 1,
            per_user_limit: 1,
            price: Decimal::ONE,
            starts_at_ms: None,
            ends_at_ms: None,
        },
        issued_at_ms: 0,
    });
    assert_eq!(
        value_field_names(&avro::request_to_value(&purchase)),
        record_field_names(&union.variants()[0])
    );
    assert_eq!(
        value_field_names(&avro::request_to_value(&configure)),
        record_field_names(&union.variants()[1])
    );
    let outcome_value = avro::outcome_to_value(&Outcome {
        request_id: RequestId::parse("r").unwrap(),
        product_id: ProductId::parse("p").unwrap(),
        kind: OutcomeKind::Purchase,
        status: Status::Accepted,
        reason: None,
        user_id: None,
        quantity: 1,
        order_id: None,
        unit_price: None,
        remaining: 0,
        stock: 0,
        user_total: 0,
        sale: None,
        source_partition: 0,
        source_offset: 0,
        decided_at_ms: 0,
    });
    assert_eq!(
        value_field_names(&outcome_value),
        record_field_names(&SCHEMAS.outcome)
    );
}

fn assert_documented(json: &serde_json::Value, path: &str) {
    match json {
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_documented(item, &format!("{path}[{i}]"));
            }
        }
        serde_json::Value::Object(map) => {
            let is_named = matches!(
                map.get("type").and_then(|t| t.as_str()),
                Some("record" | "enum")
            );
            if is_named {
                assert!(map.contains_key("doc"), "{path}: named type without doc");
            }
            if let Some(serde_json::Value::Array(fields)) = map.get("fields") {
                for f in fields {
                    let name = f["name"].as_str().unwrap_or("?");
                    assert!(f.get("doc").is_some(), "{path}.{name}: field without doc");
                    assert_documented(&f["type"], &format!("{path}.{name}"));
                }
            }
        }
        _ => {}
    }
}

/// Every record, enum and field carries a doc; every top-level record has a
/// namespace; money is decimal and times are timestamp-millis.
#[test]
fn schemas_are_documented_and_typed() {
    for (name, text) in [
        ("request", avro::REQUEST_SCHEMA),
        ("outcome", avro::OUTCOME_SCHEMA),
        ("dead_letter", avro::DEAD_LETTER_SCHEMA),
    ] {
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_documented(&json, name);
        let tops = match &json {
            serde_json::Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for top in tops {
            assert_eq!(top["namespace"], "flashsale.v1", "{name}: namespace");
        }
    }
    assert!(avro::REQUEST_SCHEMA.contains("\"logicalType\": \"decimal\""));
    assert!(avro::OUTCOME_SCHEMA.contains("\"logicalType\": \"timestamp-millis\""));
}

/// Schema evolution: a v2 writer adds an optional field (with default) to
/// PurchaseRequest and reorders the union; today's reader still reads it,
/// picking the branch by name and ignoring the unknown field.
#[test]
fn reads_a_compatible_v2_writer() {
    let v2_text = avro::REQUEST_SCHEMA.replacen(
        "\"fields\": [\n      {\"name\": \"request_id\"",
        "\"fields\": [\n      {\"name\": \"channel\", \"type\": [\"null\", \"string\"], \"default\": null, \"doc\": \"v2\"},\n      {\"name\": \"request_id\"",
        1,
    );
    assert_ne!(v2_text, avro::REQUEST_SCHEMA, "the v2 edit applied");
    let v2 = Schema::parse_str(&v2_text).unwrap();
    let Schema::Union(u) = &v2 else {
        panic!("union")
    };
    assert_eq!(record_field_names(&u.variants()[0])[0], "channel");
    let value = Value::Union(
        0,
        Box::new(Value::Record(vec![
            (
                "channel".into(),
                Value::Union(1, Box::new(Value::String("app".into()))),
            ),
            ("request_id".into(), Value::String("r1".into())),
            ("user_id".into(), Value::String("u1".into())),
            ("product_id".into(), Value::String("p1".into())),
            ("quantity".into(), Value::Int(2)),
            ("received_at".into(), Value::TimestampMillis(7)),
        ])),
    );
    let body = avro::write_body(&v2, value).unwrap();
    let read = avro::request_from_value(&v2, avro::read_body(&v2, &body).unwrap()).unwrap();
    let Request::Purchase(p) = read else {
        panic!("a purchase")
    };
    assert_eq!(
        (p.request_id.as_str(), p.quantity, p.received_at_ms),
        ("r1", 2, 7)
    );
}

/// Invalid content is refused by type, not by panic: an empty ID in an
/// otherwise well-formed record is a BadId error.
#[test]
fn empty_ids_are_refused() {
    let value = Value::Union(
        0,
        Box::new(Value::Record(vec![
            ("request_id".into(), Value::String(String::new())),
            ("user_id".into(), Value::String("u".into())),
            ("product_id".into(), Value::String("p".into())),
            ("quantity".into(), Value::Int(1)),
            ("received_at".into(), Value::TimestampMillis(0)),
        ])),
    );
    let err = avro::request_from_value(&SCHEMAS.request, value).unwrap_err();
    assert!(matches!(err, avro::ContractError::BadId(_)), "{err:?}");
}
