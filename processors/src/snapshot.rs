//! Partition state snapshots: a compact, deterministic binary encoding of
//! [`PartitionState`], cut into chunks that fit the broker's record size.
//!
//! Encoding `flashsale-state-v1` (all integers little-endian):
//! `b"FSS1"`, `next_offset: i64`, `clock_ms: i64`, then the sales sorted by
//! product (`product`, terms, `sold: i64`, the per-user totals sorted by
//! user), then the remembered decisions in decision order (`time_ms: i64`,
//! the outcome). Strings are `u32` length + UTF-8; options a `u8` tag;
//! decimals rust_decimal's 16-byte form. Sorting makes equal states encode
//! to equal bytes, whichever instance wrote them.
//!
//! Any snapshot is correct, whoever wrote it: a partition's state is a
//! function of its log prefix, and a snapshot is only taken after every
//! outcome up to its offset has been acknowledged by the broker.

use std::collections::{HashMap, VecDeque};

use rust_decimal::Decimal;

use flashsale_schemas::{
    OrderId, Outcome, OutcomeKind, ProductId, RejectReason, RequestId, SaleTerms, Status, UserId,
};

use crate::core::{PartitionState, Sale};

/// Name of this encoding, stored with every chunk.
pub const ENCODING: &str = "flashsale-state-v1";
const MAGIC: &[u8; 4] = b"FSS1";

/// Why snapshot bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("snapshot: {0}")]
pub struct SnapshotError(pub String);

type Result<T> = std::result::Result<T, SnapshotError>;

fn err(what: impl Into<String>) -> SnapshotError {
    SnapshotError(what.into())
}

// ------------------------------------------------------------------ writer

struct Writer(Vec<u8>);

impl Writer {
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn len(&mut self, n: usize) {
        // Collections and strings in a partition state are far below 4 G.
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.i64(v);
            }
        }
    }
    fn decimal(&mut self, d: Decimal) {
        self.0.extend_from_slice(&d.serialize());
    }
    fn opt_decimal(&mut self, d: Option<Decimal>) {
        match d {
            None => self.u8(0),
            Some(d) => {
                self.u8(1);
                self.decimal(d);
            }
        }
    }
    fn terms(&mut self, t: &SaleTerms) {
        self.i64(t.stock);
        self.i32(t.per_user_limit);
        self.decimal(t.price);
        self.opt_i64(t.starts_at_ms);
        self.opt_i64(t.ends_at_ms);
    }
    fn outcome(&mut self, o: &Outcome) {
        self.str(o.request_id.as_str());
        self.str(o.product_id.as_str());
        self.u8(match o.kind {
            OutcomeKind::Purchase => 0,
            OutcomeKind::SaleConfigured => 1,
        });
        self.u8(match o.status {
            Status::Accepted => 0,
            Status::Rejected => 1,
        });
        self.u8(o.reason.map_or(0, |r| {
            1 + RejectReason::ALL.iter().position(|x| *x == r).unwrap_or(0) as u8
        }));
        self.opt_str(o.user_id.as_ref().map(|u| u.as_str()));
        self.i32(o.quantity);
        self.opt_str(o.order_id.as_ref().map(|x| x.as_str()));
        self.opt_decimal(o.unit_price);
        self.i64(o.remaining);
        self.i64(o.stock);
        self.i32(o.user_total);
        match &o.sale {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.terms(t);
            }
        }
        self.i32(o.source_partition);
        self.i64(o.source_offset);
        self.i64(o.decided_at_ms);
    }
}

/// Encodes a partition state.
pub fn encode(state: &PartitionState) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + state.decided.len() * 96));
    w.0.extend_from_slice(MAGIC);
    w.i64(state.next_offset);
    w.i64(state.clock_ms);
    let mut products: Vec<&ProductId> = state.sales.keys().collect();
    products.sort();
    w.len(products.len());
    for product in products {
        let sale = &state.sales[product];
        w.str(product.as_str());
        w.terms(&sale.terms);
        w.i64(sale.sold);
        let mut users: Vec<(&UserId, &i32)> = sale.per_user.iter().collect();
        users.sort();
        w.len(users.len());
        for (user, total) in users {
            w.str(user.as_str());
            w.i32(*total);
        }
    }
    w.len(state.decided_order.len());
    for (time_ms, id) in &state.decided_order {
        let outcome = state.decided.get(id);
        assert!(
            outcome.is_some(),
            "decided_order names {id}, which decided lacks"
        );
        if let Some(o) = outcome {
            w.i64(*time_ms);
            w.outcome(o);
        }
    }
    w.0
}

// ------------------------------------------------------------------ reader

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(err("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn len(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
    fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| err("string is not UTF-8"))
    }
    fn flag(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(err(format!("bad option tag {t}"))),
        }
    }
    fn opt_str(&mut self) -> Result<Option<&'a str>> {
        if self.flag()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_i64(&mut self) -> Result<Option<i64>> {
        if self.flag()? {
            self.i64().map(Some)
        } else {
            Ok(None)
        }
    }
    fn decimal(&mut self) -> Result<Decimal> {
        Ok(Decimal::deserialize(self.array()?))
    }
    fn opt_decimal(&mut self) -> Result<Option<Decimal>> {
        if self.flag()? {
            self.decimal().map(Some)
        } else {
            Ok(None)
        }
    }
    fn terms(&mut self) -> Result<SaleTerms> {
        Ok(SaleTerms {
            stock: self.i64()?,
            per_user_limit: self.i32()?,
            price: self.decimal()?,
            starts_at_ms: self.opt_i64()?,
            ends_at_ms: self.opt_i64()?,
        })
    }
    fn id<T>(
        &mut self,
        parse: fn(&str) -> std::result::Result<T, flashsale_schemas::IdError>,
    ) -> Result<T> {
        parse(self.str()?).map_err(|e| err(e.to_string()))
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
        let reason = match self.u8()? {
            0 => None,
            r => Some(
                *RejectReason::ALL
                    .get(usize::from(r) - 1)
                    .ok_or_else(|| err("bad reason"))?,
            ),
        };
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
    fn sale(&mut self) -> Result<(ProductId, Sale)> {
        let product = self.id(ProductId::parse)?;
        let terms = self.terms()?;
        let sold = self.i64()?;
        let users = self.len()?;
        let mut per_user = HashMap::with_capacity(users.min(1 << 20));
        for _ in 0..users {
            let user = self.id(UserId::parse)?;
            per_user.insert(user, self.i32()?);
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
}

/// Decodes a partition state written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<PartitionState> {
    let mut r = Reader(bytes);
    if r.take(4)? != MAGIC {
        return Err(err("not a flashsale-state-v1 snapshot"));
    }
    let next_offset = r.i64()?;
    let clock_ms = r.i64()?;
    let sales_count = r.len()?;
    let mut sales = HashMap::with_capacity(sales_count.min(1 << 20));
    for _ in 0..sales_count {
        let (product, sale) = r.sale()?;
        sales.insert(product, sale);
    }
    let decided_count = r.len()?;
    let mut decided = HashMap::with_capacity(decided_count.min(1 << 24));
    let mut decided_order = VecDeque::with_capacity(decided_count.min(1 << 24));
    for _ in 0..decided_count {
        let time_ms = r.i64()?;
        let outcome = r.outcome()?;
        decided_order.push_back((time_ms, outcome.request_id.clone()));
        decided.insert(outcome.request_id.clone(), outcome);
    }
    if !r.0.is_empty() {
        return Err(err(format!("{} trailing bytes", r.0.len())));
    }
    Ok(PartitionState {
        sales,
        decided,
        decided_order,
        clock_ms,
        next_offset,
    })
}
