//! Strategy `redis-lua-flag`: [`super::redis_lua`] plus the
//! in-process sold-out flag of the popular seckill designs (the
//! `localOverMap` of qiurunze123/miaosha): once this server has seen a
//! product sold out, it answers `sold_out` for it without calling Redis. In
//! a flash sale most requests arrive after the stock is gone, so the flag
//! turns most of them into a hash lookup.
//!
//! The flag is set when the script answers `sold_out`, or accepts and
//! leaves 0 units. Those are the only signals: `insufficient_stock` still
//! means a smaller purchase could succeed. Everything else is redis-lua's:
//! the same script, the same per-user limit, the same asynchronous
//! persistence, and the same counters.
//!
//! A repeated request ID must still get its original order, and the flag
//! alone would answer it `sold_out`. So this process also remembers the
//! request and order IDs it accepted for each product (at most one per unit
//! of stock) and answers a flagged repeat from them. A request whose script
//! call is still in flight in this process has an unknown fate: its repeat
//! goes to Redis even when the product is flagged.
//!
//! **Limitations, as in the designs it copies.** The flag lives in one
//! server process. It is never reset except when a sale is (re)configured
//! through this server (`POST /api/v1/sales` clears the product's flag and
//! memory). Stock put back in Redis any other way (another server, an
//! operator, a cancelled order) stays unsold here until the process
//! restarts. With several server processes, each sets its own flag, and a
//! flagged process answers `sold_out` to the repeat of an order that
//! *another* process accepted (it does not remember that one). The
//! benchmark runs one process, where neither happens.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::redis_lua::{self, ScriptAnswer};
use super::store::NewOrder;
use super::{Decision, PurchaseInput, Shared};

/// What this process knows about one product.
#[derive(Debug, Default)]
struct ProductMemo {
    /// This process has seen the product sold out.
    sold_out: bool,
    /// Request ID -> order ID of the orders this process accepted: a repeat
    /// of one after the flag is set is answered from here. Bounded by the
    /// product's stock (each entry took at least one unit).
    accepted: HashMap<String, String>,
    /// Request IDs whose script call is in flight here, with how many sends
    /// of each: their fate is not known yet, so a repeat must ask Redis.
    /// Bounded by the requests in flight.
    in_flight: HashMap<String, u32>,
}

impl ProductMemo {
    /// Nothing worth keeping: the entry can go (keeps the map bounded by
    /// configured products, whatever product IDs clients send).
    fn is_empty(&self) -> bool {
        !self.sold_out && self.accepted.is_empty() && self.in_flight.is_empty()
    }
}

/// The sold-out flags and accepted orders of one server process.
#[derive(Debug, Default)]
pub struct SoldOutFlags {
    /// Per product. A plain mutex: it is held for a few hash operations
    /// and never across an `.await`.
    products: Mutex<HashMap<String, ProductMemo>>,
}

/// How a purchase starts.
enum Gate<'a> {
    /// Answered from the flag, without Redis.
    Answered(Decision),
    /// Must ask Redis; the guard marks the request in flight until dropped.
    AskRedis(InFlight<'a>),
}

/// Marks one send of a request ID in flight; dropping it (after the answer
/// was recorded, or when the handler is cancelled) clears the mark.
struct InFlight<'a> {
    /// Whose mark.
    flags: &'a SoldOutFlags,
    /// The product.
    product: String,
    /// The request ID.
    request_id: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut products = self.flags.lock();
        let Some(memo) = products.get_mut(&self.product) else {
            return;
        };
        if let Some(n) = memo.in_flight.get_mut(&self.request_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                memo.in_flight.remove(&self.request_id);
            }
        }
        if memo.is_empty() {
            products.remove(&self.product);
        }
    }
}

impl SoldOutFlags {
    /// The map; a panic elsewhere while it was held leaves it consistent
    /// (every update is a single insert or remove), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, ProductMemo>> {
        self.products.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Clears the product's flag and remembered orders: its sale was just
    /// configured. (Repeats of earlier orders then go to Redis, which still
    /// knows them.)
    pub fn reset(&self, product: &str) {
        let mut products = self.lock();
        if let Some(memo) = products.get_mut(product) {
            memo.sold_out = false;
            memo.accepted.clear();
            if memo.is_empty() {
                products.remove(product);
            }
        }
    }

    /// Whether this process has flagged `product` sold out.
    pub fn is_sold_out(&self, product: &str) -> bool {
        self.lock().get(product).is_some_and(|m| m.sold_out)
    }

    /// Answers from the flag when it can; otherwise marks the request in
    /// flight.
    fn gate(&self, p: &PurchaseInput) -> Gate<'_> {
        let mut products = self.lock();
        let memo = products.entry(p.product.clone()).or_default();
        if memo.sold_out && !memo.in_flight.contains_key(&p.request_id) {
            return Gate::Answered(match memo.accepted.get(&p.request_id) {
                Some(order_id) => Decision::repeat(order_id.clone()),
                None => Decision::rejected_unknown_remaining("sold_out"),
            });
        }
        *memo.in_flight.entry(p.request_id.clone()).or_default() += 1;
        Gate::AskRedis(InFlight {
            flags: self,
            product: p.product.clone(),
            request_id: p.request_id.clone(),
        })
    }

    /// Learns from the script's answer: remembers an accepted order, and
    /// flags the product once the stock is gone.
    fn learn(&self, p: &PurchaseInput, order_id: &str, answer: &ScriptAnswer) {
        let mut products = self.lock();
        let Some(memo) = products.get_mut(&p.product) else {
            return;
        };
        match answer {
            ScriptAnswer::Accepted { remaining } => {
                memo.accepted
                    .insert(p.request_id.clone(), order_id.to_owned());
                memo.sold_out |= *remaining <= 0;
            }
            ScriptAnswer::Rejected { reason } => memo.sold_out |= *reason == "sold_out",
            ScriptAnswer::Repeat { .. } | ScriptAnswer::UnknownProduct => {}
        }
    }
}

/// Decides one purchase: from the flag when the product is known sold out
/// here, else as redis-lua does.
pub async fn purchase(shared: &Shared, p: &PurchaseInput) -> anyhow::Result<Decision> {
    let in_flight = match shared.sold_out.gate(p) {
        Gate::Answered(decision) => {
            shared.stats.bump(&shared.stats.flag_answers);
            return Ok(decision);
        }
        Gate::AskRedis(in_flight) => in_flight,
    };
    let order_id = NewOrder::for_purchase(p).order_id;
    let answer = redis_lua::run_script(shared, p, &order_id).await?;
    // Record before the mark is cleared, so a concurrent repeat never sees
    // the product flagged with this request neither in flight nor accepted.
    shared.sold_out.learn(p, &order_id, &answer);
    drop(in_flight);
    Ok(redis_lua::decision(shared, p, order_id, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(request_id: &str) -> PurchaseInput {
        PurchaseInput {
            product: "p".into(),
            user: "u".into(),
            quantity: 1,
            request_id: request_id.into(),
        }
    }

    fn ask<'a>(flags: &'a SoldOutFlags, p: &PurchaseInput) -> InFlight<'a> {
        match flags.gate(p) {
            Gate::AskRedis(g) => g,
            Gate::Answered(d) => panic!("answered from the flag: {d:?}"),
        }
    }

    fn answered(flags: &SoldOutFlags, p: &PurchaseInput) -> Decision {
        match flags.gate(p) {
            Gate::Answered(d) => d,
            Gate::AskRedis(_) => panic!("asked Redis"),
        }
    }

    /// Proves the flag's rules: nothing is flagged until the script says
    /// the stock is gone; then new requests are answered `sold_out`, a
    /// repeat of an order accepted here gets that order, a repeat of a
    /// request still in flight goes to Redis; configure clears it all; and
    /// the map forgets products with nothing to remember.
    #[test]
    fn flag_answers_only_what_redis_would() {
        let flags = SoldOutFlags::default();
        let (first, late, pending) = (input("r1"), input("r2"), input("r3"));
        let guard = ask(&flags, &first);
        let slow = ask(&flags, &pending);
        flags.learn(&first, "o1", &ScriptAnswer::Accepted { remaining: 0 });
        drop(guard);
        assert!(flags.is_sold_out("p"));
        assert_eq!(answered(&flags, &first), Decision::repeat("o1".into()));
        assert_eq!(
            answered(&flags, &late),
            Decision::rejected_unknown_remaining("sold_out")
        );
        drop(ask(&flags, &pending));
        drop(slow);
        flags.reset("p");
        assert!(!flags.is_sold_out("p"));
        drop(ask(&flags, &late));
        assert!(flags.lock().is_empty(), "an empty memo is dropped");
        let g = ask(&flags, &first);
        flags.learn(
            &first,
            "o2",
            &ScriptAnswer::Rejected {
                reason: "insufficient_stock",
            },
        );
        drop(g);
        assert!(
            !flags.is_sold_out("p"),
            "insufficient stock is not sold out"
        );
    }
}
