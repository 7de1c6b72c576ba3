package io.phost.core.vhost;

import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.SharedMemory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * The dirty-page log a front-end shares for live migration (SET_LOG_BASE with LOG_SHMFD; vhost-user.rst
 * "Migration"): one bit per 4 KiB guest-physical page, page {@code p} at byte {@code p / 8}, bit {@code p % 8}
 * (the same bit as bit {@code p % 64} of little-endian u64 word {@code p / 64}, which is how QEMU reads and
 * clears it, with an atomic exchange per word). While VHOST_F_LOG_ALL is negotiated, every byte the back-end
 * writes into guest memory (device-writable buffers, used ring entries and index, avail_event) has its page
 * marked with an atomic OR, so QEMU copies the page again before the guest runs on the destination.
 * <pre>
 *   SET_LOG_BASE {u64 mmap_size, u64 mmap_offset} + fd ──▶ map [offset, offset+size) shared ──▶ reply (size 0)
 * </pre>
 */
final class DirtyLog implements AutoCloseable {
    static final int PAGE_SHIFT = 12;
    /** A log covers at most 2^48 bytes of guest memory (2^36 pages = 8 GiB of log): more is a hostile size. */
    static final long MAX_LOG_BYTES = 1L << 33;
    private static final VarHandle WORD = ValueLayout.JAVA_LONG.varHandle();

    private final MemorySegment bits;

    private DirtyLog(MemorySegment bits) {
        this.bits = bits;
    }

    /** Maps {@code size} bytes of {@code fd} at {@code offset} (closing the fd either way); BAD_REGION for a bad shape. */
    static DirtyLog map(int fd, long size, long offset) {
        try {
            String where = "SET_LOG_BASE size=" + size + " offset=" + offset;
            if (size <= 0 || size > MAX_LOG_BYTES || size % 8 != 0 || offset < 0 || offset % SharedMemory.PAGE_SIZE != 0
                || offset > Long.MAX_VALUE - size) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION,
                    where + ": size must be a positive multiple of 8 up to " + MAX_LOG_BYTES + ", offset page-aligned");
            }
            long fileSize;
            try {
                fileSize = Fd.size(fd);
            } catch (NativeException e) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": not a mappable file (" + e.getMessage() + ")");
            }
            if (offset + size > fileSize) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": past the file's " + fileSize + " bytes");
            }
            MemorySegment m;
            try {
                m = SharedMemory.mapShared(fd, offset, size);
            } catch (NativeException e) {
                throw new VhostUserException(VhostUserException.Reason.BAD_REGION, where + ": " + e.getMessage());
            }
            return new DirtyLog(m);
        } finally {
            Fd.close(fd);
        }
    }

    /**
     * Marks the pages of guest-physical range [gpa, gpa + len) dirty. Pages past the log's end are not marked
     * (the front-end sized the log for its memory; a range outside it is not guest RAM). Allocates nothing.
     */
    void mark(long gpa, long len) {
        if (len <= 0 || gpa < 0) {
            return;
        }
        long first = gpa >>> PAGE_SHIFT;
        long last = (gpa > Long.MAX_VALUE - len ? Long.MAX_VALUE : gpa + len - 1) >>> PAGE_SHIFT;
        long words = bits.byteSize() >>> 3;
        for (long page = first; page <= last; page++) {
            long word = page >>> 6;
            if (word >= words) {
                return;
            }
            // Atomic OR: QEMU's migration thread exchanges whole words concurrently; a plain store could lose its bits.
            WORD.getAndBitwiseOr(bits, word << 3, 1L << (page & 63));
        }
    }

    @Override
    public void close() {
        SharedMemory.unmap(bits);
    }
}
