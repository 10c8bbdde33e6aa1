package dev.flashsale.peer;

import dev.flashsale.peer.Model.ConfigureSale;
import dev.flashsale.peer.Model.Kind;
import dev.flashsale.peer.Model.Outcome;
import dev.flashsale.peer.Model.Purchase;
import dev.flashsale.peer.Model.RejectReason;
import dev.flashsale.peer.Model.Request;
import dev.flashsale.peer.Model.SaleTerms;
import dev.flashsale.peer.Model.Status;

/**
 * The decision rules of core/src/decide.rs (PartitionState::purchase,
 * configure and purchase_refusal), line for line, over a {@link Sales} view
 * of one partition's state. Pure: no clock (time is the record's), no
 * randomness, order IDs from the input's position. Repeated request IDs are
 * answered before this is called ({@link DedupeMemory}).
 */
final class Decider {
    private Decider() {}

    /** One product's sale: its terms and the units sold so far (never above the stock). */
    record Sale(SaleTerms terms, long sold) {
        long remaining() {
            return terms.stock() - sold;
        }
    }

    /** The part of a partition's state the rules read and change. */
    interface Sales {
        /** The product's sale, or null when none was configured. */
        Sale sale(String productId);

        void putSale(String productId, Sale sale);

        /** Units the user bought of the product (0 when none). */
        int userTotal(String productId, String userId);

        void putUserTotal(String productId, String userId, int total);
    }

    /** Decides a request first seen at (partition, offset). */
    static Outcome decide(Sales state, int partition, long offset, Request request) {
        if (request instanceof Purchase p) {
            return purchase(state, partition, offset, p);
        }
        return configure(state, partition, offset, (ConfigureSale) request);
    }

    private static Outcome purchase(Sales state, int partition, long offset, Purchase p) {
        Sale sale = state.sale(p.productId());
        if (sale == null) {
            return new Outcome(p.requestId(), p.productId(), Kind.PURCHASE, Status.REJECTED,
                    RejectReason.UNKNOWN_PRODUCT, p.userId(), p.quantity(), null, null, 0, 0, 0, null,
                    partition, offset, p.receivedAtMs());
        }
        int userTotal = state.userTotal(p.productId(), p.userId());
        RejectReason refusal = refusal(sale, p, userTotal);
        if (refusal != null) {
            return new Outcome(p.requestId(), p.productId(), Kind.PURCHASE, Status.REJECTED, refusal,
                    p.userId(), p.quantity(), null, null, sale.remaining(), sale.terms().stock(), userTotal,
                    null, partition, offset, p.receivedAtMs());
        }
        // Accepted: the only place stock changes.
        Sale after = new Sale(sale.terms(), sale.sold() + p.quantity());
        int newTotal = userTotal + p.quantity();
        if (after.sold() > after.terms().stock()) {
            throw new IllegalStateException("oversold " + p.productId());
        }
        state.putSale(p.productId(), after);
        state.putUserTotal(p.productId(), p.userId(), newTotal);
        return new Outcome(p.requestId(), p.productId(), Kind.PURCHASE, Status.ACCEPTED, null, p.userId(),
                p.quantity(), Model.orderId(partition, offset), sale.terms().priceCents(), after.remaining(),
                after.terms().stock(), newTotal, null, partition, offset, p.receivedAtMs());
    }

    /**
     * Why a purchase of a known product is refused, in the order a buyer
     * would want to hear it: the sale window, then stock, then their own limit.
     */
    private static RejectReason refusal(Sale sale, Purchase p, int userTotal) {
        if (p.quantity() < 1 || p.quantity() > Model.QUANTITY_MAX) {
            return RejectReason.INVALID_QUANTITY;
        }
        SaleTerms t = sale.terms();
        if (t.startsAtMs() != null && p.receivedAtMs() < t.startsAtMs()) {
            return RejectReason.NOT_STARTED;
        }
        if (t.endsAtMs() != null && p.receivedAtMs() >= t.endsAtMs()) {
            return RejectReason.ENDED;
        }
        long remaining = sale.remaining();
        if (remaining == 0) {
            return RejectReason.SOLD_OUT;
        }
        // In long arithmetic, like ours, so the sums cannot overflow.
        if ((long) userTotal + p.quantity() > t.perUserLimit()) {
            return RejectReason.LIMIT_EXCEEDED;
        }
        if (p.quantity() > remaining) {
            return RejectReason.INSUFFICIENT_STOCK;
        }
        return null;
    }

    private static Outcome configure(Sales state, int partition, long offset, ConfigureSale c) {
        Sale existing = state.sale(c.productId());
        long sold = existing == null ? 0 : existing.sold();
        boolean valid = c.terms().invalidity() == null && c.terms().stock() >= sold;
        Sale current = existing;
        if (valid) {
            // New terms; units sold (and per-user totals) carry over.
            current = new Sale(c.terms(), sold);
            state.putSale(c.productId(), current);
        }
        Status status = valid ? Status.ACCEPTED : Status.REJECTED;
        RejectReason reason = valid ? null : RejectReason.INVALID_SALE;
        // The outcome shows the terms in force afterwards, if there is a sale.
        long remaining = current == null ? 0 : current.remaining();
        long stock = current == null ? 0 : current.terms().stock();
        SaleTerms terms = current == null ? null : current.terms();
        return new Outcome(c.commandId(), c.productId(), Kind.SALE_CONFIGURED, status, reason, null, 0, null,
                null, remaining, stock, 0, terms, partition, offset, c.issuedAtMs());
    }
}
