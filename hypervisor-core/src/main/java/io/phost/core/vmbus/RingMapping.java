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
    /** Null when the garbage collector unmaps ({@link #mapUntilUnreachable}). */
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

    /**
     * Maps pages {@code pfns[from .. from+count)} of {@code memfd} as a ring, unmapped by {@link #close}. The
     * ring's hot path uses raw addresses ({@link VmbusRing}): close only after every thread using it has ended.
     */
    public static RingMapping map(int memfd, long[] pfns, int from, int count, boolean doubleMap) {
        return map(memfd, pfns, from, count, doubleMap, true);
    }

    /**
     * As {@link #map}, but unmapped by the garbage collector once nothing can reach the mapping (or a ring
     * over it): {@link #close} does nothing. For the guest side, whose rings are used by threads the library
     * does not own (a VSC's reader, the integration-services thread): a raw access after an explicit unmap
     * would fault the process, and a reachable ring is never unmapped.
     */
    public static RingMapping mapUntilUnreachable(int memfd, long[] pfns, int from, int count, boolean doubleMap) {
        return map(memfd, pfns, from, count, doubleMap, false);
    }

    private static RingMapping map(int memfd, long[] pfns, int from, int count, boolean doubleMap, boolean closeable) {
        if (count < 2) {
            throw new RingException(RingException.Reason.BAD_GEOMETRY, 0, "a ring needs a control page and at least one data page");
        }
        long dataSize = (long) (count - 1) * RingDescriptor.PAGE_SIZE;
        if (dataSize > RingDescriptor.MAX_DATA_SIZE) {
            throw new RingException(RingException.Reason.BAD_GEOMETRY, 0, "data area of " + dataSize + " bytes");
        }
        long total = RingDescriptor.CONTROL_LENGTH + (doubleMap ? 2 : 1) * dataSize;
        // a shared arena still guards the MemorySegment accesses (payload copies, handlers): unmapping waits
        // until no thread is inside one, and later ones throw instead of crashing the JVM
        Arena arena = closeable ? Arena.ofShared() : Arena.ofAuto();
        MemorySegment r = SharedMemory.reserve(total, arena);
        try {
            mapRun(r, 0, memfd, pfns, from, 1);
            mapRun(r, RingDescriptor.CONTROL_LENGTH, memfd, pfns, from + 1, count - 1);
            if (doubleMap) {
                mapRun(r, RingDescriptor.CONTROL_LENGTH + dataSize, memfd, pfns, from + 1, count - 1);
            }
        } catch (RuntimeException e) {
            if (closeable) {
                arena.close();
            }
            throw e;
        }
        return new RingMapping(closeable ? arena : null, r, (int) dataSize, doubleMap);
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

    /** Unmaps now ({@link #map}); a no-op for {@link #mapUntilUnreachable}. */
    @Override
    public void close() {
        if (arena != null) {
            arena.close();
        }
    }
}
