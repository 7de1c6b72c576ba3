package io.phost.core.vhost;

import io.phost.core.sys.EventFd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * The device side of one packed virtqueue (virtio 1.2 §2.8, VIRTIO_F_RING_PACKED) in guest memory.
 * <pre>
 *  descriptor ring (16 n)     { le64 addr @0; le32 len @8; le16 id @12; le16 flags @14 }
 *                             flags: NEXT 1, WRITE 2, INDIRECT 4, AVAIL 1&lt;&lt;7, USED 1&lt;&lt;15
 *  driver area (4)            { le16 off_wrap @0; le16 flags @2 }  the driver's wish for calls (ENABLE 0, DISABLE 1, DESC 2)
 *  device area (4)            { le16 off_wrap @0; le16 flags @2 }  ours for kicks: always ENABLE
 *  available: AVAIL == avail wrap counter and USED != it; a chain is consecutive (wrapping) descriptors
 *  used:      the device writes {id, len, flags AVAIL = USED = used wrap counter} at its used position and
 *             moves on by as many descriptors as that buffer's chain took
 *  vring base (SET/GET_VRING_BASE) = avail index | avail wrap &lt;&lt; 15 | (used index | used wrap &lt;&lt; 15) &lt;&lt; 16
 * </pre>
 * Hostile driver, as for split rings: a chain may not take more descriptors than the ring has, buffer ids
 * must be below the queue size, indirect tables may not nest or share a chain, every buffer is translated
 * through {@link GuestMemory} with overflow-safe bounds; any violation throws {@link VhostUserException}.
 * With INFLIGHT_SHMFD every chain taken is copied into the front-end's inflight region
 * ({@link PackedInflightTracker}) and the chains a killed back-end left there are resubmitted first. While
 * VHOST_F_LOG_ALL is on, every guest page the queue writes is marked in the dirty log ({@link PackedWriteLog}).
 *
 * <p>Single-threaded: the queue's worker pops, pushes and notifies.
 */
public final class PackedVirtqueue implements Virtqueue {
    public static final int DESC_F_AVAIL = 1 << 7;
    public static final int DESC_F_USED = 1 << 15;
    public static final int EVENT_F_ENABLE = 0;
    public static final int EVENT_F_DISABLE = 1;
    public static final int EVENT_F_DESC = 2;
    static final int EVENT_AREA_LENGTH = 4;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;
    // SAFETY: as in SplitVirtqueue: the ring and areas were translated and bounds-checked by layout(), indirect
    // tables when their descriptor was read; the backend stops the queue before memory changes.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    private final int index;
    private final GuestMemory memory;
    private final int size;
    private final long desc;
    private final long driverArea;
    private final long deviceArea;
    private final boolean eventIdx;
    private final boolean indirect;
    private final EventFd call;
    /** INFLIGHT_SHMFD tracking (null: none), and each in-flight buffer id's head entry there. */
    private final PackedInflightTracker inflight;
    private final int[] entryOfId;
    /** Descriptors each in-flight buffer id's chain took in the ring (the used position moves on by that much). */
    private final int[] descriptorsOfId;
    /** Descriptors of the last popped chains (a ring, newest before {@code poppedNext}), for {@link #discard}. */
    private final int[] popped;
    private int poppedNext;
    private int poppedCount;
    private int nextAvail;
    private boolean availWrap;
    private int nextUsed;
    private boolean usedWrap;
    private int signalledUsed;
    private boolean signalledValid;
    /** Dirty logging while VHOST_F_LOG_ALL is on (null: off). */
    private PackedWriteLog writeLog;
    /** Between {@link #disableKicks} and {@link #enableKicks}: the device area says DISABLE. */
    private boolean kicksOff;

    /**
     * @param descHost/driverHost/deviceHost host addresses that {@link #layout} checked
     * @param base     SET_VRING_BASE's value (upper half 0: the used position is the avail position)
     */
    PackedVirtqueue(int index, GuestMemory memory, int size, long descHost, long driverHost, long deviceHost, int base,
                    boolean eventIdx, boolean indirect, EventFd call) {
        this(index, memory, size, descHost, driverHost, deviceHost, base, eventIdx, indirect, call, null);
    }

    /**
     * As above, with inflight tracking: unless the region is fresh, both positions come from it (QEMU 7.2's
     * SET_VRING_BASE after losing a back-end is the one of the ring's last start) and its in-flight chains are
     * popped again first.
     */
    PackedVirtqueue(int index, GuestMemory memory, int size, long descHost, long driverHost, long deviceHost, int base,
                    boolean eventIdx, boolean indirect, EventFd call, PackedInflightTracker inflight) {
        this.index = index;
        this.memory = memory;
        this.size = size;
        this.desc = descHost;
        this.driverArea = driverHost;
        this.deviceArea = deviceHost;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.call = call;
        this.descriptorsOfId = new int[size];
        this.popped = new int[size];
        this.inflight = inflight;
        this.entryOfId = new int[size];
        java.util.Arrays.fill(entryOfId, -1);
        this.nextAvail = base & 0x7FFF;
        this.availWrap = (base & 0x8000) != 0;
        int used = base >>> 16;
        this.nextUsed = used == 0 ? nextAvail : used & 0x7FFF;
        this.usedWrap = used == 0 ? availWrap : (used & 0x8000) != 0;
        if (nextAvail >= size || nextUsed >= size) {
            throw new VhostUserException(VhostUserException.Reason.BAD_STATE,
                "queue " + index + " size " + size + ": packed vring base 0x" + Integer.toHexString(base) + " points past the ring");
        }
        if (inflight != null && inflight.recover(nextUsed, usedWrap,
            pos -> EVERYTHING.get(U16, descHost + (long) SplitVirtqueue.DESC_LENGTH * pos + 14) & 0xFFFF, "queue " + index)) {
            nextUsed = inflight.usedIdx();
            usedWrap = inflight.usedWrap();
            nextAvail = inflight.availIdx();
            availWrap = inflight.availWrap();
        }
        EVERYTHING.set(U16, deviceHost + 2, (short) EVENT_F_ENABLE); // kick us for every new chain
    }

    /**
     * Logs guest writes for migration from now on (before the worker starts). {@code ringLogged}: SET_VRING_ADDR
     * had VHOST_VRING_F_LOG, so the ring's own writes (used elements, device area) are marked too, at the
     * guest-physical addresses of {@code descUser} and {@code deviceUser}.
     */
    void logTo(DirtyLog dirtyLog, boolean ringLogged, long descUser, long deviceUser) {
        long descGpa = ringLogged ? memory.gpaOfUser(descUser, (long) SplitVirtqueue.DESC_LENGTH * size) : -1;
        long deviceGpa = ringLogged ? memory.gpaOfUser(deviceUser, EVENT_AREA_LENGTH) : -1;
        writeLog = new PackedWriteLog(dirtyLog, memory, size, descGpa, deviceGpa);
    }

    /** Checks a queue size and the three addresses (front-end user addresses); returns their host addresses. */
    static long[] layout(int index, GuestMemory memory, int size, long descUser, long driverUser, long deviceUser) {
        SplitVirtqueue.checkSize(index, size);
        if ((descUser & 15) != 0 || (driverUser & 3) != 0 || (deviceUser & 3) != 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_ALIGNMENT,
                "queue " + index + ": packed ring addresses 0x" + Long.toHexString(descUser) + "/0x" + Long.toHexString(driverUser)
                    + "/0x" + Long.toHexString(deviceUser) + " not aligned to 16/4/4");
        }
        long d = memory.translateUser(descUser, (long) SplitVirtqueue.DESC_LENGTH * size);
        long drv = memory.translateUser(driverUser, EVENT_AREA_LENGTH);
        long dev = memory.translateUser(deviceUser, EVENT_AREA_LENGTH);
        if (d < 0 || drv < 0 || dev < 0) {
            throw new VhostUserException(VhostUserException.Reason.ADDRESS_NOT_MAPPED,
                "queue " + index + " size " + size + ": packed " + (d < 0 ? "descriptor ring at 0x" + Long.toHexString(descUser)
                    : drv < 0 ? "driver area at 0x" + Long.toHexString(driverUser) : "device area at 0x" + Long.toHexString(deviceUser))
                    + " is not inside the memory table");
        }
        return new long[] {d, drv, dev};
    }

    @Override
    public int index() {
        return index;
    }

    @Override
    public int size() {
        return size;
    }

    @Override
    public int resubmitted() {
        return inflight == null ? 0 : inflight.recovered();
    }

    @Override
    public int vringBase() {
        return (nextAvail | (availWrap ? 0x8000 : 0)) | (nextUsed | (usedWrap ? 0x8000 : 0)) << 16;
    }

    @Override
    public boolean enableKicks() {
        boolean wasOff = kicksOff;
        kicksOff = false;
        if (wasOff) {
            setDeviceFlags(EVENT_F_ENABLE);
            VarHandle.fullFence(); // StoreLoad: ask for kicks before looking at the ring again (else a kick is lost)
        }
        return available();
    }

    @Override
    public void disableKicks() {
        if (!kicksOff) {
            kicksOff = true;
            setDeviceFlags(EVENT_F_DISABLE);
        }
    }

    @Override
    public boolean available() {
        if (inflight != null && inflight.hasResubmit()) {
            return true;
        }
        int flags = EVERYTHING.get(U16, desc + (long) SplitVirtqueue.DESC_LENGTH * nextAvail + 14) & 0xFFFF;
        return ((flags & DESC_F_AVAIL) != 0) == availWrap && ((flags & DESC_F_USED) != 0) != availWrap;
    }

    /** The device area's flags word (ENABLE or DISABLE: kicks are never asked for by descriptor position here). */
    private void setDeviceFlags(int flags) {
        EVERYTHING.set(U16, deviceArea + 2, (short) flags);
        if (writeLog != null) {
            writeLog.deviceFlagsWritten();
        }
    }

    @Override
    public boolean tryPop(DescriptorChain chain) {
        if (inflight != null) {
            int again = inflight.nextResubmit();
            if (again >= 0) {
                resubmit(chain, again); // still the guest's chain: it has not seen it completed
                return true;
            }
        }
        int flags = EVERYTHING.get(U16, desc + (long) SplitVirtqueue.DESC_LENGTH * nextAvail + 14) & 0xFFFF;
        if (((flags & DESC_F_AVAIL) != 0) != availWrap || ((flags & DESC_F_USED) != 0) == availWrap) {
            return false;
        }
        VarHandle.acquireFence(); // LoadLoad: the chain's descriptors only after the flags that made it available
        chain.reset(0);
        if (writeLog != null) {
            writeLog.begin();
        }
        int pos = nextAvail;
        boolean wrap = availWrap;
        int taken = 0;
        int id;
        while (true) {
            if (++taken > size) {
                throw new VhostUserException(VhostUserException.Reason.CHAIN_TOO_LONG,
                    "queue " + index + " at " + nextAvail + ": chain longer than the ring of " + size);
            }
            long d = desc + (long) SplitVirtqueue.DESC_LENGTH * pos;
            long addr = EVERYTHING.get(U64, d);
            long len = EVERYTHING.get(U32, d + 8) & 0xFFFFFFFFL;
            id = EVERYTHING.get(U16, d + 12) & 0xFFFF;
            int f = EVERYTHING.get(U16, d + 14) & 0xFFFF;
            if (++pos == size) {
                pos = 0;
                wrap = !wrap;
            }
            if (inflight != null) {
                inflight.descriptor(addr, len, id, f);
            }
            if ((f & SplitVirtqueue.DESC_F_INDIRECT) != 0) {
                indirectTable(chain, f, addr, len);
                break;
            }
            append(chain, f, addr, len);
            logWritable(f, addr, len);
            if ((f & SplitVirtqueue.DESC_F_NEXT) == 0) {
                break;
            }
        }
        if (id >= size) {
            throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_INDEX,
                "queue " + index + " at " + nextAvail + ": buffer id " + id + " >= queue size " + size);
        }
        chain.head(id);
        if (writeLog != null) {
            writeLog.commit(id);
        }
        descriptorsOfId[id] = taken;
        if (inflight != null) {
            entryOfId[id] = inflight.taken();
        }
        popped[poppedNext] = taken;
        poppedNext = poppedNext + 1 == size ? 0 : poppedNext + 1;
        poppedCount = Math.min(poppedCount + 1, size);
        nextAvail = pos;
        availWrap = wrap;
        return true;
    }

    /** Chain {@code head} of the inflight region, as a killed back-end took it from the ring. */
    private void resubmit(DescriptorChain chain, int head) {
        chain.reset(0);
        if (writeLog != null) {
            writeLog.begin();
        }
        int num = inflight.chainLength(head);
        int e = head;
        for (int k = 0; ; k++) {
            int f = inflight.flags(e);
            if ((f & SplitVirtqueue.DESC_F_INDIRECT) != 0) {
                if (num != 1) {
                    throw new VhostUserException(VhostUserException.Reason.BAD_INDIRECT,
                        "queue " + index + ": resubmitted chain of " + num + " descriptors has an indirect one");
                }
                indirectTable(chain, f, inflight.addr(e), inflight.len(e));
            } else {
                append(chain, f, inflight.addr(e), inflight.len(e));
                logWritable(f, inflight.addr(e), inflight.len(e));
            }
            if (k + 1 == num) {
                break;
            }
            e = inflight.nextEntry(e);
        }
        int id = inflight.id(e);
        if (id >= size) {
            throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_INDEX,
                "queue " + index + ": resubmitted buffer id " + id + " >= queue size " + size);
        }
        chain.head(id);
        if (writeLog != null) {
            writeLog.commit(id);
        }
        descriptorsOfId[id] = num;
        entryOfId[id] = head;
    }

    private void indirectTable(DescriptorChain chain, int f, long addr, long len) {
        if (!indirect || chain.count() > 0 || (f & SplitVirtqueue.DESC_F_NEXT) != 0 || len == 0
            || len % SplitVirtqueue.DESC_LENGTH != 0 || len / SplitVirtqueue.DESC_LENGTH > SplitVirtqueue.MAX_SIZE) {
            throw new VhostUserException(VhostUserException.Reason.BAD_INDIRECT,
                "queue " + index + " at " + nextAvail + ": indirect table of " + len + " bytes"
                    + (!indirect ? " (INDIRECT_DESC not negotiated)" : " not alone, not a multiple of 16 or too big"));
        }
        walkIndirect(chain, addr, (int) (len / SplitVirtqueue.DESC_LENGTH));
        if (writeLog != null) {
            writeLog.indirect(addr, len);
        }
    }

    private void logWritable(int flags, long addr, long len) {
        if (writeLog != null && (flags & SplitVirtqueue.DESC_F_WRITE) != 0) {
            writeLog.writable(addr, len);
        }
    }

    /** An indirect table's descriptors in order (their NEXT flags and ids are not used in packed tables). */
    private void walkIndirect(DescriptorChain chain, long addr, int entries) {
        long table = memory.translateGpa(addr, (long) entries * SplitVirtqueue.DESC_LENGTH);
        if (table < 0) {
            throw notMapped(addr, (long) entries * SplitVirtqueue.DESC_LENGTH);
        }
        for (int i = 0; i < entries; i++) {
            long d = table + (long) SplitVirtqueue.DESC_LENGTH * i;
            int f = EVERYTHING.get(U16, d + 14) & 0xFFFF;
            if ((f & SplitVirtqueue.DESC_F_INDIRECT) != 0) {
                throw new VhostUserException(VhostUserException.Reason.BAD_INDIRECT,
                    "queue " + index + " at " + nextAvail + ": indirect descriptor " + i + " inside an indirect table");
            }
            append(chain, f, EVERYTHING.get(U64, d), EVERYTHING.get(U32, d + 8) & 0xFFFFFFFFL);
        }
    }

    /** Translates [addr, addr+len) region by region, device-readable buffers before device-writable ones. */
    private void append(DescriptorChain chain, int flags, long addr, long len) {
        boolean write = (flags & SplitVirtqueue.DESC_F_WRITE) != 0;
        if (!write && chain.writableBytes() > 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_ORDER,
                "queue " + index + " at " + nextAvail + ": device-readable after device-writable");
        }
        switch (chain.appendGuestRange(memory, addr, len, write)) {
            case DescriptorChain.NOT_MAPPED -> throw notMapped(addr, len);
            case DescriptorChain.TOO_LONG -> throw new VhostUserException(VhostUserException.Reason.CHAIN_TOO_LONG,
                "queue " + index + " at " + nextAvail + ": more than " + chain.capacity() + " buffers");
            default -> { }
        }
    }

    private VhostUserException notMapped(long addr, long len) {
        return new VhostUserException(VhostUserException.Reason.ADDRESS_NOT_MAPPED,
            "queue " + index + " at " + nextAvail + ": guest range [0x" + Long.toHexString(addr)
                + ", +0x" + Long.toHexString(len) + ") is not inside the memory table");
    }

    @Override
    public void discard(int chains) {
        if (chains < 0 || chains > poppedCount) {
            throw new IllegalArgumentException("discard " + chains + " of queue size " + size);
        }
        if (inflight != null) {
            throw new IllegalStateException("discard on queue " + index + " with inflight tracking (its device must not offer INFLIGHT_SHMFD)");
        }
        for (int k = 0; k < chains; k++) {
            poppedNext = poppedNext == 0 ? size - 1 : poppedNext - 1;
            poppedCount--;
            int back = popped[poppedNext];
            nextAvail -= back;
            if (nextAvail < 0) {
                nextAvail += size;
                availWrap = !availWrap;
            }
        }
    }

    @Override
    public void pushUsed(int head, int written) {
        boolean known = head >= 0 && head < size;
        int after = nextUsed + (known ? Math.max(1, descriptorsOfId[head]) : 1);
        boolean afterWrap = usedWrap;
        if (after >= size) {
            after -= size;
            afterWrap = !afterWrap;
        }
        int entry = known && inflight != null ? entryOfId[head] : -1;
        if (entry >= 0) {
            inflight.beforePush(entry, after, afterWrap);
        }
        long d = desc + (long) SplitVirtqueue.DESC_LENGTH * nextUsed;
        EVERYTHING.set(U32, d + 8, written);
        EVERYTHING.set(U16, d + 12, (short) head);
        int flags = usedWrap ? DESC_F_AVAIL | DESC_F_USED : 0;
        VarHandle.releaseFence(); // StoreStore: id and len before the flags that hand the descriptor back
        EVERYTHING.set(U16, d + 14, (short) (written > 0 ? flags | SplitVirtqueue.DESC_F_WRITE : flags));
        if (writeLog != null) {
            writeLog.pushed(head, nextUsed);
        }
        nextUsed = after;
        usedWrap = afterWrap;
        if (entry >= 0) {
            inflight.afterPush(entry);
            entryOfId[head] = -1;
        }
    }

    /**
     * Signals the call eventfd unless the driver area says DISABLE; with EVENT_IDX and DESC only when the
     * used position passed the driver's {@code off_wrap} since the last signal (as DPDK's vhost does).
     */
    @Override
    public void notifyIfNeeded() {
        VarHandle.fullFence(); // StoreLoad: used descriptors visible before we read the driver's suppression
        int flags = EVERYTHING.get(U16, driverArea + 2) & 0xFFFF;
        int old = signalledUsed;
        boolean valid = signalledValid;
        signalledUsed = nextUsed;
        signalledValid = true;
        boolean need;
        if (flags != EVENT_F_DESC || !eventIdx) {
            need = flags != EVENT_F_DISABLE;
        } else if (!valid) {
            need = true;
        } else {
            int offWrap = EVERYTHING.get(U16, driverArea) & 0xFFFF;
            int off = offWrap & 0x7FFF;
            int now = nextUsed;
            if (now <= old) {
                old -= size;
            }
            if (((offWrap >>> 15) != 0) != usedWrap) {
                off -= size;
            }
            need = ((now - off - 1) & 0xFFFF) < ((now - old) & 0xFFFF);
        }
        if (need && call != null) {
            call.signal();
        }
    }
}
