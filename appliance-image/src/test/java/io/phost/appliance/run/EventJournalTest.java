package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.PartitionKind;
import io.phost.core.partition.PartitionState;
import io.phost.core.partition.PartitionStatus;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The event backlog's resume story (since, lost events, a restarted host, long polling) and the watcher's
 * mapping of status changes to events. The stream on a live host: RunVmGuestAgentTest.
 */
@Timeout(30)
class EventJournalTest {
    @Test
    void shouldResumeAfterSinceAndCountWhatLeftTheBacklog() throws Exception {
        EventJournal j = new EventJournal();
        for (int i = 0; i < EventJournal.BACKLOG + 10; i++) {
            j.append("state", "p", "event " + (i + 1));
        }
        EventJournal.Page fresh = j.since(EventJournal.BACKLOG + 5, Duration.ZERO, 100);
        assertEquals(0, fresh.lost());
        assertEquals(List.of(EventJournal.BACKLOG + 6L, EventJournal.BACKLOG + 7L, EventJournal.BACKLOG + 8L,
            EventJournal.BACKLOG + 9L, EventJournal.BACKLOG + 10L), fresh.events().stream().map(EventJournal.Event::seq).toList());

        EventJournal.Page behind = j.since(3, Duration.ZERO, 2);
        assertEquals(7, behind.lost(), "events 4..10 left the backlog of " + EventJournal.BACKLOG);
        assertEquals(11, behind.events().getFirst().seq());
        Map<?, ?> marker = (Map<?, ?>) behind.json().getFirst();
        assertEquals("events_lost", marker.get("type"));
        assertEquals(7L, marker.get("count"));

        EventJournal.Page restarted = j.since(5_000, Duration.ZERO, 1);
        assertEquals(-1, restarted.lost(), "a since beyond the newest: the host restarted");
        assertEquals(11, restarted.events().getFirst().seq());
    }

    @Test
    void shouldWaitForTheNextEventOrAnswerEmptyAfterTheWait() throws Exception {
        EventJournal j = new EventJournal();
        long t0 = System.nanoTime();
        assertTrue(j.since(0, Duration.ofMillis(200), 10).events().isEmpty());
        assertTrue(System.nanoTime() - t0 >= Duration.ofMillis(190).toNanos(), "waited");
        Thread.ofVirtual().start(() -> {
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                return;
            }
            j.append("crash", "vm1", "QEMU exited with code 137");
        });
        t0 = System.nanoTime();
        EventJournal.Page p = j.since(0, Duration.ofSeconds(20), 10);
        assertTrue(System.nanoTime() - t0 < Duration.ofSeconds(10).toNanos(), "answered at the event, not after the wait");
        assertEquals("crash", p.events().getFirst().type());
    }

    /** A partition whose status the test sets. */
    private static final class Scripted implements ChildPartition {
        volatile PartitionStatus status = status(PartitionState.CREATED, 0, List.of(), "0", null, "");

        static PartitionStatus status(PartitionState s, long faults, List<String> texts, String restarts, String heartbeat,
                                      String reason) {
            Map<String, String> d = new java.util.HashMap<>(Map.of("restarts", restarts));
            if (heartbeat != null) {
                d.put("heartbeat", heartbeat);
                d.put("guest_agent", heartbeat + " (details)");
            }
            return new PartitionStatus("vm1", PartitionKind.VM, s, -1, 1, 1, 0, 0, faults, texts, reason, d);
        }

        @Override public String name() { return "vm1"; }
        @Override public PartitionKind kind() { return PartitionKind.VM; }
        @Override public PartitionState state() { return status.state(); }
        @Override public PartitionStatus status() { return status; }
        @Override public void start() { }
        @Override public void stop(Duration grace) { }
        @Override public void pause() { }
        @Override public void resume() { }
        @Override public void turnOff(String why) { }
    }

    @Test
    void shouldTurnStateChangesCrashesRestartsAndHeartbeatLossIntoEvents() throws Exception {
        Scripted p = new Scripted();
        EventJournal j = new EventJournal();
        try (PartitionEventWatcher w = new PartitionEventWatcher(() -> List.of(p), j)) {
            p.status = Scripted.status(PartitionState.RUNNING, 0, List.of(), "0", "NO_CONTACT", "");
            w.scan();
            p.status = Scripted.status(PartitionState.RUNNING, 0, List.of(), "0", "OK", "");
            w.scan();
            p.status = Scripted.status(PartitionState.RUNNING, 0, List.of(), "0", "LOST_COMMUNICATION", "");
            w.scan();
            // two crashes between two looks, the second already restarted: both are counted
            p.status = Scripted.status(PartitionState.RUNNING, 2, List.of("QEMU exited with code 137", "QEMU exited with code 1"),
                "2", null, "");
            w.scan();
        }
        List<String> seen = new ArrayList<>();
        for (EventJournal.Event e : j.since(0, Duration.ZERO, 100).events()) {
            seen.add(e.type() + " " + e.partition() + " " + e.message());
        }
        assertEquals(List.of(
            "state vm1 created -> running",
            "heartbeat_ok vm1 the guest agent answers: OK (details)",
            "heartbeat_lost vm1 the guest agent stopped answering: LOST_COMMUNICATION (details)",
            "crash vm1 QEMU exited with code 137",
            "crash vm1 QEMU exited with code 1",
            "restart vm1 restarted by on_crash = restart (restarts: 2)"), seen);
    }
}
