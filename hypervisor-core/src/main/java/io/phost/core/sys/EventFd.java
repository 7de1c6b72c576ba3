package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * An eventfd used as a VMBus doorbell. Non-blocking: {@link #signal} adds 1, {@link #tryConsume} drains the
 * counter without blocking, {@link #await} blocks in poll(2) with a timeout. One instance per thread that
 * touches it (it owns an 8-byte scratch buffer so signalling allocates nothing); share the fd, not the object.
 */
public final class EventFd implements AutoCloseable {
    /** int eventfd(unsigned int initval, int flags) */
    private static final MethodHandle EVENTFD = Native.downcall("eventfd",
        FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT));
    /**
     * write(2) without errno capture, for {@link #signal}: an eventfd write of 1 fails only at a full counter or on a
     * bad fd, and then the capturing {@link Fd#write} runs it again. The capture costs a 40-byte JDK slice per call
     * where C2 does not scalar-replace it (issue 14: the one allocation left per vhost-user request, the call).
     */
    private static final MethodHandle WRITE_PLAIN = Native.downcallNoErrno("write",
        FunctionDescriptor.of(ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));
    public static final int EFD_CLOEXEC = 0x80000;
    public static final int EFD_NONBLOCK = 0x800;

    private final int fd;
    private final boolean owner;
    private final Arena arena = Arena.ofAuto();
    private final MemorySegment scratch = arena.allocate(8, 8);
    private final MemorySegment pollFd = arena.allocate(8, 4);

    private EventFd(int fd, boolean owner) {
        this.fd = fd;
        this.owner = owner;
    }

    /** A new non-blocking, close-on-exec eventfd. */
    public static EventFd create() {
        try {
            int fd = Native.check((int) EVENTFD.invokeExact(Native.errnoState(), 0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd");
            return new EventFd(fd, true);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Wraps an fd received from a peer (must be a non-blocking eventfd); closing this closes the fd. */
    public static EventFd adopt(int fd) {
        return new EventFd(fd, true);
    }

    /** A second handle on the same fd (for another thread); closing it does not close the fd. */
    public EventFd view() {
        return new EventFd(fd, false);
    }

    public int fd() {
        return fd;
    }

    /** Rings the doorbell: one write(2) of 1. Never blocks (the counter saturating is impossible at 2^64-2). */
    public void signal() {
        scratch.set(ValueLayout.JAVA_LONG, 0, 1L);
        long r;
        try {
            r = (long) WRITE_PLAIN.invokeExact(fd, scratch, 8L);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        if (r != 8) {
            Fd.write(fd, scratch, 8); // EINTR, EAGAIN (a full counter) or an error: retried, ignored or named there
        }
    }

    /** Drains the counter; returns how many signals were pending (0 if none). */
    public long tryConsume() {
        long r = Fd.read(fd, scratch, 8);
        return r == 8 ? scratch.get(ValueLayout.JAVA_LONG, 0) : 0L;
    }

    /** Blocks until signalled or {@code timeoutMillis} pass; consumes the signal; returns the count or 0. */
    public long await(int timeoutMillis) {
        if (Poll.pollOne(pollFd, fd, Poll.POLLIN, timeoutMillis) != 0) {
            return tryConsume();
        }
        return 0L;
    }

    @Override
    public void close() {
        if (owner) {
            Fd.close(fd);
        }
        // the 16 bytes of scratch are reclaimed with this object (Arena.ofAuto): a view may still use them
    }
}
