package dev.flashsale.peer;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The peer's settings: flags or environment variables (flags win), like our
 * services (runtime/src/config.rs). The FLASHSALE_* names our services use
 * mean the same here; the peer's own are FLASHSALE_PEER_*.
 */
record PeerConfig(
        String brokers,
        String registryUrl,
        String requestsTopic,
        String outcomesTopic,
        String deadLetterTopic,
        long dedupeWindowMs,
        long dedupeEntriesMax,
        String applicationId,
        String stateDir,
        String guarantee,
        int standbyReplicas,
        int threads,
        int sessionTimeoutMs,
        String offsetReset) {

    static final String EXACTLY_ONCE_V2 = "exactly_once_v2";
    static final String AT_LEAST_ONCE = "at_least_once";
    static final String EARLIEST = "earliest";
    static final String LATEST = "latest";

    /** One setting: its flag, its variable, its default and what it is. */
    private record Setting(String flag, String env, String fallback, String doc) {}

    private static final List<Setting> SETTINGS = List.of(
            new Setting("brokers", "FLASHSALE_BROKERS", "127.0.0.1:19092",
                    "Bootstrap brokers, comma-separated host:port."),
            new Setting("schema-registry-url", "FLASHSALE_SCHEMA_REGISTRY_URL",
                    "http://127.0.0.1:18081/apis/ccompat/v7",
                    "Base URL of a Confluent-compatible schema registry API."),
            new Setting("requests-topic", "FLASHSALE_REQUESTS_TOPIC", "flashsale.requests",
                    "Input: purchase requests and sale commands, keyed by product ID."),
            new Setting("outcomes-topic", "FLASHSALE_OUTCOMES_TOPIC", "flashsale.outcomes",
                    "Output: one outcome per decided input record."),
            new Setting("dead-letter-topic", "FLASHSALE_DEAD_LETTER_TOPIC", "flashsale.dead-letter",
                    "Output: refused input records, with reason headers."),
            new Setting("dedupe-window-ms", "FLASHSALE_DEDUPE_WINDOW_MS", "86400000",
                    "Forget a request ID this long after it was decided, by record time. Same as ours."),
            new Setting("dedupe-entries-max", "FLASHSALE_DEDUPE_ENTRIES_MAX", "2000000",
                    "Most remembered request IDs per partition. Same as ours."),
            new Setting("application-id", "FLASHSALE_PEER_APPLICATION_ID", "flashsale-peer-kafka-streams",
                    "Kafka Streams application.id: the consumer group and the changelog topics' prefix."),
            new Setting("state-dir", "FLASHSALE_PEER_STATE_DIR", ".dev/peer-state",
                    "Where the RocksDB stores live (dev/peer sets <repo>/.dev/peer-state)."),
            new Setting("guarantee", "FLASHSALE_PEER_GUARANTEE", EXACTLY_ONCE_V2,
                    "processing.guarantee: exactly_once_v2 or at_least_once."),
            new Setting("standby-replicas", "FLASHSALE_PEER_STANDBY_REPLICAS", "0",
                    "num.standby.replicas: warm copies of each task's stores on other instances."),
            new Setting("threads", "FLASHSALE_PEER_THREADS", "1",
                    "num.stream.threads of this instance."),
            // Ours' consumer value (runtime/src/kafka.rs group_consumer_config),
            // not the client's 45 s: a killed instance then costs both the same
            // failure detection before its partitions move.
            new Setting("session-timeout-ms", "FLASHSALE_PEER_SESSION_TIMEOUT_MS", "10000",
                    "Consumer session.timeout.ms (heartbeat: a tenth of it): a silent member loses its tasks after this long. Same as ours."),
            // earliest: a new application decides the whole topic, as ours'
            // new group does. latest: it starts at the end of a topic with
            // history it must not decide again (dev/bench-kstreams).
            new Setting("auto-offset-reset", "FLASHSALE_PEER_AUTO_OFFSET_RESET", EARLIEST,
                    "Where a partition without a committed offset starts: earliest or latest."));

    /** Thrown for bad flags or values; the message is for the operator. */
    static final class UsageException extends Exception {
        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    static String usage() {
        StringBuilder s = new StringBuilder("usage: flashsale-peer [--FLAG VALUE]...\n\n"
                + "The flashsale purchase decisions on Kafka Streams. Flags win over the environment.\n\n");
        for (Setting setting : SETTINGS) {
            s.append(String.format("  --%-22s %s%n  %-24s %s (default: %s)%n", setting.flag, setting.env, "",
                    setting.doc, setting.fallback));
        }
        return s.toString();
    }

    static PeerConfig parse(String[] args, Map<String, String> env) throws UsageException {
        Map<String, String> values = new LinkedHashMap<>();
        for (Setting s : SETTINGS) {
            values.put(s.flag, env.getOrDefault(s.env, s.fallback));
        }
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (!arg.startsWith("--")) {
                throw new UsageException("unexpected argument " + arg);
            }
            String flag = arg.substring(2);
            String value;
            int eq = flag.indexOf('=');
            if (eq >= 0) {
                value = flag.substring(eq + 1);
                flag = flag.substring(0, eq);
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                throw new UsageException("--" + flag + " needs a value");
            }
            if (!values.containsKey(flag)) {
                throw new UsageException("unknown flag --" + flag);
            }
            values.put(flag, value);
        }
        String guarantee = values.get("guarantee");
        if (!guarantee.equals(EXACTLY_ONCE_V2) && !guarantee.equals(AT_LEAST_ONCE)) {
            throw new UsageException("--guarantee must be " + EXACTLY_ONCE_V2 + " or " + AT_LEAST_ONCE
                    + ", not " + guarantee);
        }
        String offsetReset = values.get("auto-offset-reset");
        if (!offsetReset.equals(EARLIEST) && !offsetReset.equals(LATEST)) {
            throw new UsageException("--auto-offset-reset must be " + EARLIEST + " or " + LATEST + ", not "
                    + offsetReset);
        }
        return new PeerConfig(values.get("brokers"), values.get("schema-registry-url"),
                values.get("requests-topic"), values.get("outcomes-topic"), values.get("dead-letter-topic"),
                number(values, "dedupe-window-ms"), number(values, "dedupe-entries-max"),
                values.get("application-id"), values.get("state-dir"), guarantee,
                (int) number(values, "standby-replicas"), (int) number(values, "threads"),
                (int) number(values, "session-timeout-ms"), offsetReset);
    }

    private static long number(Map<String, String> values, String flag) throws UsageException {
        try {
            return Long.parseLong(values.get(flag));
        } catch (NumberFormatException e) {
            throw new UsageException("--" + flag + " must be a number, not " + values.get(flag));
        }
    }
}
