package dev.flashsale.peer;

import java.math.BigInteger;

/**
 * The records of flashsale's topics as Java values, with the content rules
 * the schemas cannot express: a port of schemas/src/records.rs and ids.rs.
 * Money is kept as the unscaled value of a two-decimal amount (cents), which
 * is exactly what the Avro {@code decimal(18, 2)} bytes hold.
 */
final class Model {
    private Model() {}

    /** Largest quantity one record may ask for (records.rs QUANTITY_MAX). */
    static final int QUANTITY_MAX = 1_000_000;
    /** Largest stock a sale may have (records.rs STOCK_MAX). */
    static final long STOCK_MAX = 1_000_000_000_000L;
    /** Longest identifier, in bytes (ids.rs ID_LEN_MAX). */
    static final int ID_LEN_MAX = 64;

    /** Which input an outcome answers; names are the Avro symbols. */
    enum Kind { PURCHASE, SALE_CONFIGURED }

    /** Whether the input took effect; names are the Avro symbols. */
    enum Status { ACCEPTED, REJECTED }

    /** Rejection codes, in the schema's symbol order. */
    enum RejectReason {
        SOLD_OUT, INSUFFICIENT_STOCK, LIMIT_EXCEEDED, NOT_STARTED, ENDED,
        UNKNOWN_PRODUCT, INVALID_QUANTITY, INVALID_SALE
    }

    /** Why a record is dead-lettered; {@link #code} is what the record and its headers carry. */
    enum DeadLetterReason {
        UNDECODABLE("undecodable"),
        UNKNOWN_SCHEMA("unknown_schema"),
        INVALID_CONTENT("invalid_content"),
        WRONG_PARTITION("wrong_partition"),
        KEY_MISMATCH("key_mismatch");

        final String code;

        DeadLetterReason(String code) {
            this.code = code;
        }
    }

    /**
     * Why an identifier is not valid (ids.rs validate), or null when it is.
     * Works on the UTF-8 bytes: the allowed alphabet is ASCII, so a byte
     * check is the same as ours on the decoded string.
     */
    static String idError(String kind, byte[] utf8) {
        if (utf8.length == 0) {
            return kind + " must not be empty";
        }
        if (utf8.length > ID_LEN_MAX) {
            return kind + " is longer than " + ID_LEN_MAX + " bytes";
        }
        for (byte b : utf8) {
            boolean ok = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
                    || b == '.' || b == '_' || b == ':' || b == '@' || b == '-';
            if (!ok) {
                return kind + " may only contain letters, digits and . _ : @ -";
            }
        }
        return null;
    }

    /** A sale's terms. Null instants: open at once / no end. */
    record SaleTerms(long stock, int perUserLimit, BigInteger priceCents, Long startsAtMs, Long endsAtMs) {
        /** SaleTerms::validate: why the terms are meaningless, or null. */
        String invalidity() {
            if (stock < 0 || stock > STOCK_MAX) {
                return "stock " + stock + " outside 0..=" + STOCK_MAX;
            }
            if (perUserLimit < 1 || perUserLimit > QUANTITY_MAX) {
                return "per_user_limit " + perUserLimit + " outside 1..=" + QUANTITY_MAX;
            }
            // Our Decimal always has scale 2 here (decoded with the schema's
            // scale), so only the sign can be wrong.
            if (priceCents.signum() < 0) {
                return "price " + priceCents + " cents must be >= 0 with at most 2 decimals";
            }
            if (startsAtMs != null && endsAtMs != null && endsAtMs <= startsAtMs) {
                return "ends_at must be after starts_at";
            }
            return null;
        }
    }

    /** A record of the requests topic: a purchase or a sale command. */
    sealed interface Request permits Purchase, ConfigureSale {
        /** The idempotency key: request_id or command_id. */
        String requestId();

        /** The product; must equal the record key. */
        String productId();

        /** Request::validate: why the content is meaningless, or null. */
        String invalidity();
    }

    /** A buyer's request for {@code quantity} units of one product. */
    record Purchase(String requestId, String userId, String productId, int quantity, long receivedAtMs)
            implements Request {
        @Override
        public String invalidity() {
            if (quantity < 1 || quantity > QUANTITY_MAX) {
                return "quantity " + quantity + " outside 1..=" + QUANTITY_MAX;
            }
            return null;
        }
    }

    /** Admin command creating a sale or changing its terms. */
    record ConfigureSale(String commandId, String productId, SaleTerms terms, long issuedAtMs) implements Request {
        @Override
        public String requestId() {
            return commandId;
        }

        @Override
        public String invalidity() {
            return terms.invalidity();
        }
    }

    /** The decision about one input record (records.rs Outcome); nullable fields are the schema's optional ones. */
    record Outcome(
            String requestId,
            String productId,
            Kind kind,
            Status status,
            RejectReason reason,
            String userId,
            int quantity,
            String orderId,
            BigInteger unitPriceCents,
            long remaining,
            long stock,
            int userTotal,
            SaleTerms sale,
            int sourcePartition,
            long sourceOffset,
            long decidedAtMs) {}

    /** An input the processor refused to decide, kept whole (records.rs DeadLetter). */
    record DeadLetter(
            String reason,
            String detail,
            String sourceTopic,
            int sourcePartition,
            long sourceOffset,
            Long sourceTimestampMs,
            byte[] key,
            byte[] value) {}

    /** ids.rs OrderId::for_input: derived from the input's position, so a replay names the same order. */
    static String orderId(int partition, long offset) {
        return "o-" + partition + "-" + offset;
    }
}
