package io.phost.core.vhost;

import io.phost.core.vmbus.PollingMode;
import io.phost.core.vmbus.SpinGovernor;

/**
 * How a vhost-user queue worker with nothing in flight waits for the driver's next request under the host's
 * {@link PollingMode} ({@code [host] polling}), as the VMBus channel agents do (issue 19, item 6):
 * <pre>
 *   EFFICIENCY  no polling: ask for kicks, sleep in poll(2) on the kick eventfd (one wake-up per request after
 *               a pause; the worker as it always was)
 *   LATENCY     after work: kicks off ({@link Virtqueue#disableKicks}), spin on the avail ring for
 *               {@value #SPIN_NANOS} ns, then up to {@value #YIELDS} yields (one slower than {@value #CONTENDED_NANOS} ns
 *               means another thread wants this CPU: stop), then ask for kicks with the re-check
 *               ({@link Virtqueue#enableKicks}) and sleep. A QD1 driver's next request finds the worker awake.
 *   ADAPTIVE    LATENCY while the thread's {@link SpinGovernor} says spinning pays, else EFFICIENCY
 * </pre>
 * Spinning happens once per idle episode, right after work: a worker woken by its 1 s sleep timeout does not
 * spin, so an idle device costs what it costs in EFFICIENCY. Not thread-safe: one per worker.
 */
final class VringPoller {
    /** Spin this long on the avail ring after work: covers a driver that sleeps on its call eventfd (~10-30 µs to wake). */
    static final long SPIN_NANOS = 50_000L;
    static final int YIELDS = 20;
    /** A yield that took this long ran someone else: polling would steal the CPU from them. */
    static final long CONTENDED_NANOS = 20_000L;

    private final SpinGovernor governor;
    private boolean afterWork;
    private boolean idling;
    private boolean slept;
    private long spins;
    private long sleeps;
    /** The handler returned chains (the driver was told and refills): the next empty in-flight pass may spin. */
    private boolean refillExpected;
    /** Requests in flight before chains were returned: once the driver's refill brings them back, the window ends. */
    private int refillTarget;
    /** A window is running (kicks off, one governor episode), its empty passes since the last work, since when. */
    private boolean windowOpen;
    private int inFlightPasses;
    private long inFlightSince;
    private boolean inFlightPaid;
    private long inFlightSpins;

    private VringPoller(SpinGovernor governor) {
        this.governor = governor;
    }

    /** The poller for {@code mode}, or null for {@link PollingMode#EFFICIENCY} (the worker never polls). */
    static VringPoller of(PollingMode mode) {
        return switch (mode) {
            case EFFICIENCY -> null;
            case LATENCY -> new VringPoller(null);
            case ADAPTIVE -> new VringPoller(SpinGovernor.forHostThread());
        };
    }

    /** The worker did work (popped or completed requests). */
    void worked() {
        if (idling && governor != null) {
            governor.episodeEnded(!slept);
        }
        idling = false;
        slept = false;
        afterWork = true;
        if (windowOpen) {
            inFlightPaid = true; // found while spinning in flight: the window starts again from here
            inFlightPasses = 0;
            refillExpected = true;
        }
    }

    /**
     * The handler returned chains to the used ring (and told the driver, who may now refill the avail ring);
     * {@code inFlightBefore}: the requests in flight before they were returned, the level a refill restores.
     */
    void answered(int inFlightBefore) {
        refillExpected = true;
        refillTarget = Math.max(refillTarget, inFlightBefore);
    }

    /**
     * The worker found nothing to do while requests are in flight: whether it should look again at once (true: it
     * calls the handler's doWork again, which reaps completions and pops the avail ring without a syscall) rather
     * than sleep on the device. After the handler returned chains the driver is being woken by that call and
     * refills the ring within its wake-up time; a worker asleep on the device would leave those requests in the
     * avail ring until the next completion (issue 14: ~2.7 of 32 at QD32, the device's queue depth lost). So it
     * keeps looking until the driver has refilled as many requests as were returned ({@code inFlight} back at the
     * level before them) or {@value #SPIN_NANOS} ns pass with no work, under the same governor as {@link #poll}: each
     * window is one episode, paid when it found work; the driver's kicks are off meanwhile. Nothing returned (a lone
     * request still on the device, QD1): no window. One clock read per 64 empty passes.
     */
    boolean spinWhileInFlight(Virtqueue q, int inFlight) {
        if (inFlightPasses == 0) {
            if (!refillExpected) {
                return false;
            }
            refillExpected = false;
            if (inFlight >= refillTarget) {
                endWindow(); // the driver gave back as many as it got: nothing more to wait for
                return false;
            }
            if (!windowOpen) {
                if (governor != null && !governor.shouldSpin()) {
                    refillTarget = 0;
                    return false;
                }
                windowOpen = true;
                inFlightSpins++;
                // No kicks while looking: an empty pop then costs no avail_event store and fence. Every sleep where
                // a kick matters asks for them again first (the idle sleep below, the hand-off wait in the handler).
                q.disableKicks();
            }
            inFlightSince = System.nanoTime();
        } else if ((inFlightPasses & 63) == 0 && System.nanoTime() - inFlightSince >= SPIN_NANOS) {
            endWindow();
            return false;
        }
        inFlightPasses++;
        Thread.onSpinWait();
        return true;
    }

    private void endWindow() {
        if (windowOpen && governor != null) {
            governor.episodeEnded(inFlightPaid);
        }
        windowOpen = false;
        inFlightPaid = false;
        inFlightPasses = 0;
        refillTarget = 0;
    }

    /** In-flight spin windows begun (tests, status). */
    long inFlightSpins() {
        return inFlightSpins;
    }

    /**
     * The worker has nothing to do and nothing in flight: polls {@code q} (kicks disabled) while the mode allows,
     * and returns true when a request arrived (the worker works on; kicks stay disabled), false when it should
     * ask for kicks and sleep. {@code stopping} is read between spins.
     */
    boolean poll(Virtqueue q, java.util.function.BooleanSupplier stopping) {
        idling = true;
        endWindow(); // nothing in flight: the in-flight window is for a driver refilling behind requests
        refillExpected = false;
        boolean justWorked = afterWork;
        afterWork = false; // one spin per idle episode: a timeout wake-up later does not spin
        if (!justWorked || (governor != null && !governor.shouldSpin())) {
            return false;
        }
        spins++;
        q.disableKicks();
        long start = System.nanoTime();
        int n = 0;
        while (true) {
            if (q.available()) {
                return true;
            }
            Thread.onSpinWait();
            if ((++n & 63) == 0 && (System.nanoTime() - start >= SPIN_NANOS || stopping.getAsBoolean())) {
                break;
            }
        }
        for (int y = 0; y < YIELDS; y++) {
            long t0 = System.nanoTime();
            Thread.yield();
            if (q.available()) {
                return true;
            }
            if (System.nanoTime() - t0 >= CONTENDED_NANOS) {
                break; // another thread needed this CPU: stop polling, sleep now
            }
        }
        return false;
    }

    /** The worker is about to sleep on its kick eventfd. */
    void sleeping() {
        slept = true;
        sleeps++;
    }

    /** Idle episodes that spun, and sleeps (tests, status). */
    long spins() {
        return spins;
    }

    long sleeps() {
        return sleeps;
    }
}
