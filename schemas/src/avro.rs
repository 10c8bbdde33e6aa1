//! Avro schemas and the conversions between Avro values and [`crate::records`].
//!
//! The `.avsc` files in `schemas/avro/` are the source of truth; they are
//! compiled in. Decoding always starts from the *writer's* schema (found by
//! the schema ID in the Confluent header) and then reads fields **by name**,
//! filling absent optional fields with their defaults and ignoring fields the
//! reader does not know. That is Avro schema resolution for records, and it
//! is done here by hand because apache-avro's resolver picks a union branch by
//! structural validation, which refuses a compatible writer record that has
//! gained a field (our requests value is a top-level union).

use std::sync::LazyLock;

use apache_avro::types::Value;
use apache_avro::Schema;
use rust_decimal::Decimal;

use crate::ids::{IdError, OrderId, ProductId, RequestId, UserId};
use crate::records::{
    ConfigureSale, DeadLetter, Outcome, OutcomeKind, PurchaseRequest, RejectReason, Request,
    SaleTerms, SnapshotChunk, Status,
};

/// The requests topic's value schema: a union of purchase and sale command.
pub const REQUEST_SCHEMA: &str = include_str!("../avro/request.avsc");
/// The outcomes topic's value schema.
pub const OUTCOME_SCHEMA: &str = include_str!("../avro/outcome.avsc");
/// The dead-letter topic's value schema.
pub const DEAD_LETTER_SCHEMA: &str = include_str!("../avro/dead_letter.avsc");
/// The snapshots topic's value schema.
pub const SNAPSHOT_SCHEMA: &str = include_str!("../avro/snapshot.avsc");

/// Full name of the purchase branch of the request union.
pub const PURCHASE_REQUEST_NAME: &str = "flashsale.v1.PurchaseRequest";
/// Full name of the sale-command branch of the request union.
pub const CONFIGURE_SALE_NAME: &str = "flashsale.v1.ConfigureSale";

/// Decimal scale of every money field.
pub const MONEY_SCALE: u32 = 2;

/// The parsed reader/writer schemas of this build.
pub struct Schemas {
    /// Requests topic value schema.
    pub request: Schema,
    /// Outcomes topic value schema.
    pub outcome: Schema,
    /// Dead-letter topic value schema.
    pub dead_letter: Schema,
    /// Snapshots topic value schema.
    pub snapshot: Schema,
}

/// Parsed once; the texts are compiled in and the tests parse them, so a
/// failure here is a build defect, not bad input.
pub static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| Schemas {
    request: Schema::parse_str(REQUEST_SCHEMA).expect("request.avsc parses"), // ok: compiled-in, tested
    outcome: Schema::parse_str(OUTCOME_SCHEMA).expect("outcome.avsc parses"), // ok: compiled-in, tested
    dead_letter: Schema::parse_str(DEAD_LETTER_SCHEMA).expect("dead_letter.avsc parses"), // ok: compiled-in, tested
    snapshot: Schema::parse_str(SNAPSHOT_SCHEMA).expect("snapshot.avsc parses"), // ok: compiled-in, tested
});

/// Why an Avro value is not one of our records.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    /// A required field is absent from the writer's record.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field holds a value of another type.
    #[error("field {field} has unexpected type: {found}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What was found, for the operator.
        found: String,
    },
    /// An identifier failed validation.
    #[error(transparent)]
    BadId(#[from] IdError),
    /// The writer's record is not one we know how to read.
    #[error("unknown record type {0}")]
    UnknownRecord(String),
    /// The bytes do not parse with the writer's schema.
    #[error("avro: {0}")]
    Avro(String),
}

type Result<T> = std::result::Result<T, ContractError>;

// ---------------------------------------------------------------- encoding

fn null_or(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// A money amount as Avro `decimal(18, 2)` bytes: the unscaled value in
/// minimal big-endian two's complement.
pub fn decimal_value(amount: Decimal) -> Value {
    let mut d = amount;
    d.rescale(MONEY_SCALE);
    let bytes = d.mantissa().to_be_bytes();
    let mut start = 0;
    while start < bytes.len() - 1 {
        let redundant = (bytes[start] == 0x00 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    Value::Decimal(apache_avro::Decimal::from(&bytes[start..]))
}

fn terms_fields(t: &SaleTerms) -> Vec<(String, Value)> {
    vec![
        ("stock".into(), Value::Long(t.stock)),
        ("per_user_limit".into(), Value::Int(t.per_user_limit)),
        ("price".into(), decimal_value(t.price)),
        (
            "starts_at".into(),
            null_or(t.starts_at_ms.map(Value::TimestampMillis)),
        ),
        (
            "ends_at".into(),
            null_or(t.ends_at_ms.map(Value::TimestampMillis)),
        ),
    ]
}

/// The Avro value of a request (a branch of the top-level union).
pub fn request_to_value(r: &Request) -> Value {
    match r {
        Request::Purchase(p) => Value::Union(
            0,
            Box::new(Value::Record(vec![
                ("request_id".into(), string(p.request_id.as_str())),
                ("user_id".into(), string(p.user_id.as_str())),
                ("product_id".into(), string(p.product_id.as_str())),
                ("quantity".into(), Value::Int(p.quantity)),
                (
                    "received_at".into(),
                    Value::TimestampMillis(p.received_at_ms),
                ),
            ])),
        ),
        Request::ConfigureSale(c) => {
            let mut fields = vec![
                ("command_id".into(), string(c.command_id.as_str())),
                ("product_id".into(), string(c.product_id.as_str())),
            ];
            fields.extend(terms_fields(&c.terms));
            fields.push(("issued_at".into(), Value::TimestampMillis(c.issued_at_ms)));
            Value::Union(1, Box::new(Value::Record(fields)))
        }
    }
}

fn symbol_value(index: u32, symbol: &str) -> Value {
    Value::Enum(index, symbol.to_owned())
}

/// The Avro value of an outcome.
pub fn outcome_to_value(o: &Outcome) -> Value {
    let kind = match o.kind {
        OutcomeKind::Purchase => symbol_value(0, "PURCHASE"),
        OutcomeKind::SaleConfigured => symbol_value(1, "SALE_CONFIGURED"),
    };
    let status = match o.status {
        Status::Accepted => symbol_value(0, "ACCEPTED"),
        Status::Rejected => symbol_value(1, "REJECTED"),
    };
    let reason = o.reason.map(|r| {
        let index = RejectReason::ALL.iter().position(|x| *x == r).unwrap_or(0);
        symbol_value(index as u32, &r.code().to_ascii_uppercase())
    });
    Value::Record(vec![
        ("request_id".into(), string(o.request_id.as_str())),
        ("product_id".into(), string(o.product_id.as_str())),
        ("kind".into(), kind),
        ("status".into(), status),
        ("reason".into(), null_or(reason)),
        (
            "user_id".into(),
            null_or(o.user_id.as_ref().map(|u| string(u.as_str()))),
        ),
        ("quantity".into(), Value::Int(o.quantity)),
        (
            "order_id".into(),
            null_or(o.order_id.as_ref().map(|x| string(x.as_str()))),
        ),
        (
            "unit_price".into(),
            null_or(o.unit_price.map(decimal_value)),
        ),
        ("remaining".into(), Value::Long(o.remaining)),
        ("stock".into(), Value::Long(o.stock)),
        ("user_total".into(), Value::Int(o.user_total)),
        (
            "sale".into(),
            null_or(o.sale.as_ref().map(|t| Value::Record(terms_fields(t)))),
        ),
        ("source_partition".into(), Value::Int(o.source_partition)),
        ("source_offset".into(), Value::Long(o.source_offset)),
        ("decided_at".into(), Value::TimestampMillis(o.decided_at_ms)),
    ])
}

/// The Avro value of a dead letter.
pub fn dead_letter_to_value(d: &DeadLetter) -> Value {
    Value::Record(vec![
        ("reason".into(), string(&d.reason)),
        ("detail".into(), string(&d.detail)),
        ("source_topic".into(), string(&d.source_topic)),
        ("source_partition".into(), Value::Int(d.source_partition)),
        ("source_offset".into(), Value::Long(d.source_offset)),
        (
            "source_timestamp".into(),
            null_or(d.source_timestamp_ms.map(Value::TimestampMillis)),
        ),
        ("key".into(), null_or(d.key.clone().map(Value::Bytes))),
        ("value".into(), null_or(d.value.clone().map(Value::Bytes))),
    ])
}

/// The Avro value of a snapshot chunk.
pub fn snapshot_to_value(c: &SnapshotChunk) -> Value {
    Value::Record(vec![
        ("source_topic".into(), string(&c.source_topic)),
        ("source_partition".into(), Value::Int(c.source_partition)),
        ("next_offset".into(), Value::Long(c.next_offset)),
        ("chunk_index".into(), Value::Int(c.chunk_index)),
        ("chunk_count".into(), Value::Int(c.chunk_count)),
        ("encoding".into(), string(&c.encoding)),
        ("data".into(), Value::Bytes(c.data.clone())),
    ])
}

/// Reads a snapshot chunk.
pub fn snapshot_from_value(value: Value) -> Result<SnapshotChunk> {
    let mut f = Fields::of(value, "SnapshotChunk")?;
    Ok(SnapshotChunk {
        source_topic: f.string("source_topic")?,
        source_partition: f.int("source_partition")?,
        next_offset: f.long("next_offset")?,
        chunk_index: f.int("chunk_index")?,
        chunk_count: f.int("chunk_count")?,
        encoding: f.string("encoding")?,
        data: match f.req("data")? {
            Value::Bytes(b) => b,
            other => return Err(wrong("data", &other)),
        },
    })
}

/// Writes `value` as an Avro body with `schema` (validating it first).
pub fn write_body(schema: &Schema, value: Value) -> Result<Vec<u8>> {
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .map_err(|e| ContractError::Avro(e.to_string()))?;
    writer
        .write_value_to_vec(value)
        .map_err(|e| ContractError::Avro(e.to_string()))
}

/// Reads an Avro body written with `writer` into a generic value.
pub fn read_body(writer: &Schema, mut body: &[u8]) -> Result<Value> {
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(writer)
        .build()
        .map_err(|e| ContractError::Avro(e.to_string()))?;
    let value = reader
        .read_value(&mut body)
        .map_err(|e| ContractError::Avro(e.to_string()))?;
    if !body.is_empty() {
        return Err(ContractError::Avro(format!(
            "{} trailing bytes after the record",
            body.len()
        )));
    }
    Ok(value)
}

// ---------------------------------------------------------------- decoding

/// A writer's record fields, taken by name.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value, what: &'static str) -> Result<Self> {
        match strip_union(value) {
            Value::Record(f) => Ok(Fields(f)),
            other => Err(wrong(what, &other)),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(strip_union(self.0.swap_remove(i).1))
    }

    fn req(&mut self, name: &'static str) -> Result<Value> {
        self.take(name).ok_or(ContractError::MissingField(name))
    }

    fn string(&mut self, name: &'static str) -> Result<String> {
        match self.req(name)? {
            Value::String(s) => Ok(s),
            other => Err(wrong(name, &other)),
        }
    }

    fn opt_string(&mut self, name: &'static str) -> Result<Option<String>> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong(name, &other)),
        }
    }

    fn long(&mut self, name: &'static str) -> Result<i64> {
        long_of(name, self.req(name)?)
    }

    fn opt_long(&mut self, name: &'static str) -> Result<Option<i64>> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => long_of(name, v).map(Some),
        }
    }

    fn int(&mut self, name: &'static str) -> Result<i32> {
        match self.req(name)? {
            Value::Int(i) => Ok(i),
            other => Err(wrong(name, &other)),
        }
    }

    fn decimal(&mut self, name: &'static str) -> Result<Decimal> {
        decimal_of(name, self.req(name)?)
    }

    fn opt_decimal(&mut self, name: &'static str) -> Result<Option<Decimal>> {
        match self.take(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decimal_of(name, v).map(Some),
        }
    }

    fn symbol(&mut self, name: &'static str) -> Result<String> {
        match self.req(name)? {
            Value::Enum(_, s) => Ok(s),
            other => Err(wrong(name, &other)),
        }
    }
}

fn strip_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        v => v,
    }
}

fn wrong(field: &'static str, found: &Value) -> ContractError {
    let mut found = format!("{found:?}");
    found.truncate(80);
    ContractError::WrongType { field, found }
}

/// Avro promotes int to long, and logical timestamps are longs underneath.
fn long_of(name: &'static str, v: Value) -> Result<i64> {
    match v {
        Value::Long(l) | Value::TimestampMillis(l) => Ok(l),
        Value::Int(i) => Ok(i64::from(i)),
        other => Err(wrong(name, &other)),
    }
}

fn decimal_of(name: &'static str, v: Value) -> Result<Decimal> {
    let bytes = match v {
        Value::Decimal(d) => {
            Vec::<u8>::try_from(&d).map_err(|e| ContractError::Avro(e.to_string()))?
        }
        Value::Bytes(b) => b,
        other => return Err(wrong(name, &other)),
    };
    if bytes.is_empty() || bytes.len() > 16 {
        return Err(ContractError::WrongType {
            field: name,
            found: format!("decimal of {} bytes", bytes.len()),
        });
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0x00 };
    let mut wide = [fill; 16];
    wide[16 - bytes.len()..].copy_from_slice(&bytes);
    let mantissa = i128::from_be_bytes(wide);
    Decimal::try_from_i128_with_scale(mantissa, MONEY_SCALE).map_err(|e| ContractError::WrongType {
        field: name,
        found: e.to_string(),
    })
}

fn terms_from(f: &mut Fields) -> Result<SaleTerms> {
    Ok(SaleTerms {
        stock: f.long("stock")?,
        per_user_limit: f.int("per_user_limit")?,
        price: f.decimal("price")?,
        starts_at_ms: f.opt_long("starts_at")?,
        ends_at_ms: f.opt_long("ends_at")?,
    })
}

fn purchase_from(value: Value) -> Result<PurchaseRequest> {
    let mut f = Fields::of(value, "PurchaseRequest")?;
    Ok(PurchaseRequest {
        request_id: RequestId::parse(&f.string("request_id")?)?,
        user_id: UserId::parse(&f.string("user_id")?)?,
        product_id: ProductId::parse(&f.string("product_id")?)?,
        quantity: f.int("quantity")?,
        received_at_ms: f.long("received_at")?,
    })
}

fn configure_from(value: Value) -> Result<ConfigureSale> {
    let mut f = Fields::of(value, "ConfigureSale")?;
    Ok(ConfigureSale {
        command_id: RequestId::parse(&f.string("command_id")?)?,
        product_id: ProductId::parse(&f.string("product_id")?)?,
        terms: terms_from(&mut f)?,
        issued_at_ms: f.long("issued_at")?,
    })
}

/// Reads a request written with `writer`. The union branch is chosen by the
/// writer branch's full name, so a writer may reorder or extend the union; a
/// writer that registered a bare `PurchaseRequest` record is read too.
pub fn request_from_value(writer: &Schema, value: Value) -> Result<Request> {
    let (branch, inner) = match (writer, value) {
        (Schema::Union(u), Value::Union(i, inner)) => (u.variants().get(i as usize), *inner),
        (schema, v) => (Some(schema), v),
    };
    let name = branch
        .and_then(|s| s.name())
        .map(|n| n.fullname(None))
        .unwrap_or_else(|| "<unnamed>".to_owned());
    match name.as_str() {
        PURCHASE_REQUEST_NAME => purchase_from(inner).map(Request::Purchase),
        CONFIGURE_SALE_NAME => configure_from(inner).map(Request::ConfigureSale),
        _ => Err(ContractError::UnknownRecord(name)),
    }
}

fn kind_from(symbol: &str) -> Result<OutcomeKind> {
    match symbol {
        "PURCHASE" => Ok(OutcomeKind::Purchase),
        "SALE_CONFIGURED" => Ok(OutcomeKind::SaleConfigured),
        other => Err(ContractError::UnknownRecord(format!("OutcomeKind {other}"))),
    }
}

fn status_from(symbol: &str) -> Result<Status> {
    match symbol {
        "ACCEPTED" => Ok(Status::Accepted),
        "REJECTED" => Ok(Status::Rejected),
        other => Err(ContractError::UnknownRecord(format!("Status {other}"))),
    }
}

fn reason_from(f: &mut Fields) -> Result<Option<RejectReason>> {
    match f.take("reason") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Enum(_, s)) => RejectReason::from_code(&s.to_ascii_lowercase())
            .map(Some)
            .ok_or(ContractError::UnknownRecord(format!("RejectReason {s}"))),
        Some(other) => Err(wrong("reason", &other)),
    }
}

fn opt_id<T>(
    s: Option<String>,
    parse: fn(&str) -> std::result::Result<T, IdError>,
) -> Result<Option<T>> {
    s.map(|s| parse(&s))
        .transpose()
        .map_err(ContractError::from)
}

/// Reads an outcome (any writer version, fields by name).
pub fn outcome_from_value(value: Value) -> Result<Outcome> {
    let mut f = Fields::of(value, "Outcome")?;
    let sale = match f.take("sale") {
        None | Some(Value::Null) => None,
        Some(v) => Some(terms_from(&mut Fields::of(v, "SaleTerms")?)?),
    };
    Ok(Outcome {
        request_id: RequestId::parse(&f.string("request_id")?)?,
        product_id: ProductId::parse(&f.string("product_id")?)?,
        kind: kind_from(&f.symbol("kind")?)?,
        status: status_from(&f.symbol("status")?)?,
        reason: reason_from(&mut f)?,
        user_id: opt_id(f.opt_string("user_id")?, UserId::parse)?,
        quantity: f.int("quantity")?,
        order_id: opt_id(f.opt_string("order_id")?, OrderId::parse)?,
        unit_price: f.opt_decimal("unit_price")?,
        remaining: f.long("remaining")?,
        stock: f.long("stock")?,
        user_total: f.int("user_total")?,
        sale,
        source_partition: f.int("source_partition")?,
        source_offset: f.long("source_offset")?,
        decided_at_ms: f.long("decided_at")?,
    })
}

/// Reads a dead letter.
pub fn dead_letter_from_value(value: Value) -> Result<DeadLetter> {
    let mut f = Fields::of(value, "DeadLetter")?;
    let bytes = |v: Option<Value>| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(other) => Err(wrong("key/value", &other)),
    };
    Ok(DeadLetter {
        reason: f.string("reason")?,
        detail: f.string("detail")?,
        source_topic: f.string("source_topic")?,
        source_partition: f.int("source_partition")?,
        source_offset: f.long("source_offset")?,
        source_timestamp_ms: f.opt_long("source_timestamp")?,
        key: bytes(f.take("key"))?,
        value: bytes(f.take("value"))?,
    })
}
