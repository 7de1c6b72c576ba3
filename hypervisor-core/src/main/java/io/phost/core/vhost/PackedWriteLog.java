package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * Dirty logging for one packed ring while VHOST_F_LOG_ALL is on: marks in the {@link DirtyLog} every guest page
 * the back-end writes, as {@link SplitVirtqueue} does for split rings.
 * <pre>
 *   pop:   each device-writable descriptor's guest range (an indirect table: the table) is recorded for the buffer id
 *   push:  the id's recorded ranges are marked (an indirect table re-read for its WRITE entries), then the
 *          16-byte descriptor slot that took the used element (ring logged only: VHOST_VRING_F_LOG)
 *   start: the device area's flags word, which the queue writes on every start (ring logged only)
 * </pre>
 * Why record at pop rather than re-read at push like the split ring: a packed ring's used elements are written
 * over the ring's own slots in completion order, so a chain completed out of order has already lost its
 * descriptors to other chains' used elements (and the driver may have reused them) when it is pushed.
 * The ring's guest-physical addresses come from its user addresses through the memory table (QEMU's SET_VRING_ADDR
 * log address is the device area's for packed rings, so it does not locate the descriptor ring).
 *
 * <p>The ranges live in a pool of one entry per ring slot, linked per buffer id: an honest driver never has more
 * device-writable descriptors in flight than the ring has slots (indirect tables take one entry). When a lying
 * driver overflows it, the range is marked at pop instead (it can only lose its own pages). Allocates nothing
 * after construction; single-threaded (the queue's worker).
 */
final class PackedWriteLog {
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    private static final int NONE = -1;

    private final DirtyLog log;
    private final GuestMemory memory;
    /** Guest-physical address of the descriptor ring, or -1 when the ring itself is not logged. */
    private final long descGpa;
    private final long[] gpa;
    private final long[] length;
    private final boolean[] table;
    private final int[] next;
    private final int[] firstOfId;
    private final long deviceGpa;
    private int free;
    private int pending = NONE;
    private int pendingLast = NONE;

    /**
     * @param descGpa   the descriptor ring's guest-physical address, -1 when the ring is not logged
     * @param deviceGpa the device area's guest-physical address, -1 when the ring is not logged
     */
    PackedWriteLog(DirtyLog log, GuestMemory memory, int size, long descGpa, long deviceGpa) {
        this.log = log;
        this.memory = memory;
        this.descGpa = descGpa;
        this.gpa = new long[size];
        this.length = new long[size];
        this.table = new boolean[size];
        this.next = new int[size];
        this.firstOfId = new int[size];
        Arrays.fill(firstOfId, NONE);
        for (int i = 0; i < size; i++) {
            next[i] = i + 1 < size ? i + 1 : NONE;
        }
        free = 0;
        this.deviceGpa = deviceGpa;
        deviceFlagsWritten(); // the flags word the queue's constructor wrote (EVENT_F_ENABLE)
    }

    /** The queue wrote its device area's flags word (kicks enabled or disabled). */
    void deviceFlagsWritten() {
        if (deviceGpa >= 0) {
            log.mark(deviceGpa + 2, 2);
        }
    }

    /** A chain is being popped: forgets what a previous pop that failed half-way recorded. */
    void begin() {
        release(pending);
        pending = NONE;
        pendingLast = NONE;
    }

    /** Device-writable guest range [addr, addr+len) of the chain being popped. */
    void writable(long addr, long len) {
        record(addr, len, false);
    }

    /** An indirect table of {@code len} bytes at {@code addr}: its WRITE entries are marked at push. */
    void indirect(long addr, long len) {
        record(addr, len, true);
    }

    /** The popped chain is buffer {@code id} (below the ring size, checked by the caller). */
    void commit(int id) {
        release(firstOfId[id]); // a driver reusing an id in flight: the older chain's ranges are dropped
        firstOfId[id] = pending;
        pending = NONE;
        pendingLast = NONE;
    }

    /** Buffer {@code id}'s used element was written at ring slot {@code slot}: marks all it wrote. */
    void pushed(int id, int slot) {
        if (id >= 0 && id < firstOfId.length) {
            for (int e = firstOfId[id]; e != NONE; e = next[e]) {
                if (table[e]) {
                    markTable(gpa[e], length[e]);
                } else {
                    log.mark(gpa[e], length[e]);
                }
            }
            release(firstOfId[id]);
            firstOfId[id] = NONE;
        }
        if (descGpa >= 0) {
            log.mark(descGpa + (long) SplitVirtqueue.DESC_LENGTH * slot + 8, 8); // len, id, flags
        }
    }

    private void record(long addr, long len, boolean isTable) {
        if (free == NONE) {
            if (!isTable) {
                log.mark(addr, len);
            } else {
                markTable(addr, len);
            }
            return;
        }
        int e = free;
        free = next[e];
        gpa[e] = addr;
        length[e] = len;
        table[e] = isTable;
        next[e] = NONE;
        if (pendingLast == NONE) {
            pending = e;
        } else {
            next[pendingLast] = e;
        }
        pendingLast = e;
    }

    /** The WRITE entries of an indirect table the queue accepted at pop; one that no longer translates is left. */
    private void markTable(long addr, long len) {
        long host = memory.translateGpa(addr, len);
        if (host < 0) {
            return;
        }
        for (long off = 0; off + SplitVirtqueue.DESC_LENGTH <= len; off += SplitVirtqueue.DESC_LENGTH) {
            int flags = EVERYTHING.get(ValueLayout.JAVA_SHORT_UNALIGNED, host + off + 14) & 0xFFFF;
            if ((flags & SplitVirtqueue.DESC_F_WRITE) != 0) {
                log.mark(EVERYTHING.get(ValueLayout.JAVA_LONG_UNALIGNED, host + off),
                    EVERYTHING.get(ValueLayout.JAVA_INT_UNALIGNED, host + off + 8) & 0xFFFFFFFFL);
            }
        }
    }

    private void release(int first) {
        int e = first;
        while (e != NONE) {
            int n = next[e];
            next[e] = free;
            free = e;
            e = n;
        }
    }
}
