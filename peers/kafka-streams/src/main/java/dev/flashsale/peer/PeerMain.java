package dev.flashsale.peer;

import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.IntSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.streams.AutoOffsetReset;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.processor.TimestampExtractor;
import org.apache.kafka.streams.state.StoreBuilder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code flashsale-peer}: our processor's decisions as a Kafka Streams
 * application. Reads the requests topic, writes one outcome (or one dead
 * letter) per record to our outcomes (dead-letter) topic in our Avro format,
 * with state in RocksDB stores backed by changelog topics. Stops cleanly on
 * SIGTERM / SIGINT (the streams are closed, committing what was processed).
 */
public final class PeerMain {
    private PeerMain() {}

    public static void main(String[] args) throws Exception {
        limitAvroAllocations();
        quietKafkaLogs();
        Logger log = LoggerFactory.getLogger(PeerMain.class);
        if (List.of(args).contains("--help") || List.of(args).contains("-h")) {
            System.out.print(PeerConfig.usage());
            return;
        }
        PeerConfig cfg;
        try {
            cfg = PeerConfig.parse(args, System.getenv());
        } catch (PeerConfig.UsageException e) {
            System.err.println("flashsale-peer: " + e.getMessage() + "\n\n" + PeerConfig.usage());
            System.exit(2);
            return;
        }

        Registry registry = new Registry(cfg.registryUrl());
        int outcomeId = registerWithRetry(registry, cfg.outcomesTopic() + "-value", Contract.OUTCOME_TEXT, log);
        int deadLetterId = registerWithRetry(registry, cfg.deadLetterTopic() + "-value", Contract.DEAD_LETTER_TEXT,
                log);
        Contract contract = new Contract(registry, outcomeId, deadLetterId);

        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, cfg.brokers());
        try (Admin admin = Admin.create(adminProps)) {
            // The murmur2 ownership check needs the requests topic's partition count.
            String topic = cfg.requestsTopic();
            IntSupplier partitionCount = () -> {
                try {
                    return admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS)
                            .get(topic).partitions().size();
                } catch (Exception e) {
                    throw new IllegalStateException("cannot read the partition count of " + topic, e);
                }
            };
            log.info("requests topic {} has {} partitions; outcome schema id {}, dead-letter schema id {}", topic,
                    partitionCount.getAsInt(), outcomeId, deadLetterId);
            run(cfg, topology(cfg, contract, partitionCount), log);
        }
    }

    /** requests → decide (with its stores) → outcomes | dead letters. */
    static Topology topology(PeerConfig cfg, Contract contract, IntSupplier partitionCount) {
        Topology t = new Topology();
        // Earliest by default (Kafka Streams' default, stated): a new
        // application decides every input. Set on the source, where it wins
        // over any consumer setting.
        AutoOffsetReset reset = cfg.offsetReset().equals(PeerConfig.LATEST) ? AutoOffsetReset.latest()
                : AutoOffsetReset.earliest();
        t.addSource(reset, "requests", new RecordTime(), new ByteArrayDeserializer(),
                new ByteArrayDeserializer(), cfg.requestsTopic());
        t.addProcessor("decide", () -> new DecideProcessor(contract, cfg.requestsTopic(), partitionCount,
                cfg.dedupeWindowMs(), cfg.dedupeEntriesMax()), "requests");
        for (StoreBuilder<?> store : DecideProcessor.stores()) {
            t.addStateStore(store, "decide");
        }
        // No StreamPartitioner: the producer's default murmur2 of the key
        // bytes, the same partition our librdkafka producer (murmur2_random) picks.
        t.addSink(DecideProcessor.OUTCOMES_SINK, cfg.outcomesTopic(), new ByteArraySerializer(),
                new ByteArraySerializer(), "decide");
        t.addSink(DecideProcessor.DEAD_LETTER_SINK, cfg.deadLetterTopic(), new ByteArraySerializer(),
                new ByteArraySerializer(), "decide");
        return t;
    }

    static Properties streamsProperties(PeerConfig cfg) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, cfg.applicationId());
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, cfg.brokers());
        p.put(StreamsConfig.STATE_DIR_CONFIG, cfg.stateDir());
        // Default exactly_once_v2: state, outputs and input offsets commit in
        // one transaction, the peer's counterpart of our "exactly-once effect"
        // (ours gets it from deterministic re-decision instead).
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, cfg.guarantee());
        p.put(StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG, cfg.standbyReplicas());
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, cfg.threads());
        // Read only committed records under at_least_once too (exactly_once_v2
        // sets this itself): decisions must be a function of the committed
        // log, as ours (runtime/src/kafka.rs group_consumer_config).
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.ISOLATION_LEVEL_CONFIG), "read_committed");
        // Failure detection as ours (10 s session, a heartbeat a tenth of it:
        // 1 s): a killed instance's tasks move after the same delay, and a
        // survivor hears of the rebalance as soon as ours would.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), cfg.sessionTimeoutMs());
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG),
                Math.max(1, cfg.sessionTimeoutMs() / 10));
        return p;
    }

    private static void run(PeerConfig cfg, Topology topology, Logger log) throws InterruptedException {
        KafkaStreams streams = new KafkaStreams(topology, streamsProperties(cfg));
        CountDownLatch stopped = new CountDownLatch(1);
        AtomicBoolean failed = new AtomicBoolean(false);
        AtomicBoolean signalled = new AtomicBoolean(false);
        streams.setStateListener((now, before) -> {
            log.info("streams {} -> {}", before, now);
            if (now == KafkaStreams.State.ERROR) {
                failed.set(true);
            }
            if (now == KafkaStreams.State.NOT_RUNNING || now == KafkaStreams.State.ERROR) {
                stopped.countDown();
            }
        });
        // Restores and standby updates in the log: how long a task takes to
        // come back, for the restore benchmark (flashsale-restore-bench).
        RestoreLog restoreLog = new RestoreLog();
        streams.setGlobalStateRestoreListener(restoreLog);
        streams.setStandbyUpdateListener(restoreLog);
        // A thread that dies (registry down past the retry bound, a broken
        // invariant) stops the whole client: never go on with a partition
        // half-decided by a replacement thread that hit the same fault.
        streams.setUncaughtExceptionHandler(e -> {
            log.error("stream thread failed; stopping", e);
            failed.set(true);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            signalled.set(true);
            log.info("shutdown requested; closing the streams");
            // Leave the group: its partitions move to another instance at once,
            // not after the session timeout (ours' consumer leaves on close too).
            boolean closed = streams.close(CloseOptions.timeout(Duration.ofSeconds(30))
                    .withGroupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP));
            log.info(closed ? "peer stopped" : "peer did not stop within 30 s");
            // Left alone, the JVM exits 143 (128 + SIGTERM) after its hooks;
            // a requested stop that closed cleanly is a success (ours exits 0).
            Runtime.getRuntime().halt(closed && !failed.get() ? 0 : 1);
        }, "shutdown"));
        log.info("starting: application.id={} guarantee={} standby.replicas={} auto.offset.reset={} {} -> {} / {}",
                cfg.applicationId(), cfg.guarantee(), cfg.standbyReplicas(), cfg.offsetReset(), cfg.requestsTopic(),
                cfg.outcomesTopic(), cfg.deadLetterTopic());
        streams.start();
        stopped.await();
        if (!signalled.get()) {
            // Stopped by a failure, not a signal (exit() during shutdown hooks would block).
            streams.close(Duration.ofSeconds(30));
            System.exit(failed.get() ? 1 : 0);
        }
    }

    /** The schema IDs at start, while the registry may still be coming up: 30 tries 1 s apart, like ours. */
    private static int registerWithRetry(Registry registry, String subject, String schema, Logger log)
            throws InterruptedException {
        for (int attempt = 1; ; attempt++) {
            try {
                return registry.idOf(subject, schema);
            } catch (IOException e) {
                if (attempt >= 30) {
                    throw new IllegalStateException("schema registration of " + subject + " failed", e);
                }
                log.warn("schema registration of {} failed ({}); retrying", subject, e.getMessage());
                Thread.sleep(1_000);
            }
        }
    }

    /**
     * Each record's own timestamp (the default extractor's), so a dead letter
     * carries it as ours does. A negative one, which no v2-format log holds
     * (the only format Kafka 4 writes), becomes 0 rather than dropping the
     * record: every input must get exactly one output.
     */
    static final class RecordTime implements TimestampExtractor {
        @Override
        public long extract(ConsumerRecord<Object, Object> record, long partitionTime) {
            return Math.max(record.timestamp(), 0);
        }
    }

    /**
     * Avro allocates a string's or bytes' declared length before reading it,
     * so a garbage length in a bad record could ask for gigabytes. No field
     * of a Kafka record can be longer than the record itself (1 MB by default
     * on the broker); 16 MiB bounds it with room to spare. Set before any
     * Avro class reads the properties.
     */
    private static void limitAvroAllocations() {
        String max = Integer.toString(16 << 20);
        for (String p : List.of("org.apache.avro.limits.string.maxLength", "org.apache.avro.limits.bytes.maxLength",
                "org.apache.avro.limits.collectionItems.maxLength")) {
            if (System.getProperty(p) == null) {
                System.setProperty(p, max);
            }
        }
    }

    /** Kafka's INFO logs are many screens per start: warnings only, unless -D says otherwise. */
    private static void quietKafkaLogs() {
        Map<String, String> defaults = Map.of(
                "org.slf4j.simpleLogger.log.org.apache.kafka", "warn",
                "org.slf4j.simpleLogger.showDateTime", "true",
                "org.slf4j.simpleLogger.dateTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSXXX");
        defaults.forEach((k, v) -> {
            if (System.getProperty(k) == null) {
                System.setProperty(k, v);
            }
        });
    }
}
