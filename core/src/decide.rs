//! The decision core: a pure, deterministic function
//! `(state, input record) -> (state', outcome)`.
//!
//! No clock, no randomness, no I/O: time comes from the record
//! (`received_at`), order IDs from the record's position, and iteration order
//! never leaks into an outcome. Replaying a partition's log from the same
//! starting state therefore yields byte-identical outcomes, which is what
//! makes crashes, rebalances and zombie processors harmless without Kafka
//! transactions: a duplicate emission is always an identical emission.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use rust_decimal::Decimal;

use flashsale_schemas::records::QUANTITY_MAX;
use flashsale_schemas::{
    ConfigureSale, OrderId, Outcome, OutcomeKind, ProductId, PurchaseRequest, RejectReason,
    Request, RequestId, SaleTerms, Status, UserId,
};

/// Hash maps keyed by IDs from the records. A fixed-seed hasher: fast on the
/// short IDs, and deterministic (iteration order never reaches an outcome or
/// a snapshot anyway: both sort or follow decision order).
pub type IdMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The dedupe memory's key: the 128-bit XXH3 hash of a request ID, so each
/// remembered decision costs 16 bytes of key instead of the ID's string.
/// XXH3-128 is specified bit for bit, so every instance and version computes
/// the same key and snapshots stay valid; two distinct IDs collide with
/// probability about 2^-128 per pair, far below any hardware error rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestKey(pub u128);

impl RequestKey {
    /// The key of a request ID.
    pub fn of(id: &RequestId) -> Self {
        Self(xxhash_rust::xxh3::xxh3_128(id.as_str().as_bytes()))
    }
}

impl std::hash::Hash for RequestKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a uniform hash: hand its low half to the map as is.
        state.write_u64(self.0 as u64);
    }
}

/// A hasher that passes a [`RequestKey`]'s bits through unchanged.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by RequestKey; fold anything else in.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One remembered decision: everything needed to rebuild its outcome byte
/// for byte when the same request ID comes again, without the request ID
/// (the repeat carries it) or the partition (a state belongs to one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The product decided on.
    pub product_id: ProductId,
    /// The buyer, for purchases.
    pub user_id: Option<UserId>,
    /// Which input it answered.
    pub kind: OutcomeKind,
    /// Whether it took effect.
    pub status: Status,
    /// Why not, when rejected.
    pub reason: Option<RejectReason>,
    /// Units requested.
    pub quantity: i32,
    /// The user's units of the product after the decision.
    pub user_total: i32,
    /// Unit price, for accepted purchases.
    pub unit_price: Option<Decimal>,
    /// Units left after the decision.
    pub remaining: i64,
    /// Total units after the decision.
    pub stock: i64,
    /// Terms in force, for sale commands (rare: boxed to keep entries small).
    pub sale: Option<Box<SaleTerms>>,
    /// Offset of the input decided; the order ID derives from it.
    pub source_offset: i64,
    /// The input's own time (UTC ms).
    pub decided_at_ms: i64,
}

impl Decision {
    /// What to remember of an outcome.
    pub fn of(o: &Outcome) -> Self {
        Self {
            product_id: o.product_id.clone(),
            user_id: o.user_id.clone(),
            kind: o.kind,
            status: o.status,
            reason: o.reason,
            quantity: o.quantity,
            user_total: o.user_total,
            unit_price: o.unit_price,
            remaining: o.remaining,
            stock: o.stock,
            sale: o.sale.clone().map(Box::new),
            source_offset: o.source_offset,
            decided_at_ms: o.decided_at_ms,
        }
    }

    /// The outcome this decision produced for `request_id` on `partition`.
    pub fn outcome(&self, request_id: &RequestId, partition: i32) -> Outcome {
        let accepted_purchase =
            self.kind == OutcomeKind::Purchase && self.status == Status::Accepted;
        Outcome {
            request_id: request_id.clone(),
            product_id: self.product_id.clone(),
            kind: self.kind,
            status: self.status,
            reason: self.reason,
            user_id: self.user_id.clone(),
            quantity: self.quantity,
            order_id: accepted_purchase.then(|| OrderId::for_input(partition, self.source_offset)),
            unit_price: self.unit_price,
            remaining: self.remaining,
            stock: self.stock,
            user_total: self.user_total,
            sale: self.sale.as_deref().cloned(),
            source_partition: partition,
            source_offset: self.source_offset,
            decided_at_ms: self.decided_at_ms,
        }
    }
}

/// How long and how many decided request IDs a partition remembers, so a
/// repeated request ID gets its original answer. Part of the deterministic
/// configuration: every instance of a deployment must use the same values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeLimits {
    /// Forget a request ID once the partition's clock (the newest record
    /// time seen) is this far past the time it was decided.
    pub window_ms: i64,
    /// Most remembered request IDs per partition; the oldest go first.
    pub entries_max: usize,
}

impl Default for DedupeLimits {
    fn default() -> Self {
        Self {
            window_ms: 24 * 60 * 60 * 1000,
            entries_max: 2_000_000,
        }
    }
}

/// One product's sale, as its partition's owner knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// The terms in force.
    pub terms: SaleTerms,
    /// Units sold so far; never above `terms.stock`.
    pub sold: i64,
    /// Units sold per user, for per-user limits.
    pub per_user: IdMap<UserId, i32>,
}

impl Sale {
    /// Units still for sale.
    pub fn remaining(&self) -> i64 {
        self.terms.stock - self.sold
    }

    fn user_total(&self, user: &UserId) -> i32 {
        self.per_user.get(user).copied().unwrap_or(0)
    }
}

/// Everything one partition's decisions depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// Sales of the products whose keys hash to this partition.
    pub sales: IdMap<ProductId, Sale>,
    /// Decided request IDs (by key) and what was decided.
    pub decided: HashMap<RequestKey, Decision, BuildHasherDefault<KeyHasher>>,
    /// Decided request keys in decision order, with their decision times,
    /// for deterministic eviction.
    pub decided_order: VecDeque<(i64, RequestKey)>,
    /// Newest record time seen (UTC ms): the partition's clock.
    pub clock_ms: i64,
    /// Offset of the next input record this state expects (0 for a new partition).
    pub next_offset: i64,
}

/// Where an input record sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Partition of the requests topic.
    pub partition: i32,
    /// Offset within it.
    pub offset: i64,
}

impl PartitionState {
    /// Decides one input record, updating the state. Total: every input
    /// yields exactly one outcome; a repeated request ID yields the original
    /// outcome unchanged (same order, same offset) and changes nothing.
    pub fn decide(&mut self, at: Position, request: &Request, limits: DedupeLimits) -> Outcome {
        assert!(
            at.offset >= self.next_offset,
            "offset {} decided after {}: the log must be applied in order",
            at.offset,
            self.next_offset
        );
        self.next_offset = at.offset + 1;
        let key = RequestKey::of(request.request_id());
        if let Some(previous) = self.decided.get(&key) {
            return previous.outcome(request.request_id(), at.partition);
        }
        let outcome = match request {
            Request::Purchase(p) => self.purchase(at, p),
            Request::ConfigureSale(c) => self.configure(at, c),
        };
        self.remember(key, &outcome, limits);
        outcome
    }

    fn purchase(&mut self, at: Position, p: &PurchaseRequest) -> Outcome {
        let mut outcome = Outcome {
            request_id: p.request_id.clone(),
            product_id: p.product_id.clone(),
            kind: OutcomeKind::Purchase,
            status: Status::Rejected,
            reason: None,
            user_id: Some(p.user_id.clone()),
            quantity: p.quantity,
            order_id: None,
            unit_price: None,
            remaining: 0,
            stock: 0,
            user_total: 0,
            sale: None,
            source_partition: at.partition,
            source_offset: at.offset,
            decided_at_ms: p.received_at_ms,
        };
        let Some(sale) = self.sales.get_mut(&p.product_id) else {
            outcome.reason = Some(RejectReason::UnknownProduct);
            return outcome;
        };
        let user_total = sale.user_total(&p.user_id);
        outcome.remaining = sale.remaining();
        outcome.stock = sale.terms.stock;
        outcome.user_total = user_total;
        outcome.reason = purchase_refusal(sale, p, user_total);
        if outcome.reason.is_some() {
            return outcome;
        }
        // Accepted: the only place stock changes.
        sale.sold += i64::from(p.quantity);
        let new_total = user_total + p.quantity;
        sale.per_user.insert(p.user_id.clone(), new_total);
        assert!(
            sale.sold <= sale.terms.stock,
            "oversold {}: sold {} of {}",
            p.product_id,
            sale.sold,
            sale.terms.stock
        );
        outcome.status = Status::Accepted;
        outcome.order_id = Some(OrderId::for_input(at.partition, at.offset));
        outcome.unit_price = Some(sale.terms.price);
        outcome.remaining = sale.remaining();
        outcome.user_total = new_total;
        outcome
    }

    fn configure(&mut self, at: Position, c: &ConfigureSale) -> Outcome {
        let sold = self.sales.get(&c.product_id).map_or(0, |s| s.sold);
        let valid = c.terms.validate().is_ok() && c.terms.stock >= sold;
        let mut outcome = Outcome {
            request_id: c.command_id.clone(),
            product_id: c.product_id.clone(),
            kind: OutcomeKind::SaleConfigured,
            status: Status::Accepted,
            reason: None,
            user_id: None,
            quantity: 0,
            order_id: None,
            unit_price: None,
            remaining: 0,
            stock: 0,
            user_total: 0,
            sale: None,
            source_partition: at.partition,
            source_offset: at.offset,
            decided_at_ms: c.issued_at_ms,
        };
        if valid {
            let sale = self
                .sales
                .entry(c.product_id.clone())
                .or_insert_with(|| Sale {
                    terms: c.terms.clone(),
                    sold: 0,
                    per_user: IdMap::default(),
                });
            sale.terms = c.terms.clone();
        } else {
            outcome.status = Status::Rejected;
            outcome.reason = Some(RejectReason::InvalidSale);
        }
        if let Some(sale) = self.sales.get(&c.product_id) {
            outcome.remaining = sale.remaining();
            outcome.stock = sale.terms.stock;
            outcome.sale = Some(sale.terms.clone());
        }
        outcome
    }

    /// Records a decision for idempotent replies, then forgets what the
    /// limits say to forget, oldest first. Driven only by record times and
    /// counts, so eviction is the same on every replay.
    fn remember(&mut self, key: RequestKey, outcome: &Outcome, limits: DedupeLimits) {
        self.clock_ms = self.clock_ms.max(outcome.decided_at_ms);
        self.decided.insert(key, Decision::of(outcome));
        self.decided_order.push_back((outcome.decided_at_ms, key));
        let horizon_ms = self.clock_ms.saturating_sub(limits.window_ms);
        while let Some((time_ms, id)) = self.decided_order.front() {
            let too_many = self.decided_order.len() > limits.entries_max;
            if !too_many && *time_ms >= horizon_ms {
                break;
            }
            self.decided.remove(id);
            self.decided_order.pop_front();
        }
    }
}

/// Why a purchase of a known product is refused, in the order a buyer would
/// want to hear it: the sale window, then stock, then their own limit.
fn purchase_refusal(sale: &Sale, p: &PurchaseRequest, user_total: i32) -> Option<RejectReason> {
    if !(1..=QUANTITY_MAX).contains(&p.quantity) {
        return Some(RejectReason::InvalidQuantity);
    }
    if sale
        .terms
        .starts_at_ms
        .is_some_and(|s| p.received_at_ms < s)
    {
        return Some(RejectReason::NotStarted);
    }
    if sale.terms.ends_at_ms.is_some_and(|e| p.received_at_ms >= e) {
        return Some(RejectReason::Ended);
    }
    let remaining = sale.remaining();
    if remaining == 0 {
        return Some(RejectReason::SoldOut);
    }
    if i64::from(user_total) + i64::from(p.quantity) > i64::from(sale.terms.per_user_limit) {
        return Some(RejectReason::LimitExceeded);
    }
    if i64::from(p.quantity) > remaining {
        return Some(RejectReason::InsufficientStock);
    }
    None
}

impl PartitionState {
    /// A state for a partition whose log starts at `first_offset`.
    pub fn starting_at(first_offset: i64) -> Self {
        Self {
            next_offset: first_offset,
            ..Self::default()
        }
    }

    /// Consumes an input record that is refused (dead-lettered) rather than
    /// decided: the state does not change, only its position.
    pub fn skip(&mut self, offset: i64) {
        assert!(
            offset >= self.next_offset,
            "offset {offset} skipped after {}: the log must be applied in order",
            self.next_offset
        );
        self.next_offset = offset + 1;
    }
}
