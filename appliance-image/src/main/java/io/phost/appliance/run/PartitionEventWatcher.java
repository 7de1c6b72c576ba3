package io.phost.appliance.run;

import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.PartitionState;
import io.phost.core.partition.PartitionStatus;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Supplier;

/**
 * Turns partition status into events: every {@link #PERIOD} it compares each partition's status with the last
 * one it saw. Counters make crashes, faults and restarts exact (a fault count that rose by two is two events);
 * a state held for less than a period may be missed, but never the state a partition settles in.
 * <pre>
 *   fault_count +n        ─▶ n × "crash" (state CRASHED/FAULTED, or a restart came with it) or "fault", the fault text
 *   details.restarts +n   ─▶ "restart"
 *   state A ─▶ B          ─▶ "state"  "A -> B: reason"
 *   details.heartbeat     ─▶ "heartbeat_lost" (OK ─▶ LOST_COMMUNICATION), "heartbeat_ok" (─▶ OK)
 * </pre>
 */
final class PartitionEventWatcher implements AutoCloseable {
    static final Duration PERIOD = Duration.ofMillis(200);

    private record Seen(PartitionState state, long faults, String restarts, String heartbeat) {}

    private final Supplier<List<ChildPartition>> partitions;
    private final EventJournal journal;
    private final Map<String, Seen> seen = new HashMap<>();
    private final Thread thread;
    private volatile boolean closed;

    PartitionEventWatcher(Supplier<List<ChildPartition>> partitions, EventJournal journal) {
        this.partitions = partitions;
        this.journal = journal;
        scan(); // the baseline: what exists at start is not an event
        this.thread = Thread.ofVirtual().name("partition-events").start(this::loop);
    }

    private void loop() {
        while (!closed) {
            try {
                Thread.sleep(PERIOD);
            } catch (InterruptedException e) {
                return;
            }
            scan();
        }
    }

    /** One comparison of every partition with what was seen last. */
    synchronized void scan() {
        for (ChildPartition p : partitions.get()) {
            PartitionStatus s;
            try {
                s = p.status();
            } catch (RuntimeException e) {
                continue; // a status that cannot be read now is read next period
            }
            Seen now = new Seen(s.state(), s.faultCount(), s.details().getOrDefault("restarts", "0"),
                s.details().get("heartbeat"));
            Seen before = seen.put(p.name(), now);
            if (before != null) {
                compare(p.name(), before, now, s);
            }
        }
    }

    private void compare(String name, Seen before, Seen now, PartitionStatus s) {
        boolean restarted = !now.restarts().equals(before.restarts());
        long newFaults = now.faults() - before.faults();
        if (newFaults > 0) {
            boolean crash = restarted || now.state() == PartitionState.CRASHED || now.state() == PartitionState.FAULTED;
            List<String> texts = s.faults();
            long shown = Math.min(newFaults, texts.size());
            for (long i = newFaults; i > 0; i--) {
                int at = (int) (texts.size() - i);
                journal.append(crash ? "crash" : "fault", name, i <= shown && at >= 0 ? texts.get(at) : "(fault text no longer kept)");
            }
        }
        if (restarted) {
            journal.append("restart", name, "restarted by on_crash = restart (restarts: " + now.restarts() + ")");
        }
        if (now.state() != before.state()) {
            String why = s.reason() == null || s.reason().isEmpty() ? "" : ": " + s.reason();
            journal.append("state", name, lower(before.state()) + " -> " + lower(now.state()) + why);
        }
        if (now.heartbeat() != null && !now.heartbeat().equals(before.heartbeat())) {
            if ("LOST_COMMUNICATION".equals(now.heartbeat())) {
                journal.append("heartbeat_lost", name, "the guest agent stopped answering: " + s.details().get("guest_agent"));
            } else if ("OK".equals(now.heartbeat())) {
                journal.append("heartbeat_ok", name, "the guest agent answers: " + s.details().get("guest_agent"));
            }
        }
    }

    private static String lower(PartitionState s) {
        return s.name().toLowerCase(Locale.ROOT);
    }

    @Override
    public void close() {
        closed = true;
        thread.interrupt();
        scan(); // the last changes (the stops at host shutdown) still become events
    }
}
