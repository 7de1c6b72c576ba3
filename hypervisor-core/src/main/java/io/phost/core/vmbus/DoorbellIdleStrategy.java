package io.phost.core.vmbus;

import io.phost.core.sys.EventFd;
import java.util.concurrent.locks.LockSupport;
import org.agrona.concurrent.IdleStrategy;

/**
 * Spin, then yield, then (optionally) park with exponential back-off, then arm the ring's interrupt and
 * block on the doorbell eventfd. A busy channel never leaves the spin phase (no syscalls: interrupt_mask
 * stays set so the writer does not signal); an idle one sleeps in poll(2) and costs no CPU. A yield that took long means
 * another thread wanted this CPU, so the strategy stops polling and sleeps rather than compete with it.
 * <pre>
 *   work > 0 ──────────────────────────────────────────────┐ reset, mask interrupts
 *   SPIN (onSpinWait × spins) → YIELD (× yields; one slower than 20 µs ends it) → PARK (minPark..maxPark, × parks)
 *     → ARM: interrupt_mask = 0; fence; ring still empty? → poll(doorbell, timeout) → mask, back to SPIN
 *                                      └─ no: a packet raced in → mask, back to SPIN
 * </pre>
 * Not thread-safe: one per agent.
 */
public final class DoorbellIdleStrategy implements IdleStrategy {
    private static final int SPIN = 0;
    private static final int YIELD = 1;
    private static final int PARK = 2;
    /** A yield that took this long ran someone else: the CPU is contended and polling would steal from them. */
    private static final long CONTENDED_NANOS = 20_000L;

    private final VmbusRing rx;
    private final EventFd doorbell;
    private final int spins;
    private final int yields;
    private final int parks;
    private final long minParkNanos;
    private final long maxParkNanos;
    private final int sleepTimeoutMillis;

    private int state = SPIN;
    private int count;
    private long parkNanos;
    private long sleeps;

    /**
     * @param rx        the ring this agent reads (armed before sleeping); null to just sleep on the doorbell
     * @param doorbell  the eventfd the peer signals; one {@link EventFd#view()} per thread
     */
    public DoorbellIdleStrategy(VmbusRing rx, EventFd doorbell, int spins, int yields, int parks,
                                long minParkNanos, long maxParkNanos, int sleepTimeoutMillis) {
        this.rx = rx;
        this.doorbell = doorbell;
        this.spins = spins;
        this.yields = yields;
        this.parks = parks;
        this.minParkNanos = minParkNanos;
        this.maxParkNanos = maxParkNanos;
        this.sleepTimeoutMillis = sleepTimeoutMillis;
        this.parkNanos = minParkNanos;
        if (rx != null) {
            rx.maskInterrupts();
        }
    }

    /**
     * The defaults used by VSP agents: ~20 µs of spinning, a few yields, then sleep on the doorbell. No
     * timed parks: a parked agent keeps interrupts masked, so a request arriving during a park would wait
     * for the park to end (up to half a millisecond at the end of the back-off), while the doorbell wakes
     * the agent as soon as the guest signals.
     */
    public static DoorbellIdleStrategy defaults(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, 2_000, 20, 0, 0, 0, 1_000);
    }

    /** Busy polling only (benchmarks of the polling mode): never arms the interrupt. */
    public static DoorbellIdleStrategy busySpin(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, Integer.MAX_VALUE, 0, 0, 0, 0, 1_000);
    }

    /** Interrupt mode: sleep on the doorbell at once (benchmarks of the eventfd path). */
    public static DoorbellIdleStrategy interruptOnly(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, 0, 0, 0, 0, 0, 1_000);
    }

    @Override
    public void idle(int workCount) {
        if (workCount > 0) {
            reset();
        } else {
            idle();
        }
    }

    @Override
    public void idle() {
        if (state == SPIN) {
            if (count++ < spins) {
                Thread.onSpinWait();
                return;
            }
            state = YIELD;
            count = 0;
        }
        if (state == YIELD) {
            if (count++ < yields) {
                long t0 = System.nanoTime();
                Thread.yield();
                if (System.nanoTime() - t0 < CONTENDED_NANOS) {
                    return;
                }
                count = yields; // another thread needed this CPU: stop polling, sleep (or park) now
            }
            state = PARK;
            count = 0;
        }
        if (count++ < parks) {
            LockSupport.parkNanos(parkNanos);
            parkNanos = Math.min(parkNanos * 2, maxParkNanos);
            return;
        }
        sleep();
    }

    private void sleep() {
        if (rx == null || rx.armInterrupt()) {
            sleeps++;
            doorbell.await(sleepTimeoutMillis);
        }
        if (rx != null) {
            rx.maskInterrupts();
        }
        reset();
    }

    @Override
    public void reset() {
        state = SPIN;
        count = 0;
        parkNanos = minParkNanos;
    }

    /** How many times this strategy blocked on the doorbell (status and tests). */
    public long sleeps() {
        return sleeps;
    }

    @Override
    public String alias() {
        return "doorbell";
    }
}
