package dev.flashsale.peer;

import dev.flashsale.peer.Model.ConfigureSale;
import dev.flashsale.peer.Model.DeadLetter;
import dev.flashsale.peer.Model.DeadLetterReason;
import dev.flashsale.peer.Model.Outcome;
import dev.flashsale.peer.Model.Purchase;
import dev.flashsale.peer.Model.Request;
import dev.flashsale.peer.Model.SaleTerms;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.util.Utf8;

/**
 * Our Avro contract: the schemas of schemas/avro/ (packaged into the jar
 * from there, the one source of truth), the Confluent wire format (magic
 * byte 0, big-endian 4-byte schema ID, Avro binary body), request decoding
 * and outcome / dead-letter encoding. A port of schemas/src/avro.rs,
 * wire.rs and registry.rs.
 *
 * <p>Decoding resolves the writer's schema (found by the ID in the header)
 * against ours with Avro's own resolution ({@code GenericDatumReader(writer,
 * reader)}): fields by name, defaults for absent optional fields, unknown
 * fields skipped, int promoted to long. The top-level union branch is chosen
 * by the writer branch's full name, as ours does, so a writer may reorder or
 * extend the union, or write a bare PurchaseRequest record.
 */
final class Contract {
    static final String PURCHASE_NAME = "flashsale.v1.PurchaseRequest";
    static final String CONFIGURE_NAME = "flashsale.v1.ConfigureSale";
    static final byte MAGIC = 0;
    static final int HEADER_LEN = 5;
    /** Largest decimal mantissa our Rust Decimal holds: 2^96 - 1. */
    private static final int MANTISSA_BITS_MAX = 96;

    /** The compiled-in schema texts, exactly as the files hold them (what ours registers). */
    static final String REQUEST_TEXT = resource("request.avsc");
    static final String OUTCOME_TEXT = resource("outcome.avsc");
    static final String DEAD_LETTER_TEXT = resource("dead_letter.avsc");

    private static final Schema REQUEST = new Schema.Parser().parse(REQUEST_TEXT);
    private static final Schema OUTCOME = new Schema.Parser().parse(OUTCOME_TEXT);
    private static final Schema DEAD_LETTER = new Schema.Parser().parse(DEAD_LETTER_TEXT);
    private static final Schema PURCHASE = branch(REQUEST, PURCHASE_NAME);
    private static final Schema CONFIGURE = branch(REQUEST, CONFIGURE_NAME);
    private static final Schema REASON = optional(OUTCOME, "reason");
    private static final Schema SALE_TERMS = optional(OUTCOME, "sale");

    /** A record refused, with the reason and detail its dead letter carries. */
    static final class Refusal extends Exception {
        private static final long serialVersionUID = 1L;
        final DeadLetterReason reason;

        Refusal(DeadLetterReason reason, String detail) {
            super(detail, null, false, false);
            this.reason = reason;
        }
    }

    private final Registry registry;
    private final int outcomeId;
    private final int deadLetterId;
    /** Readers by (writer schema ID, union branch): building one resolves the two schemas. */
    private final Map<String, GenericDatumReader<GenericRecord>> readers = new ConcurrentHashMap<>();

    Contract(Registry registry, int outcomeId, int deadLetterId) {
        this.registry = registry;
        this.outcomeId = outcomeId;
        this.deadLetterId = deadLetterId;
    }

    private static String resource(String name) {
        try (InputStream in = Contract.class.getResourceAsStream("/avro/" + name)) {
            if (in == null) {
                throw new IllegalStateException("avro/" + name + " is missing from the jar");
            }
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static Schema branch(Schema union, String fullName) {
        return union.getTypes().stream().filter(s -> s.getFullName().equals(fullName)).findFirst().orElseThrow();
    }

    /** The non-null branch of an optional field. */
    private static Schema optional(Schema record, String field) {
        return record.getField(field).schema().getTypes().get(1);
    }

    // ------------------------------------------------------------- framing

    static byte[] frame(int schemaId, byte[] body) {
        return ByteBuffer.allocate(HEADER_LEN + body.length).put(MAGIC).putInt(schemaId).put(body).array();
    }

    // ------------------------------------------------------------ decoding

    /**
     * Decodes a framed request value, or says why it cannot be decided.
     * Throws IOException only when the registry stayed unavailable.
     */
    Request decodeRequest(byte[] value) throws Refusal, IOException, InterruptedException {
        if (value.length < HEADER_LEN) {
            throw new Refusal(DeadLetterReason.UNDECODABLE,
                    "value is " + value.length + " bytes, shorter than the 5-byte Confluent header");
        }
        if (value[0] != MAGIC) {
            throw new Refusal(DeadLetterReason.UNDECODABLE,
                    String.format("value starts with byte %#04x, not the Confluent magic byte 0x00", value[0]));
        }
        long id = Integer.toUnsignedLong(ByteBuffer.wrap(value, 1, 4).getInt());
        Schema writer;
        try {
            writer = registry.writerSchema(id);
        } catch (Registry.UnknownSchemaException e) {
            throw new Refusal(DeadLetterReason.UNKNOWN_SCHEMA, e.getMessage());
        }
        BinaryDecoder in = DecoderFactory.get().binaryDecoder(value, HEADER_LEN, value.length - HEADER_LEN, null);
        GenericRecord record;
        String name;
        try {
            Schema branch = writer;
            int index = -1;
            if (writer.getType() == Schema.Type.UNION) {
                index = in.readIndex();
                if (index < 0 || index >= writer.getTypes().size()) {
                    throw new Refusal(DeadLetterReason.UNDECODABLE, "avro: union index " + index + " out of range");
                }
                branch = writer.getTypes().get(index);
            }
            name = branch.getType() == Schema.Type.RECORD ? branch.getFullName() : "<unnamed>";
            Schema reader = switch (name) {
                case PURCHASE_NAME -> PURCHASE;
                case CONFIGURE_NAME -> CONFIGURE;
                default -> throw new Refusal(DeadLetterReason.UNDECODABLE, "unknown record type " + name);
            };
            Schema writerBranch = branch;
            GenericDatumReader<GenericRecord> datumReader = readers.computeIfAbsent(id + "/" + index,
                    k -> new GenericDatumReader<>(writerBranch, reader));
            record = datumReader.read(null, in);
            if (!in.isEnd()) {
                throw new Refusal(DeadLetterReason.UNDECODABLE, "avro: trailing bytes after the record");
            }
        } catch (IOException | RuntimeException e) {
            // Truncated or malformed bodies, and writer fields that do not
            // resolve against ours (Avro reports both as exceptions).
            throw new Refusal(DeadLetterReason.UNDECODABLE, "avro: " + e);
        }
        return name.equals(PURCHASE_NAME) ? purchase(record) : configure(record);
    }

    /** A string field: strict UTF-8 (ours refuses invalid UTF-8 while reading the body). */
    private static byte[] utf8(GenericRecord r, String field) throws Refusal {
        Utf8 s = (Utf8) r.get(field);
        byte[] bytes = Arrays.copyOf(s.getBytes(), s.getByteLength());
        try {
            StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes));
        } catch (CharacterCodingException e) {
            throw new Refusal(DeadLetterReason.UNDECODABLE, "avro: field " + field + " is not valid UTF-8");
        }
        return bytes;
    }

    /** An identifier field: invalid ones make the record invalid_content (ours: ContractError::BadId). */
    private static String id(String kind, byte[] utf8) throws Refusal {
        String error = Model.idError(kind, utf8);
        if (error != null) {
            throw new Refusal(DeadLetterReason.INVALID_CONTENT, error);
        }
        return new String(utf8, StandardCharsets.US_ASCII);
    }

    private static Purchase purchase(GenericRecord r) throws Refusal {
        // Every string is checked before any ID, then IDs in field order: the
        // same first error as ours, which reads the whole body first.
        byte[] requestId = utf8(r, "request_id");
        byte[] userId = utf8(r, "user_id");
        byte[] productId = utf8(r, "product_id");
        return new Purchase(id("request_id", requestId), id("user_id", userId), id("product_id", productId),
                (Integer) r.get("quantity"), (Long) r.get("received_at"));
    }

    private static ConfigureSale configure(GenericRecord r) throws Refusal {
        byte[] commandId = utf8(r, "command_id");
        byte[] productId = utf8(r, "product_id");
        String command = id("request_id", commandId);
        String product = id("product_id", productId);
        SaleTerms terms = new SaleTerms((Long) r.get("stock"), (Integer) r.get("per_user_limit"),
                cents((ByteBuffer) r.get("price")), (Long) r.get("starts_at"), (Long) r.get("ends_at"));
        return new ConfigureSale(command, product, terms, (Long) r.get("issued_at"));
    }

    /**
     * Decimal bytes (big-endian two's complement, scale 2) as cents, with
     * ours' limits: 1 to 16 bytes, and a mantissa our Decimal can hold.
     */
    private static BigInteger cents(ByteBuffer buffer) throws Refusal {
        byte[] bytes = new byte[buffer.remaining()];
        buffer.duplicate().get(bytes);
        if (bytes.length == 0 || bytes.length > 16) {
            throw new Refusal(DeadLetterReason.UNDECODABLE,
                    "field price has unexpected type: decimal of " + bytes.length + " bytes");
        }
        BigInteger cents = new BigInteger(bytes);
        if (cents.abs().bitLength() > MANTISSA_BITS_MAX) {
            throw new Refusal(DeadLetterReason.UNDECODABLE, "field price has unexpected type: mantissa too large");
        }
        return cents;
    }

    // ------------------------------------------------------------ encoding

    /** The Avro body of an outcome (unframed: what the dedupe memory keeps). */
    static byte[] outcomeBody(Outcome o) {
        GenericData.Record r = new GenericData.Record(OUTCOME);
        r.put("request_id", o.requestId());
        r.put("product_id", o.productId());
        r.put("kind", new GenericData.EnumSymbol(OUTCOME.getField("kind").schema(), o.kind().name()));
        r.put("status", new GenericData.EnumSymbol(OUTCOME.getField("status").schema(), o.status().name()));
        r.put("reason", o.reason() == null ? null : new GenericData.EnumSymbol(REASON, o.reason().name()));
        r.put("user_id", o.userId());
        r.put("quantity", o.quantity());
        r.put("order_id", o.orderId());
        r.put("unit_price", o.unitPriceCents() == null ? null : decimal(o.unitPriceCents()));
        r.put("remaining", o.remaining());
        r.put("stock", o.stock());
        r.put("user_total", o.userTotal());
        r.put("sale", o.sale() == null ? null : terms(o.sale()));
        r.put("source_partition", o.sourcePartition());
        r.put("source_offset", o.sourceOffset());
        r.put("decided_at", o.decidedAtMs());
        return write(OUTCOME, r);
    }

    private static GenericData.Record terms(SaleTerms t) {
        GenericData.Record r = new GenericData.Record(SALE_TERMS);
        r.put("stock", t.stock());
        r.put("per_user_limit", t.perUserLimit());
        r.put("price", decimal(t.priceCents()));
        r.put("starts_at", t.startsAtMs());
        r.put("ends_at", t.endsAtMs());
        return r;
    }

    /** Minimal big-endian two's complement, as ours writes it (avro.rs decimal_value). */
    private static ByteBuffer decimal(BigInteger cents) {
        return ByteBuffer.wrap(cents.toByteArray());
    }

    /** A framed outcome for the outcomes topic, from its body. */
    byte[] outcomeValue(byte[] body) {
        return frame(outcomeId, body);
    }

    /** A framed dead letter for the dead-letter topic. */
    byte[] deadLetterValue(DeadLetter d) {
        GenericData.Record r = new GenericData.Record(DEAD_LETTER);
        r.put("reason", d.reason());
        r.put("detail", d.detail());
        r.put("source_topic", d.sourceTopic());
        r.put("source_partition", d.sourcePartition());
        r.put("source_offset", d.sourceOffset());
        r.put("source_timestamp", d.sourceTimestampMs());
        r.put("key", d.key() == null ? null : ByteBuffer.wrap(d.key()));
        r.put("value", d.value() == null ? null : ByteBuffer.wrap(d.value()));
        return frame(deadLetterId, write(DEAD_LETTER, r));
    }

    private static byte[] write(Schema schema, GenericRecord record) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(256);
        BinaryEncoder encoder = EncoderFactory.get().binaryEncoder(out, null);
        try {
            new GenericDatumWriter<GenericRecord>(schema).write(record, encoder);
            encoder.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }
}
