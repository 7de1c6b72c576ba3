package io.phost.storage.engine;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A preallocated, reusable scatter/gather list: a native {@code struct iovec[capacity]} that io_uring and
 * preadv read directly, plus the running total. One per request slot, filled per I/O without allocating.
 *
 * <pre>
 *   struct iovec { void *iov_base; size_t iov_len; }   16 bytes each, native order
 *   +----------+----------+----------+----------+----
 *   | base[0]  | len[0]   | base[1]  | len[1]   | ...      count entries valid, total = sum(len)
 *   +----------+----------+----------+----------+----
 * </pre>
 *
 * <p>Trust: entries are raw addresses. Only trusted code fills them (the VSP after its GPADL checks, the
 * NBD server and the benchmarks from their own segments); engines and the SCSI layer dereference them.
 */
public final class IoVecs {
    public static final int IOVEC_SIZE = 16;

    // SAFETY: a segment spanning the whole address space, used only to copy to/from entries that trusted
    // code validated (see class comment). It lets us copy without allocating a slice per I/O.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    private final MemorySegment array;
    private final int capacity;
    private int count;
    private long total;

    public IoVecs(int capacity) {
        if (capacity <= 0 || capacity > 1 << 16) {
            throw new IllegalArgumentException("iovec capacity " + capacity);
        }
        this.capacity = capacity;
        this.array = Arena.global().allocate((long) capacity * IOVEC_SIZE, 16);
    }

    /** A one-entry list over a native segment (tests, benchmarks, the NBD server). */
    public static IoVecs of(MemorySegment segment) {
        IoVecs v = new IoVecs(1);
        v.add(segment);
        return v;
    }

    public void clear() {
        count = 0;
        total = 0;
    }

    /** Appends an entry, merging it into the previous one when contiguous. False when full. */
    public boolean tryAdd(long address, long length) {
        if (length <= 0) {
            return length == 0;
        }
        if (count > 0) {
            long prevBase = baseAt(count - 1);
            long prevLen = lengthAt(count - 1);
            if (prevBase + prevLen == address) {
                array.set(ValueLayout.JAVA_LONG, (long) (count - 1) * IOVEC_SIZE + 8, prevLen + length);
                total += length;
                return true;
            }
        }
        if (count == capacity) {
            return false;
        }
        long at = (long) count * IOVEC_SIZE;
        array.set(ValueLayout.JAVA_LONG, at, address);
        array.set(ValueLayout.JAVA_LONG, at + 8, length);
        count++;
        total += length;
        return true;
    }

    /** Appends a native segment. */
    public void add(MemorySegment segment) {
        if (!segment.isNative()) {
            throw new IllegalArgumentException("I/O buffers must be native segments");
        }
        if (!tryAdd(segment.address(), segment.byteSize())) {
            throw new IllegalStateException("iovec list full (" + capacity + ")");
        }
    }

    public int count() {
        return count;
    }

    public int capacity() {
        return capacity;
    }

    public long totalLength() {
        return total;
    }

    public long baseAt(int i) {
        return array.get(ValueLayout.JAVA_LONG, (long) i * IOVEC_SIZE);
    }

    public long lengthAt(int i) {
        return array.get(ValueLayout.JAVA_LONG, (long) i * IOVEC_SIZE + 8);
    }

    /** The native address of the iovec array (for readv/writev SQEs and preadv). */
    public long arrayAddress() {
        return array.address();
    }

    /** True when every entry starts and ends on a multiple of {@code alignment} (O_DIRECT needs this). */
    public boolean aligned(int alignment) {
        long mask = alignment - 1L;
        for (int i = 0; i < count; i++) {
            if (((baseAt(i) | lengthAt(i)) & mask) != 0) {
                return false;
            }
        }
        return true;
    }

    /** A segment for entry {@code i}. Allocates a segment object: for the thread-pool path only. */
    public MemorySegment segmentAt(int i) {
        return EVERYTHING.asSlice(baseAt(i), lengthAt(i));
    }

    /** Scatters {@code length} bytes of {@code src} (from {@code srcOffset}) into the list from its start. */
    public long scatterFrom(MemorySegment src, long srcOffset, long length) {
        long left = Math.min(length, total);
        long done = 0;
        for (int i = 0; i < count && left > 0; i++) {
            long n = Math.min(left, lengthAt(i));
            MemorySegment.copy(src, srcOffset + done, EVERYTHING, baseAt(i), n);
            done += n;
            left -= n;
        }
        return done;
    }

    /** Gathers up to {@code length} bytes from the list's start into {@code dst}. */
    public long gatherTo(MemorySegment dst, long dstOffset, long length) {
        long left = Math.min(length, total);
        long done = 0;
        for (int i = 0; i < count && left > 0; i++) {
            long n = Math.min(left, lengthAt(i));
            MemorySegment.copy(EVERYTHING, baseAt(i), dst, dstOffset + done, n);
            done += n;
            left -= n;
        }
        return done;
    }

    /** Fills the first {@code length} bytes of the list with zeros. */
    public void zero(long length) {
        long left = Math.min(length, total);
        for (int i = 0; i < count && left > 0; i++) {
            long n = Math.min(left, lengthAt(i));
            EVERYTHING.asSlice(baseAt(i), n).fill((byte) 0);
            left -= n;
        }
    }

    /** True when every byte of the first {@code length} bytes is zero. */
    public boolean isZero(long length) {
        long left = Math.min(length, total);
        for (int i = 0; i < count && left > 0; i++) {
            long n = Math.min(left, lengthAt(i));
            long base = baseAt(i);
            long j = 0;
            for (; j + 8 <= n; j += 8) {
                if (EVERYTHING.get(ValueLayout.JAVA_LONG_UNALIGNED, base + j) != 0) {
                    return false;
                }
            }
            for (; j < n; j++) {
                if (EVERYTHING.get(ValueLayout.JAVA_BYTE, base + j) != 0) {
                    return false;
                }
            }
            left -= n;
        }
        return true;
    }
}
