package io.phost.vhdx;

import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;

/**
 * A file descriptor with positional I/O through FFM downcalls ({@code pread}, {@code pwrite},
 * {@code fallocate}, {@code lseek(SEEK_DATA/SEEK_HOLE)}, {@code fdatasync}).
 *
 * <p>vhdx-engine depends on no other project module (ARCHITECTURE.md), so it binds the handful of libc
 * calls it needs here instead of borrowing {@code io.phost.core.sys}. Why not {@code FileChannel}: it
 * has no hole punching, no SEEK_DATA, and wraps every call in a ByteBuffer; these handles take a
 * {@link MemorySegment} directly, native or heap, and allocate nothing per call.
 *
 * <p>Heap segments go through "critical" handles ({@code Linker.Option.critical(true)}) which pin the
 * array for the duration of the syscall; calls are split into {@link #CRITICAL_CHUNK} pieces so a GC
 * never waits behind one long transfer.
 *
 * <p>Thread-safe: positional calls share no state; errno is captured into a per-thread segment.
 */
public final class PosixFile implements AutoCloseable {
    public static final int O_RDONLY = 0;
    public static final int O_RDWR = 2;
    public static final int O_CREAT = 0100;
    public static final int O_EXCL = 0200;
    public static final int O_CLOEXEC = 02000000;
    public static final int FALLOC_FL_KEEP_SIZE = 1;
    public static final int FALLOC_FL_PUNCH_HOLE = 2;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;
    static final int SEEK_END = 2;
    static final int SEEK_DATA = 3;
    static final int SEEK_HOLE = 4;
    static final int EINTR = 4;
    static final int ENXIO = 6;
    static final int EOPNOTSUPP = 95;
    static final int ENOSYS = 38;
    static final int EINVAL = 22;
    static final int ENODEV = 19;

    /** Largest piece a heap segment is pinned for in one syscall. */
    static final long CRITICAL_CHUNK = 1 << 20;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
        CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE = Linker.Option.captureCallState("errno");
    private static final ThreadLocal<MemorySegment> ERRNO_STATE =
        ThreadLocal.withInitial(() -> Arena.global().allocate(CAPTURE_LAYOUT));

    private static final ValueLayout.OfLong SIZE_T = ValueLayout.JAVA_LONG;
    /** int open(const char *path, int flags, ...mode) */
    private static final MethodHandle OPEN = handle("open",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
        Linker.Option.firstVariadicArg(2), CAPTURE);
    /** ssize_t pread(int fd, void *buf, size_t count, off_t offset) */
    private static final FunctionDescriptor RW = FunctionDescriptor.of(SIZE_T,
        ValueLayout.JAVA_INT, ValueLayout.ADDRESS, SIZE_T, ValueLayout.JAVA_LONG);
    private static final MethodHandle PREAD = handle("pread", RW, CAPTURE);
    private static final MethodHandle PWRITE = handle("pwrite", RW, CAPTURE);
    /** Heap-segment variants, built on first use: each downcall handle costs start-up time. */
    private static final class Heap {
        static final MethodHandle PREAD = handle("pread", RW, CAPTURE, Linker.Option.critical(true));
        static final MethodHandle PWRITE = handle("pwrite", RW, CAPTURE, Linker.Option.critical(true));
    }
    /** int fallocate(int fd, int mode, off_t offset, off_t len) */
    private static final MethodHandle FALLOCATE = handle("fallocate", FunctionDescriptor.of(ValueLayout.JAVA_INT,
        ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG), CAPTURE);
    /** off_t lseek(int fd, off_t offset, int whence) */
    private static final MethodHandle LSEEK = handle("lseek", FunctionDescriptor.of(ValueLayout.JAVA_LONG,
        ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT), CAPTURE);
    /** int ftruncate(int fd, off_t length) */
    private static final MethodHandle FTRUNCATE = handle("ftruncate", FunctionDescriptor.of(ValueLayout.JAVA_INT,
        ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), CAPTURE);
    /** int fdatasync(int fd) / int fsync(int fd) / int close(int fd) */
    private static final MethodHandle FDATASYNC = handle("fdatasync",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CAPTURE);
    private static final MethodHandle FSYNC = handle("fsync",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CAPTURE);
    private static final MethodHandle CLOSE = handle("close",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CAPTURE);
    /** Rarely used calls, bound on first use. */
    private static final class Rare {
        /** int fstat(int fd, struct stat *buf): only st_blocks is read (offset 64 on x86-64 and aarch64). */
        static final MethodHandle FSTAT = handle("fstat",
            FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS), CAPTURE);
        static final MethodHandle STRERROR = LINKER.downcallHandle(LIBC.find("strerror").orElseThrow(),
            FunctionDescriptor.of(ValueLayout.ADDRESS.withTargetLayout(MemoryLayout.sequenceLayout(256, ValueLayout.JAVA_BYTE)),
                ValueLayout.JAVA_INT));
    }
    static final long STAT_SIZE = 256;
    static final long ST_BLOCKS_OFFSET = 64;

    private final int fd;
    private final Path path;
    private final boolean readOnly;
    private final java.util.concurrent.atomic.AtomicLong syncs = new java.util.concurrent.atomic.AtomicLong();
    private volatile boolean closed;

    private PosixFile(int fd, Path path, boolean readOnly) {
        this.fd = fd;
        this.path = path;
        this.readOnly = readOnly;
    }

    private static MethodHandle handle(String name, FunctionDescriptor d, Linker.Option... options) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name)),
            d, options);
    }

    /** Opens an existing file (or block device). */
    public static PosixFile open(Path path, boolean readOnly) throws IOException {
        return open(path, readOnly ? O_RDONLY : O_RDWR, 0);
    }

    /** Creates a new file; fails if it exists (O_EXCL), so an image is never silently overwritten. */
    public static PosixFile createNew(Path path) throws IOException {
        return open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
    }

    private static PosixFile open(Path path, int flags, int mode) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cpath = arena.allocateFrom(path.toString());
            int fd;
            do {
                fd = (int) OPEN.invokeExact(ERRNO_STATE.get(), cpath, flags | O_CLOEXEC, mode);
            } while (fd == -1 && errno() == EINTR);
            if (fd == -1) {
                int e = errno();
                if (e == 2) {
                    throw new java.nio.file.NoSuchFileException(path.toString());
                }
                if (e == 17) {
                    throw new java.nio.file.FileAlreadyExistsException(path.toString());
                }
                if (e == 13) {
                    throw new java.nio.file.AccessDeniedException(path.toString());
                }
                throw failure("open", path, -1, e);
            }
            return new PosixFile(fd, path, (flags & 3) == O_RDONLY);
        } catch (IOException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw new IllegalStateException(t);
        }
    }

    public Path path() {
        return path;
    }

    public boolean readOnly() {
        return readOnly;
    }

    /** The raw fd, for callers that do their own I/O on it (io_uring); valid until {@link #close()}. */
    public int fd() {
        return fd;
    }

    /** How many fsync/fdatasync calls succeeded on this handle (tests check that a flush really syncs). */
    public long syncCount() {
        return syncs.get();
    }

    /** Reads exactly {@code dst.byteSize()} bytes at {@code offset}; end of file before that is an {@link EOFException}. */
    public void readFully(MemorySegment dst, long offset) throws IOException {
        long done = 0;
        long total = dst.byteSize();
        boolean heap = !dst.isNative();
        while (done < total) {
            long want = heap ? Math.min(total - done, CRITICAL_CHUNK) : total - done;
            MemorySegment part = (done == 0 && want == total) ? dst : dst.asSlice(done, want);
            long n;
            try {
                n = heap ? (long) Heap.PREAD.invokeExact(ERRNO_STATE.get(), fd, part, want, offset + done)
                    : (long) PREAD.invokeExact(ERRNO_STATE.get(), fd, part, want, offset + done);
            } catch (Throwable t) {
                throw rethrow(t);
            }
            if (n == -1) {
                int e = errno();
                if (e == EINTR) {
                    continue;
                }
                throw failure("pread", path, offset + done, e);
            }
            if (n == 0) {
                throw new EOFException(path + ": end of file at offset " + (offset + done) + " reading "
                    + total + " bytes at " + offset);
            }
            done += n;
        }
    }

    /** Writes all of {@code src} at {@code offset}. */
    public void writeFully(MemorySegment src, long offset) throws IOException {
        long done = 0;
        long total = src.byteSize();
        boolean heap = !src.isNative();
        while (done < total) {
            long want = heap ? Math.min(total - done, CRITICAL_CHUNK) : total - done;
            MemorySegment part = (done == 0 && want == total) ? src : src.asSlice(done, want);
            long n;
            try {
                n = heap ? (long) Heap.PWRITE.invokeExact(ERRNO_STATE.get(), fd, part, want, offset + done)
                    : (long) PWRITE.invokeExact(ERRNO_STATE.get(), fd, part, want, offset + done);
            } catch (Throwable t) {
                throw rethrow(t);
            }
            if (n == -1) {
                int e = errno();
                if (e == EINTR) {
                    continue;
                }
                throw failure("pwrite", path, offset + done, e);
            }
            done += n;
        }
    }

    /** File (or block device) size, from {@code lseek(SEEK_END)}. */
    public long size() throws IOException {
        long r;
        try {
            r = (long) LSEEK.invokeExact(ERRNO_STATE.get(), fd, 0L, SEEK_END);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r == -1) {
            throw failure("lseek(SEEK_END)", path, 0, errno());
        }
        return r;
    }

    /** Bytes the file occupies on its device ({@code st_blocks * 512}): what sparse files actually cost. */
    public long diskBytes() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment st = arena.allocate(STAT_SIZE, 8);
            int r;
            try {
                r = (int) Rare.FSTAT.invokeExact(ERRNO_STATE.get(), fd, st);
            } catch (Throwable t) {
                throw rethrow(t);
            }
            if (r == -1) {
                throw failure("fstat", path, 0, errno());
            }
            return st.get(ValueLayout.JAVA_LONG, ST_BLOCKS_OFFSET) * 512;
        }
    }

    /**
     * The first offset at or after {@code offset} that holds data ({@code SEEK_DATA}), or {@code -1} when
     * there is none before the end of the file. File systems without hole support report everything as data.
     */
    public long seekData(long offset) throws IOException {
        return seek(offset, SEEK_DATA, "lseek(SEEK_DATA)");
    }

    /** The first hole at or after {@code offset} ({@code SEEK_HOLE}); the end of the file counts as a hole. */
    public long seekHole(long offset) throws IOException {
        return seek(offset, SEEK_HOLE, "lseek(SEEK_HOLE)");
    }

    private long seek(long offset, int whence, String op) throws IOException {
        long r;
        try {
            r = (long) LSEEK.invokeExact(ERRNO_STATE.get(), fd, offset, whence);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r == -1) {
            int e = errno();
            if (e == ENXIO) {
                return -1;
            }
            if (e == EINVAL || e == EOPNOTSUPP) {
                // No SEEK_DATA support: everything is data, the end is the only hole.
                return whence == SEEK_DATA ? offset : size();
            }
            throw failure(op, path, offset, e);
        }
        return r;
    }

    /**
     * {@code fallocate(mode, offset, length)}; returns false when the file system does not support the mode
     * (EOPNOTSUPP, ENOSYS, ENODEV), so callers fall back to writing zeros.
     */
    public boolean fallocate(int mode, long offset, long length) throws IOException {
        while (true) {
            int r;
            try {
                r = (int) FALLOCATE.invokeExact(ERRNO_STATE.get(), fd, mode, offset, length);
            } catch (Throwable t) {
                throw rethrow(t);
            }
            if (r == 0) {
                return true;
            }
            int e = errno();
            if (e == EINTR) {
                continue;
            }
            if (e == EOPNOTSUPP || e == ENOSYS || e == ENODEV || (e == EINVAL && mode != 0)) {
                return false;
            }
            throw failure("fallocate(mode=" + mode + ", len=" + length + ")", path, offset, e);
        }
    }

    public void truncate(long length) throws IOException {
        int r;
        try {
            r = (int) FTRUNCATE.invokeExact(ERRNO_STATE.get(), fd, length);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r == -1) {
            throw failure("ftruncate", path, length, errno());
        }
    }

    /** fdatasync: data plus the metadata needed to read it back (size), not timestamps. */
    public void dataSync() throws IOException {
        sync(FDATASYNC, "fdatasync");
    }

    public void sync() throws IOException {
        sync(FSYNC, "fsync");
    }

    private void sync(MethodHandle h, String op) throws IOException {
        int r;
        try {
            r = (int) h.invokeExact(ERRNO_STATE.get(), fd);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r == -1) {
            int e = errno();
            if (e == EINVAL && readOnly) {
                return; // some special files refuse sync; nothing of ours to make durable
            }
            throw failure(op, path, 0, e);
        }
        syncs.incrementAndGet();
    }

    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        int r;
        try {
            r = (int) CLOSE.invokeExact(ERRNO_STATE.get(), fd);
        } catch (Throwable t) {
            throw rethrow(t);
        }
        if (r == -1 && errno() != EINTR) {
            throw failure("close", path, 0, errno());
        }
    }

    private static int errno() {
        return (int) ERRNO.get(ERRNO_STATE.get(), 0L);
    }

    static String strerror(int errno) {
        try {
            return ((MemorySegment) Rare.STRERROR.invokeExact(errno)).getString(0);
        } catch (Throwable t) {
            return "errno " + errno;
        }
    }

    private static IOException failure(String op, Path path, long offset, int errno) {
        String msg = op + " failed on " + path + " at offset " + offset + ": " + strerror(errno) + " (errno " + errno + ")";
        return DiskFullException.isNoSpaceErrno(errno) ? new DiskFullException(msg) : new IOException(msg);
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) {
            return r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException(t);
    }
}
