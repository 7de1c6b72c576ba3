package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.Arrays;
import java.util.function.IntUnaryOperator;

/**
 * Packed-ring inflight tracking for one queue (QEMU {@code docs/interop/vhost-user.rst}, "Inflight I/O tracking",
 * QueueRegionPacked). A packed ring overwrites the slots of in-flight chains with used elements, so the region
 * keeps a copy of every descriptor taken, in entries allocated from a free list:
 * <pre>
 *  queue region (32)   u64 features @0 | u16 version @8 | u16 desc_num @10 | u16 free_head @12 | u16 old_free_head @14
 *                      | u16 used_idx @16 | u16 old_used_idx @18 | u8 used_wrap_counter @20 | u8 old_used_wrap_counter @21
 *  DescStatePacked (32) u8 inflight @0 | u16 next @2 | u16 last @4 | u16 num @6 | u64 counter @8
 *                      | u16 id @16 | u16 flags @18 | u32 len @20 | u64 addr @24       (num..counter: head entry only)
 *  pop chain           each descriptor into desc[free_head], free_head = next; then the head entry (old_free_head)
 *                      gets num, last, counter and inflight = 1; then old_free_head = free_head
 *  push chain e        desc[e.last].next = free_head, free_head = e, used_idx/used_wrap_counter move on by e.num;
 *                      the used element (ring); e.inflight = 0; old_* = free_head, used_idx, used_wrap_counter
 *  recover             used_idx/wrap differ from old_*: a push was under way; if the ring slot at old_used_idx no
 *                      longer holds an available descriptor of old_used_wrap_counter's lap, the push reached the
 *                      guest: commit (old_* = current); then roll back (current = old_*), clear inflight along the
 *                      free list, resubmit the remaining inflight chains in counter order
 * </pre>
 * The next avail position is not in the region (QEMU 7.2 hands back a stale SET_VRING_BASE for packed rings after
 * losing a back-end): it is the used position moved on by every in-flight chain's descriptors, since chains are
 * taken from the ring in order and returned by their descriptor count. Every value read back is checked (the
 * region is the front-end's memory); an inconsistent region is an error on this queue. Single-threaded.
 */
final class PackedInflightTracker {
    static final int HEADER_LENGTH = 32;
    static final int ENTRY_LENGTH = 32;
    static final int FREE_HEAD = 12;
    static final int OLD_FREE_HEAD = 14;
    static final int USED_IDX = 16;
    static final int OLD_USED_IDX = 18;
    static final int USED_WRAP = 20;
    static final int OLD_USED_WRAP = 21;
    static final int E_INFLIGHT = 0;
    static final int E_NEXT = 2;
    static final int E_LAST = 4;
    static final int E_NUM = 6;
    static final int E_COUNTER = 8;
    static final int E_ID = 16;
    static final int E_FLAGS = 18;
    static final int E_LEN = 20;
    static final int E_ADDR = 24;

    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    private static final long COUNTER_LIMIT = (1L << 47) - 1;
    // SAFETY: per-I/O accesses stay below HEADER_LENGTH + ENTRY_LENGTH * size, checked against the slice in the
    // constructor; entry indices come from this object's own arrays (bounded by size), never from the region.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    private final MemorySegment region;
    private final long base;
    private final int size;
    /** Our copies of the free list's links and of each head entry's last entry and length. */
    private final int[] next;
    private final int[] lastOf;
    private final int[] numOf;
    private final int[] resubmit;
    private int resubmitCount;
    private int resubmitNext;
    private int freeHead;
    private int chainHead = -1;
    private int chainLength;
    private long counter;
    private int usedIdx;
    private boolean usedWrap;
    private int availIdx;
    private boolean availWrap;

    /** Bytes of one queue's region: header + one entry per descriptor, rounded up to 64. */
    static long queueStride(int queueSize) {
        long n = HEADER_LENGTH + (long) ENTRY_LENGTH * queueSize;
        return (n + InflightRegion.ALIGNMENT - 1) & -InflightRegion.ALIGNMENT;
    }

    PackedInflightTracker(MemorySegment region, int size) {
        if (region.byteSize() < HEADER_LENGTH + (long) ENTRY_LENGTH * size) {
            throw new IllegalArgumentException("packed inflight region of " + region.byteSize() + " bytes for a queue of " + size);
        }
        this.region = region;
        this.base = region.address();
        this.size = size;
        this.next = new int[size];
        this.lastOf = new int[size];
        this.numOf = new int[size];
        this.resubmit = new int[size];
    }

    /**
     * Reads the region when the queue starts: a fresh one (version 0) is set up at the used position
     * SET_VRING_BASE gave and false is returned; otherwise the in-flight chains are found and true is returned,
     * with {@link #usedIdx}/{@link #availIdx} (and wraps) where the queue continues.
     *
     * @param ringFlags the flags of the guest's descriptor ring slot at a position
     */
    boolean recover(int baseUsed, boolean baseUsedWrap, IntUnaryOperator ringFlags, String queue) {
        resubmitCount = 0;
        resubmitNext = 0;
        counter = 0;
        chainHead = -1;
        if ((region.get(U16, InflightRegion.VERSION_OFFSET) & 0xFFFF) != InflightRegion.VERSION_1) {
            region.fill((byte) 0);
            region.set(U16, InflightRegion.DESC_NUM_OFFSET, (short) size);
            usedIdx = availIdx = baseUsed;
            usedWrap = availWrap = baseUsedWrap;
            rebuildFreeList(new boolean[size]);
            saveUsed(true);
            VarHandle.releaseFence(); // a consistent region before it says it is valid
            region.set(U16, InflightRegion.VERSION_OFFSET, (short) InflightRegion.VERSION_1);
            return false;
        }
        int used = u16(USED_IDX);
        int oldUsed = u16(OLD_USED_IDX);
        boolean wrap = region.get(U8, USED_WRAP) != 0;
        boolean oldWrap = region.get(U8, OLD_USED_WRAP) != 0;
        if (used >= size || oldUsed >= size) {
            throw bad(queue, "used_idx " + used + "/old_used_idx " + oldUsed + " past the ring");
        }
        int free = u16(OLD_FREE_HEAD);
        if (used != oldUsed || wrap != oldWrap) { // a push was under way: did its used element reach the guest?
            int flags = ringFlags.applyAsInt(oldUsed);
            boolean stillAvailable = ((flags & PackedVirtqueue.DESC_F_AVAIL) != 0) == oldWrap
                && ((flags & PackedVirtqueue.DESC_F_USED) != 0) != oldWrap;
            if (!stillAvailable) {
                oldUsed = used;
                oldWrap = wrap;
                free = u16(FREE_HEAD);
            }
        }
        usedIdx = oldUsed;
        usedWrap = oldWrap;
        boolean[] taken = new boolean[size];
        for (int e = free, steps = 0; e < size && steps < size && !taken[e]; e = u16(entry(e) + E_NEXT), steps++) {
            taken[e] = true; // on the free list: not in flight, whatever its flag says
            region.set(U8, entry(e) + E_INFLIGHT, (byte) 0);
        }
        Arrays.fill(taken, false);
        boolean[] ids = new boolean[size];
        long[] keys = null;
        int descriptors = 0;
        for (int h = 0; h < size; h++) {
            if (region.get(U8, entry(h) + E_INFLIGHT) != 1) {
                continue;
            }
            int num = u16(entry(h) + E_NUM);
            if (num < 1 || num > size - descriptors) {
                throw bad(queue, "in-flight entry " + h + " has " + num + " descriptors");
            }
            int e = h;
            for (int k = 0; k < num; k++) {
                if (e >= size || taken[e]) {
                    throw bad(queue, "in-flight entry " + h + " links to entry " + e);
                }
                taken[e] = true;
                if (k + 1 < num) {
                    next[e] = u16(entry(e) + E_NEXT);
                    e = next[e];
                }
            }
            int id = u16(entry(e) + E_ID);
            if (id >= size || ids[id]) {
                throw bad(queue, "in-flight entry " + h + " has buffer id " + id);
            }
            ids[id] = true;
            lastOf[h] = e;
            numOf[h] = num;
            descriptors += num;
            if (keys == null) {
                keys = new long[size];
            }
            long c = Math.min(Math.max(region.get(U64, entry(h) + E_COUNTER), 0), COUNTER_LIMIT);
            keys[resubmitCount++] = (c << 16) | h;
        }
        for (int h = 0; h < size; h++) {
            if (!taken[h]) {
                region.set(U8, entry(h) + E_INFLIGHT, (byte) 0);
            }
        }
        if (resubmitCount > 0) {
            Arrays.sort(keys, 0, resubmitCount);
            for (int i = 0; i < resubmitCount; i++) {
                resubmit[i] = (int) (keys[i] & 0xFFFF);
            }
            counter = (keys[resubmitCount - 1] >>> 16) + 1;
        }
        availIdx = usedIdx + descriptors;
        availWrap = usedWrap;
        if (availIdx >= size) {
            availIdx -= size;
            availWrap = !availWrap;
        }
        rebuildFreeList(taken);
        saveUsed(true);
        return true;
    }

    /** Links every entry not in flight into the free list, lowest first (whatever list the region had). */
    private void rebuildFreeList(boolean[] inFlight) {
        int head = size;
        for (int e = size - 1; e >= 0; e--) {
            if (!inFlight[e]) {
                next[e] = head;
                region.set(U16, entry(e) + E_NEXT, (short) head);
                head = e;
            }
        }
        freeHead = head;
    }

    /** The region's used position and free head, and (when {@code old}) their snapshot. */
    private void saveUsed(boolean old) {
        EVERYTHING.set(U16, base + FREE_HEAD, (short) freeHead);
        EVERYTHING.set(U16, base + USED_IDX, (short) usedIdx);
        EVERYTHING.set(U8, base + USED_WRAP, (byte) (usedWrap ? 1 : 0));
        if (old) {
            VarHandle.storeStoreFence();
            EVERYTHING.set(U16, base + OLD_FREE_HEAD, (short) freeHead);
            EVERYTHING.set(U16, base + OLD_USED_IDX, (short) usedIdx);
            EVERYTHING.set(U8, base + OLD_USED_WRAP, (byte) (usedWrap ? 1 : 0));
        }
    }

    int usedIdx() {
        return usedIdx;
    }

    boolean usedWrap() {
        return usedWrap;
    }

    int availIdx() {
        return availIdx;
    }

    boolean availWrap() {
        return availWrap;
    }

    /** Chains found in flight by {@link #recover}. */
    int recovered() {
        return resubmitCount;
    }

    /** True while {@link #nextResubmit} has chains left. */
    boolean hasResubmit() {
        return resubmitNext < resubmitCount;
    }

    /** The head entry of the next chain to resubmit (in the order they were first taken), or -1. */
    int nextResubmit() {
        return resubmitNext < resubmitCount ? resubmit[resubmitNext++] : -1;
    }

    /** Descriptors of in-flight chain {@code head}. */
    int chainLength(int head) {
        return numOf[head];
    }

    /** The entry after {@code e} in its chain. */
    int nextEntry(int e) {
        return next[e];
    }

    long addr(int e) {
        return EVERYTHING.get(U64, base + entry(e) + E_ADDR);
    }

    long len(int e) {
        return EVERYTHING.get(U32, base + entry(e) + E_LEN) & 0xFFFFFFFFL;
    }

    int flags(int e) {
        return EVERYTHING.get(U16, base + entry(e) + E_FLAGS) & 0xFFFF;
    }

    int id(int e) {
        return EVERYTHING.get(U16, base + entry(e) + E_ID) & 0xFFFF;
    }

    /**
     * A descriptor of the chain being taken from the ring: copied into the next free entry. Throws when no entry
     * is free (the driver made more descriptors available than the ring holds).
     */
    void descriptor(long addr, long len, int id, int flags) {
        int e = freeHead;
        if (e >= size) {
            throw new VhostUserException(VhostUserException.Reason.CHAIN_TOO_LONG,
                "more descriptors taken than the ring of " + size + " holds (every inflight entry is in use)");
        }
        if (chainHead < 0) {
            chainHead = e;
            chainLength = 0;
        }
        long d = base + entry(e);
        EVERYTHING.set(U64, d + E_ADDR, addr);
        EVERYTHING.set(U32, d + E_LEN, (int) len);
        EVERYTHING.set(U16, d + E_ID, (short) id);
        EVERYTHING.set(U16, d + E_FLAGS, (short) flags);
        chainLength++;
        lastOf[chainHead] = e;
        freeHead = next[e];
        EVERYTHING.set(U16, base + FREE_HEAD, (short) freeHead);
    }

    /** The chain's descriptors are all copied: it is in flight. Returns its head entry. */
    int taken() {
        int h = chainHead;
        chainHead = -1;
        long d = base + entry(h);
        numOf[h] = chainLength;
        EVERYTHING.set(U16, d + E_LAST, (short) lastOf[h]);
        EVERYTHING.set(U16, d + E_NUM, (short) chainLength);
        EVERYTHING.set(U64, d + E_COUNTER, counter++);
        VarHandle.storeStoreFence(); // the chain before the flag that says it is in flight
        EVERYTHING.set(U8, d + E_INFLIGHT, (byte) 1);
        VarHandle.storeStoreFence(); // in flight before the snapshot moves past it
        EVERYTHING.set(U16, base + OLD_FREE_HEAD, (short) freeHead);
        return h;
    }

    /** Before the used element of chain {@code head} goes to the ring: its entries back on the free list, the used position on. */
    void beforePush(int head, int newUsedIdx, boolean newUsedWrap) {
        int last = lastOf[head];
        next[last] = freeHead;
        EVERYTHING.set(U16, base + entry(last) + E_NEXT, (short) freeHead);
        freeHead = head;
        usedIdx = newUsedIdx;
        usedWrap = newUsedWrap;
        saveUsed(false);
        VarHandle.storeStoreFence(); // recover must see the push under way before the ring can show it
    }

    /** After the used element reached the ring: the chain is no longer in flight, the snapshot catches up. */
    void afterPush(int head) {
        VarHandle.storeStoreFence();
        EVERYTHING.set(U8, base + entry(head) + E_INFLIGHT, (byte) 0);
        VarHandle.storeStoreFence();
        saveUsed(true);
    }

    private int u16(long offset) {
        return region.get(U16, offset) & 0xFFFF;
    }

    private static long entry(int e) {
        return HEADER_LENGTH + (long) ENTRY_LENGTH * e;
    }

    private static VhostUserException bad(String queue, String what) {
        return new VhostUserException(VhostUserException.Reason.BAD_STATE, queue + ": inflight region inconsistent: " + what);
    }
}
