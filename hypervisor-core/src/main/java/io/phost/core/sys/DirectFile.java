package io.phost.core.sys;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * File and block-device system calls for the storage path: open with O_DIRECT/O_EXCL, positional
 * (vectored) reads and writes, fsync, fallocate (punch hole / zero range) and the block-device ioctls.
 * Every call takes plain fds and addresses so the hot path allocates nothing; failures throw
 * {@link NativeException} naming the call, the fd and the offset. {@link PosixFile} is the same calls
 * as an object that owns its fd (what the image formats in vhdx-engine use).
 */
public final class DirectFile {
    private static final boolean AARCH64 = "aarch64".equals(System.getProperty("os.arch"));

    public static final int O_RDONLY = 0;
    public static final int O_RDWR = 2;
    public static final int O_CREAT = 0x40;
    /** Fails with EBUSY on a block device that is mounted or opened O_EXCL by someone else. */
    public static final int O_EXCL = 0x80;
    public static final int O_CLOEXEC = 0x80000;
    /** asm-generic: 040000 on x86-64, 0200000 on arm64. */
    public static final int O_DIRECT = AARCH64 ? 0x10000 : 0x4000;

    public static final int FALLOC_FL_KEEP_SIZE = 0x01;
    public static final int FALLOC_FL_PUNCH_HOLE = 0x02;
    public static final int FALLOC_FL_ZERO_RANGE = 0x10;

    public static final int SEEK_END = 2;
    /** lseek whence values for sparse-file maps (BLOCK_STATUS). */
    public static final int SEEK_DATA = 3;
    public static final int SEEK_HOLE = 4;

    /** linux/fs.h: _IOR(0x12,114,size_t), _IO(0x12,104), _IO(0x12,123), _IO(0x12,119). */
    public static final long BLKGETSIZE64 = 0x80081272L;
    public static final long BLKSSZGET = 0x1268L;
    public static final long BLKPBSZGET = 0x127BL;
    public static final long BLKDISCARD = 0x1277L;
    public static final long BLKZEROOUT = 0x127FL;
    /** scsi/sg.h */
    public static final long SG_IO = 0x2285L;

    private static final Linker.Option ERRNO = Linker.Option.captureCallState("errno");

    // int open(const char *path, int flags, ... /* mode_t mode */)
    private static final MethodHandle OPEN = Native.LINKER.downcallHandle(
        Native.LIBC.find("open").orElseThrow(),
        FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), ERRNO, Linker.Option.firstVariadicArg(2));
    // int close(int fd)
    private static final MethodHandle CLOSE = Native.downcall("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    // ssize_t pread(int fd, void *buf, size_t count, off_t offset) and pwrite likewise
    private static final MethodHandle PREAD = Native.downcall("pread",
        FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
    private static final MethodHandle PWRITE = Native.downcall("pwrite",
        FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
    // ssize_t preadv(int fd, const struct iovec *iov, int iovcnt, off_t offset) and pwritev likewise
    private static final MethodHandle PREADV = Native.downcall("preadv",
        FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG));
    private static final MethodHandle PWRITEV = Native.downcall("pwritev",
        FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_LONG));
    private static final MethodHandle FDATASYNC = Native.downcall("fdatasync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    private static final MethodHandle FSYNC = Native.downcall("fsync", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
    // int fallocate(int fd, int mode, off_t offset, off_t len)
    private static final MethodHandle FALLOCATE = Native.downcall("fallocate",
        FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG));
    // int flock(int fd, int operation)
    private static final MethodHandle FLOCK = Native.downcall("flock", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    // off_t lseek(int fd, off_t offset, int whence)
    private static final MethodHandle LSEEK = Native.downcall("lseek",
        FunctionDescriptor.of(JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT));
    // int ftruncate(int fd, off_t length)
    private static final MethodHandle FTRUNCATE = Native.downcall("ftruncate",
        FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG));
    // int ioctl(int fd, unsigned long request, ... /* void *arg */)
    private static final MethodHandle IOCTL = Native.LINKER.downcallHandle(
        Native.LIBC.find("ioctl").orElseThrow(),
        FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG), ERRNO, Linker.Option.firstVariadicArg(2));

    /** Heap-segment and rarely used calls, bound on first use: each downcall handle costs start-up time. */
    private static final class Rare {
        // pread/pwrite on a heap segment (tests, tools, metadata): the array is pinned for the call
        static final FunctionDescriptor RW = FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG);
        static final MethodHandle PREAD_HEAP = Native.downcallCritical("pread", RW);
        static final MethodHandle PWRITE_HEAP = Native.downcallCritical("pwrite", RW);
        // int fstat(int fd, struct stat *buf): only st_blocks is read (offset 64 on x86-64 and aarch64)
        static final MethodHandle FSTAT = Native.downcall("fstat", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    }

    /** Largest piece a heap segment is pinned for in one syscall, so a GC never waits behind a long transfer. */
    static final long CRITICAL_CHUNK = 1 << 20;
    private static final long STAT_SIZE = 256;
    private static final long ST_BLOCKS_OFFSET = 64;

    private DirectFile() {}

    /** open(2); {@code path} is a NUL-terminated C string segment. Returns the fd or throws. */
    public static int open(MemorySegment path, int flags, int mode, String what) {
        try {
            int fd = (int) OPEN.invokeExact(Native.errnoState(), path, flags | O_CLOEXEC, mode);
            return Native.check(fd, "open " + what);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** open(2) returning -errno instead of throwing (used to probe O_DIRECT support). */
    public static int tryOpen(MemorySegment path, int flags, int mode) {
        try {
            int fd = (int) OPEN.invokeExact(Native.errnoState(), path, flags | O_CLOEXEC, mode);
            return fd >= 0 ? fd : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void close(int fd) {
        try {
            int r = (int) CLOSE.invokeExact(Native.errnoState(), fd);
            Native.check(r, "close fd=" + fd);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Reads exactly {@code length} bytes at {@code offset} into native {@code address}, looping on short reads; returns bytes read (less only at end of file). */
    public static long pread(int fd, long address, long length, long offset) {
        return transfer(fd, true, address, null, length, offset);
    }

    /** Writes exactly {@code length} bytes, looping on short writes. */
    public static void pwrite(int fd, long address, long length, long offset) {
        transfer(fd, false, address, null, length, offset);
    }

    /**
     * Reads up to {@code buf.byteSize()} bytes at {@code offset} into a native or heap segment, looping on
     * short reads; returns the bytes read (less only at end of file). Native segments allocate nothing.
     */
    public static long pread(int fd, MemorySegment buf, long offset) {
        return buf.isNative() ? transfer(fd, true, buf.address(), null, buf.byteSize(), offset)
            : transfer(fd, true, 0, buf, buf.byteSize(), offset);
    }

    /** Writes all of a native or heap segment at {@code offset}, looping on short writes. */
    public static void pwrite(int fd, MemorySegment buf, long offset) {
        if (buf.isNative()) {
            transfer(fd, false, buf.address(), null, buf.byteSize(), offset);
        } else {
            transfer(fd, false, 0, buf, buf.byteSize(), offset);
        }
    }

    /**
     * The pread/pwrite loop: retries EINTR and short transfers; a read stops at end of file. Native memory
     * goes by address; a {@code heap} segment is pinned for each call, {@link #CRITICAL_CHUNK} at a time.
     */
    private static long transfer(int fd, boolean read, long address, MemorySegment heap, long length, long offset) {
        long done = 0;
        try {
            while (done < length) {
                long n;
                if (heap == null) {
                    n = read ? (long) PREAD.invokeExact(Native.errnoState(), fd, address + done, length - done, offset + done)
                        : (long) PWRITE.invokeExact(Native.errnoState(), fd, address + done, length - done, offset + done);
                } else {
                    long want = Math.min(length - done, CRITICAL_CHUNK);
                    MemorySegment part = heap.asSlice(done, want);
                    n = read ? (long) Rare.PREAD_HEAP.invokeExact(Native.errnoState(), fd, part, want, offset + done)
                        : (long) Rare.PWRITE_HEAP.invokeExact(Native.errnoState(), fd, part, want, offset + done);
                }
                if (n == -1) {
                    int e = Native.lastErrno();
                    if (e == Errno.EINTR) {
                        continue;
                    }
                    throw new NativeException((read ? "pread fd=" : "pwrite fd=") + fd, e, offset + done);
                }
                if (n == 0) {
                    if (read) {
                        break; // end of file
                    }
                    throw new NativeException("pwrite fd=" + fd + " wrote nothing", Errno.EIO, offset + done);
                }
                done += n;
            }
            return done;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** fsync(2): data and all metadata; 0 or -errno (callers decide which errnos matter). */
    public static int fsync(int fd) {
        try {
            int r = (int) FSYNC.invokeExact(Native.errnoState(), fd);
            return r == 0 ? 0 : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** fdatasync(2) returning 0 or -errno. */
    public static int tryFdatasync(int fd) {
        try {
            int r = (int) FDATASYNC.invokeExact(Native.errnoState(), fd);
            return r == 0 ? 0 : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Bytes the file occupies on its device ({@code st_blocks * 512}): what a sparse file really costs. */
    public static long allocatedBytes(int fd) {
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment st = arena.allocate(STAT_SIZE, 8);
            int r = (int) Rare.FSTAT.invokeExact(Native.errnoState(), fd, st);
            Native.check(r, "fstat fd=" + fd);
            return st.get(JAVA_LONG, ST_BLOCKS_OFFSET) * 512;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** preadv(2): one call, result or -errno (callers that need looping use {@link #pread}). */
    public static long preadv(int fd, long iovecs, int count, long offset) {
        try {
            long n = (long) PREADV.invokeExact(Native.errnoState(), fd, iovecs, count, offset);
            return n >= 0 ? n : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** pwritev(2): one call, result or -errno. */
    public static long pwritev(int fd, long iovecs, int count, long offset) {
        try {
            long n = (long) PWRITEV.invokeExact(Native.errnoState(), fd, iovecs, count, offset);
            return n >= 0 ? n : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void fdatasync(int fd) {
        try {
            int r = (int) FDATASYNC.invokeExact(Native.errnoState(), fd);
            Native.check(r, "fdatasync fd=" + fd);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** fallocate(2); returns 0 or -errno (EOPNOTSUPP is a normal answer on some file systems). */
    public static int fallocate(int fd, int mode, long offset, long length) {
        try {
            int r = (int) FALLOCATE.invokeExact(Native.errnoState(), fd, mode, offset, length);
            return r == 0 ? 0 : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** sys/file.h flock operations. */
    public static final int LOCK_SH = 1;
    public static final int LOCK_EX = 2;
    public static final int LOCK_NB = 4;

    /**
     * flock(2) without waiting (LOCK_NB is added), retried on EINTR: 0, or -errno (-EWOULDBLOCK when another
     * open file description holds a conflicting lock).
     */
    public static int tryFlock(int fd, int operation) {
        try {
            while (true) {
                int r = (int) FLOCK.invokeExact(Native.errnoState(), fd, operation | LOCK_NB);
                if (r == 0) {
                    return 0;
                }
                int e = Native.lastErrno();
                if (e != Errno.EINTR) {
                    return -e;
                }
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** lseek(2); returns the offset or -errno (ENXIO past the last data/hole). */
    public static long lseek(int fd, long offset, int whence) {
        try {
            long r = (long) LSEEK.invokeExact(Native.errnoState(), fd, offset, whence);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void ftruncate(int fd, long length) {
        try {
            int r = (int) FTRUNCATE.invokeExact(Native.errnoState(), fd, length);
            Native.check(r, "ftruncate fd=" + fd);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** ioctl(2) with a pointer (or integer) argument; returns the result or -errno. */
    public static int ioctl(int fd, long request, long arg) {
        try {
            int r = (int) IOCTL.invokeExact(Native.errnoState(), fd, request, arg);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
