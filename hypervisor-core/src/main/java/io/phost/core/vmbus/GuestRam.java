package io.phost.core.vmbus;

import io.phost.core.sys.Fd;
import io.phost.core.sys.SharedMemory;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;

/**
 * Guest side: the partition's memory (a sealed memfd mapped once) and a first-fit page allocator for
 * rings and data buffers. Guest-physical address = offset in the memfd.
 */
public final class GuestRam implements AutoCloseable {
    public static final int PAGE_SIZE = 4096;
    private final int memfd;
    private final java.lang.foreign.Arena arena;
    private final MemorySegment memory;
    private final int pages;
    private final BitSet used;

    private GuestRam(int memfd, java.lang.foreign.Arena arena, MemorySegment memory) {
        this.memfd = memfd;
        this.arena = arena;
        this.memory = memory;
        this.pages = (int) (memory.byteSize() / PAGE_SIZE);
        this.used = new BitSet(pages);
        used.set(0); // gpa 0 stays unused so that 0 never names a real buffer
    }

    /** Creates {@code bytes} of guest memory (rounded up to pages), sealed against shrinking and growing. */
    public static GuestRam create(String name, long bytes) {
        long size = (bytes + PAGE_SIZE - 1) / PAGE_SIZE * PAGE_SIZE;
        int fd = SharedMemory.createSealed(name, size);
        java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared();
        try {
            return new GuestRam(fd, arena, SharedMemory.mapShared(fd, 0, size, arena));
        } catch (RuntimeException e) {
            arena.close();
            Fd.close(fd);
            throw e;
        }
    }

    public int memfd() {
        return memfd;
    }

    public MemorySegment segment() {
        return memory;
    }

    public long size() {
        return memory.byteSize();
    }

    /** A contiguous run of pages; {@code gpa} is its guest-physical address. */
    public record Buffer(long gpa, int pages, MemorySegment segment) {
        public long firstPfn() {
            return gpa / PAGE_SIZE;
        }

        public long[] pfns() {
            long[] p = new long[pages];
            for (int i = 0; i < pages; i++) {
                p[i] = gpa / PAGE_SIZE + i;
            }
            return p;
        }
    }

    /** Allocates zeroed pages for {@code bytes}; throws when guest memory is exhausted. */
    public synchronized Buffer allocate(long bytes) {
        int n = (int) ((bytes + PAGE_SIZE - 1) / PAGE_SIZE);
        int start = 0;
        while (true) {
            start = used.nextClearBit(start);
            if (start + n > pages) {
                throw new IllegalStateException("guest memory exhausted: need " + n + " pages");
            }
            int nextUsed = used.nextSetBit(start);
            if (nextUsed < 0 || nextUsed >= start + n) {
                used.set(start, start + n);
                MemorySegment s = memory.asSlice((long) start * PAGE_SIZE, (long) n * PAGE_SIZE);
                s.fill((byte) 0);
                return new Buffer((long) start * PAGE_SIZE, n, s);
            }
            start = nextUsed;
        }
    }

    public synchronized void free(Buffer b) {
        used.clear((int) b.firstPfn(), (int) b.firstPfn() + b.pages());
    }

    @Override
    public void close() {
        arena.close();
        Fd.close(memfd);
    }
}
