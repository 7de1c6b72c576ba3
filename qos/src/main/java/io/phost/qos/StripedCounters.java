package io.phost.qos;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A flow's monotonic counters, striped by thread so that queue threads sharing a flow do not bounce one
 * cache line on every I/O (the LongAdder idea, without its allocation on contention). The first thread to
 * use a stripe owns it and adds with a plain load and an opaque store: a single writer needs no atomic
 * instruction, so the per-I/O bookkeeping of an unconstrained flow costs no locked operation. A thread
 * whose stripe is owned by another live thread adds atomically to the shared stripe; a stripe whose owner has
 * ended is taken over (queue threads are replaced when channels close and reopen, and without the take-over
 * every later thread would pay the shared stripe's atomics). The controller sums the stripes.
 *
 * <pre>
 *   cells: | pad 128 B | stripe 0: 9 counters + pad (128 B) | ... | stripe n-1 | shared stripe |
 *   owners[s] = the thread owning stripe s, null while unclaimed (claimed with a CAS, again once it ended)
 *   add: stripe = threadId & mask; owner? plain add : shared stripe getAndAdd
 * </pre>
 */
final class StripedCounters {
    /** Units beyond one per I/O (a 4 KiB I/O at the default normalization adds nothing here). */
    static final int ADMITTED_EXTRA_UNITS = 0;
    static final int ADMITTED_IOS = 1;
    static final int COMPLETED_IOS = 2;
    /** Units beyond one per completed I/O. */
    static final int COMPLETED_EXTRA_UNITS = 3;
    static final int COMPLETED_BYTES = 4;
    static final int LATENCY_NANOS = 5;
    /** Not a counter: limit units the stripe's owner has already charged to the limit tag (a lease). */
    static final int LEASED_UNITS = 6;
    // the slots above are touched on every I/O (56 bytes together); the wait counters only when one waits
    static final int GATE_WAITS = 7;
    static final int LIMIT_WAITS = 8;
    static final int LEAD_WAITS = 9;
    /** 16 longs = 128 bytes: two cache lines, so adjacent-line prefetch does not pair stripes either. */
    static final int STRIDE = 16;
    private static final VarHandle CELL = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle OWNER = MethodHandles.arrayElementVarHandle(Thread[].class);

    private final long[] cells;
    /** Owner of each stripe, spaced a stride apart like the cells (written when claimed). */
    private final Thread[] owners;
    private final int mask;
    private final int shared;

    StripedCounters(int stripes) {
        int n = Integer.highestOneBit(Math.max(1, stripes - 1)) << 1;
        this.mask = n - 1;
        this.cells = new long[(n + 2) * STRIDE];
        this.owners = new Thread[(n + 1) * STRIDE];
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
            addOwned(stripe + counter, delta);
        } else {
            CELL.getAndAdd(cells, shared + counter, delta);
        }
    }

    /**
     * One admission of {@code units} (>= 1): ADMITTED_IOS += 1, and ADMITTED_EXTRA_UNITS += units - 1 only
     * when that is not 0, so the usual one-unit I/O costs one store. Returns the stripe's admitted I/Os
     * after the add (what a caller sampling every n-th admission needs), or -1 on the shared stripe.
     */
    long addAdmission(int stripe, long units) {
        if (stripe < 0) {
            if (units != 1) {
                CELL.getAndAdd(cells, shared + ADMITTED_EXTRA_UNITS, units - 1);
            }
            CELL.getAndAdd(cells, shared + ADMITTED_IOS, 1L);
            return -1;
        }
        if (units != 1) {
            addOwned(stripe + ADMITTED_EXTRA_UNITS, units - 1);
        }
        return addOwned(stripe + ADMITTED_IOS, 1);
    }

    /** One completion of {@code units} (>= 1): I/Os, extra units (when not 0), bytes and latency. */
    void addCompletion(int stripe, long units, long bytes, long latencyNanos) {
        if (stripe < 0) {
            CELL.getAndAdd(cells, shared + COMPLETED_IOS, 1L);
            if (units != 1) {
                CELL.getAndAdd(cells, shared + COMPLETED_EXTRA_UNITS, units - 1);
            }
            CELL.getAndAdd(cells, shared + COMPLETED_BYTES, bytes);
            CELL.getAndAdd(cells, shared + LATENCY_NANOS, latencyNanos);
            return;
        }
        addOwned(stripe + COMPLETED_IOS, 1);
        if (units != 1) {
            addOwned(stripe + COMPLETED_EXTRA_UNITS, units - 1);
        }
        addOwned(stripe + COMPLETED_BYTES, bytes);
        addOwned(stripe + LATENCY_NANOS, latencyNanos);
    }

    /**
     * The owner's add: a plain read (only the owner writes the cell, so it reads its own last value) and an
     * opaque store, so the controller's sum sees whole values. Returns the new value.
     */
    private long addOwned(int i, long delta) {
        final long v = cells[i] + delta;
        CELL.setOpaque(cells, i, v);
        return v;
    }

    /** Number of stripes (for sizing what all stripes together may hold). */
    int stripes() {
        return mask + 1;
    }

    /**
     * The calling thread's own stripe (claimed now if free or if its owner has ended), or -1 when another live
     * thread owns it. Only the owner may use {@link #getOwned}/{@link #setOwned} on it.
     */
    int ownStripe() {
        final Thread me = Thread.currentThread();
        final int o = STRIDE + (int) (me.threadId() & mask) * STRIDE;
        // plain read: a stale value only makes the claim's CAS fail
        final Thread owner = owners[o];
        return owner == me || claim(o, owner, me) ? o : -1;
    }

    /**
     * Takes stripe {@code o} when it is free or its owner has ended. An ended owner's last adds are visible here:
     * seeing {@code isAlive() == false} synchronizes with the thread's end (JLS 17.4.4), so the new owner's plain
     * reads continue from the old owner's values.
     */
    private boolean claim(int o, Thread owner, Thread me) {
        return (owner == null || !owner.isAlive()) && OWNER.compareAndSet(owners, o, owner, me);
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
