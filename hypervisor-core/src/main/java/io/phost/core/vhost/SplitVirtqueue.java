package io.phost.core.vhost;

import io.phost.core.sys.EventFd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * The device side of one split virtqueue (virtio 1.2 §2.7) in guest memory.
 * <pre>
 *  descriptor table (16 n)   { le64 addr @0; le32 len @8; le16 flags @12; le16 next @14 }
 *                            flags: NEXT 1, WRITE 2, INDIRECT 4
 *  available ring (6 + 2 n)  { le16 flags @0; le16 idx @2; le16 ring[n] @4; le16 used_event @4+2n }
 *  used ring (6 + 8 n)       { le16 flags @0; le16 idx @2; { le32 id; le32 len } ring[n] @4; le16 avail_event @4+8n }
 * </pre>
 * Hostile driver: every index is checked against the queue size, chains are bounded by their table's size
 * (so a loop ends), indirect tables may not nest, every buffer is translated through {@link GuestMemory}
 * with overflow-safe bounds, and the avail index may not run ahead by more than the queue size. Any
 * violation throws {@link VhostUserException}; the queue is then broken until the front-end resets it.
 *
 * <p>Single-threaded: the queue's worker pops, pushes and notifies.
 */
public final class SplitVirtqueue implements Virtqueue {
    public static final int DESC_F_NEXT = 1;
    public static final int DESC_F_WRITE = 2;
    public static final int DESC_F_INDIRECT = 4;
    public static final int AVAIL_F_NO_INTERRUPT = 1;
    /** used.flags: the device polls, the driver need not kick (only without EVENT_IDX). */
    public static final int USED_F_NO_NOTIFY = 1;
    public static final int MAX_SIZE = 32768;
    static final int DESC_LENGTH = 16;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    // SAFETY: addresses read through this segment are ring and table addresses that GuestMemory translated
    // and bounds-checked when the queue was configured (rings) or the descriptor was read (indirect tables);
    // each stays inside a region that stays mapped while the queue runs (the backend stops queues first).
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    private final int index;
    private final GuestMemory memory;
    private final int size;
    private final int mask;
    private final long desc;
    private final long avail;
    private final long used;
    private final boolean eventIdx;
    private final boolean indirect;
    private final EventFd call;
    private final InflightTracker inflight;
    private int lastAvail;
    /**
     * avail.idx as last read: while lastAvail is behind it, chains are known to be waiting and pop reads no
     * shared index (the driver writes that cache line at every request: a cross-core miss per read).
     */
    private int availSeen;
    private int usedIdx;
    /** used.idx as the driver sees it: behind usedIdx while {@link #pushUsedLater} entries wait for publishUsed. */
    private int usedPublished;
    private int signalledUsed;
    private boolean signalledValid;
    /** Between {@link #disableKicks} and {@link #enableKicks}: the device polls and asks for no kicks. */
    private boolean kicksOff;
    /** The dirty log while VHOST_F_LOG_ALL is on (null: off), and the used ring's guest-physical address for it. */
    private DirtyLog log;
    private long usedLogGpa;

    /**
     * @param descHost/availHost/usedHost host addresses that {@link #layout} checked
     * @param call     the call eventfd to signal (null: the driver polls)
     */
    SplitVirtqueue(int index, GuestMemory memory, int size, long descHost, long availHost, long usedHost, int base,
                   boolean eventIdx, boolean indirect, EventFd call) {
        this(index, memory, size, descHost, availHost, usedHost, base, eventIdx, indirect, call, null);
    }

    /**
     * As above, with inflight tracking ({@link InflightTracker}, INFLIGHT_SHMFD): requests a previous back-end
     * took and did not complete are popped again first, and the base is the guest's used index plus their
     * number (SET_VRING_BASE's value stands only for a fresh region).
     */
    SplitVirtqueue(int index, GuestMemory memory, int size, long descHost, long availHost, long usedHost, int base,
                   boolean eventIdx, boolean indirect, EventFd call, InflightTracker inflight) {
        this.index = index;
        this.memory = memory;
        this.size = size;
        this.mask = size - 1;
        this.desc = descHost;
        this.avail = availHost;
        this.used = usedHost;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.call = call;
        this.inflight = inflight;
        this.lastAvail = base & 0xFFFF;
        this.usedIdx = base & 0xFFFF;
        if (inflight != null) {
            int guestUsed = EVERYTHING.get(U16, usedHost + 2) & 0xFFFF;
            int next = inflight.recover(guestUsed);
            if (next >= 0) {
                this.lastAvail = next;
                this.usedIdx = guestUsed;
            }
        }
        this.availSeen = lastAvail;
        this.usedPublished = usedIdx;
    }

    @Override
    public int vringBase() {
        return lastAvail;
    }

    @Override
    public int resubmitted() {
        return inflight == null ? 0 : inflight.recovered();
    }

    /**
     * Checks a queue size and the three ring addresses (front-end user addresses) and returns their host
     * addresses {desc, avail, used}.
     */
    static long[] layout(int index, GuestMemory memory, int size, long descUser, long availUser, long usedUser) {
        checkSize(index, size);
        checkAlign(index, "descriptor table", descUser, 16);
        checkAlign(index, "available ring", availUser, 2);
        checkAlign(index, "used ring", usedUser, 4);
        long d = memory.translateUser(descUser, (long) DESC_LENGTH * size);
        long a = memory.translateUser(availUser, 6L + 2L * size);
        long u = memory.translateUser(usedUser, 6L + 8L * size);
        if (d < 0 || a < 0 || u < 0) {
            throw new VhostUserException(VhostUserException.Reason.ADDRESS_NOT_MAPPED,
                "queue " + index + " size " + size + ": " + (d < 0 ? "descriptor table at 0x" + Long.toHexString(descUser)
                    : a < 0 ? "available ring at 0x" + Long.toHexString(availUser) : "used ring at 0x" + Long.toHexString(usedUser))
                    + " is not inside the memory table");
        }
        return new long[] {d, a, u};
    }

    static void checkSize(int index, int size) {
        if (size <= 0 || size > MAX_SIZE || Integer.bitCount(size) != 1) {
            throw new VhostUserException(VhostUserException.Reason.BAD_QUEUE_SIZE,
                "queue " + index + " size " + Integer.toUnsignedString(size) + ": must be a power of two from 1 to " + MAX_SIZE);
        }
    }

    private static void checkAlign(int index, String what, long addr, int align) {
        if ((addr & (align - 1)) != 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_ALIGNMENT,
                "queue " + index + " " + what + " at 0x" + Long.toHexString(addr) + " is not " + align + "-byte aligned");
        }
    }

    @Override
    public int index() {
        return index;
    }

    @Override
    public int size() {
        return size;
    }

    /** The next avail index the device will read (GET_VRING_BASE reports it). */
    public int lastAvailIndex() {
        return lastAvail;
    }

    public int usedIndex() {
        return usedIdx;
    }

    /**
     * Pops the next available chain into {@code chain}; returns false when the ring is empty. With
     * EVENT_IDX an empty ring first publishes avail_event (so the driver kicks on its next request) and
     * looks once more, closing the race with a request made in between (not while kicks are disabled:
     * {@link #disableKicks}).
     */
    @Override
    public boolean tryPop(DescriptorChain chain) {
        return pop(chain, true);
    }

    @Override
    public boolean tryPopQuiet(DescriptorChain chain) {
        return pop(chain, false);
    }

    @Override
    public boolean enableKicks() {
        boolean wasOff = kicksOff;
        kicksOff = false;
        if (inflight != null && inflight.hasResubmit()) {
            return true;
        }
        if (eventIdx) {
            publishAvailEvent();
        } else if (wasOff) {
            setUsedFlags(0);
        }
        if (eventIdx || wasOff) {
            VarHandle.fullFence(); // StoreLoad: ask for kicks before re-reading avail.idx (else a kick is lost)
        }
        return (EVERYTHING.get(U16, avail + 2) & 0xFFFF) != lastAvail;
    }

    @Override
    public void disableKicks() {
        if (kicksOff) {
            return;
        }
        kicksOff = true;
        if (!eventIdx) {
            setUsedFlags(USED_F_NO_NOTIFY);
        }
        // EVENT_IDX: avail_event stays at the index the device last asked for; the driver kicks once when it
        // passes it and not again until enableKicks moves it (Linux vhost's vhost_disable_notify does the same).
    }

    @Override
    public boolean available() {
        return (inflight != null && inflight.hasResubmit()) || (EVERYTHING.get(U16, avail + 2) & 0xFFFF) != lastAvail;
    }

    /** used.flags is the device's: only NO_NOTIFY is defined; ordered by the caller's fence. */
    private void setUsedFlags(int flags) {
        EVERYTHING.set(U16, used, (short) flags);
        if (log != null && usedLogGpa >= 0) {
            log.mark(usedLogGpa, 2);
        }
    }

    private void publishAvailEvent() {
        EVERYTHING.set(U16, used + 4 + 8L * size, (short) lastAvail);
        if (log != null && usedLogGpa >= 0) {
            log.mark(usedLogGpa + 4 + 8L * size, 2);
        }
    }

    private boolean pop(DescriptorChain chain, boolean enableKicks) {
        if (inflight != null) {
            int again = inflight.nextResubmit();
            if (again >= 0) {
                walk(chain, again); // still the guest's chain: it has not seen it completed
                return true;
            }
        }
        int availIdx = availSeen != lastAvail ? availSeen : EVERYTHING.get(U16, avail + 2) & 0xFFFF;
        if (availIdx == lastAvail) {
            if (!eventIdx || !enableKicks || kicksOff) {
                return false;
            }
            publishAvailEvent();
            VarHandle.fullFence(); // StoreLoad: publish avail_event before re-reading avail.idx (else a kick is lost)
            availIdx = EVERYTHING.get(U16, avail + 2) & 0xFFFF;
            if (availIdx == lastAvail) {
                return false;
            }
        }
        int pending = (availIdx - lastAvail) & 0xFFFF;
        if (pending > size) {
            throw new VhostUserException(VhostUserException.Reason.AVAIL_INDEX_JUMP,
                "queue " + index + ": avail.idx " + availIdx + " is " + pending + " ahead of " + lastAvail + ", queue size " + size);
        }
        availSeen = availIdx;
        VarHandle.acquireFence(); // LoadLoad: read ring entries and descriptors only after avail.idx
        int head = EVERYTHING.get(U16, avail + 4 + 2L * (lastAvail & mask)) & 0xFFFF;
        lastAvail = (lastAvail + 1) & 0xFFFF;
        walk(chain, head);
        if (inflight != null) {
            inflight.popped(head);
        }
        return true;
    }

    /**
     * Gives back the last {@code chains} popped chains (they are popped again, unchanged, by the next
     * {@link #tryPop}s): a receive queue that popped buffers for a frame that does not fit yet. As Linux
     * vhost's {@code vhost_discard_vq_desc}; the driver cannot have reused them (they are not in the used ring).
     */
    @Override
    public void discard(int chains) {
        if (chains < 0 || chains > size) {
            throw new IllegalArgumentException("discard " + chains + " of queue size " + size);
        }
        if (inflight != null) {
            throw new IllegalStateException("discard on queue " + index + " with inflight tracking (its device must not offer INFLIGHT_SHMFD)");
        }
        lastAvail = (lastAvail - chains) & 0xFFFF;
    }

    private void walk(DescriptorChain chain, int head) {
        if (head >= size) {
            throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_INDEX,
                "queue " + index + ": head " + head + " >= queue size " + size);
        }
        chain.reset(head);
        long d = desc + (long) DESC_LENGTH * head;
        int flags = EVERYTHING.get(U16, d + 12) & 0xFFFF;
        if ((flags & (DESC_F_NEXT | DESC_F_INDIRECT)) == 0) {
            // A lone descriptor (a small frame with its header, one receive buffer): one translation, no loop. Only
            // a non-empty buffer inside one region whose length fits an element; anything else (empty, spanning two
            // regions, not mapped) takes the general walk, which gives the same chain or the same error.
            long addr = EVERYTHING.get(U64, d);
            long len = EVERYTHING.get(U32, d + 8) & 0xFFFFFFFFL;
            long host = len > 0 && len <= DescriptorChain.MAX_ELEMENT ? memory.translateGpa(addr, len) : -1;
            if (host >= 0) {
                chain.tryAppend(host, (int) len, (flags & DESC_F_WRITE) != 0); // an empty chain has room
                return;
            }
        }
        walkChain(chain, head);
    }

    /** The general walk: a chain of descriptors, or an indirect table, from head (chain already reset). */
    private void walkChain(DescriptorChain chain, int head) {
        long table = desc;
        int tableSize = size;
        boolean inIndirect = false;
        int i = head;
        int steps = 0;
        while (true) {
            if (++steps > tableSize) {
                throw new VhostUserException(VhostUserException.Reason.CHAIN_TOO_LONG,
                    "queue " + index + " head " + head + ": chain longer than its " + (inIndirect ? "indirect " : "") + "table of " + tableSize + " (a loop)");
            }
            long d = table + (long) DESC_LENGTH * i;
            long addr = EVERYTHING.get(U64, d);
            long len = EVERYTHING.get(U32, d + 8) & 0xFFFFFFFFL;
            int flags = EVERYTHING.get(U16, d + 12) & 0xFFFF;
            int next = EVERYTHING.get(U16, d + 14) & 0xFFFF;
            if ((flags & DESC_F_INDIRECT) != 0) {
                if (!indirect || inIndirect || chain.count() > 0 || (flags & DESC_F_NEXT) != 0 || len == 0
                    || len % DESC_LENGTH != 0 || len / DESC_LENGTH > MAX_SIZE) {
                    throw new VhostUserException(VhostUserException.Reason.BAD_INDIRECT,
                        "queue " + index + " head " + head + " descriptor " + i + ": indirect table of " + len + " bytes"
                            + (!indirect ? " (INDIRECT_DESC not negotiated)" : inIndirect ? " inside an indirect table" : " not alone, not a multiple of 16 or too big"));
                }
                long host = memory.translateGpa(addr, len);
                if (host < 0) {
                    throw notMapped(head, i, addr, len);
                }
                table = host;
                tableSize = (int) (len / DESC_LENGTH);
                inIndirect = true;
                i = 0;
                steps = 0;
                continue;
            }
            boolean write = (flags & DESC_F_WRITE) != 0;
            if (!write && chain.writableBytes() > 0) {
                throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_ORDER,
                    "queue " + index + " head " + head + " descriptor " + i + ": device-readable after device-writable");
            }
            append(chain, head, i, addr, len, write);
            if ((flags & DESC_F_NEXT) == 0) {
                return;
            }
            if (next >= tableSize) {
                throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_INDEX,
                    "queue " + index + " head " + head + " descriptor " + i + ": next " + next + " >= table size " + tableSize);
            }
            i = next;
        }
    }

    private void append(DescriptorChain chain, int head, int i, long addr, long len, boolean write) {
        switch (chain.appendGuestRange(memory, addr, len, write)) {
            case DescriptorChain.NOT_MAPPED -> throw notMapped(head, i, addr, len);
            case DescriptorChain.TOO_LONG -> throw new VhostUserException(VhostUserException.Reason.CHAIN_TOO_LONG,
                "queue " + index + " head " + head + ": more than " + chain.capacity() + " buffers");
            default -> { }
        }
    }

    private VhostUserException notMapped(int head, int i, long addr, long len) {
        return new VhostUserException(VhostUserException.Reason.ADDRESS_NOT_MAPPED,
            "queue " + index + " head " + head + " descriptor " + i + ": guest range [0x" + Long.toHexString(addr)
                + ", +0x" + Long.toHexString(len) + ") is not inside the memory table");
    }

    /** Returns chain {@code head} to the driver with {@code written} bytes written into its buffers. */
    @Override
    public void pushUsed(int head, int written) {
        long e = used + 4 + 8L * (usedIdx & mask);
        EVERYTHING.set(U64, e, usedElement(head, written));
        usedIdx = (usedIdx + 1) & 0xFFFF;
        if (inflight != null) {
            inflight.beforePush(head);
        }
        VarHandle.releaseFence(); // StoreStore: the element must be visible before used.idx covers it
        EVERYTHING.set(U16, used + 2, (short) usedIdx);
        usedPublished = usedIdx;
        if (log != null) {
            logPushed(head, e - used);
        }
        if (inflight != null) {
            inflight.afterPush(head, usedIdx);
        }
    }

    /**
     * The used element {le32 id; le32 len} as one 64-bit store (native order: the little-endian hosts this runs on,
     * as every other ring access here); the driver reads neither half before used.idx covers the element.
     */
    private static long usedElement(int head, int written) {
        return (head & 0xFFFFFFFFL) | ((long) written << 32);
    }

    @Override
    public void pushUsedLater(int head, int written) {
        if (inflight != null || log != null) {
            pushUsed(head, written); // both follow every used.idx store
            return;
        }
        long e = used + 4 + 8L * (usedIdx & mask);
        EVERYTHING.set(U64, e, usedElement(head, written));
        usedIdx = (usedIdx + 1) & 0xFFFF;
    }

    @Override
    public void publishUsed() {
        if (usedPublished != usedIdx) {
            VarHandle.releaseFence(); // StoreStore: the elements must be visible before used.idx covers them
            EVERYTHING.set(U16, used + 2, (short) usedIdx);
            usedPublished = usedIdx;
        }
    }

    /**
     * Logs guest writes for migration from now on (before the worker starts): {@code usedLogGpa} is the used
     * ring's guest-physical address from SET_VRING_ADDR (VHOST_VRING_F_LOG), -1 when the ring is not logged.
     */
    void logTo(DirtyLog dirtyLog, long usedGpa) {
        this.log = dirtyLog;
        this.usedLogGpa = usedGpa;
    }

    /** Marks what completing chain {@code head} wrote: its device-writable buffers, the used entry, used.idx. */
    private void logPushed(int head, long entryOffset) {
        markWritable(head);
        if (usedLogGpa >= 0) {
            log.mark(usedLogGpa + entryOffset, 8);
            log.mark(usedLogGpa + 2, 2);
        }
    }

    /**
     * Marks chain {@code head}'s device-writable buffers, re-read from the table (the driver may not touch a
     * chain before its used entry; one that no longer walks was valid when popped and is left: a lying
     * driver only loses its own pages). Bounded like {@link #walk}; allocates nothing.
     */
    private void markWritable(int head) {
        long table = desc;
        int tableSize = size;
        boolean inIndirect = false;
        int i = head;
        for (int budget = size + MAX_SIZE; budget > 0 && i < tableSize; budget--) {
            long d = table + (long) DESC_LENGTH * i;
            long addr = EVERYTHING.get(U64, d);
            long len = EVERYTHING.get(U32, d + 8) & 0xFFFFFFFFL;
            int flags = EVERYTHING.get(U16, d + 12) & 0xFFFF;
            if ((flags & DESC_F_INDIRECT) != 0) {
                long host = inIndirect || len == 0 || len % DESC_LENGTH != 0 || len / DESC_LENGTH > MAX_SIZE ? -1 : memory.translateGpa(addr, len);
                if (host < 0) {
                    return;
                }
                table = host;
                tableSize = (int) (len / DESC_LENGTH);
                inIndirect = true;
                i = 0;
                continue;
            }
            if ((flags & DESC_F_WRITE) != 0) {
                log.mark(addr, len);
            }
            if ((flags & DESC_F_NEXT) == 0) {
                return;
            }
            i = EVERYTHING.get(U16, d + 14) & 0xFFFF;
        }
    }

    /**
     * Signals the call eventfd if the driver wants an interrupt for the used entries pushed since the last
     * call: with EVENT_IDX when used_event falls in (old, new]; else unless avail.flags has NO_INTERRUPT.
     */
    @Override
    public void notifyIfNeeded() {
        publishUsed();
        VarHandle.fullFence(); // StoreLoad: used.idx must be visible before we read the driver's suppression
        boolean need;
        if (eventIdx) {
            int event = EVERYTHING.get(U16, avail + 4 + 2L * size) & 0xFFFF;
            int old = signalledUsed;
            boolean valid = signalledValid;
            signalledUsed = usedIdx;
            signalledValid = true;
            need = !valid || ((usedIdx - event - 1) & 0xFFFF) < ((usedIdx - old) & 0xFFFF);
        } else {
            need = (EVERYTHING.get(U16, avail) & AVAIL_F_NO_INTERRUPT) == 0;
        }
        if (need && call != null) {
            call.signal();
        }
    }
}
