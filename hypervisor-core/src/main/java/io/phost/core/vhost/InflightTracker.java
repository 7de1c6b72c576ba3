package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Arrays;

import static io.phost.core.vhost.InflightRegion.*;

/**
 * Split-ring inflight tracking for one queue over its {@link InflightRegion} slice, as libvhost-user does it:
 * <pre>
 *   pop head h      desc[h].counter = counter++ ; desc[h].inflight = 1
 *   push head h     used elem ; last_batch_head = h ; used.idx = n (guest) ; desc[h].inflight = 0 ; used_idx = n
 *   recover         if region.used_idx != used.idx (guest): died between the two stores of a push, so
 *                   desc[last_batch_head] was completed: clear it; then every desc with inflight = 1 was taken
 *                   and not completed: resubmit them in counter order before reading the avail ring again,
 *                   and the next avail index is used.idx + their number
 * </pre>
 * A kill at any point leaves a state that {@link #recover} turns into "exactly the requests the guest has
 * not seen completed": writes and reads are idempotent, so executing one twice is harmless.
 * The region is shared with the front-end, so every value read back is bounded before use.
 * Single-threaded (the queue's worker).
 */
final class InflightTracker {
    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    /** Counters above this are clamped when sorting (only a hostile front-end writes them). */
    private static final long COUNTER_LIMIT = (1L << 47) - 1;

    // SAFETY: the per-I/O accesses go through this segment at base + offsets below 16 + 16 * size, which the
    // constructor checked against the region's slice; the region stays mapped while the queue runs (the session
    // stops every queue before it replaces or unmaps it). A bounds-checked slice of a shared arena's mapping
    // allocated 40 B per command here (VhostUserScsiAllocationTest), hence the raw view, as SplitVirtqueue's.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    private final MemorySegment region;
    private final long base;
    private final int size;
    private final int[] resubmit;
    private int resubmitCount;
    private int resubmitNext;
    private long counter;

    /** @param region this queue's slice; {@code size} the ring's size, at most the region's desc_num */
    InflightTracker(MemorySegment region, int size) {
        if (region.byteSize() < QUEUE_HEADER_LENGTH + (long) DESC_STATE_LENGTH * size) {
            throw new IllegalArgumentException("inflight region of " + region.byteSize() + " bytes for a queue of " + size);
        }
        this.region = region;
        this.base = region.address();
        this.size = size;
        this.resubmit = new int[size];
    }

    /**
     * Reads the region when the queue starts. A fresh region (version 0) is initialised and nothing is in
     * flight; otherwise finds the requests to resubmit.
     *
     * @param guestUsedIdx the used ring's idx as the guest sees it
     * @return the next avail index to read: {@code guestUsedIdx} + requests in flight; -1 for a fresh
     *         region (then SET_VRING_BASE's value stands)
     */
    int recover(int guestUsedIdx) {
        resubmitCount = 0;
        resubmitNext = 0;
        counter = 0;
        if ((region.get(U16, VERSION_OFFSET) & 0xFFFF) != VERSION_1) {
            region.fill((byte) 0);
            region.set(U16, DESC_NUM_OFFSET, (short) size);
            region.set(U16, USED_IDX_OFFSET, (short) guestUsedIdx);
            VarHandle.releaseFence(); // the cleared states must be visible before the region says it is valid
            region.set(U16, VERSION_OFFSET, (short) VERSION_1);
            return -1;
        }
        if ((region.get(U16, USED_IDX_OFFSET) & 0xFFFF) != guestUsedIdx) {
            int last = region.get(U16, LAST_BATCH_HEAD_OFFSET) & 0xFFFF;
            if (last < size) {
                region.set(U8, desc(last) + DESC_INFLIGHT_OFFSET, (byte) 0); // its used.idx store landed, its clear did not
            }
            region.set(U16, USED_IDX_OFFSET, (short) guestUsedIdx);
        }
        long[] keys = null;
        for (int h = 0; h < size; h++) {
            if (region.get(U8, desc(h) + DESC_INFLIGHT_OFFSET) == 1) {
                if (keys == null) {
                    keys = new long[size];
                }
                long c = Math.min(Math.max(region.get(U64, desc(h) + DESC_COUNTER_OFFSET), 0), COUNTER_LIMIT);
                keys[resubmitCount++] = (c << 16) | h;
            } else {
                region.set(U8, desc(h) + DESC_INFLIGHT_OFFSET, (byte) 0); // any other value means "not in flight"
            }
        }
        if (resubmitCount > 0) {
            Arrays.sort(keys, 0, resubmitCount);
            for (int i = 0; i < resubmitCount; i++) {
                resubmit[i] = (int) (keys[i] & 0xFFFF);
            }
            counter = (keys[resubmitCount - 1] >>> 16) + 1;
        }
        return (guestUsedIdx + resubmitCount) & 0xFFFF;
    }

    /** Requests found in flight by {@link #recover} (for logs and tests). */
    int recovered() {
        return resubmitCount;
    }

    /** True while {@link #nextResubmit} has heads left. */
    boolean hasResubmit() {
        return resubmitNext < resubmitCount;
    }

    /** The next head to resubmit (in the order they were first taken), or -1 when none is left. */
    int nextResubmit() {
        return resubmitNext < resubmitCount ? resubmit[resubmitNext++] : -1;
    }

    /** Head {@code head} was taken from the avail ring. */
    void popped(int head) {
        long d = base + desc(checked(head));
        EVERYTHING.set(U64, d + DESC_COUNTER_OFFSET, counter++);
        VarHandle.storeStoreFence(); // counter before the flag: a recovered entry always has its order
        EVERYTHING.set(U8, d + DESC_INFLIGHT_OFFSET, (byte) 1);
    }

    /** Before the used ring's idx covers {@code head}: remember it as the one being completed. */
    void beforePush(int head) {
        EVERYTHING.set(U16, base + LAST_BATCH_HEAD_OFFSET, (short) checked(head));
        VarHandle.storeStoreFence(); // last_batch_head must be set before used.idx moves (recover reads it then)
    }

    /** After the used ring's idx moved to {@code usedIdx}: {@code head} is no longer in flight. */
    void afterPush(int head, int usedIdx) {
        VarHandle.storeStoreFence(); // used.idx first: clearing the flag before it would lose the request on a kill
        EVERYTHING.set(U8, base + desc(checked(head)) + DESC_INFLIGHT_OFFSET, (byte) 0);
        VarHandle.storeStoreFence(); // the flag before used_idx: recover's "used_idx differs" case relies on it
        EVERYTHING.set(U16, base + USED_IDX_OFFSET, (short) usedIdx);
    }

    private int checked(int head) {
        if (head < 0 || head >= size) {
            throw new IllegalArgumentException("head " + head + " outside a queue of " + size);
        }
        return head;
    }

    private static long desc(int head) {
        return QUEUE_HEADER_LENGTH + (long) DESC_STATE_LENGTH * head;
    }
}
