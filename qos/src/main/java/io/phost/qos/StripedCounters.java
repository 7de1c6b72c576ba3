package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A flow's monotonic counters, striped by thread so that queue threads sharing a flow do not bounce one
 * cache line on every I/O (the LongAdder idea, without its allocation on contention). The first thread to
 * use a stripe owns it and adds with a plain load and an opaque store: a single writer needs no atomic
 * instruction, so the per-I/O bookkeeping of an unconstrained flow costs no locked operation. A thread
 * whose stripe is owned by another adds atomically to the shared stripe. The controller sums the stripes.
 *
 * <pre>
 *   cells: | pad 128 B | stripe 0: 9 counters + pad (128 B) | ... | stripe n-1 | shared stripe |
 *   owners[s] = threadId + 1 of stripe s's owner, 0 while unclaimed (claimed once with a CAS)
 *   add: stripe = threadId & mask; owner? plain add : shared stripe getAndAdd
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
    /** Not a counter: limit units the stripe's owner has already charged to the limit tag (a lease). */
    static final int LEASED_UNITS = 9;
    /** 16 longs = 128 bytes: two cache lines, so adjacent-line prefetch does not pair stripes either. */
    static final int STRIDE = 16;
    private static final VarHandle CELL = MethodHandles.arrayElementVarHandle(long[].class);

    private final long[] cells;
    /** Owner of each stripe (threadId + 1), spaced a stride apart like the cells (written once). */
    private final long[] owners;
    private final int mask;
    private final int shared;

    StripedCounters(int stripes) {
        int n = Integer.highestOneBit(Math.max(1, stripes - 1)) << 1;
        this.mask = n - 1;
        this.cells = new long[(n + 2) * STRIDE];
        this.owners = new long[(n + 1) * STRIDE];
        this.shared = STRIDE + n * STRIDE;
    }

    static StripedCounters forThisMachine() {
        return new StripedCounters(Math.min(8, Runtime.getRuntime().availableProcessors() * 2));
    }

    void add(int counter, long delta) {
        add(ownStripe(), counter, delta);
    }

    /**
     * Adds to {@code stripe} from {@link #ownStripe} (one look-up for several counters of one I/O): plainly
     * when the caller owns it, atomically to the shared stripe when {@code stripe} is -1.
     */
    void add(int stripe, int counter, long delta) {
        if (stripe >= 0) {
            final int i = stripe + counter;
            // single writer (the owner): no lost update; opaque so the controller's sum sees whole values
            CELL.setOpaque(cells, i, (long) CELL.getOpaque(cells, i) + delta);
        } else {
            CELL.getAndAdd(cells, shared + counter, delta);
        }
    }

    /** Number of stripes (for sizing what all stripes together may hold). */
    int stripes() {
        return mask + 1;
    }

    /**
     * The calling thread's own stripe (claimed now if free), or -1 when another thread owns it. Only the
     * owner may use {@link #getOwned}/{@link #setOwned} on it.
     */
    int ownStripe() {
        final long me = Thread.currentThread().threadId() + 1;
        final int o = STRIDE + (int) ((me - 1) & mask) * STRIDE;
        final long owner = (long) CELL.getOpaque(owners, o);
        return owner == me || (owner == 0 && CELL.compareAndSet(owners, o, 0L, me)) ? o : -1;
    }

    long getOwned(int stripe, int slot) {
        return cells[stripe + slot];
    }

    void setOwned(int stripe, int slot, long value) {
        cells[stripe + slot] = value;
    }

    long sum(int counter) {
        long total = (long) CELL.getVolatile(cells, shared + counter);
        for (int s = 0; s <= mask; s++) {
            total += (long) CELL.getVolatile(cells, STRIDE + s * STRIDE + counter);
        }
        return total;
    }
}
