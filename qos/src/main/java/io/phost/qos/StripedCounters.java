package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A flow's monotonic counters, striped by thread so that queue threads sharing a flow do not bounce one
 * cache line on every I/O (the LongAdder idea, without its allocation on contention). The controller sums
 * the stripes.
 *
 * <pre>
 *   cells: | pad 128 B | stripe 0: 9 counters + pad (128 B) | stripe 1 ... | stripe n-1 |
 *   a thread uses stripe (threadId & mask); counters are only ever added to
 * </pre>
 */
final class StripedCounters {
    static final int ADMITTED_UNITS = 0;
    static final int ADMITTED_IOS = 1;
    static final int COMPLETED_IOS = 2;
    static final int COMPLETED_UNITS = 3;
    static final int COMPLETED_BYTES = 4;
    static final int LATENCY_NANOS = 5;
    static final int GATE_WAITS = 6;
    static final int LIMIT_WAITS = 7;
    static final int LEAD_WAITS = 8;
    /** 16 longs = 128 bytes: two cache lines, so adjacent-line prefetch does not pair stripes either. */
    private static final int STRIDE = 16;
    private static final VarHandle CELL = MethodHandles.arrayElementVarHandle(long[].class);

    private final long[] cells;
    private final int mask;

    StripedCounters(int stripes) {
        int n = Integer.highestOneBit(Math.max(1, stripes - 1)) << 1;
        this.mask = n - 1;
        this.cells = new long[(n + 1) * STRIDE];
    }

    static StripedCounters forThisMachine() {
        return new StripedCounters(Math.min(8, Runtime.getRuntime().availableProcessors() * 2));
    }

    void add(int counter, long delta) {
        int stripe = (int) (Thread.currentThread().threadId() & mask);
        CELL.getAndAdd(cells, STRIDE + stripe * STRIDE + counter, delta);
    }

    long sum(int counter) {
        long total = 0;
        for (int s = 0; s <= mask; s++) {
            total += (long) CELL.getVolatile(cells, STRIDE + s * STRIDE + counter);
        }
        return total;
    }
}
