//! Tests of the pure decision core: no broker, no clock. They prove the
//! business rules one by one, then (property tests) that no sequence of
//! inputs can oversell, break a per-user limit, decide a request ID twice,
//! or decide differently on replay.

use flashsale_core::{DedupeLimits, PartitionState, Position, RequestKey};
use flashsale_schemas::{
    ConfigureSale, Outcome, ProductId, PurchaseRequest, RejectReason, Request, RequestId,
    SaleTerms, Status, UserId,
};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn sale(product: &str, stock: i64, limit: i32, window: (Option<i64>, Option<i64>)) -> Request {
    Request::ConfigureSale(ConfigureSale {
        command_id: RequestId::parse(&format!("cfg-{product}-{stock}-{limit}")).unwrap(),
        product_id: ProductId::parse(product).unwrap(),
        terms: SaleTerms {
            stock,
            per_user_limit: limit,
            price: Decimal::new(999, 2),
            starts_at_ms: window.0,
            ends_at_ms: window.1,
        },
        issued_at_ms: 0,
    })
}

fn buy(request: &str, user: &str, product: &str, quantity: i32, at_ms: i64) -> Request {
    Request::Purchase(PurchaseRequest {
        request_id: RequestId::parse(request).unwrap(),
        user_id: UserId::parse(user).unwrap(),
        product_id: ProductId::parse(product).unwrap(),
        quantity,
        received_at_ms: at_ms,
    })
}

/// Feeds inputs at consecutive offsets of partition 0.
fn run(inputs: &[Request]) -> (PartitionState, Vec<Outcome>) {
    let mut state = PartitionState::default();
    let outcomes = inputs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = Position {
                partition: 0,
                offset: i as i64,
            };
            state.decide(at, r, DedupeLimits::default())
        })
        .collect();
    (state, outcomes)
}

fn reasons(outcomes: &[Outcome]) -> Vec<Option<RejectReason>> {
    outcomes.iter().map(|o| o.reason).collect()
}

/// The old design's scenario, decided by the core: 100 distinct buyers, 10
/// items, quantity 1 → exactly 10 accepted, 90 sold_out, remaining 0.
#[test]
fn hundred_buyers_ten_items() {
    let mut inputs = vec![sale("p", 10, 1, (None, None))];
    inputs.extend((0..100).map(|i| buy(&format!("r{i}"), &format!("u{i}"), "p", 1, 1)));
    let (state, outcomes) = run(&inputs);
    let purchases = &outcomes[1..];
    let accepted = purchases
        .iter()
        .filter(|o| o.status == Status::Accepted)
        .count();
    assert_eq!(accepted, 10);
    assert!(purchases[10..]
        .iter()
        .all(|o| o.reason == Some(RejectReason::SoldOut)));
    assert_eq!(state.sales[&ProductId::parse("p").unwrap()].remaining(), 0);
    assert_eq!(purchases[9].remaining, 0);
    assert_eq!(purchases[9].order_id.as_ref().unwrap().as_str(), "o-0-10");
}

/// Each rejection reason fires where it should, in the documented order.
#[test]
fn rejection_reasons() {
    let inputs = vec![
        buy("a", "u1", "nope", 1, 5), // unknown product
        sale("p", 3, 2, (Some(100), Some(200))),
        buy("b", "u1", "p", 1, 99),  // before the window
        buy("c", "u1", "p", 1, 200), // at the end: ended
        buy("d", "u1", "p", 3, 150), // over the user limit of 2
        buy("e", "u1", "p", 2, 150), // accepted, 1 left
        buy("f", "u2", "p", 2, 150), // only 1 left
        buy("g", "u2", "p", 1, 150), // accepted, 0 left
        buy("h", "u3", "p", 1, 150), // sold out
        buy("i", "u3", "p", 0, 150), // invalid quantity (defence in depth)
    ];
    let (_, outcomes) = run(&inputs);
    assert_eq!(
        reasons(&outcomes),
        vec![
            Some(RejectReason::UnknownProduct),
            None,
            Some(RejectReason::NotStarted),
            Some(RejectReason::Ended),
            Some(RejectReason::LimitExceeded),
            None,
            Some(RejectReason::InsufficientStock),
            None,
            Some(RejectReason::SoldOut),
            Some(RejectReason::InvalidQuantity),
        ]
    );
    assert_eq!(outcomes[5].user_total, 2);
    assert_eq!(outcomes[7].remaining, 0);
}

/// A repeated request ID gets the original outcome, byte for byte, and
/// changes nothing (here: no second unit sold).
#[test]
fn repeated_request_id_is_decided_once() {
    let inputs = vec![
        sale("p", 5, 5, (None, None)),
        buy("same", "u1", "p", 1, 1),
        buy("same", "u1", "p", 1, 2),
        buy("same", "u9", "p", 3, 3),
    ];
    let (state, outcomes) = run(&inputs);
    assert_eq!(outcomes[1], outcomes[2]);
    assert_eq!(outcomes[1], outcomes[3]);
    assert_eq!(state.sales[&ProductId::parse("p").unwrap()].sold, 1);
}

/// Reconfiguring a sale keeps what was sold; lowering stock below it is
/// refused as invalid_sale.
#[test]
fn reconfigure_keeps_sold_units() {
    let inputs = vec![
        sale("p", 5, 5, (None, None)),
        buy("a", "u1", "p", 4, 1),
        sale("p", 3, 5, (None, None)),
        sale("p", 10, 5, (None, None)),
        buy("b", "u2", "p", 5, 2),
    ];
    let (_, outcomes) = run(&inputs);
    assert_eq!(outcomes[2].reason, Some(RejectReason::InvalidSale));
    assert_eq!(outcomes[3].status, Status::Accepted);
    assert_eq!(outcomes[3].remaining, 6);
    assert_eq!(outcomes[4].status, Status::Accepted);
    assert_eq!(outcomes[4].remaining, 1);
}

/// Dedupe memory is bounded by count, oldest first, deterministically.
#[test]
fn dedupe_memory_is_bounded() {
    let limits = DedupeLimits {
        window_ms: i64::MAX,
        entries_max: 3,
    };
    let mut state = PartitionState::default();
    let inputs = [
        sale("p", 100, 100, (None, None)),
        buy("a", "u", "p", 1, 1),
        buy("b", "u", "p", 1, 2),
        buy("c", "u", "p", 1, 3),
    ];
    for (i, r) in inputs.iter().enumerate() {
        state.decide(
            Position {
                partition: 0,
                offset: i as i64,
            },
            r,
            limits,
        );
    }
    assert_eq!(state.decided.len(), 3);
    assert!(!state
        .decided
        .contains_key(&RequestKey::of(&RequestId::parse("cfg-p-100-100").unwrap())));
}

fn arb_input() -> impl Strategy<Value = Request> {
    let products = prop::sample::select(vec!["p1", "p2", "p3"]);
    let users = prop::sample::select(vec!["u1", "u2", "u3", "u4"]);
    prop_oneof![
        1 => (products.clone(), 0i64..20, 1i32..4).prop_map(|(p, stock, limit)| sale(p, stock, limit, (None, None))),
        12 => (0u32..60, users, products, 1i32..4, 0i64..1000)
            .prop_map(|(r, u, p, q, t)| buy(&format!("r{r}"), u, p, q, t)),
    ]
}

proptest! {
    /// For any sequence of sale commands and purchases: accepted units never
    /// exceed the stock in force, per-user totals never exceed the limit in
    /// force when accepted, and replaying the same sequence from an empty
    /// state yields identical outcomes.
    #[test]
    fn never_oversells_and_replays_identically(inputs in prop::collection::vec(arb_input(), 1..300)) {
        let (state, outcomes) = run(&inputs);
        let (_, replayed) = run(&inputs);
        prop_assert_eq!(&outcomes, &replayed);
        for (product, sale) in &state.sales {
            prop_assert!(sale.sold <= sale.terms.stock, "{} oversold", product);
            prop_assert!(sale.remaining() >= 0);
        }
        let mut limit_in_force = std::collections::HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for o in &outcomes {
            // A repeated request ID re-sends an old decision: not a new acceptance.
            if !seen.insert(o.request_id.clone()) {
                continue;
            }
            if let (Status::Accepted, Some(terms)) = (o.status, &o.sale) {
                limit_in_force.insert(o.product_id.clone(), terms.per_user_limit);
            }
            if o.status == Status::Accepted && o.user_id.is_some() {
                prop_assert!(o.remaining >= 0);
                prop_assert!(o.remaining <= o.stock);
                prop_assert!(o.user_total <= limit_in_force[&o.product_id]);
            }
        }
    }

    /// Every request ID is decided once: all outcomes sharing a request ID
    /// are identical, and units sold equal the sum over distinct accepted IDs.
    #[test]
    fn request_ids_are_decided_once(inputs in prop::collection::vec(arb_input(), 1..300)) {
        let (state, outcomes) = run(&inputs);
        let mut first: std::collections::HashMap<String, &Outcome> = Default::default();
        for o in &outcomes {
            let seen = first.entry(o.request_id.to_string()).or_insert(o);
            prop_assert_eq!(*seen, o);
        }
        for (product, sale) in &state.sales {
            let sold: i64 = first
                .values()
                .filter(|o| &o.product_id == product && o.status == Status::Accepted && o.user_id.is_some())
                .map(|o| i64::from(o.quantity))
                .sum();
            prop_assert_eq!(sold, sale.sold);
        }
    }
}

proptest! {
    /// Snapshots: for any state reached by any input sequence, decoding the
    /// encoded state gives the same state, equal states encode to equal
    /// bytes, and deciding the rest of the log from the restored snapshot
    /// gives exactly the outcomes the uninterrupted run gave (restore from a
    /// snapshot + replay is indistinguishable from never stopping).
    #[test]
    fn snapshot_restore_is_indistinguishable(
        inputs in prop::collection::vec(arb_input(), 1..200),
        cut in 0usize..200,
    ) {
        let cut = cut.min(inputs.len());
        let (_, uninterrupted) = run(&inputs);
        let (state, _) = run(&inputs[..cut]);
        let bytes = flashsale_core::snapshot::encode(&state);
        let mut restored = flashsale_core::snapshot::decode(&bytes).unwrap();
        prop_assert_eq!(&restored, &state);
        prop_assert_eq!(flashsale_core::snapshot::encode(&restored), bytes);
        for (i, r) in inputs.iter().enumerate().skip(cut) {
            let at = Position { partition: 0, offset: i as i64 };
            prop_assert_eq!(&restored.decide(at, r, DedupeLimits::default()), &uninterrupted[i]);
        }
    }
}
