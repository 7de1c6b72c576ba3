package io.phost.vswitch;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.NetSyscalls;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.util.function.BooleanSupplier;

/**
 * Lets a sleeping consumer (a switch agent in poll(2)) be woken by a producer thread that writes into an
 * in-memory queue (a {@link FrameRing}), without a syscall per frame: the producer signals the eventfd only
 * while the consumer has announced it is about to sleep.
 * <pre>
 *   consumer: armed = 1 ──(StoreLoad)──▶ queue empty? ──yes──▶ poll(fd) ──▶ disarm: armed = 0, drain fd
 *                                                      └─no──▶ disarm, keep working
 *   producer: publish frame ──fullFence──▶ armed? ──yes──▶ armed = 0, write(fd)
 * </pre>
 * Either the producer sees {@code armed} and signals, or the consumer's re-check sees the frame.
 */
public final class WakeupSignal implements AutoCloseable {
    private final EventFd fd = EventFd.create();
    private volatile boolean armed;
    // Separate 8-byte buffers: producers write 1 from theirs while the consumer reads into its own.
    private final MemorySegment one = Arena.ofAuto().allocate(8, 8);
    private final MemorySegment drain = Arena.ofAuto().allocate(8, 8);

    public WakeupSignal() {
        one.set(ValueLayout.JAVA_LONG, 0, 1L);
    }

    public int fd() {
        return fd.fd();
    }

    /** Consumer: announce sleep; returns false (and disarms) when {@code empty} says work is already there. */
    public boolean arm(BooleanSupplier empty) {
        armed = true; // volatile store, then the volatile loads inside empty(): StoreLoad ordered
        if (!empty.getAsBoolean()) {
            armed = false;
            return false;
        }
        return true;
    }

    /** Consumer, after waking: stop wanting signals and drain the counter. */
    public void disarm() {
        armed = false;
        NetSyscalls.read(fd.fd(), drain.address(), 8); // non-blocking eventfd: EAGAIN when nothing is pending
    }

    /**
     * Consumer, after a poll(2) that says this fd did not fire: stop wanting signals, leave the counter (a signal
     * written since keeps the fd readable, so the consumer's next poll(2) returns at once and drains it then).
     */
    public void disarmOnly() {
        armed = false;
    }

    /** Producer, after publishing: wake the consumer if it is (about to be) asleep. */
    public void signalIfArmed() {
        // The frame was published with an ordered (release) store; without a full fence that store could be
        // ordered after this load, and a consumer that just checked the queue as empty would sleep past it.
        VarHandle.fullFence();
        if (armed) {
            armed = false;
            NetSyscalls.write(fd.fd(), one.address(), 8);
        }
    }

    @Override
    public void close() {
        fd.close();
    }
}
