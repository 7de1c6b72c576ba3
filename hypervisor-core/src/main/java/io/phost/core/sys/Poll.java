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
}
