//! The records on flashsale's topics, as Rust types. Their Avro schemas live
//! in `schemas/avro/`; [`crate::avro`] converts between the two and its tests
//! prove they agree field for field.

use rust_decimal::Decimal;

use crate::ids::{OrderId, ProductId, RequestId, UserId};

/// Largest quantity a single record may ask for. Far above any sane flash
/// sale order; it exists so arithmetic on quantities can never overflow.
pub const QUANTITY_MAX: i32 = 1_000_000;
/// Largest stock a sale may have, for the same reason.
pub const STOCK_MAX: i64 = 1_000_000_000_000;

/// A buyer's request for `quantity` units of one product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseRequest {
    /// The client's idempotency key: a repeat gets the original outcome.
    pub request_id: RequestId,
    /// Who buys; per-user limits count by it.
    pub user_id: UserId,
    /// What is bought; equals the record key.
    pub product_id: ProductId,
    /// Units asked for, 1..=[`QUANTITY_MAX`].
    pub quantity: i32,
    /// When the request was received (UTC ms): the decision's only clock.
    pub received_at_ms: i64,
}

/// Admin command creating a sale or changing its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigureSale {
    /// Idempotency key of the command.
    pub command_id: RequestId,
    /// The product on sale; equals the record key.
    pub product_id: ProductId,
    /// The sale's terms after this command.
    pub terms: SaleTerms,
    /// When the command was issued (UTC ms).
    pub issued_at_ms: i64,
}

/// A sale's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleTerms {
    /// Total units over the sale's life, 0..=[`STOCK_MAX`].
    pub stock: i64,
    /// Most units one user may buy, at least 1.
    pub per_user_limit: i32,
    /// Unit price, two decimal places, not negative.
    pub price: Decimal,
    /// Opening instant (UTC ms); `None`: open at once.
    pub starts_at_ms: Option<i64>,
    /// Closing instant (UTC ms), exclusive; `None`: no end.
    pub ends_at_ms: Option<i64>,
}

/// A record of the requests topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A purchase.
    Purchase(PurchaseRequest),
    /// A sale configuration command.
    ConfigureSale(ConfigureSale),
}

impl Request {
    /// The product the record is about; must equal its key.
    pub fn product_id(&self) -> &ProductId {
        match self {
            Request::Purchase(p) => &p.product_id,
            Request::ConfigureSale(c) => &c.product_id,
        }
    }

    /// The idempotency key of the record.
    pub fn request_id(&self) -> &RequestId {
        match self {
            Request::Purchase(p) => &p.request_id,
            Request::ConfigureSale(c) => &c.command_id,
        }
    }

    /// Checks the content rules the schema cannot express. A record that
    /// fails them is well-formed Avro but meaningless, and goes to the dead
    /// letter topic instead of being decided.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Request::Purchase(p) => {
                if !(1..=QUANTITY_MAX).contains(&p.quantity) {
                    return Err(format!(
                        "quantity {} outside 1..={QUANTITY_MAX}",
                        p.quantity
                    ));
                }
                Ok(())
            }
            Request::ConfigureSale(c) => c.terms.validate(),
        }
    }
}

impl SaleTerms {
    /// Checks the terms are meaningful.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=STOCK_MAX).contains(&self.stock) {
            return Err(format!("stock {} outside 0..={STOCK_MAX}", self.stock));
        }
        if !(1..=QUANTITY_MAX).contains(&self.per_user_limit) {
            return Err(format!(
                "per_user_limit {} outside 1..={QUANTITY_MAX}",
                self.per_user_limit
            ));
        }
        if self.price.is_sign_negative() || self.price.scale() > 2 {
            return Err(format!(
                "price {} must be >= 0 with at most 2 decimals",
                self.price
            ));
        }
        if let (Some(s), Some(e)) = (self.starts_at_ms, self.ends_at_ms) {
            if e <= s {
                return Err("ends_at must be after starts_at".to_owned());
            }
        }
        Ok(())
    }
}

/// Which input an outcome answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// A purchase request.
    Purchase,
    /// A sale configuration command.
    SaleConfigured,
}

/// Whether the input took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Units sold (or terms applied).
    Accepted,
    /// Nothing changed.
    Rejected,
}

impl OutcomeKind {
    /// The stable lower-case code shown by the HTTP API, views and metrics.
    pub fn code(self) -> &'static str {
        match self {
            OutcomeKind::Purchase => "purchase",
            OutcomeKind::SaleConfigured => "sale_configured",
        }
    }
}

impl Status {
    /// The stable lower-case code shown by the HTTP API, views and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
        }
    }
}

/// Stable rejection codes (lower-case in JSON, upper-case in Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Nothing left.
    SoldOut,
    /// Some left, but fewer than asked for.
    InsufficientStock,
    /// The user's per-product limit would be exceeded.
    LimitExceeded,
    /// Received before the sale opened.
    NotStarted,
    /// Received at or after the sale closed.
    Ended,
    /// No sale is configured for the product.
    UnknownProduct,
    /// Quantity outside the allowed range.
    InvalidQuantity,
    /// Sale terms that cannot apply (e.g. stock below units already sold).
    InvalidSale,
}

impl RejectReason {
    /// Every reason, in schema symbol order.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::SoldOut,
        RejectReason::InsufficientStock,
        RejectReason::LimitExceeded,
        RejectReason::NotStarted,
        RejectReason::Ended,
        RejectReason::UnknownProduct,
        RejectReason::InvalidQuantity,
        RejectReason::InvalidSale,
    ];

    /// The stable lower-case code shown by the HTTP API and metrics.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::SoldOut => "sold_out",
            RejectReason::InsufficientStock => "insufficient_stock",
            RejectReason::LimitExceeded => "limit_exceeded",
            RejectReason::NotStarted => "not_started",
            RejectReason::Ended => "ended",
            RejectReason::UnknownProduct => "unknown_product",
            RejectReason::InvalidQuantity => "invalid_quantity",
            RejectReason::InvalidSale => "invalid_sale",
        }
    }

    /// Parses a lower-case code.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

/// The processor's decision about one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The purchase's request_id or the command's command_id.
    pub request_id: RequestId,
    /// The product; also the record key.
    pub product_id: ProductId,
    /// Which input this answers.
    pub kind: OutcomeKind,
    /// Whether it took effect.
    pub status: Status,
    /// Why not, when rejected.
    pub reason: Option<RejectReason>,
    /// The buyer, for purchases.
    pub user_id: Option<UserId>,
    /// Units requested (0 for sale commands).
    pub quantity: i32,
    /// The order, for accepted purchases.
    pub order_id: Option<OrderId>,
    /// Unit price, for accepted purchases.
    pub unit_price: Option<Decimal>,
    /// Units left for sale after the decision.
    pub remaining: i64,
    /// Total units of the sale after the decision.
    pub stock: i64,
    /// The user's units of this product after the decision.
    pub user_total: i32,
    /// The terms in force, for sale commands.
    pub sale: Option<SaleTerms>,
    /// Partition of the input record.
    pub source_partition: i32,
    /// Offset of the input record: read models apply values monotonically by it.
    pub source_offset: i64,
    /// The input's own time (UTC ms).
    pub decided_at_ms: i64,
}

/// Stable dead-letter reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Not Confluent-framed Avro, or the body does not parse with its schema.
    Undecodable,
    /// The schema ID is not known to the registry.
    UnknownSchema,
    /// Well-formed, but the content breaks the rules (quantity 0, empty IDs...).
    InvalidContent,
    /// The key hashes to another partition than the one it arrived on.
    WrongPartition,
    /// The key is missing or differs from the product_id in the value.
    KeyMismatch,
}

impl DeadLetterReason {
    /// The stable code written in the record and its headers.
    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::UnknownSchema => "unknown_schema",
            DeadLetterReason::InvalidContent => "invalid_content",
            DeadLetterReason::WrongPartition => "wrong_partition",
            DeadLetterReason::KeyMismatch => "key_mismatch",
        }
    }
}

/// An input the processor refused to decide, kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Stable code, see [`DeadLetterReason::code`].
    pub reason: String,
    /// Explanation for operators.
    pub detail: String,
    /// Where the record came from.
    pub source_topic: String,
    /// Its partition.
    pub source_partition: i32,
    /// Its offset.
    pub source_offset: i64,
    /// Its Kafka timestamp, if any.
    pub source_timestamp_ms: Option<i64>,
    /// Its key bytes.
    pub key: Option<Vec<u8>>,
    /// Its value bytes.
    pub value: Option<Vec<u8>>,
}

/// One chunk of a partition-state snapshot (see `core/src/snapshot.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The requests topic.
    pub source_topic: String,
    /// The requests partition the state belongs to.
    pub source_partition: i32,
    /// The state reflects every input below this offset.
    pub next_offset: i64,
    /// Position of this chunk, from 0.
    pub chunk_index: i32,
    /// Chunks in the snapshot.
    pub chunk_count: i32,
    /// Encoding of the concatenated data.
    pub encoding: String,
    /// This chunk's bytes.
    pub data: Vec<u8>,
}
