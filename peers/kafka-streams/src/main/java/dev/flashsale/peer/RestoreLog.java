package dev.flashsale.peer;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.streams.processor.StandbyUpdateListener;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.processor.TaskId;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Logs how each store comes back: an active task's restore from its
 * changelog (start, end, records, elapsed time) and a standby's progress
 * along it. Kafka Streams' own logs say neither at our WARN level, and the
 * restore benchmark (flashsale-restore-bench) reads these lines: keep their
 * {@code key=value} shape. {@code at_ms} is the wall clock, so lines of
 * different instances compare.
 */
final class RestoreLog implements StateRestoreListener, StandbyUpdateListener {
    private static final Logger LOG = LoggerFactory.getLogger(RestoreLog.class);
    /** Standby progress is logged at most this often per store, not per batch (thousands a second). */
    private static final long STANDBY_EVERY_MS = 1_000;

    /** When each (changelog partition, store) restore began, by the wall clock. */
    private final Map<String, Long> restoreStartedMs = new ConcurrentHashMap<>();
    /** Each standby store's newest position, until the next progress line prints it. */
    private final Map<String, String> standbyPending = new ConcurrentHashMap<>();

    RestoreLog() {
        // Daemon: never what keeps the JVM alive after the streams closed.
        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "restore-log");
            t.setDaemon(true);
            return t;
        });
        timer.scheduleAtFixedRate(this::printStandbyProgress, STANDBY_EVERY_MS, STANDBY_EVERY_MS,
                TimeUnit.MILLISECONDS);
    }

    private static String key(TopicPartition changelog, String store) {
        return store + "/" + changelog.partition();
    }

    @Override
    public void onRestoreStart(TopicPartition changelog, String store, long fromOffset, long toOffset) {
        long now = System.currentTimeMillis();
        restoreStartedMs.put(key(changelog, store), now);
        LOG.info("restore started: store={} partition={} from={} to={} at_ms={}", store, changelog.partition(),
                fromOffset, toOffset, now);
    }

    @Override
    public void onBatchRestored(TopicPartition changelog, String store, long batchEndOffset, long records) {
        // Per batch would be thousands of lines; the end says what matters.
    }

    @Override
    public void onRestoreEnd(TopicPartition changelog, String store, long records) {
        long now = System.currentTimeMillis();
        Long started = restoreStartedMs.remove(key(changelog, store));
        LOG.info("restore done: store={} partition={} records={} elapsed_ms={} at_ms={}", store,
                changelog.partition(), records, started == null ? -1 : now - started, now);
    }

    @Override
    public void onRestoreSuspended(TopicPartition changelog, String store, long records) {
        restoreStartedMs.remove(key(changelog, store));
        LOG.info("restore suspended: store={} partition={} records={} at_ms={}", store, changelog.partition(),
                records, System.currentTimeMillis());
    }

    @Override
    public void onUpdateStart(TopicPartition changelog, String store, long fromOffset) {
        LOG.info("standby started: store={} partition={} from={} at_ms={}", store, changelog.partition(),
                fromOffset, System.currentTimeMillis());
    }

    @Override
    public void onBatchLoaded(TopicPartition changelog, String store, TaskId task, long batchEndOffset,
            long records, long endOffset) {
        // offset: the last record applied; end: the changelog's end as the
        // standby last saw it (under exactly-once the log ends with a commit
        // marker, so a caught-up standby sits at end - 2).
        standbyPending.put(key(changelog, store), String.format("standby at: store=%s partition=%d task=%s "
                + "offset=%d end=%d", store, changelog.partition(), task, batchEndOffset, endOffset));
    }

    @Override
    public void onUpdateSuspended(TopicPartition changelog, String store, long storeOffset, long endOffset,
            SuspendReason reason) {
        // The pending progress first, so the lines stay in order.
        printStandbyProgress();
        LOG.info("standby suspended: store={} partition={} offset={} end={} reason={} at_ms={}", store,
                changelog.partition(), storeOffset, endOffset, reason, System.currentTimeMillis());
    }

    private synchronized void printStandbyProgress() {
        long now = System.currentTimeMillis();
        for (String k : standbyPending.keySet()) {
            String line = standbyPending.remove(k);
            if (line != null) {
                LOG.info("{} at_ms={}", line, now);
            }
        }
    }
}
