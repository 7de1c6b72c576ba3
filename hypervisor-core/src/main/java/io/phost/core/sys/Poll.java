package io.phost.core.sys;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * poll(2) for the control plane and for idle doorbells.
 * <pre>
 *  struct pollfd { int fd; @0   short events; @4   short revents; @6 }   (8 bytes)
 * </pre>
 */
public final class Poll {
    /** int poll(struct pollfd *fds, nfds_t nfds, int timeout) */
    private static final MethodHandle POLL = Native.downcall("poll",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
    /** int ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *tmo, const sigset_t *sigmask) */
    private static final MethodHandle PPOLL = Native.downcall("ppoll",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.ADDRESS,
            ValueLayout.ADDRESS));
    /** struct timespec { long tv_sec; long tv_nsec; } */
    public static final long TIMESPEC_SIZE = 16;
    public static final int POLLIN = 0x1;
    public static final int POLLERR = 0x8;
    public static final int POLLHUP = 0x10;
    public static final int POLLNVAL = 0x20;
    public static final long POLLFD_SIZE = 8;

    private Poll() {}

    /** Polls one fd with a caller-owned 8-byte {@code pollFd} scratch; returns revents (0 on timeout). */
    public static int pollOne(MemorySegment pollFd, int fd, int events, int timeoutMillis) {
        pollFd.set(ValueLayout.JAVA_INT, 0, fd);
        pollFd.set(ValueLayout.JAVA_SHORT, 4, (short) events);
        pollFd.set(ValueLayout.JAVA_SHORT, 6, (short) 0);
        int n = poll(pollFd, 1, timeoutMillis);
        return n <= 0 ? 0 : pollFd.get(ValueLayout.JAVA_SHORT, 6) & 0xffff;
    }

    /** poll(2) over {@code count} pollfd entries; EINTR is reported as 0 ready. */
    public static int poll(MemorySegment fds, int count, int timeoutMillis) {
        try {
            int r = (int) POLL.invokeExact(Native.errnoState(), fds, (long) count, timeoutMillis);
            if (r == -1) {
                int e = Native.lastErrno();
                if (e == Errno.EINTR) {
                    return 0;
                }
                throw new NativeException("poll", e);
            }
            return r;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * ppoll(2) with a nanosecond timeout (poll(2)'s is whole milliseconds: a 50 µs wait would sleep 1 ms);
     * {@code timespec} is a caller-owned {@link #TIMESPEC_SIZE}-byte scratch, so the call allocates nothing.
     * EINTR is reported as 0 ready.
     */
    public static int ppoll(MemorySegment fds, int count, MemorySegment timespec, long timeoutNanos) {
        long t = Math.max(0, timeoutNanos);
        timespec.set(ValueLayout.JAVA_LONG, 0, t / 1_000_000_000L);
        timespec.set(ValueLayout.JAVA_LONG, 8, t % 1_000_000_000L);
        try {
            int r = (int) PPOLL.invokeExact(Native.errnoState(), fds, (long) count, timespec, MemorySegment.NULL);
            if (r == -1) {
                int e = Native.lastErrno();
                if (e == Errno.EINTR) {
                    return 0;
                }
                throw new NativeException("ppoll", e);
            }
            return r;
        } catch (Throwable t2) {
            throw Native.rethrow(t2);
        }
    }
}
