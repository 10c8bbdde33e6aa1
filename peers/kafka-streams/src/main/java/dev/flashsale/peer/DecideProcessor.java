package dev.flashsale.peer;

import dev.flashsale.peer.Contract.Refusal;
import dev.flashsale.peer.Decider.Sale;
import dev.flashsale.peer.Model.DeadLetter;
import dev.flashsale.peer.Model.Outcome;
import dev.flashsale.peer.Model.Request;
import dev.flashsale.peer.Model.SaleTerms;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.function.IntSupplier;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The peer's processor: one instance per task, i.e. per partition of the
 * requests topic, which the input's product keys make the single writer of
 * every product on it (like ours). Each input record yields exactly one
 * output: its outcome on the outcomes sink or its dead letter on the
 * dead-letter sink.
 *
 * <p>State: RocksDB stores with changelog topics (Kafka Streams' default
 * persistent stores, caching off so every change is logged as it is made):
 * {@code sales} (product to terms and units sold), {@code user-totals}
 * (product/user to units bought) and the dedupe memory ({@link DedupeMemory}).
 */
final class DecideProcessor implements Processor<byte[], byte[], byte[], byte[]> {
    private static final Logger LOG = LoggerFactory.getLogger(DecideProcessor.class);

    static final String SALES = "sales";
    static final String USER_TOTALS = "user-totals";
    static final String OUTCOMES_SINK = "outcomes";
    static final String DEAD_LETTER_SINK = "dead-letters";

    /** Every store the processor uses, for the topology. */
    static List<StoreBuilder<?>> stores() {
        return List.of(
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(SALES), Serdes.String(), Serdes.ByteArray()),
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(USER_TOTALS), Serdes.String(),
                        Serdes.Integer()),
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(DedupeMemory.DECIDED), Serdes.String(),
                        Serdes.ByteArray()),
                // Long keys serialise big-endian: RocksDB keeps them in decision order.
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(DedupeMemory.ORDER), Serdes.Long(),
                        Serdes.ByteArray()),
                Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(DedupeMemory.META), Serdes.String(),
                        Serdes.Long()));
    }

    private final Classifier classifier;
    private final Contract contract;
    private final String requestsTopic;
    private final IntSupplier partitionCount;
    private final long dedupeWindowMs;
    private final long dedupeEntriesMax;

    private ProcessorContext<byte[], byte[]> context;
    private StoreSales sales;
    private DedupeMemory dedupe;
    private int partitions;

    DecideProcessor(Contract contract, String requestsTopic, IntSupplier partitionCount, long dedupeWindowMs,
            long dedupeEntriesMax) {
        this.contract = contract;
        this.classifier = new Classifier(contract);
        this.requestsTopic = requestsTopic;
        this.partitionCount = partitionCount;
        this.dedupeWindowMs = dedupeWindowMs;
        this.dedupeEntriesMax = dedupeEntriesMax;
    }

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
        this.context = context;
        this.sales = new StoreSales(context.getStateStore(SALES), context.getStateStore(USER_TOTALS));
        this.dedupe = new DedupeMemory(context.getStateStore(DedupeMemory.DECIDED),
                context.getStateStore(DedupeMemory.ORDER), context.getStateStore(DedupeMemory.META),
                dedupeWindowMs, dedupeEntriesMax);
        // Read on every (re)assignment of the task, as ours refreshes it on
        // every assignment: the murmur2 ownership check depends on it.
        this.partitions = partitionCount.getAsInt();
        // Which instance decides which partition, and since when: the
        // restore benchmark finds a partition's active owner by this line.
        LOG.info("task {} active: deciding partition {} at_ms={}", context.taskId(), context.taskId().partition(),
                System.currentTimeMillis());
    }

    @Override
    public void close() {
        // The task moved away (or the instance stops): no longer the owner.
        LOG.info("task {} closed at_ms={}", context.taskId(), System.currentTimeMillis());
    }

    @Override
    public void process(Record<byte[], byte[]> record) {
        RecordMetadata at = context.recordMetadata()
                .orElseThrow(() -> new IllegalStateException("a source record without metadata"));
        Request request;
        try {
            request = classifier.classify(record.key(), record.value(), at.partition(), partitions);
        } catch (Refusal refusal) {
            deadLetter(record, at, refusal);
            return;
        } catch (IOException e) {
            // The registry stayed unavailable: stop rather than decide on a partial view.
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while asking the schema registry", e);
        }
        // A repeated request ID gets its original outcome, unchanged, and changes nothing.
        DedupeMemory.Remembered answer = dedupe.remembered(request.requestId());
        if (answer == null) {
            Outcome outcome = Decider.decide(sales, at.partition(), at.offset(), request);
            answer = new DedupeMemory.Remembered(outcome.productId(), Contract.outcomeBody(outcome));
            dedupe.remember(request.requestId(), outcome.decidedAtMs(), answer);
        }
        // Keyed by the outcome's product (ours: emitter.rs), which for a
        // remembered answer is the original's, not necessarily this record's.
        // Fresh headers: outcomes carry none, whatever the input had (as ours).
        byte[] key = answer.productId().getBytes(StandardCharsets.UTF_8);
        context.forward(new Record<>(key, contract.outcomeValue(answer.body()), record.timestamp(),
                new RecordHeaders()), OUTCOMES_SINK);
    }

    /** Sends a refused record to the dead-letter topic whole, its source in headers (emitter.rs). */
    private void deadLetter(Record<byte[], byte[]> record, RecordMetadata at, Refusal refusal) {
        LOG.warn("record dead-lettered: reason={} detail={} partition={} offset={}", refusal.reason.code,
                refusal.getMessage(), at.partition(), at.offset());
        DeadLetter letter = new DeadLetter(refusal.reason.code, refusal.getMessage(), requestsTopic,
                at.partition(), at.offset(), record.timestamp(), record.key(), record.value());
        Headers headers = new RecordHeaders()
                .add("flashsale.dlq.reason", utf8(letter.reason()))
                .add("flashsale.dlq.source.topic", utf8(letter.sourceTopic()))
                .add("flashsale.dlq.source.partition", utf8(Integer.toString(letter.sourcePartition())))
                .add("flashsale.dlq.source.offset", utf8(Long.toString(letter.sourceOffset())));
        // Ours keys the dead letter with the key read as (lossy) UTF-8, so a
        // key that is not UTF-8 goes out with replacement characters.
        byte[] key = record.key() == null ? null : utf8(new String(record.key(), StandardCharsets.UTF_8));
        context.forward(new Record<>(key, contract.deadLetterValue(letter), record.timestamp(), headers),
                DEAD_LETTER_SINK);
    }

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /** {@link Decider.Sales} on the task's stores. */
    private static final class StoreSales implements Decider.Sales {
        private final KeyValueStore<String, byte[]> sales;
        private final KeyValueStore<String, Integer> userTotals;

        StoreSales(KeyValueStore<String, byte[]> sales, KeyValueStore<String, Integer> userTotals) {
            this.sales = sales;
            this.userTotals = userTotals;
        }

        /** IDs cannot contain '/', so "product/user" names one pair. */
        private static String pair(String productId, String userId) {
            return productId + "/" + userId;
        }

        @Override
        public Sale sale(String productId) {
            byte[] bytes = sales.get(productId);
            return bytes == null ? null : decodeSale(bytes);
        }

        @Override
        public void putSale(String productId, Sale sale) {
            sales.put(productId, encodeSale(sale));
        }

        @Override
        public int userTotal(String productId, String userId) {
            Integer total = userTotals.get(pair(productId, userId));
            return total == null ? 0 : total;
        }

        @Override
        public void putUserTotal(String productId, String userId, int total) {
            userTotals.put(pair(productId, userId), total);
        }
    }

    // A sale's store value: stock, per_user_limit, sold, starts_at and
    // ends_at (a presence byte each), then the price's unscaled bytes.

    static byte[] encodeSale(Sale sale) {
        SaleTerms t = sale.terms();
        byte[] price = t.priceCents().toByteArray();
        ByteBuffer b = ByteBuffer.allocate(8 + 4 + 8 + 9 + 9 + price.length);
        b.putLong(t.stock()).putInt(t.perUserLimit()).putLong(sale.sold());
        putOptional(b, t.startsAtMs());
        putOptional(b, t.endsAtMs());
        return b.put(price).array();
    }

    static Sale decodeSale(byte[] bytes) {
        ByteBuffer b = ByteBuffer.wrap(bytes);
        long stock = b.getLong();
        int perUserLimit = b.getInt();
        long sold = b.getLong();
        Long startsAt = getOptional(b);
        Long endsAt = getOptional(b);
        byte[] price = new byte[b.remaining()];
        b.get(price);
        return new Sale(new SaleTerms(stock, perUserLimit, new BigInteger(price), startsAt, endsAt), sold);
    }

    private static void putOptional(ByteBuffer b, Long v) {
        b.put((byte) (v == null ? 0 : 1)).putLong(v == null ? 0 : v);
    }

    private static Long getOptional(ByteBuffer b) {
        boolean present = b.get() != 0;
        long v = b.getLong();
        return present ? v : null;
    }
}
