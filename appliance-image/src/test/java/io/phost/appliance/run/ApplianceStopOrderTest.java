package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * Issue 16 defect 9: the host's stop runs independent components in parallel, and still closes a component only
 * after everything that uses it (a disk after the exports and partitions serving it).
 */
class ApplianceStopOrderTest {
    private static final long SLOW_MS = 400;

    /** A component whose close takes {@code ms} and records when it started and ended. */
    private record Slow(String name, long ms, List<String> events, Map<String, long[]> times) implements Component {
        @Override
        public Object status() {
            return Map.of();
        }

        @Override
        public void close() throws InterruptedException {
            long t0 = System.nanoTime();
            events.add("start " + name);
            Thread.sleep(ms);
            events.add("end " + name);
            times.put(name, new long[] {t0, System.nanoTime()});
        }
    }

    @Test
    void shouldStopIndependentComponentsInParallelAndADiskOnlyAfterItsUsers() {
        List<String> events = new CopyOnWriteArrayList<>();
        Map<String, long[]> times = new ConcurrentHashMap<>();
        Appliance app = new Appliance("h");
        Slow disks = app.add(new Slow("disks", 50, events, times));
        Slow nbd = app.add(new Slow("nbd", SLOW_MS, events, times), disks);
        Slow network = app.add(new Slow("network", SLOW_MS, events, times), new Component[0]);
        Slow storage = app.add(new Slow("storage", SLOW_MS, events, times), disks);
        app.add(new Slow("partitions", SLOW_MS, events, times), storage, network, disks);
        long t0 = System.nanoTime();
        app.close();
        long ms = (System.nanoTime() - t0) / 1_000_000;
        // Sequential: 4 x 400 + 50 = 1,650 ms. Parallel: partitions (and nbd, network beside it), then storage,
        // then disks: 850 ms; 1,400 ms leaves room for a loaded machine and still fails a sequential stop.
        assertTrue(ms < 1_400, "stop took " + ms + " ms: " + events);
        assertEquals(5, times.size(), events.toString());
        assertTrue(times.get("disks")[0] >= times.get("nbd")[1], "disks closed after the NBD export: " + events);
        assertTrue(times.get("disks")[0] >= times.get("storage")[1], "disks closed after storage: " + events);
        assertTrue(times.get("disks")[0] >= times.get("partitions")[1], "disks closed after the partitions: " + events);
        assertTrue(times.get("storage")[0] >= times.get("partitions")[1], "storage after the partitions: " + events);
        assertTrue(times.get("network")[0] >= times.get("partitions")[1], "network after the partitions: " + events);
        assertTrue(times.get("nbd")[0] < times.get("partitions")[1], "nbd (no user) stops beside the partitions: " + events);
        assertEquals("stopped", app.state());
    }

    @Test
    void shouldKeepReverseOrderForComponentsAddedWithoutTheirDependencies() {
        List<String> events = new CopyOnWriteArrayList<>();
        Map<String, long[]> times = new ConcurrentHashMap<>();
        Appliance app = new Appliance("h");
        app.add(new Slow("a", 20, events, times));
        app.add(new Slow("b", 20, events, times));
        app.add(new Slow("c", 20, events, times));
        app.close();
        assertEquals(List.of("start c", "end c", "start b", "end b", "start a", "end a"), events);
    }
}
