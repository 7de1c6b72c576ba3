package io.phost.appliance.run;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The host's event stream (GET /v1/events, {@code phost events}): partition state changes, crashes, faults,
 * restarts, heartbeat loss, each numbered. The last {@link #BACKLOG} events are kept; a client resumes with
 * the last number it saw ({@code since}) and learns how many it missed when the backlog has moved past it.
 * <pre>
 *   seq:  1 2 3 ... 1000 1001 ... 2024      (oldest kept = newest - BACKLOG + 1)
 *   since=N, N+1 still kept  ─▶ events N+1..              (nothing lost)
 *   since=N, N+1 dropped     ─▶ {"type":"events_lost","count":K} then the oldest kept onwards
 *   since=N, N > newest      ─▶ {"type":"events_lost","count":null}: a host restarted (numbers begin at 1 again)
 * </pre>
 */
public final class EventJournal {
    static final int BACKLOG = 1024;

    /** One event; {@code partition} is null for host events. */
    public record Event(long seq, Instant time, String type, String partition, String message) {
        Map<String, Object> json() {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("seq", seq);
            m.put("time", time.toString());
            m.put("type", type);
            m.put("partition", partition);
            m.put("message", message);
            return m;
        }
    }

    /** What a reader gets: the events after its {@code since}, and how many it missed (-1: unknown). */
    public record Page(List<Event> events, long lost) {
        List<Object> json() {
            List<Object> out = new ArrayList<>(events.size() + 1);
            if (lost != 0) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("seq", events.isEmpty() ? null : events.getFirst().seq() - 1);
                m.put("type", "events_lost");
                m.put("count", lost < 0 ? null : lost);
                m.put("message", lost < 0 ? "the host restarted: event numbers began again at 1"
                    : lost + " events left the backlog of " + BACKLOG + " before they were read");
                out.add(m);
            }
            events.forEach(e -> out.add(e.json()));
            return out;
        }
    }

    private final ArrayDeque<Event> ring = new ArrayDeque<>(BACKLOG);
    private long newest;

    public synchronized Event append(String type, String partition, String message) {
        Event e = new Event(++newest, Instant.now(), type, partition, message);
        if (ring.size() == BACKLOG) {
            ring.removeFirst();
        }
        ring.addLast(e);
        notifyAll();
        return e;
    }

    public synchronized long newest() {
        return newest;
    }

    /**
     * The events after {@code since} (at most {@code max}); when there are none yet, waits up to {@code wait}
     * for the first.
     */
    public synchronized Page since(long since, Duration wait, int max) throws InterruptedException {
        long deadline = System.nanoTime() + wait.toNanos();
        while (since == newest) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return new Page(List.of(), 0);
            }
            java.util.concurrent.TimeUnit.NANOSECONDS.timedWait(this, left);
        }
        long lost;
        long from;
        if (since > newest) {
            lost = -1;
            from = 0;
        } else {
            long oldest = ring.isEmpty() ? newest + 1 : ring.getFirst().seq();
            lost = Math.max(0, oldest - 1 - since);
            from = since;
        }
        List<Event> out = new ArrayList<>();
        for (Event e : ring) {
            if (e.seq() > from && out.size() < max) {
                out.add(e);
            }
        }
        return new Page(out, lost);
    }
}
