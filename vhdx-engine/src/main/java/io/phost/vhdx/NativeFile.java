package io.phost.vhdx;

import java.io.Closeable;
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
import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;

/**
 * An image file opened with POSIX {@code open} and accessed with {@code pread}/{@code pwrite} through FFM,
 * so the I/O path allocates nothing (a {@code FileChannel} needs a {@code ByteBuffer} per call).
 *
 * <p>Why FFM here and not in {@code io.phost.core.sys}: vhdx-engine is a leaf library and may not depend on
 * hypervisor-core; this class is the engine's only native code and binds six libc functions.
 *
 * <p>Native segments are passed to the kernel as raw addresses after an explicit bounds check (no slice
 * objects); heap segments (tests, tools) go through a {@code critical} handle that may pin the array.
 * Threading: all methods are safe to call concurrently (positional I/O only).
 */
public final class NativeFile implements Closeable {
    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE = Linker.Option.captureCallState("errno");
    /** One capture segment per thread, allocated once: no allocation per call for errno. */
    private static final ThreadLocal<MemorySegment> ERRNO_STATE =
        ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE_LAYOUT));

    private static final int O_RDONLY = 0;
    private static final int O_RDWR = 2;
    private static final int O_CREAT = 0x40;
    private static final int O_EXCL = 0x80;
    private static final int O_CLOEXEC = 0x80000;
    /** O_DIRECT differs by architecture (asm-generic 0x4000; arm64 0x10000). */
    private static final int O_DIRECT = "aarch64".equals(System.getProperty("os.arch")) ? 0x10000 : 0x4000;
    private static final int EINVAL = 22;
    private static final int SEEK_END = 2;
    private static final int EINTR = 4;
    private static final int EEXIST = 17;
    private static final int EWOULDBLOCK = 11;
    private static final int LOCK_SH = 1;
    private static final int LOCK_EX = 2;
    private static final int LOCK_NB = 4;

    // int open(const char *path, int flags, ...mode_t mode)
    private static final MethodHandle OPEN = LINKER.downcallHandle(LIBC.find("open").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
        CAPTURE, Linker.Option.firstVariadicArg(2));
    // ssize_t pread(int fd, void *buf (raw address), size_t count, off_t offset)
    private static final MethodHandle PREAD_ADDR = bind("pread", ValueLayout.JAVA_LONG, false);
    private static final MethodHandle PWRITE_ADDR = bind("pwrite", ValueLayout.JAVA_LONG, false);
    // The same without errno capture: the steady path pays for no capture state or ThreadLocal; a failed
    // call is repeated through the capturing handle to learn errno (pread/pwrite that failed moved nothing).
    private static final MethodHandle PREAD_FAST = bindFast("pread");
    private static final MethodHandle PWRITE_FAST = bindFast("pwrite");
    // same, buffer as a (possibly heap) segment
    private static final MethodHandle PREAD_SEG = bind("pread", ValueLayout.ADDRESS, true);
    private static final MethodHandle PWRITE_SEG = bind("pwrite", ValueLayout.ADDRESS, true);
    // int fdatasync(int fd)
    private static final MethodHandle FDATASYNC = LINKER.downcallHandle(LIBC.find("fdatasync").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CAPTURE);
    // int ftruncate(int fd, off_t length)
    private static final MethodHandle FTRUNCATE = LINKER.downcallHandle(LIBC.find("ftruncate").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG), CAPTURE);
    // off_t lseek(int fd, off_t offset, int whence)
    private static final MethodHandle LSEEK = LINKER.downcallHandle(LIBC.find("lseek").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT), CAPTURE);
    // int flock(int fd, int operation)
    private static final MethodHandle FLOCK = LINKER.downcallHandle(LIBC.find("flock").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT), CAPTURE);
    // int close(int fd)
    private static final MethodHandle CLOSE = LINKER.downcallHandle(LIBC.find("close").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    private static final MethodHandle STRERROR = LINKER.downcallHandle(LIBC.find("strerror").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.ADDRESS.withTargetLayout(MemoryLayout.sequenceLayout(256, ValueLayout.JAVA_BYTE)),
            ValueLayout.JAVA_INT));

    private static MethodHandle bind(String name, ValueLayout bufLayout, boolean critical) {
        FunctionDescriptor fd = FunctionDescriptor.of(ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_INT, bufLayout, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG);
        MemorySegment sym = LIBC.find(name).orElseThrow();
        return critical
            ? LINKER.downcallHandle(sym, fd, CAPTURE, Linker.Option.critical(true))
            : LINKER.downcallHandle(sym, fd, CAPTURE);
    }

    private static MethodHandle bindFast(String name) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(), FunctionDescriptor.of(ValueLayout.JAVA_LONG,
            ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
    }

    private final Path path;
    private final int fd;
    private final boolean readOnly;
    private final boolean direct;
    private final AtomicLong syncs = new AtomicLong();
    private volatile boolean closed;

    private NativeFile(Path path, int fd, boolean readOnly, boolean direct) {
        this.path = path;
        this.fd = fd;
        this.readOnly = readOnly;
        this.direct = direct;
    }

    /** Opens an existing file. */
    public static NativeFile open(Path path, boolean readOnly) throws IOException {
        return doOpen(path, readOnly ? O_RDONLY : O_RDWR, readOnly);
    }

    /** Creates a new file; fails if it exists. */
    public static NativeFile create(Path path) throws IOException {
        return doOpen(path, O_RDWR | O_CREAT | O_EXCL, false);
    }

    /**
     * Opens an existing file a second time with O_DIRECT (for {@link MappedDisk#mappedFd()}); null when the
     * file system refuses O_DIRECT (EINVAL: tmpfs on older kernels, some FUSE and network file systems).
     */
    public static NativeFile openDirect(Path path, boolean readOnly) throws IOException {
        return doOpen(path, (readOnly ? O_RDONLY : O_RDWR) | O_DIRECT, readOnly);
    }

    /**
     * The fd for {@link MappedDisk#mappedFd()}: O_DIRECT (no host page cache, like the raw-disk backend and
     * Hyper-V) unless {@code -Dphost.vhdx.mappedDirect=false} or the file system refuses it, then buffered.
     * {@link #direct()} tells which.
     */
    public static NativeFile openMapped(Path path, boolean readOnly) throws IOException {
        NativeFile f = Boolean.parseBoolean(System.getProperty("phost.vhdx.mappedDirect", "true"))
            ? openDirect(path, readOnly) : null;
        return f != null ? f : open(path, readOnly);
    }

    /** True when this handle was opened with O_DIRECT. */
    public boolean direct() {
        return direct;
    }

    private static NativeFile doOpen(Path path, int flags, boolean readOnly) throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cpath = arena.allocateFrom(path.toString());
            int fd;
            do {
                fd = (int) OPEN.invokeExact(ERRNO_STATE.get(), cpath, flags | O_CLOEXEC, 0644);
            } while (fd == -1 && errno() == EINTR);
            if (fd < 0) {
                int err = errno();
                if (err == EINVAL && (flags & O_DIRECT) != 0) {
                    return null;
                }
                if (err == EEXIST && (flags & O_EXCL) != 0) {
                    throw new java.nio.file.FileAlreadyExistsException(path.toString());
                }
                throw failure("open", path, 0, err);
            }
            return new NativeFile(path, fd, readOnly, (flags & O_DIRECT) != 0);
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("open " + path, t);
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

    /** How many fdatasyncs this handle has completed (tests check that a flush really syncs). */
    public long syncCount() {
        return syncs.get();
    }

    /**
     * Reads up to {@code len} bytes at {@code fileOffset} into {@code dst[dstOffset, dstOffset+len)}.
     * Loops on short reads; returns the bytes read, less than {@code len} only at end of file.
     */
    public long read(long fileOffset, MemorySegment dst, long dstOffset, long len) throws IOException {
        checkRange(dst, dstOffset, len);
        long done = 0;
        while (done < len) {
            long n = preadOnce(fileOffset + done, dst, dstOffset + done, len - done);
            if (n == 0) {
                break;
            }
            done += n;
        }
        Reference.reachabilityFence(dst);
        return done;
    }

    /** Reads exactly {@code len} bytes; bytes past end of file read as zeros. */
    public void readZeroPadded(long fileOffset, MemorySegment dst, long dstOffset, long len) throws IOException {
        long n = read(fileOffset, dst, dstOffset, len);
        if (n < len) {
            dst.asSlice(dstOffset + n, len - n).fill((byte) 0);
        }
    }

    /** Writes all {@code len} bytes of {@code src[srcOffset, srcOffset+len)} at {@code fileOffset}. */
    public void write(long fileOffset, MemorySegment src, long srcOffset, long len) throws IOException {
        checkRange(src, srcOffset, len);
        long done = 0;
        while (done < len) {
            done += pwriteOnce(fileOffset + done, src, srcOffset + done, len - done);
        }
        Reference.reachabilityFence(src);
    }

    /** Convenience for heap buffers (metadata paths). */
    public long read(long fileOffset, byte[] dst, int off, int len) throws IOException {
        return read(fileOffset, MemorySegment.ofArray(dst), off, len);
    }

    public void write(long fileOffset, byte[] src, int off, int len) throws IOException {
        write(fileOffset, MemorySegment.ofArray(src), off, len);
    }

    private long preadOnce(long fileOffset, MemorySegment seg, long segOffset, long len) throws IOException {
        try {
            if (seg.isNative()) {
                // SAFETY: checkRange proved the range lies inside seg and its arena is alive; the caller
                // keeps seg reachable until the call returns.
                long r = (long) PREAD_FAST.invokeExact(fd, seg.address() + segOffset, len, fileOffset);
                if (r >= 0) {
                    return r;
                }
            }
            long r;
            int err;
            do {
                if (seg.isNative()) {
                    // SAFETY: checkRange proved [segOffset, segOffset+len) lies inside seg and its arena is
                    // alive; the caller keeps seg reachable (reachabilityFence) until the call returns.
                    r = (long) PREAD_ADDR.invokeExact(ERRNO_STATE.get(), fd, seg.address() + segOffset, len, fileOffset);
                } else {
                    r = (long) PREAD_SEG.invokeExact(ERRNO_STATE.get(), fd, seg.asSlice(segOffset, len), len, fileOffset);
                }
                err = r < 0 ? errno() : 0;
            } while (r < 0 && err == EINTR);
            if (r < 0) {
                throw failure("pread", path, fileOffset, err);
            }
            return r;
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("pread " + path, t);
        }
    }

    private long pwriteOnce(long fileOffset, MemorySegment seg, long segOffset, long len) throws IOException {
        try {
            if (seg.isNative()) {
                // SAFETY: as in preadOnce.
                long r = (long) PWRITE_FAST.invokeExact(fd, seg.address() + segOffset, len, fileOffset);
                if (r > 0) {
                    return r;
                }
            }
            long r;
            int err;
            do {
                if (seg.isNative()) {
                    // SAFETY: as in preadOnce.
                    r = (long) PWRITE_ADDR.invokeExact(ERRNO_STATE.get(), fd, seg.address() + segOffset, len, fileOffset);
                } else {
                    r = (long) PWRITE_SEG.invokeExact(ERRNO_STATE.get(), fd, seg.asSlice(segOffset, len), len, fileOffset);
                }
                err = r < 0 ? errno() : 0;
            } while (r < 0 && err == EINTR);
            if (r < 0) {
                throw failure("pwrite", path, fileOffset, err);
            }
            if (r == 0) {
                throw new IOException("pwrite " + path + " at " + fileOffset + " wrote nothing");
            }
            return r;
        } catch (IOException | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("pwrite " + path, t);
        }
    }

    /** {@code fdatasync}: data and the metadata needed to read it back (file size) are durable. */
    public void sync() throws IOException {
        try {
            int r;
            do {
                r = (int) FDATASYNC.invokeExact(ERRNO_STATE.get(), fd);
            } while (r < 0 && errno() == EINTR);
            if (r < 0) {
                throw failure("fdatasync", path, 0, errno());
            }
            syncs.incrementAndGet();
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("fdatasync " + path, t);
        }
    }

    public long size() throws IOException {
        try {
            long r = (long) LSEEK.invokeExact(ERRNO_STATE.get(), fd, 0L, SEEK_END);
            if (r < 0) {
                throw failure("lseek", path, 0, errno());
            }
            return r;
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("lseek " + path, t);
        }
    }

    /**
     * Takes a BSD {@code flock} without waiting: shared for readers, exclusive for a writer, so two
     * phost processes (or two opens in one process) never write one image at once, and nobody writes a
     * parent that a child has open. Returns false when another open holds a conflicting lock.
     * (qemu uses fcntl OFD locks, which are independent of flock.)
     */
    public boolean tryLock(boolean exclusive) throws IOException {
        try {
            int r;
            do {
                r = (int) FLOCK.invokeExact(ERRNO_STATE.get(), fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB);
            } while (r < 0 && errno() == EINTR);
            if (r < 0) {
                int e = errno();
                if (e == EWOULDBLOCK) {
                    return false;
                }
                throw failure("flock", path, 0, e);
            }
            return true;
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("flock " + path, t);
        }
    }

    /** Sets the file length (sparse when growing). */
    public void truncate(long length) throws IOException {
        try {
            int r;
            do {
                r = (int) FTRUNCATE.invokeExact(ERRNO_STATE.get(), fd, length);
            } while (r < 0 && errno() == EINTR);
            if (r < 0) {
                throw failure("ftruncate", path, length, errno());
            }
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("ftruncate " + path, t);
        }
    }

    @Override
    public void close() throws IOException {
        if (closed) {
            return;
        }
        closed = true;
        try {
            int r = (int) CLOSE.invokeExact(fd);
            if (r < 0) {
                throw new IOException("close " + path + " failed");
            }
        } catch (IOException e) {
            throw e;
        } catch (Throwable t) {
            throw new IOException("close " + path, t);
        }
    }

    private static void checkRange(MemorySegment seg, long off, long len) {
        if (off < 0 || len < 0 || off > seg.byteSize() - len) {
            throw new IndexOutOfBoundsException("range [" + off + ", +" + len + ") outside segment of " + seg.byteSize());
        }
        if (!seg.scope().isAlive()) {
            throw new IllegalStateException("segment's arena is closed");
        }
    }

    private static int errno() {
        return (int) ERRNO.get(ERRNO_STATE.get(), 0L);
    }

    private static IOException failure(String op, Path path, long offset, int errno) {
        String text;
        try {
            MemorySegment s = (MemorySegment) STRERROR.invokeExact(errno);
            text = s.getString(0);
        } catch (Throwable t) {
            text = "errno " + errno;
        }
        return new IOException(op + " " + path + " at offset " + offset + ": " + text + " (errno " + errno + ")");
    }
}
