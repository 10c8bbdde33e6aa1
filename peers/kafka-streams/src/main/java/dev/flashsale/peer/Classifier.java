package dev.flashsale.peer;

import dev.flashsale.peer.Contract.Refusal;
import dev.flashsale.peer.Model.DeadLetterReason;
import dev.flashsale.peer.Model.Request;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

/**
 * Turns a raw input record into a request to decide, or a refusal: a port
 * of processors/src/classify.rs, checks in the same order (so a record with
 * several faults is refused for the same one): the key (present, UTF-8, a
 * valid product ID, on its murmur2 partition), the value (present, framed,
 * known schema, decodable, valid IDs), key against product_id, then the
 * content rules.
 */
final class Classifier {
    private final Contract contract;

    Classifier(Contract contract) {
        this.contract = contract;
    }

    /**
     * The request in {@code value}, or a {@link Refusal}. Deterministic for a
     * given record and registry content; throws IOException only when the
     * registry stayed unavailable (never dead-letter a good record for that).
     */
    Request classify(byte[] key, byte[] value, int partition, int partitionCount)
            throws Refusal, IOException, InterruptedException {
        String product = checkKey(key, partition, partitionCount);
        if (value == null) {
            throw new Refusal(DeadLetterReason.UNDECODABLE, "record has no value");
        }
        Request request = contract.decodeRequest(value);
        if (!request.productId().equals(product)) {
            throw new Refusal(DeadLetterReason.KEY_MISMATCH,
                    "key " + product + " but product_id " + request.productId());
        }
        String invalidity = request.invalidity();
        if (invalidity != null) {
            throw new Refusal(DeadLetterReason.INVALID_CONTENT, invalidity);
        }
        return request;
    }

    /** classify.rs check_key: the product the key names, owned by this partition. */
    static String checkKey(byte[] key, int partition, int partitionCount) throws Refusal {
        if (key == null) {
            throw new Refusal(DeadLetterReason.KEY_MISMATCH, "record has no key");
        }
        try {
            StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(key));
        } catch (CharacterCodingException e) {
            throw new Refusal(DeadLetterReason.KEY_MISMATCH, "key is not UTF-8");
        }
        String error = Model.idError("product_id", key);
        if (error != null) {
            throw new Refusal(DeadLetterReason.KEY_MISMATCH, "key: " + error);
        }
        String text = new String(key, StandardCharsets.US_ASCII);
        // Kafka's default partitioner for keyed records: what every producer
        // of the requests topic must use (schemas/src/partition.rs).
        int owner = Utils.toPositive(Utils.murmur2(key)) % partitionCount;
        if (owner != partition) {
            throw new Refusal(DeadLetterReason.WRONG_PARTITION, "key " + text + " belongs to partition " + owner
                    + " of " + partitionCount + " under murmur2, arrived on " + partition);
        }
        return text;
    }
}
