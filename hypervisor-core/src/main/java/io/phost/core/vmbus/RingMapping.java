package io.phost.core.vmbus;

import io.phost.core.sys.SharedMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Maps one ring (control page + data pages, given as guest page numbers inside the memfd) into this
 * process, with the data area twice back to back when {@code doubleMap} is set:
 * <pre>
 *  reservation:  | control (pfn[0]) | data pfn[1..n-1] | data pfn[1..n-1] again |
 *                0                 4096          4096+dataSize          4096+2*dataSize
 * </pre>
 * Runs of consecutive pfns are mapped with one mmap each, so a contiguous ring costs three mmaps.
 */
public final class RingMapping implements AutoCloseable {
    private final Arena arena;
    private final MemorySegment control;
    private final MemorySegment data;
    private final int dataSize;

    private RingMapping(Arena arena, MemorySegment reservation, int dataSize, boolean doubleMap) {
        this.arena = arena;
        this.dataSize = dataSize;
        this.control = reservation.asSlice(0, RingDescriptor.CONTROL_LENGTH);
        this.data = reservation.asSlice(RingDescriptor.CONTROL_LENGTH, doubleMap ? 2L * dataSize : dataSize);
    }

    /** Maps pages {@code pfns[from .. from+count)} of {@code memfd} as a ring. */
    public static RingMapping map(int memfd, long[] pfns, int from, int count, boolean doubleMap) {
        if (count < 2) {
            throw new RingException(RingException.Reason.BAD_GEOMETRY, 0, "a ring needs a control page and at least one data page");
        }
        long dataSize = (long) (count - 1) * RingDescriptor.PAGE_SIZE;
        if (dataSize > RingDescriptor.MAX_DATA_SIZE) {
            throw new RingException(RingException.Reason.BAD_GEOMETRY, 0, "data area of " + dataSize + " bytes");
        }
        long total = RingDescriptor.CONTROL_LENGTH + (doubleMap ? 2 : 1) * dataSize;
        // a shared arena: unmapping waits until no thread is inside an access, and later accesses throw
        // IllegalStateException instead of crashing the JVM (a guest may force a reset at any moment)
        Arena arena = Arena.ofShared();
        MemorySegment r = SharedMemory.reserve(total, arena);
        try {
            mapRun(r, 0, memfd, pfns, from, 1);
            mapRun(r, RingDescriptor.CONTROL_LENGTH, memfd, pfns, from + 1, count - 1);
            if (doubleMap) {
                mapRun(r, RingDescriptor.CONTROL_LENGTH + dataSize, memfd, pfns, from + 1, count - 1);
            }
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
        return new RingMapping(arena, r, (int) dataSize, doubleMap);
    }

    private static void mapRun(MemorySegment r, long at, int memfd, long[] pfns, int from, int count) {
        int i = from;
        int end = from + count;
        while (i < end) {
            int j = i + 1;
            while (j < end && pfns[j] == pfns[j - 1] + 1) {
                j++;
            }
            SharedMemory.mapPages(r, at + (long) (i - from) * RingDescriptor.PAGE_SIZE, memfd,
                pfns[i] * RingDescriptor.PAGE_SIZE, (long) (j - i) * RingDescriptor.PAGE_SIZE);
            i = j;
        }
    }

    public MemorySegment control() {
        return control;
    }

    public MemorySegment data() {
        return data;
    }

    public int dataSize() {
        return dataSize;
    }

    public VmbusRing ring(Doorbell peer) {
        return new VmbusRing(control, data, dataSize, peer);
    }

    @Override
    public void close() {
        arena.close();
    }
}
