package io.phost.core.sys;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/** Plain file-descriptor calls: close, read, write, lseek, fcntl seals. All downcalls capture errno. */
public final class Fd {
    private static final MethodHandle CLOSE = Native.downcall("close",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    /** ssize_t read(int fd, void *buf, size_t count) */
    private static final MethodHandle READ = Native.downcall("read",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
    /** ssize_t write(int fd, const void *buf, size_t count) */
    private static final MethodHandle WRITE = Native.downcall("write",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
    /** off_t lseek(int fd, off_t offset, int whence) */
    private static final MethodHandle LSEEK = Native.downcall("lseek",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
    /** int fcntl(int fd, int cmd, ... int arg): variadic after the second argument. */
    private static final MethodHandle FCNTL = Native.LINKER.downcallHandle(
        Native.LIBC.find("fcntl").orElseThrow(),
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
        java.lang.foreign.Linker.Option.captureCallState("errno"), java.lang.foreign.Linker.Option.firstVariadicArg(2));

    public static final int SEEK_END = 2;
    public static final int F_GETFL = 3;
    public static final int F_SETFL = 4;
    public static final int O_NONBLOCK = 0x800;
    public static final int F_DUPFD_CLOEXEC = 1030;
    public static final int F_ADD_SEALS = 1033;
    public static final int F_GET_SEALS = 1034;
    public static final int F_SEAL_SEAL = 0x0001;
    public static final int F_SEAL_SHRINK = 0x0002;
    public static final int F_SEAL_GROW = 0x0004;

    private Fd() {}

    /** Closes {@code fd}; ignores -1 and EBADF-free errors other than EINTR are reported. */
    public static void close(int fd) {
        if (fd < 0) {
            return;
        }
        try {
            int r = (int) CLOSE.invokeExact(Native.errnoState(), fd);
            // close() must not be retried on EINTR on Linux: the fd is gone either way.
            if (r == -1 && Native.lastErrno() != Errno.EINTR) {
                throw new NativeException("close(" + fd + ")", Native.lastErrno());
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** One read(2); returns bytes read, or -1 with errno EAGAIN for a non-blocking fd with nothing to read. */
    public static long read(int fd, MemorySegment buf, long len) {
        try {
            while (true) {
                long r = (long) READ.invokeExact(Native.errnoState(), fd, buf, len);
                if (r >= 0) {
                    return r;
                }
                int e = Native.lastErrno();
                if (e == Errno.EINTR) {
                    continue;
                }
                if (e == Errno.EAGAIN) {
                    return -1;
                }
                throw new NativeException("read(" + fd + ")", e);
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** One write(2); returns bytes written, or -1 on EAGAIN. */
    public static long write(int fd, MemorySegment buf, long len) {
        try {
            while (true) {
                long r = (long) WRITE.invokeExact(Native.errnoState(), fd, buf, len);
                if (r >= 0) {
                    return r;
                }
                int e = Native.lastErrno();
                if (e == Errno.EINTR) {
                    continue;
                }
                if (e == Errno.EAGAIN) {
                    return -1;
                }
                throw new NativeException("write(" + fd + ")", e);
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The size of the file behind {@code fd} (lseek to the end). */
    public static long size(int fd) {
        try {
            return Native.check((long) LSEEK.invokeExact(Native.errnoState(), fd, 0L, SEEK_END), "lseek(" + fd + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int fcntl(int fd, int cmd, int arg) {
        try {
            return Native.check((int) FCNTL.invokeExact(Native.errnoState(), fd, cmd, arg), "fcntl(" + fd + ", " + cmd + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * Makes {@code fd} non-blocking (F_SETFL O_NONBLOCK): a descriptor received from an untrusted peer
     * (a vhost-user kick or call "eventfd" that may be a pipe or a socket) can then never block our reader.
     */
    public static void setNonBlocking(int fd) {
        int flags = fcntl(fd, F_GETFL, 0);
        if ((flags & O_NONBLOCK) == 0) {
            fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        }
    }

    /** The seals on a memfd (F_GET_SEALS). */
    public static int seals(int fd) {
        return fcntl(fd, F_GET_SEALS, 0);
    }

    /** A close-on-exec duplicate of {@code fd}. */
    public static int dup(int fd) {
        return fcntl(fd, F_DUPFD_CLOEXEC, 0);
    }
}
