package dev.flashsale.peer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * One partition's memory of decided request IDs, so a repeat gets its
 * original answer: decide.rs PartitionState::decided, decided_order and
 * remember(), on three RocksDB stores of the partition's task.
 *
 * <ul>
 *   <li>{@code decided}: request ID to its outcome's product and Avro body.
 *       A repeat of the same ID on the same partition gets exactly that
 *       outcome (same order ID, same offset, same product, even when the
 *       repeat names another product), keyed by that product, as ours.</li>
 *   <li>{@code decided-order}: a sequence number (decision order) to the
 *       decision time and request ID, for eviction in the same order as ours.</li>
 *   <li>{@code dedupe-meta}: the partition's clock (newest decision time) and
 *       the first and next sequence numbers.</li>
 * </ul>
 *
 * Eviction is driven only by record times and counts, as ours, so both
 * forget the same IDs at the same input: the limits are part of the
 * deterministic configuration (FLASHSALE_DEDUPE_WINDOW_MS, _ENTRIES_MAX).
 */
final class DedupeMemory {
    static final String DECIDED = "decided";
    static final String ORDER = "decided-order";
    static final String META = "dedupe-meta";

    private static final String CLOCK = "clock_ms";
    private static final String HEAD = "head";
    private static final String TAIL = "tail";

    private final KeyValueStore<String, byte[]> decided;
    private final KeyValueStore<Long, byte[]> order;
    private final KeyValueStore<String, Long> meta;
    private final long windowMs;
    private final long entriesMax;

    /** The partition's clock: 0 for a new partition, as ours (PartitionState::default). */
    private long clockMs;
    /** Sequence number of the oldest remembered decision. */
    private long head;
    /** Sequence number the next decision gets. */
    private long tail;

    DedupeMemory(KeyValueStore<String, byte[]> decided, KeyValueStore<Long, byte[]> order,
            KeyValueStore<String, Long> meta, long windowMs, long entriesMax) {
        this.decided = decided;
        this.order = order;
        this.meta = meta;
        this.windowMs = windowMs;
        this.entriesMax = entriesMax;
        // The stores are restored before the task starts; a task is the only
        // writer of its partition's stores, so the counters can live here.
        this.clockMs = orZero(meta.get(CLOCK));
        this.head = orZero(meta.get(HEAD));
        this.tail = orZero(meta.get(TAIL));
    }

    private static long orZero(Long v) {
        return v == null ? 0 : v;
    }

    /** A remembered outcome: its product (the record key) and its Avro body. */
    record Remembered(String productId, byte[] body) {}

    /** The outcome decided for this request ID, or null when none is remembered. */
    Remembered remembered(String requestId) {
        byte[] bytes = decided.get(requestId);
        if (bytes == null) {
            return null;
        }
        ByteBuffer b = ByteBuffer.wrap(bytes);
        byte[] product = new byte[b.get()]; // IDs are at most 64 bytes
        b.get(product);
        byte[] body = new byte[b.remaining()];
        b.get(body);
        return new Remembered(new String(product, StandardCharsets.US_ASCII), body);
    }

    /** Records a new decision, then forgets what the limits say to forget, oldest first. */
    void remember(String requestId, long decidedAtMs, Remembered outcome) {
        clockMs = Math.max(clockMs, decidedAtMs);
        byte[] product = outcome.productId().getBytes(StandardCharsets.US_ASCII);
        decided.put(requestId, ByteBuffer.allocate(1 + product.length + outcome.body().length)
                .put((byte) product.length).put(product).put(outcome.body()).array());
        order.put(tail, entry(decidedAtMs, requestId));
        tail++;
        long horizonMs = saturatingSub(clockMs, windowMs);
        while (head < tail) {
            ByteBuffer oldest = ByteBuffer.wrap(order.get(head));
            long timeMs = oldest.getLong();
            boolean tooMany = tail - head > entriesMax;
            if (!tooMany && timeMs >= horizonMs) {
                break;
            }
            byte[] id = new byte[oldest.remaining()];
            oldest.get(id);
            decided.delete(new String(id, StandardCharsets.UTF_8));
            order.delete(head);
            head++;
        }
        meta.put(CLOCK, clockMs);
        meta.put(HEAD, head);
        meta.put(TAIL, tail);
    }

    private static byte[] entry(long timeMs, String requestId) {
        byte[] id = requestId.getBytes(StandardCharsets.UTF_8);
        return ByteBuffer.allocate(Long.BYTES + id.length).putLong(timeMs).put(id).array();
    }

    /** Rust's i64::saturating_sub. */
    static long saturatingSub(long a, long b) {
        long r = a - b;
        // Overflow iff the operands have different signs and the result's sign differs from a's.
        if (((a ^ b) & (a ^ r)) < 0) {
            return b > 0 ? Long.MIN_VALUE : Long.MAX_VALUE;
        }
        return r;
    }
}
