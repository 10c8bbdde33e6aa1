//! Reduces a batch of outcomes to the newest value per key. Pure.

use std::collections::HashMap;

use flashsale_schemas::{Outcome, OutcomeKind, ProductId, RejectReason, SaleTerms, Status, UserId};

/// Stock of a product as of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockAt {
    /// Input partition.
    pub partition: i32,
    /// Input offset: the write applies only if newer than what is stored.
    pub offset: i64,
    /// Total units of the sale.
    pub stock: i64,
    /// Units left.
    pub remaining: i64,
}

/// Sale terms as of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsAt {
    /// Input partition.
    pub partition: i32,
    /// Input offset.
    pub offset: i64,
    /// The terms.
    pub terms: SaleTerms,
}

/// A batch reduced to what each store must write.
#[derive(Debug, Default)]
pub struct Folded {
    /// Newest stock per product.
    pub stock: HashMap<ProductId, StockAt>,
    /// Newest terms per product.
    pub sales: HashMap<ProductId, TermsAt>,
    /// Newest (offset, total) per (product, user).
    pub user_totals: HashMap<(ProductId, UserId), (i64, i32)>,
}

/// Whether an outcome says anything about the product's stock: an unknown
/// product has none, so its outcome must not create a stock row.
pub fn carries_stock(o: &Outcome) -> bool {
    match o.kind {
        OutcomeKind::Purchase => o.reason != Some(RejectReason::UnknownProduct),
        OutcomeKind::SaleConfigured => o.sale.is_some(),
    }
}

/// Folds a batch, keeping per key the value of the highest input offset.
pub fn fold(outcomes: &[Outcome]) -> Folded {
    let mut f = Folded::default();
    for o in outcomes {
        if carries_stock(o) {
            let at = StockAt {
                partition: o.source_partition,
                offset: o.source_offset,
                stock: o.stock,
                remaining: o.remaining,
            };
            keep_newest(&mut f.stock, o.product_id.clone(), at, |s| s.offset);
        }
        if let (OutcomeKind::SaleConfigured, Status::Accepted, Some(terms)) =
            (o.kind, o.status, &o.sale)
        {
            let at = TermsAt {
                partition: o.source_partition,
                offset: o.source_offset,
                terms: terms.clone(),
            };
            keep_newest(&mut f.sales, o.product_id.clone(), at, |t| t.offset);
        }
        if let (OutcomeKind::Purchase, Status::Accepted, Some(user)) =
            (o.kind, o.status, &o.user_id)
        {
            let key = (o.product_id.clone(), user.clone());
            keep_newest(
                &mut f.user_totals,
                key,
                (o.source_offset, o.user_total),
                |t| t.0,
            );
        }
    }
    f
}

fn keep_newest<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    key: K,
    value: V,
    offset: fn(&V) -> i64,
) {
    match map.get(&key) {
        Some(existing) if offset(existing) >= offset(&value) => {}
        _ => {
            map.insert(key, value);
        }
    }
}
