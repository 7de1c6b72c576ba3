package io.phost.core.vhost;

import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.SharedMemory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The shared buffer of INFLIGHT_SHMFD (QEMU {@code docs/interop/vhost-user.rst}, "Inflight I/O tracking"):
 * the back-end allocates it on GET_INFLIGHT_FD, the front-end keeps the fd and hands it back with
 * SET_INFLIGHT_FD after the back-end restarts, so the new back-end finds the requests the old one had
 * taken from the rings and not completed. One region per queue, {@link #queueStride} bytes apart:
 * <pre>
 *  message payload (24)   u64 mmap_size @0 | u64 mmap_offset @8 | u16 num_queues @16 | u16 queue_size @18 | pad
 *  queue region           u64 features @0 (0) | u16 version @8 (1; 0 = fresh) | u16 desc_num @10
 *                         | u16 last_batch_head @12 | u16 used_idx @14 | DescStateSplit desc[desc_num] @16
 *  DescStateSplit (16)    u8 inflight @0 | u8 pad[5] | u16 next @6 | u64 counter @8
 * </pre>
 * That is the split rings' layout (libvhost-user's); packed rings use QueueRegionPacked
 * ({@link PackedInflightTracker}). The front-end does not say which: the back-end picks the layout from the
 * features acked before GET_INFLIGHT_FD/SET_INFLIGHT_FD (QEMU 5.2 and later send SET_FEATURES first). The stride
 * rounds each queue's region up to 64 bytes. The contents are the front-end's memory as much as ours: the
 * trackers trust nothing they read back.
 */
final class InflightRegion implements AutoCloseable {
    static final int PAYLOAD_LENGTH = 24;
    static final int MMAP_SIZE_OFFSET = 0;
    static final int MMAP_OFFSET_OFFSET = 8;
    static final int NUM_QUEUES_OFFSET = 16;
    static final int QUEUE_SIZE_OFFSET = 18;
    /** QEMU sends sizeof(VhostUserInflight): 20 bytes of fields padded to 24; accept the unpadded form too. */
    static final int MIN_PAYLOAD_LENGTH = 20;

    static final int QUEUE_HEADER_LENGTH = 16;
    static final int FEATURES_OFFSET = 0;
    static final int VERSION_OFFSET = 8;
    static final int DESC_NUM_OFFSET = 10;
    static final int LAST_BATCH_HEAD_OFFSET = 12;
    static final int USED_IDX_OFFSET = 14;
    static final int DESC_STATE_LENGTH = 16;
    static final int DESC_INFLIGHT_OFFSET = 0;
    static final int DESC_COUNTER_OFFSET = 8;
    static final int ALIGNMENT = 64;
    static final int VERSION_1 = 1;

    private final Arena arena;
    private final MemorySegment mapped;
    private final int numQueues;
    private final int queueSize;
    private final long stride;
    private final boolean packed;

    private InflightRegion(Arena arena, MemorySegment mapped, int numQueues, int queueSize, boolean packed) {
        this.arena = arena;
        this.mapped = mapped;
        this.numQueues = numQueues;
        this.queueSize = queueSize;
        this.packed = packed;
        this.stride = queueStride(queueSize, packed);
    }

    /** Bytes of one queue's region: header + one state per descriptor, rounded up to 64. */
    static long queueStride(int queueSize) {
        long n = QUEUE_HEADER_LENGTH + (long) DESC_STATE_LENGTH * queueSize;
        return (n + ALIGNMENT - 1) & -ALIGNMENT;
    }

    static long queueStride(int queueSize, boolean packed) {
        return packed ? PackedInflightTracker.queueStride(queueSize) : queueStride(queueSize);
    }

    static void checkShape(int numQueues, int queueSize, int maxQueues, String what) {
        if (numQueues < 1 || numQueues > maxQueues) {
            throw new VhostUserException(VhostUserException.Reason.BAD_STATE,
                what + " for " + numQueues + " queues, this device has " + maxQueues);
        }
        if (queueSize < 1 || queueSize > SplitVirtqueue.MAX_SIZE) {
            throw new VhostUserException(VhostUserException.Reason.BAD_QUEUE_SIZE,
                what + " queue size " + queueSize + ": must be 1 to " + SplitVirtqueue.MAX_SIZE);
        }
    }

    /**
     * A fresh, zeroed region (every queue version 0) in a new memfd, sealed against shrinking so the
     * front-end cannot make our mapping fault. The caller sends {@link #fd} and then closes it.
     */
    static Created create(int numQueues, int queueSize, int maxQueues, boolean packed) {
        checkShape(numQueues, queueSize, maxQueues, "GET_INFLIGHT_FD");
        long size = queueStride(queueSize, packed) * numQueues;
        int fd = SharedMemory.createSealed("phost-vhost-inflight", size);
        try {
            Arena arena = Arena.ofShared();
            return new Created(new InflightRegion(arena, SharedMemory.mapShared(fd, 0, size, arena), numQueues, queueSize, packed), fd, size);
        } catch (RuntimeException e) {
            Fd.close(fd);
            throw e;
        }
    }

    record Created(InflightRegion region, int fd, long size) {}

    /**
     * Maps the front-end's region (SET_INFLIGHT_FD), checking that its size matches the shape and that the
     * file is long enough (a short file would fault). Closes {@code fd} (the mapping keeps the pages).
     */
    static InflightRegion adopt(int fd, long mmapSize, long mmapOffset, int numQueues, int queueSize, int maxQueues,
                                boolean packed) {
        try {
            checkShape(numQueues, queueSize, maxQueues, "SET_INFLIGHT_FD");
            long need = queueStride(queueSize, packed) * numQueues;
            String where = "SET_INFLIGHT_FD mmap_size=" + mmapSize + " mmap_offset=" + mmapOffset + " queues=" + numQueues + " queue_size=" + queueSize;
            if (mmapSize != need || mmapOffset < 0 || mmapOffset > Long.MAX_VALUE - mmapSize || (mmapOffset % SharedMemory.PAGE_SIZE) != 0) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": expected mmap_size " + need
                    + " (" + (packed ? "packed" : "split") + " rings) at a page-aligned offset");
            }
            long fileSize;
            try {
                fileSize = Fd.size(fd);
            } catch (NativeException e) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": not a mappable file (" + e.getMessage() + ")");
            }
            if (mmapOffset + mmapSize > fileSize) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": past the file's " + fileSize + " bytes");
            }
            Arena arena = Arena.ofShared();
            try {
                return new InflightRegion(arena, SharedMemory.mapShared(fd, mmapOffset, mmapSize, arena), numQueues, queueSize, packed);
            } catch (NativeException e) {
                arena.close();
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": " + e.getMessage());
            }
        } finally {
            Fd.close(fd);
        }
    }

    int numQueues() {
        return numQueues;
    }

    int queueSize() {
        return queueSize;
    }

    /** Laid out for packed rings (QueueRegionPacked), else split. */
    boolean packed() {
        return packed;
    }

    /** Queue {@code index}'s region, or null when the front-end asked for fewer queues. */
    MemorySegment queue(int index) {
        return index < numQueues ? mapped.asSlice(stride * index, stride) : null;
    }

    /** Unmaps; every queue using it must have stopped. */
    @Override
    public void close() {
        arena.close();
    }
}
