package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * The libc calls the network data path makes (TAP and AF_PACKET fds): open/close/read/write/ioctl/poll,
 * socket/bind/setsockopt/getsockopt/send/recv/mmap, if_nametoindex, setns. Built once; errno captured per call.
 *
 * <p>Hot-path calls ({@link #read}, {@link #write}, {@link #poll}) take raw native addresses as {@code long}
 * so a call allocates nothing: on the x86-64 and AArch64 ABIs a pointer argument is passed exactly like a
 * 64-bit integer. SAFETY: callers pass addresses of native memory they own for at least {@code length} bytes.
 */
public final class NetSyscalls {
    public static final int O_RDWR = 2;
    public static final int O_NONBLOCK = 0x800;
    public static final int O_CLOEXEC = 0x80000;

    public static final int AF_PACKET = 17;
    public static final int AF_NETLINK = 16;
    public static final int SOCK_RAW = 3;
    public static final int SOCK_CLOEXEC = 0x80000;
    public static final int SOCK_NONBLOCK = 0x800;
    public static final int NETLINK_ROUTE = 0;

    public static final short POLLIN = 1;
    public static final int CLONE_NEWNET = 0x40000000;

    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");
    private static final ValueLayout I = ValueLayout.JAVA_INT;
    private static final ValueLayout L = ValueLayout.JAVA_LONG;
    private static final ValueLayout P = ValueLayout.ADDRESS;

    private static final MethodHandle OPEN = variadic("open", FunctionDescriptor.of(I, P, I, I), 2);
    private static final MethodHandle CLOSE = Native.downcall("close", FunctionDescriptor.of(I, I));
    private static final MethodHandle READ = Native.downcall("read", FunctionDescriptor.of(L, I, L, L));
    private static final MethodHandle WRITE = Native.downcall("write", FunctionDescriptor.of(L, I, L, L));
    private static final MethodHandle WRITEV = Native.downcall("writev", FunctionDescriptor.of(L, I, L, I));
    /** ioctl(int fd, unsigned long request, void *arg): variadic after the request. */
    private static final MethodHandle IOCTL = variadic("ioctl", FunctionDescriptor.of(I, I, L, P), 2);
    private static final MethodHandle POLL = Native.downcall("poll", FunctionDescriptor.of(I, L, L, I));
    private static final MethodHandle SOCKET = Native.downcall("socket", FunctionDescriptor.of(I, I, I, I));
    private static final MethodHandle BIND = Native.downcall("bind", FunctionDescriptor.of(I, I, P, I));
    private static final MethodHandle SETSOCKOPT = Native.downcall("setsockopt", FunctionDescriptor.of(I, I, I, I, P, I));
    private static final MethodHandle GETSOCKOPT = Native.downcall("getsockopt", FunctionDescriptor.of(I, I, I, I, P, P));
    private static final MethodHandle SEND = Native.downcall("send", FunctionDescriptor.of(L, I, L, L, I));
    private static final MethodHandle RECV = Native.downcall("recv", FunctionDescriptor.of(L, I, L, L, I));
    private static final MethodHandle MMAP = Native.downcall("mmap", FunctionDescriptor.of(L, L, L, I, I, I, L));
    private static final MethodHandle MUNMAP = Native.downcall("munmap", FunctionDescriptor.of(I, L, L));
    private static final MethodHandle IF_NAMETOINDEX = Native.downcall("if_nametoindex", FunctionDescriptor.of(I, P));
    private static final MethodHandle SETNS = Native.downcall("setns", FunctionDescriptor.of(I, I, I));

    private NetSyscalls() {}

    private static MethodHandle variadic(String name, FunctionDescriptor d, int firstVariadic) {
        MemorySegment symbol = Native.LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + name));
        return Native.LINKER.downcallHandle(symbol, d, CAPTURE_ERRNO, Linker.Option.firstVariadicArg(firstVariadic));
    }

    public static int open(String path, int flags) {
        try (Arena a = Arena.ofConfined()) {
            int r = (int) OPEN.invokeExact(Native.errnoState(), a.allocateFrom(path), flags, 0);
            return Native.check(r, "open " + path);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void close(int fd) {
        try {
            int r = (int) CLOSE.invokeExact(Native.errnoState(), fd);
            Native.check(r, "close fd " + fd);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** read(2); returns bytes read, or -errno (e.g. -EAGAIN) without throwing so a poller can branch cheaply. */
    public static long read(int fd, long address, long length) {
        try {
            long r = (long) READ.invokeExact(Native.errnoState(), fd, address, length);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** write(2); returns bytes written, or -errno. */
    public static long write(int fd, long address, long length) {
        try {
            long r = (long) WRITE.invokeExact(Native.errnoState(), fd, address, length);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** writev(2) of {@code count} iovecs at {@code iovAddress}; returns bytes written, or -errno. */
    public static long writev(int fd, long iovAddress, int count) {
        try {
            long r = (long) WRITEV.invokeExact(Native.errnoState(), fd, iovAddress, count);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** send(2) on a socket; returns bytes sent, or -errno. */
    public static long send(int fd, long address, long length, int flags) {
        try {
            long r = (long) SEND.invokeExact(Native.errnoState(), fd, address, length, flags);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** recv(2); returns bytes received, or -errno. */
    public static long recv(int fd, long address, long length, int flags) {
        try {
            long r = (long) RECV.invokeExact(Native.errnoState(), fd, address, length, flags);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** ioctl(2) with a pointer argument; throws on failure. */
    public static int ioctl(int fd, long request, MemorySegment arg, String what) {
        try {
            int r = (int) IOCTL.invokeExact(Native.errnoState(), fd, request, arg);
            return Native.check(r, what);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * poll(2) over an array of {@code struct pollfd {int fd; short events; short revents;}} (8 bytes each) at
     * {@code fdsAddress}; returns the number ready, 0 on timeout, or -errno (EINTR is normal).
     */
    public static int poll(long fdsAddress, int count, int timeoutMillis) {
        try {
            int r = (int) POLL.invokeExact(Native.errnoState(), fdsAddress, (long) count, timeoutMillis);
            return r >= 0 ? r : -Native.lastErrno();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int socket(int domain, int type, int protocol) {
        try {
            int r = (int) SOCKET.invokeExact(Native.errnoState(), domain, type, protocol);
            return Native.check(r, "socket(" + domain + "," + type + "," + protocol + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void bind(int fd, MemorySegment address, String what) {
        try {
            int r = (int) BIND.invokeExact(Native.errnoState(), fd, address, (int) address.byteSize());
            Native.check(r, what);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void setsockopt(int fd, int level, int name, MemorySegment value, String what) {
        try {
            int r = (int) SETSOCKOPT.invokeExact(Native.errnoState(), fd, level, name, value, (int) value.byteSize());
            Native.check(r, what);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** getsockopt(2) into {@code value} (its whole size offered); returns the length the kernel wrote. */
    public static int getsockopt(int fd, int level, int name, MemorySegment value, String what) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment len = a.allocateFrom(ValueLayout.JAVA_INT, (int) value.byteSize());
            int r = (int) GETSOCKOPT.invokeExact(Native.errnoState(), fd, level, name, value, len);
            Native.check(r, what);
            return len.get(ValueLayout.JAVA_INT, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void setsockoptInt(int fd, int level, int name, int value, String what) {
        try (Arena a = Arena.ofConfined()) {
            setsockopt(fd, level, name, a.allocateFrom(ValueLayout.JAVA_INT, value), what);
        }
    }

    /** mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0); returns the address. */
    public static long mmapShared(int fd, long length, String what) {
        try {
            long r = (long) MMAP.invokeExact(Native.errnoState(), 0L, length, 3, 1, fd, 0L);
            return Native.check(r, what);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void munmap(long address, long length) {
        try {
            int r = (int) MUNMAP.invokeExact(Native.errnoState(), address, length);
            Native.check(r, "munmap");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** if_nametoindex(3); throws ENODEV-style NativeException when the interface does not exist. */
    public static int ifNameToIndex(String name) {
        try (Arena a = Arena.ofConfined()) {
            int r = (int) IF_NAMETOINDEX.invokeExact(Native.errnoState(), a.allocateFrom(name));
            if (r == 0) {
                throw new NativeException("if_nametoindex " + name, Native.lastErrno());
            }
            return r;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** setns(2): moves the calling thread into the namespace {@code fd} refers to ({@link #CLONE_NEWNET}). */
    public static void setns(int fd, int nstype) {
        try {
            int r = (int) SETNS.invokeExact(Native.errnoState(), fd, nstype);
            Native.check(r, "setns fd " + fd);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
