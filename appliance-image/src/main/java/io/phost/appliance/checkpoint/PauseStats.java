package io.phost.appliance.checkpoint;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/** The I/O pauses disk switches caused (the last {@value #KEPT}): count, p50, p99 and max, for /status. */
public final class PauseStats {
    static final int KEPT = 1024;
    private final long[] nanos = new long[KEPT];
    private long count;

    synchronized void record(long pauseNanos) {
        nanos[(int) (count++ % KEPT)] = pauseNanos;
    }

    /** {@code q} in 0..1 of the kept pauses, in microseconds; 0 when none. */
    public synchronized long percentileMicros(double q) {
        int n = (int) Math.min(count, KEPT);
        if (n == 0) {
            return 0;
        }
        long[] sorted = Arrays.copyOf(nanos, n);
        Arrays.sort(sorted);
        return sorted[(int) Math.min(n - 1, Math.ceil(q * n) - 1 < 0 ? 0 : Math.ceil(q * n) - 1)] / 1000;
    }

    public synchronized long count() {
        return count;
    }

    synchronized Map<String, Object> json() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("count", count);
        m.put("p50_us", percentileMicros(0.5));
        m.put("p99_us", percentileMicros(0.99));
        m.put("max_us", percentileMicros(1.0));
        return m;
    }
}
