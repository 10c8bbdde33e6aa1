//! Partition state snapshots: a compact, deterministic binary encoding of
//! [`PartitionState`], cut into chunks that fit the broker's record size.
//!
//! Encoding `flashsale-state-v2` (written): `b"FSS2"`, then variable-length
//! integers (LEB128; signed ones zigzag): `next_offset`, `clock_ms`; the
//! sales sorted by product (`product`, terms, `sold`, the per-user totals
//! sorted by user); then the remembered decisions in decision order: the
//! 16-byte request key, a flags byte (kind, status, which options follow),
//! the reason, product and user as references into tables built as they
//! first appear (so a hot product is written once, not per decision),
//! quantity, user total, remaining, stock, the price and terms when present,
//! and the offset and time as differences from the previous decision.
//! Strings are length + UTF-8; decimals rust_decimal's 16-byte form. A
//! 1 M-decision partition encodes to about 30-40 bytes per decision.
//!
//! Encoding `flashsale-state-v1` (read only, written by earlier releases):
//! fixed-width little-endian fields and a full outcome per decision.
//!
//! Sorting and decision order make equal states encode to equal bytes,
//! whichever instance wrote them. Any snapshot is correct, whoever wrote it:
//! a partition's state is a function of its log prefix, and a snapshot is
//! only taken after every outcome up to its offset has been acknowledged by
//! the broker.

use std::collections::HashMap;

use rust_decimal::Decimal;

use flashsale_schemas::{
    OrderId, Outcome, OutcomeKind, ProductId, RejectReason, RequestId, SaleTerms, Status, UserId,
};

use crate::decide::{Decision, IdMap, PartitionState, RequestKey, Sale};

/// Name of the encoding [`encode`] writes, stored with every chunk.
pub const ENCODING: &str = "flashsale-state-v2";
/// Every encoding [`decode`] reads.
pub const ENCODINGS_READ: [&str; 2] = ["flashsale-state-v1", ENCODING];
const MAGIC_V1: &[u8; 4] = b"FSS1";
const MAGIC_V2: &[u8; 4] = b"FSS2";

/// Why snapshot bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("snapshot: {0}")]
pub struct SnapshotError(pub String);

type Result<T> = std::result::Result<T, SnapshotError>;

fn err(what: impl Into<String>) -> SnapshotError {
    SnapshotError(what.into())
}

const FLAG_CONFIGURED: u8 = 1;
const FLAG_REJECTED: u8 = 2;
const FLAG_USER: u8 = 4;
const FLAG_PRICE: u8 = 8;
const FLAG_SALE: u8 = 16;

fn reason_code(r: Option<RejectReason>) -> u8 {
    r.map_or(0, |r| {
        let index = RejectReason::ALL.iter().position(|x| *x == r);
        assert!(index.is_some(), "RejectReason::ALL lacks {r:?}");
        1 + index.unwrap_or(0) as u8 // ok: asserted just above
    })
}

fn reason_of(code: u8) -> Result<Option<RejectReason>> {
    match code {
        0 => Ok(None),
        r => RejectReason::ALL
            .get(usize::from(r) - 1)
            .copied()
            .map(Some)
            .ok_or_else(|| err(format!("bad reason {r}"))),
    }
}

// ------------------------------------------------------------------ writer

struct Writer {
    out: Vec<u8>,
    /// Products already written by decisions, and their table index.
    products: HashMap<String, u64>,
    /// Users already written by decisions, and their table index.
    users: HashMap<String, u64>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    fn uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }
    fn var(&mut self, v: i64) {
        self.uvar(((v << 1) ^ (v >> 63)) as u64);
    }
    fn str(&mut self, s: &str) {
        self.uvar(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }
    fn opt_var(&mut self, v: Option<i64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.var(v);
            }
        }
    }
    fn decimal(&mut self, d: Decimal) {
        self.out.extend_from_slice(&d.serialize());
    }
    fn terms(&mut self, t: &SaleTerms) {
        self.var(t.stock);
        self.var(i64::from(t.per_user_limit));
        self.decimal(t.price);
        self.opt_var(t.starts_at_ms);
        self.opt_var(t.ends_at_ms);
    }
    /// A reference into a table of strings: the index of an earlier one, or
    /// the next index followed by the new string.
    fn reference(&mut self, users: bool, s: &str) {
        let table = if users {
            &mut self.users
        } else {
            &mut self.products
        };
        let next = table.len() as u64;
        match table.get(s) {
            Some(index) => {
                let index = *index;
                self.uvar(index);
            }
            None => {
                table.insert(s.to_owned(), next);
                self.uvar(next);
                self.str(s);
            }
        }
    }
    fn sale(&mut self, product: &ProductId, sale: &Sale) {
        self.str(product.as_str());
        self.terms(&sale.terms);
        self.var(sale.sold);
        let mut users: Vec<(&UserId, &i32)> = sale.per_user.iter().collect();
        users.sort();
        self.uvar(users.len() as u64);
        for (user, total) in users {
            self.str(user.as_str());
            self.var(i64::from(*total));
        }
    }
    fn decision(&mut self, key: RequestKey, d: &Decision, previous: (i64, i64)) {
        self.out.extend_from_slice(&key.0.to_le_bytes());
        let mut flags = 0;
        if d.kind == OutcomeKind::SaleConfigured {
            flags |= FLAG_CONFIGURED;
        }
        if d.status == Status::Rejected {
            flags |= FLAG_REJECTED;
        }
        if d.user_id.is_some() {
            flags |= FLAG_USER;
        }
        if d.unit_price.is_some() {
            flags |= FLAG_PRICE;
        }
        if d.sale.is_some() {
            flags |= FLAG_SALE;
        }
        self.u8(flags);
        self.u8(reason_code(d.reason));
        self.reference(false, d.product_id.as_str());
        if let Some(user) = &d.user_id {
            self.reference(true, user.as_str());
        }
        self.var(i64::from(d.quantity));
        self.var(i64::from(d.user_total));
        self.var(d.remaining);
        self.var(d.stock);
        if let Some(price) = d.unit_price {
            self.decimal(price);
        }
        if let Some(terms) = &d.sale {
            self.terms(terms);
        }
        self.var(d.source_offset.wrapping_sub(previous.0));
        self.var(d.decided_at_ms.wrapping_sub(previous.1));
    }
}

/// Encodes a partition state (as `flashsale-state-v2`).
pub fn encode(state: &PartitionState) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::with_capacity(64 + state.decided.len() * 40),
        products: HashMap::new(),
        users: HashMap::new(),
    };
    w.out.extend_from_slice(MAGIC_V2);
    w.var(state.next_offset);
    w.var(state.clock_ms);
    let mut products: Vec<&ProductId> = state.sales.keys().collect();
    products.sort();
    w.uvar(products.len() as u64);
    for product in products {
        w.sale(product, &state.sales[product]);
    }
    w.uvar(state.decided_order.len() as u64);
    let mut previous = (0, 0);
    for (time_ms, key) in &state.decided_order {
        let decision = state.decided.get(key);
        assert!(
            decision.is_some_and(|d| d.decided_at_ms == *time_ms),
            "decided_order names {key:?} at {time_ms}, which decided lacks or disagrees with"
        );
        if let Some(d) = decision {
            w.decision(*key, d, previous);
            previous = (d.source_offset, d.decided_at_ms);
        }
    }
    w.out
}

// ------------------------------------------------------------------ reader

struct Reader<'a> {
    input: &'a [u8],
    /// Products decoded from decisions, by table index.
    products: Vec<ProductId>,
    /// Users decoded from decisions, by table index.
    users: Vec<UserId>,
    /// Integers and lengths are fixed-width (v1) rather than varints (v2).
    fixed_width: bool,
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Self {
            input,
            products: Vec::new(),
            users: Vec::new(),
            fixed_width: false,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.input.len() < n {
            return Err(err("truncated"));
        }
        let (head, tail) = self.input.split_at(n);
        self.input = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(err(format!("bad option tag {t}"))),
        }
    }
    fn decimal(&mut self) -> Result<Decimal> {
        Ok(Decimal::deserialize(self.array()?))
    }

    // v2: variable-length integers.

    fn uvar(&mut self) -> Result<u64> {
        let mut v = 0u64;
        // At most 10 bytes encode a u64.
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(err("varint longer than 10 bytes"))
    }
    fn var(&mut self) -> Result<i64> {
        let u = self.uvar()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn var_i32(&mut self) -> Result<i32> {
        i32::try_from(self.var()?).map_err(|_| err("integer out of range"))
    }
    fn count(&mut self) -> Result<usize> {
        usize::try_from(self.uvar()?).map_err(|_| err("count out of range"))
    }
    // Either encoding: fixed-width or varint, as `fixed_width` says.

    fn int(&mut self) -> Result<i64> {
        if self.fixed_width {
            self.i64()
        } else {
            self.var()
        }
    }
    fn int32(&mut self) -> Result<i32> {
        if self.fixed_width {
            self.i32()
        } else {
            self.var_i32()
        }
    }
    fn length(&mut self) -> Result<usize> {
        if self.fixed_width {
            self.len()
        } else {
            self.count()
        }
    }
    fn id<T>(
        &mut self,
        parse: fn(&str) -> std::result::Result<T, flashsale_schemas::IdError>,
    ) -> Result<T> {
        let n = self.length()?;
        let text = std::str::from_utf8(self.take(n)?).map_err(|_| err("string is not UTF-8"))?;
        parse(text).map_err(|e| err(e.to_string()))
    }
    fn opt_int(&mut self) -> Result<Option<i64>> {
        if self.flag()? {
            self.int().map(Some)
        } else {
            Ok(None)
        }
    }
    fn terms(&mut self) -> Result<SaleTerms> {
        Ok(SaleTerms {
            stock: self.int()?,
            per_user_limit: self.int32()?,
            price: self.decimal()?,
            starts_at_ms: self.opt_int()?,
            ends_at_ms: self.opt_int()?,
        })
    }
    fn sale(&mut self) -> Result<(ProductId, Sale)> {
        let product = self.id(ProductId::parse)?;
        let terms = self.terms()?;
        let sold = self.int()?;
        let users = self.length()?;
        let mut per_user = IdMap::with_capacity_and_hasher(users.min(1 << 20), Default::default());
        for _ in 0..users {
            let user = self.id(UserId::parse)?;
            per_user.insert(user, self.int32()?);
        }
        Ok((
            product,
            Sale {
                terms,
                sold,
                per_user,
            },
        ))
    }
    /// The header and the sales: the same fields in both encodings.
    fn state_head(&mut self) -> Result<PartitionState> {
        let next_offset = self.int()?;
        let clock_ms = self.int()?;
        let sales_count = self.length()?;
        let mut sales =
            IdMap::with_capacity_and_hasher(sales_count.min(1 << 20), Default::default());
        for _ in 0..sales_count {
            let (product, sale) = self.sale()?;
            sales.insert(product, sale);
        }
        Ok(PartitionState {
            sales,
            clock_ms,
            next_offset,
            ..PartitionState::default()
        })
    }
    /// A table reference written by [`Writer::reference`].
    fn reference<T: Clone>(
        &mut self,
        users: bool,
        parse: fn(&str) -> std::result::Result<T, flashsale_schemas::IdError>,
        table: fn(&mut Self) -> &mut Vec<T>,
    ) -> Result<T> {
        let index = self.count()?;
        let known = table(self).len();
        if index < known {
            return Ok(table(self)[index].clone());
        }
        if index > known {
            return Err(err(format!(
                "{} reference {index} skips ahead of {known}",
                if users { "user" } else { "product" }
            )));
        }
        let value = self.id(parse)?;
        table(self).push(value.clone());
        Ok(value)
    }
    fn decision(&mut self, previous: (i64, i64)) -> Result<(RequestKey, Decision)> {
        let key = RequestKey(u128::from_le_bytes(self.array()?));
        let flags = self.u8()?;
        let reason = reason_of(self.u8()?)?;
        let product_id = self.reference(false, ProductId::parse, |r| &mut r.products)?;
        let user_id = if flags & FLAG_USER != 0 {
            Some(self.reference(true, UserId::parse, |r| &mut r.users)?)
        } else {
            None
        };
        let quantity = self.var_i32()?;
        let user_total = self.var_i32()?;
        let remaining = self.var()?;
        let stock = self.var()?;
        let unit_price = if flags & FLAG_PRICE != 0 {
            Some(self.decimal()?)
        } else {
            None
        };
        let sale = if flags & FLAG_SALE != 0 {
            Some(Box::new(self.terms()?))
        } else {
            None
        };
        let decision = Decision {
            product_id,
            user_id,
            kind: if flags & FLAG_CONFIGURED != 0 {
                OutcomeKind::SaleConfigured
            } else {
                OutcomeKind::Purchase
            },
            status: if flags & FLAG_REJECTED != 0 {
                Status::Rejected
            } else {
                Status::Accepted
            },
            reason,
            quantity,
            user_total,
            unit_price,
            remaining,
            stock,
            sale,
            source_offset: previous.0.wrapping_add(self.var()?),
            decided_at_ms: previous.1.wrapping_add(self.var()?),
        };
        Ok((key, decision))
    }

    // v1: fixed-width little-endian fields.

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
    fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| err("string is not UTF-8"))
    }
    fn opt_str(&mut self) -> Result<Option<&'a str>> {
        if self.flag()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_decimal(&mut self) -> Result<Option<Decimal>> {
        if self.flag()? {
            self.decimal().map(Some)
        } else {
            Ok(None)
        }
    }
    fn outcome(&mut self) -> Result<Outcome> {
        let request_id = self.id(RequestId::parse)?;
        let product_id = self.id(ProductId::parse)?;
        let kind = match self.u8()? {
            0 => OutcomeKind::Purchase,
            1 => OutcomeKind::SaleConfigured,
            k => return Err(err(format!("bad kind {k}"))),
        };
        let status = match self.u8()? {
            0 => Status::Accepted,
            1 => Status::Rejected,
            s => return Err(err(format!("bad status {s}"))),
        };
        let reason = reason_of(self.u8()?)?;
        let user_id = self
            .opt_str()?
            .map(UserId::parse)
            .transpose()
            .map_err(|e| err(e.to_string()))?;
        let quantity = self.i32()?;
        let order_id = self
            .opt_str()?
            .map(OrderId::parse)
            .transpose()
            .map_err(|e| err(e.to_string()))?;
        Ok(Outcome {
            request_id,
            product_id,
            kind,
            status,
            reason,
            user_id,
            quantity,
            order_id,
            unit_price: self.opt_decimal()?,
            remaining: self.i64()?,
            stock: self.i64()?,
            user_total: self.i32()?,
            sale: if self.flag()? {
                Some(self.terms()?)
            } else {
                None
            },
            source_partition: self.i32()?,
            source_offset: self.i64()?,
            decided_at_ms: self.i64()?,
        })
    }
}

/// Decodes a partition state written by [`encode`] or by an earlier
/// release's `flashsale-state-v1` encoder.
pub fn decode(bytes: &[u8]) -> Result<PartitionState> {
    let mut r = Reader::new(bytes);
    let state = match r.take(4)? {
        m if m == MAGIC_V2 => decode_v2(&mut r)?,
        m if m == MAGIC_V1 => {
            r.fixed_width = true;
            decode_v1(&mut r)?
        }
        _ => return Err(err("not a flashsale-state snapshot")),
    };
    if !r.input.is_empty() {
        return Err(err(format!("{} trailing bytes", r.input.len())));
    }
    Ok(state)
}

fn decode_v2(r: &mut Reader<'_>) -> Result<PartitionState> {
    let mut state = r.state_head()?;
    let decided_count = r.count()?;
    state.decided.reserve(decided_count.min(1 << 24));
    state.decided_order.reserve(decided_count.min(1 << 24));
    let mut previous = (0, 0);
    for _ in 0..decided_count {
        let (key, decision) = r.decision(previous)?;
        previous = (decision.source_offset, decision.decided_at_ms);
        state.decided_order.push_back((decision.decided_at_ms, key));
        state.decided.insert(key, decision);
    }
    Ok(state)
}

fn decode_v1(r: &mut Reader<'_>) -> Result<PartitionState> {
    let mut state = r.state_head()?;
    let decided_count = r.len()?;
    for _ in 0..decided_count {
        let time_ms = r.i64()?;
        let outcome = r.outcome()?;
        let key = RequestKey::of(&outcome.request_id);
        state.decided_order.push_back((time_ms, key));
        state.decided.insert(key, Decision::of(&outcome));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::{DedupeLimits, Position};
    use flashsale_schemas::{ConfigureSale, PurchaseRequest, Request};

    fn state_with_decisions() -> (PartitionState, Vec<Request>) {
        let terms = SaleTerms {
            stock: 2,
            per_user_limit: 1,
            price: Decimal::new(1999, 2),
            starts_at_ms: None,
            ends_at_ms: Some(9_000),
        };
        let mut inputs = vec![Request::ConfigureSale(ConfigureSale {
            command_id: RequestId::parse("cfg-1").unwrap(),
            product_id: ProductId::parse("p1").unwrap(),
            terms,
            issued_at_ms: 10,
        })];
        for (i, user) in ["u1", "u2", "u1", "u3", "u4"].iter().enumerate() {
            inputs.push(Request::Purchase(PurchaseRequest {
                request_id: RequestId::parse(&format!("r{i}")).unwrap(),
                product_id: ProductId::parse(if i == 4 { "p2" } else { "p1" }).unwrap(),
                user_id: UserId::parse(user).unwrap(),
                quantity: 1,
                received_at_ms: 20 + i as i64,
            }));
        }
        let mut state = PartitionState::starting_at(100);
        for (i, r) in inputs.iter().enumerate() {
            let at = Position {
                partition: 3,
                offset: 100 + i as i64,
            };
            state.decide(at, r, DedupeLimits::default());
        }
        (state, inputs)
    }

    /// A v1 writer as the previous release had it (fixed-width fields, a
    /// full outcome per decision), kept here only to produce test input.
    fn encode_v1(state: &PartitionState, outcomes: &[Outcome]) -> Vec<u8> {
        let mut w = Vec::new();
        let s = |w: &mut Vec<u8>, v: &str| {
            w.extend_from_slice(&(v.len() as u32).to_le_bytes());
            w.extend_from_slice(v.as_bytes());
        };
        let opt_s = |w: &mut Vec<u8>, v: Option<&str>| match v {
            None => w.push(0),
            Some(v) => {
                w.push(1);
                s(w, v)
            }
        };
        let terms = |w: &mut Vec<u8>, t: &SaleTerms| {
            w.extend_from_slice(&t.stock.to_le_bytes());
            w.extend_from_slice(&t.per_user_limit.to_le_bytes());
            w.extend_from_slice(&t.price.serialize());
            for v in [t.starts_at_ms, t.ends_at_ms] {
                match v {
                    None => w.push(0),
                    Some(v) => {
                        w.push(1);
                        w.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        };
        w.extend_from_slice(MAGIC_V1);
        w.extend_from_slice(&state.next_offset.to_le_bytes());
        w.extend_from_slice(&state.clock_ms.to_le_bytes());
        let mut products: Vec<_> = state.sales.iter().collect();
        products.sort_by(|a, b| a.0.cmp(b.0));
        w.extend_from_slice(&(products.len() as u32).to_le_bytes());
        for (product, sale) in products {
            s(&mut w, product.as_str());
            terms(&mut w, &sale.terms);
            w.extend_from_slice(&sale.sold.to_le_bytes());
            let mut users: Vec<_> = sale.per_user.iter().collect();
            users.sort();
            w.extend_from_slice(&(users.len() as u32).to_le_bytes());
            for (user, total) in users {
                s(&mut w, user.as_str());
                w.extend_from_slice(&total.to_le_bytes());
            }
        }
        w.extend_from_slice(&(outcomes.len() as u32).to_le_bytes());
        for o in outcomes {
            w.extend_from_slice(&o.decided_at_ms.to_le_bytes());
            s(&mut w, o.request_id.as_str());
            s(&mut w, o.product_id.as_str());
            w.push(u8::from(o.kind == OutcomeKind::SaleConfigured));
            w.push(u8::from(o.status == Status::Rejected));
            w.push(reason_code(o.reason));
            opt_s(&mut w, o.user_id.as_ref().map(|u| u.as_str()));
            w.extend_from_slice(&o.quantity.to_le_bytes());
            opt_s(&mut w, o.order_id.as_ref().map(|u| u.as_str()));
            match o.unit_price {
                None => w.push(0),
                Some(p) => {
                    w.push(1);
                    w.extend_from_slice(&p.serialize());
                }
            }
            w.extend_from_slice(&o.remaining.to_le_bytes());
            w.extend_from_slice(&o.stock.to_le_bytes());
            w.extend_from_slice(&o.user_total.to_le_bytes());
            match &o.sale {
                None => w.push(0),
                Some(t) => {
                    w.push(1);
                    terms(&mut w, t);
                }
            }
            w.extend_from_slice(&o.source_partition.to_le_bytes());
            w.extend_from_slice(&o.source_offset.to_le_bytes());
            w.extend_from_slice(&o.decided_at_ms.to_le_bytes());
        }
        w
    }

    /// Proves a snapshot written by the previous release (v1) restores to
    /// the same state the current code builds, so an upgrade keeps every
    /// partition's memory: decoding the v1 bytes of a state must give back
    /// that state, and its v2 re-encoding must equal the state's own.
    #[test]
    fn reads_snapshots_of_the_previous_release() {
        let (state, inputs) = state_with_decisions();
        let outcomes: Vec<Outcome> = inputs
            .iter()
            .zip(state.decided_order.iter())
            .map(|(r, (_, key))| state.decided[key].outcome(r.request_id(), 3))
            .collect();
        let restored = decode(&encode_v1(&state, &outcomes)).unwrap();
        assert_eq!(restored, state);
        assert_eq!(encode(&restored), encode(&state));
    }

    /// Proves the v2 encoding round-trips and rejects damage: every strict
    /// prefix of a snapshot fails to decode rather than restoring a
    /// partial state, and trailing bytes are refused.
    #[test]
    fn v2_round_trips_and_refuses_damage() {
        let (state, _) = state_with_decisions();
        let bytes = encode(&state);
        assert_eq!(decode(&bytes).unwrap(), state);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
