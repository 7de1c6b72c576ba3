package io.phost.vhdx;

import io.phost.core.sys.DirectFile;
import io.phost.core.sys.Native;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.PosixFile;

import java.io.IOException;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.StampedLock;

/**
 * A raw image on tmpfs served by memory copies: the whole file is mapped ({@code MAP_SHARED}) once, and a
 * read or write that lands on pages the file already owns is a copy between the mapping and the request's
 * iovecs on the caller's thread, with no system call (issue 19: on tmpfs a "device" read is a page-cache
 * copy, and {@code preadv}'s syscall was a third of the request). Everything else is the plain
 * {@code preadv}/{@code pwritev} on the fd.
 *
 * <p><b>Why no access can raise SIGBUS</b> (a fault in a file mapping is SIGBUS, not an I/O error):
 * <ul>
 *   <li>Past the end of the file: the mapping covers the disk's size, which phost never shrinks (a live
 *       resize only grows, and gives the grown disk a new mapping, {@link RawDisk#grownTo}); requests are
 *       checked against it.</li>
 *   <li>A full tmpfs: touching a page the file does not own makes the kernel allocate one, and on a full
 *       tmpfs that fault is SIGBUS. So only pages known to be backed are copied ({@link #backed}, one bit per
 *       4 KiB page): found with {@code SEEK_DATA}/{@code SEEK_HOLE} at open, or written successfully by
 *       {@code pwritev} here. A hole goes to {@code preadv} (zeros, nothing allocated) or {@code pwritev}
 *       (allocates, or fails with ENOSPC, which the guest sees as "no space"). Reading a hole through the
 *       mapping would also allocate it, so sparse disks stay sparse this way.</li>
 *   <li>Hole punching (unmap, write-zeroes) takes this mapping's lock exclusively and clears the bits first
 *       ({@link #beginDeallocate}); every copy and every bit set holds the lock shared, so no copy runs over a
 *       page being freed and no stale "backed" bit survives a punch.</li>
 *   <li>{@link #close} unmaps under the exclusive lock; later requests take the fd path.</li>
 * </ul>
 * What phost cannot lock out is another process truncating or punching the file behind its back (advisory
 * locks do not stop {@code truncate(1)}). Then a copy may fault; HotSpot turns a fault inside an Unsafe copy into
 * {@link InternalError} (the guard {@code MappedByteBuffer} relies on), caught here: the request is redone through
 * the fd (whose error the guest sees) and this mapping is switched off for good ({@link #faults()}).
 *
 * <p>Cost: a shared {@link StampedLock} read per request (one CAS to take, one to release) and a bit test per page.
 * Files above {@code -Dphost.storage.tmpfsMapMaxBytes} (default 256 GiB, a 8 MiB bitmap) are not mapped.
 */
public final class PageCacheMapping implements AutoCloseable {
    /** {@code -Dphost.storage.tmpfsMapped=false} serves tmpfs files by preadv/pwritev only (comparisons). */
    public static final boolean ENABLED = !"false".equals(System.getProperty("phost.storage.tmpfsMapped"));
    static final long MAX_BYTES = Long.getLong("phost.storage.tmpfsMapMaxBytes", 256L << 30);
    /** Backed bytes whose page-table entries are filled after open ({@link #populateInBackground}); 0 turns it off. */
    static final long POPULATE_BYTES = Long.getLong("phost.storage.tmpfsPopulateBytes", 1L << 30);
    private static final int MADV_POPULATE_READ = 22;
    private static final int MADV_POPULATE_WRITE = 23;
    static final int PAGE_SHIFT = 12;
    static final long PAGE = 1L << PAGE_SHIFT;

    private static final int PROT_READ = 1;
    private static final int PROT_WRITE = 2;
    private static final int MAP_SHARED = 1;
    /** void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) */
    private static final MethodHandle MMAP = Native.downcall("mmap",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
    /** int madvise(void *addr, size_t length, int advice) */
    private static final MethodHandle MADVISE = Native.downcall("madvise",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
    /** int munmap(void *addr, size_t length) */
    private static final MethodHandle MUNMAP = Native.downcall("munmap",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
    // SAFETY: used only with the mapping's own range (checked against size under the lock, unmapped only under
    // the exclusive lock) and iovec entries trusted code validated (IoVecs' rule: the VSP after its GPADL checks).
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    private static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final System.Logger LOG = System.getLogger("phost.storage");

    private final String name;
    private final int fd;
    private final long size;
    private final boolean writable;
    private final long base;
    private final long[] backed;
    private final StampedLock lock = new StampedLock();
    /** False once unmapped or after a fault (volatile: a fault switches it off under the shared lock). */
    private volatile boolean live = true;
    /** Written and read under the exclusive lock only. */
    private boolean unmapped;
    private volatile long faults;
    /** Bytes given page-table entries by {@link #populateInBackground}; -1 while it still runs. */
    private volatile long populated = -1;
    // Diagnostics, not exact when several queues share the mapping (plain increments).
    private long mappedIos;
    private long fdIos;

    private PageCacheMapping(String name, int fd, long size, boolean writable, long base) {
        this.name = name;
        this.fd = fd;
        this.size = size;
        this.writable = writable;
        this.base = base;
        this.backed = new long[(int) (((size + PAGE - 1) >>> PAGE_SHIFT) + 63 >>> 6)];
    }

    /**
     * Maps {@code file}'s first {@code size} bytes and records which pages it owns; null when mapping is off, the
     * file is empty or too large, or mmap fails (the caller keeps preadv/pwritev).
     */
    static PageCacheMapping open(PosixFile file, long size, boolean writable) {
        if (!ENABLED || size <= 0 || size > MAX_BYTES) {
            return null;
        }
        long addr;
        try {
            addr = (long) MMAP.invokeExact(Native.errnoState(), 0L, size, PROT_READ | (writable ? PROT_WRITE : 0),
                MAP_SHARED, file.fd(), 0L);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (addr == -1L) {
            LOG.log(System.Logger.Level.WARNING, "tmpfs disk " + file.path() + ": mmap failed (errno "
                + Native.lastErrno() + "), served by preadv/pwritev");
            return null;
        }
        PageCacheMapping m = new PageCacheMapping(String.valueOf(file.path()), file.fd(), size, writable, addr);
        try {
            m.scanBacked(file);
        } catch (IOException | RuntimeException e) {
            m.close(); // no bits: nothing would be served mapped anyway
            return null;
        }
        m.populateInBackground();
        return m;
    }

    /** Marks the pages inside the file's data extents; holes stay unmarked (SEEK_HOLE rounds to pages). */
    private void scanBacked(PosixFile file) throws IOException {
        long off = 0;
        while (off < size) {
            long d = file.seekData(off);
            if (d < 0 || d >= size) {
                return;
            }
            long h = file.seekHole(d);
            long end = h < 0 ? size : Math.min(h, size);
            setBits(d, end - d);
            off = end;
        }
    }

    /**
     * Fills the page-table entries of the first {@link #POPULATE_BYTES} of backed pages on a daemon thread
     * ({@code MADV_POPULATE_*}), so the guest's first touch of a page is not a minor fault (measured: 1.32 → 0.53
     * µs CPU per first-time 4 KiB write). Not on the agent: 1 GiB took 0.5–1.2 s at load 20. Each 2 MiB chunk is
     * done under the shared lock, only over pages whose bit is set, so it never populates a hole (which would
     * allocate) nor races a punch or the unmap; madvise reports failures as errors, never SIGBUS, and they are ignored.
     */
    private void populateInBackground() {
        if (POPULATE_BYTES <= 0) {
            populated = 0;
            return;
        }
        Thread.ofPlatform().daemon().name("tmpfs-populate").start(() -> populated = populateChunks(POPULATE_BYTES));
    }

    /** Populates backed runs, 2 MiB chunk by chunk, up to {@code budget} bytes; returns the bytes done. */
    private long populateChunks(long budget) {
        long left = budget;
        long pages = size >>> PAGE_SHIFT;
        for (long chunk = 0; chunk < pages && left > 0; chunk += 512) {
            long s = lock.readLock();
            try {
                if (!live) {
                    break;
                }
                long end = Math.min(pages, chunk + 512);
                for (long p = chunk; p < end && left > 0; ) {
                    if (!allBacked(p << PAGE_SHIFT, PAGE)) {
                        p++;
                        continue;
                    }
                    long q = p + 1;
                    while (q < end && allBacked(q << PAGE_SHIFT, PAGE)) {
                        q++;
                    }
                    long bytes = Math.min(left, (q - p) << PAGE_SHIFT);
                    left -= bytes;
                    int ignored = (int) MADVISE.invokeExact(Native.errnoState(), base + (p << PAGE_SHIFT), bytes,
                        writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
                    p = q;
                }
            } catch (Throwable t) {
                break; // populating is an optimisation: the copies fault pages in themselves
            } finally {
                lock.unlockRead(s);
            }
        }
        return budget - left;
    }

    /** Bytes the background populate covered, or -1 while it runs (tests). */
    public long populated() {
        return populated;
    }

    /** The mapped size (the disk's size when mapped). */
    public long size() {
        return size;
    }

    /** Requests copied through the mapping (approximate with several queues). */
    public long mappedIos() {
        return mappedIos;
    }

    /** Requests that went to preadv/pwritev: holes, unbacked pages, a closed or faulted mapping. */
    public long fdIos() {
        return fdIos;
    }

    /** Faults caught in a copy (another process truncated or punched the file); after one the mapping is off. */
    public long faults() {
        return faults;
    }

    /** True while copies are served (not closed, no fault seen). */
    public boolean live() {
        long s = lock.readLock();
        try {
            return live;
        } finally {
            lock.unlockRead(s);
        }
    }

    /** True when every page of {@code [offset, offset + length)} is known backed. */
    public boolean backed(long offset, long length) {
        long s = lock.readLock();
        try {
            return allBacked(offset, length);
        } finally {
            lock.unlockRead(s);
        }
    }

    /**
     * Reads {@code length} bytes at {@code offset} into the {@code count} iovecs at {@code iovecs}: a copy when
     * the range is mapped and backed, else preadv. Returns bytes read or -errno, as preadv.
     */
    public long readv(long iovecs, int count, long offset, long length) {
        long s = lock.readLock();
        try {
            if (live && inRange(offset, length) && allBacked(offset, length)) {
                try {
                    copy(iovecs, count, offset, false);
                    mappedIos++;
                    return length;
                } catch (InternalError fault) {
                    faulted(fault, offset, length);
                }
            }
            fdIos++;
            return DirectFile.preadv(fd, iovecs, count, offset);
        } finally {
            lock.unlockRead(s);
        }
    }

    /**
     * Writes {@code length} bytes at {@code offset} from the iovecs: a copy when the range is mapped and backed,
     * else pwritev, whose pages count as backed once it wrote them. Returns bytes written or -errno, as pwritev (a
     * short count from a filling file system is the caller's to finish).
     */
    public long writev(long iovecs, int count, long offset, long length) {
        long s = lock.readLock();
        try {
            if (live && writable && inRange(offset, length) && allBacked(offset, length)) {
                try {
                    copy(iovecs, count, offset, true);
                    mappedIos++;
                    return length;
                } catch (InternalError fault) {
                    faulted(fault, offset, length);
                }
            }
            fdIos++;
            long n = DirectFile.pwritev(fd, iovecs, count, offset);
            if (n > 0 && inRange(offset, n)) {
                setBits(offset, n); // under the shared lock: a punch cannot slip between the write and the mark
            }
            return n;
        } finally {
            lock.unlockRead(s);
        }
    }

    /**
     * Takes the exclusive lock and forgets the pages of {@code [offset, offset + length)}, before the caller frees
     * them (punch hole, zero range). Returns the stamp for {@link #endDeallocate}.
     */
    public long beginDeallocate(long offset, long length) {
        long s = lock.writeLock();
        if (length > 0 && offset < size) {
            clearBits(offset, Math.min(length, size - offset));
        }
        return s;
    }

    public void endDeallocate(long stamp) {
        lock.unlockWrite(stamp);
    }

    /** Unmaps, once no copy runs; later requests use the fd. */
    @Override
    public void close() {
        long s = lock.writeLock();
        try {
            live = false;
            if (!unmapped) {
                unmapped = true;
                try {
                    int ignored = (int) MUNMAP.invokeExact(Native.errnoState(), base, size);
                } catch (Throwable t) {
                    throw Native.rethrow(t);
                }
            }
        } finally {
            lock.unlockWrite(s);
        }
    }

    private void copy(long iovecs, int count, long offset, boolean write) {
        long at = base + offset;
        for (int i = 0; i < count; i++) {
            long entry = iovecs + (long) i * 16;
            long addr = EVERYTHING.get(ValueLayout.JAVA_LONG, entry);
            long len = EVERYTHING.get(ValueLayout.JAVA_LONG, entry + 8);
            if (write) {
                MemorySegment.copy(EVERYTHING, addr, EVERYTHING, at, len);
            } else {
                MemorySegment.copy(EVERYTHING, at, EVERYTHING, addr, len);
            }
            at += len;
        }
    }

    /** A fault means the file changed under us from outside: switch copies off (writers of {@code live} hold the lock). */
    private void faulted(InternalError fault, long offset, long length) {
        faults++;
        LOG.log(System.Logger.Level.ERROR, "tmpfs disk " + name + ": a copy at offset " + offset + " (" + length
            + " bytes) faulted (" + fault.getMessage() + "): the file was truncated or punched outside phost; "
            + "served by preadv/pwritev from now on");
        // Under the shared lock: another queue already past its check may fault once more (caught the same way);
        // the mapping stays mapped until close(), so no copy ever touches unmapped memory.
        live = false;
    }

    private boolean inRange(long offset, long length) {
        return offset >= 0 && length >= 0 && offset <= size - length;
    }

    private boolean allBacked(long offset, long length) {
        if (length <= 0) {
            return length == 0;
        }
        long first = offset >>> PAGE_SHIFT;
        long last = (offset + length - 1) >>> PAGE_SHIFT;
        for (long p = first; p <= last; p++) {
            if ((backed[(int) (p >>> 6)] & (1L << p)) == 0) { // 1L << p uses p's low 6 bits
                return false;
            }
        }
        return true;
    }

    private void setBits(long offset, long length) {
        long first = offset >>> PAGE_SHIFT;
        long last = (offset + length - 1) >>> PAGE_SHIFT;
        for (long p = first; p <= last; p++) {
            int w = (int) (p >>> 6);
            long bit = 1L << p;
            if (((long) BITS.getOpaque(backed, w) & bit) == 0) {
                BITS.getAndBitwiseOr(backed, w, bit); // several queues may mark one word at once
            }
        }
    }

    private void clearBits(long offset, long length) {
        long first = offset >>> PAGE_SHIFT;
        long last = (offset + length - 1) >>> PAGE_SHIFT;
        for (long p = first; p <= last; p++) {
            backed[(int) (p >>> 6)] &= ~(1L << p); // exclusive lock held: no concurrent marking
        }
    }

    @Override
    public String toString() {
        return "PageCacheMapping[" + name + ", " + size + " bytes, " + (live ? "live" : "off") + "]";
    }
}
