package io.phost.core.vmbus;

import io.phost.core.sys.DeviceWait;
import io.phost.core.sys.EventFd;
import org.agrona.concurrent.IdleStrategy;

/**
 * Spin, then yield, then arm the ring's interrupt and block on the doorbell eventfd. A busy channel never
 * leaves the spin phase (no syscalls: interrupt_mask stays set so the writer does not signal); an idle one
 * sleeps in poll(2) and costs no CPU. There are no timed parks: a parked reader keeps interrupts masked,
 * so a packet arriving during a park would wait for it to end, while the doorbell wakes the reader as soon
 * as the peer signals. A yield that took long means another thread wanted this CPU, so the strategy stops
 * polling and sleeps rather than compete with it.
 * <pre>
 *   work > 0 ──────────────────────────────────────────────┐ reset, mask interrupts
 *   SPIN (onSpinWait × spins) → YIELD (× yields; one slower than 20 µs ends it)
 *     → ARM: interrupt_mask = 0; fence; ring still empty? → poll(doorbell, timeout) → mask, back to SPIN
 *                                      └─ no: a packet raced in → mask, back to SPIN
 * </pre>
 * With a {@link DeviceWait} attached ({@link #sleepThrough}: a storage channel whose I/O runs on io_uring) the
 * sleep covers the device too: while requests are in flight the agent sleeps in {@code io_uring_enter} with
 * the doorbell armed as a POLL_ADD on the device's ring, so a completion or a guest request wakes it, and
 * requests the duty cycle prepared are submitted by that same call when the agent is not going to spin
 * (QD1: one system call for submit and wait). A spinning agent submits first, then polls both. A device whose
 * request in flight outlasts any spin ({@link DeviceWait#outlastsSpin}: librbd at QD1) is slept through at
 * once, and the governor judges only the episodes that wait for the guest (issue 20).
 * Not thread-safe: one per agent.
 */
public final class DoorbellIdleStrategy implements IdleStrategy {
    /** A yield that took this long ran someone else: the CPU is contended and polling would steal from them. */
    private static final long CONTENDED_NANOS = 20_000L;
    /** The {@link #efficiency} spin: catches a packet already on its way without costing CPU. */
    private static final int EFFICIENCY_SPINS = 64;
    /**
     * The {@link #defaults} poll: a short spin (~5 µs: 19 ns per onSpinWait on this VM's EPYC), then yields.
     * The peer the agent waits for often shares its CPU (two vCPUs, or any host where the peer was woken onto
     * the agent's CPU): a spinning agent then holds the CPU the peer needs to make its next request, for the
     * whole spin (2,000 spins were 37.5 µs here, most of a QD1 disk I/O), and the peer's own spin does the same
     * to the agent (issue 19, twelfth session). A yield hands the CPU to a runnable peer at once and costs
     * ~0.7 µs when nothing else wants the CPU, so the yield phase polls nearly as fast as spinning. The whole
     * poll still lasts about as long as before (~5 µs + 64 yields of ~0.7 µs) before the agent sleeps.
     */
    static final int LATENCY_SPINS = 256;
    static final int LATENCY_YIELDS = 64;

    private final VmbusRing rx;
    private final EventFd doorbell;
    private final int spins;
    private final int yields;
    private final int sleepTimeoutMillis;

    private final SpinGovernor governor;

    private DeviceWait device;
    private boolean submitDeferred;
    private int spun;
    private int yielded;
    private long sleeps;
    private boolean idling;
    private boolean slept;
    /** This idle episode began with a slow device busy ({@link DeviceWait#outlastsSpin}): not judged. */
    private boolean unjudged;

    /**
     * @param rx        the ring this agent reads (armed before sleeping); null to just sleep on the doorbell
     * @param doorbell  the eventfd the peer signals; one {@link EventFd#view()} per thread
     */
    public DoorbellIdleStrategy(VmbusRing rx, EventFd doorbell, int spins, int yields, int sleepTimeoutMillis) {
        this(rx, doorbell, spins, yields, sleepTimeoutMillis, null);
    }

    /** As above; a non-null {@code governor} skips the spin and yield phases while it says spinning does not pay. */
    public DoorbellIdleStrategy(VmbusRing rx, EventFd doorbell, int spins, int yields, int sleepTimeoutMillis,
                                SpinGovernor governor) {
        this.governor = governor;
        this.rx = rx;
        this.doorbell = doorbell;
        this.spins = spins;
        this.yields = yields;
        this.sleepTimeoutMillis = sleepTimeoutMillis;
        if (rx != null) {
            rx.maskInterrupts();
        }
    }

    /** The defaults used by VSP agents: ~5 µs of spinning, then up to 64 yields, then sleep on the doorbell. */
    public static DoorbellIdleStrategy defaults(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, LATENCY_SPINS, LATENCY_YIELDS, 1_000);
    }

    /**
     * {@link PollingMode#ADAPTIVE}: the {@link #defaults} spin and yields while the agent thread's
     * {@link SpinGovernor} says spinning pays, else the {@link #efficiency} ~1 µs spin and sleep.
     */
    public static DoorbellIdleStrategy adaptive(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, LATENCY_SPINS, LATENCY_YIELDS, 1_000, SpinGovernor.forPollingThread());
    }

    /** {@link PollingMode#EFFICIENCY}: a ~1 µs spin for packets already on their way, then sleep on the doorbell. */
    public static DoorbellIdleStrategy efficiency(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, EFFICIENCY_SPINS, 0, 1_000);
    }

    /** Busy polling only (benchmarks of the polling mode): never arms the interrupt. */
    public static DoorbellIdleStrategy busySpin(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, Integer.MAX_VALUE, 0, 1_000);
    }

    /** Interrupt mode: sleep on the doorbell at once (benchmarks of the eventfd path). */
    public static DoorbellIdleStrategy interruptOnly(VmbusRing rx, EventFd doorbell) {
        return new DoorbellIdleStrategy(rx, doorbell, 0, 0, 1_000);
    }

    /**
     * Sleeps through {@code device} while it has requests in flight: its completions and the doorbell wake one
     * wait. Set once, by the agent's owner, before the agent runs.
     */
    public void sleepThrough(DeviceWait device) {
        this.device = device;
    }

    @Override
    public void idle(int workCount) {
        if (workCount > 0) {
            if (idling && governor != null && !unjudged) {
                governor.episodeEnded(!slept);
            }
            idling = false;
            unjudged = false;
            slept = false;
            reset();
            if (device != null && device.unsubmitted()) {
                // Leave the batch for the wait of the next, probably idle, cycle (one io_uring_enter), but never
                // for two busy cycles in a row, and not when the agent will spin: the device works meanwhile.
                if (submitDeferred || spinsFirst()) {
                    submitDeferred = false;
                    device.submit();
                } else {
                    submitDeferred = true;
                }
            }
        } else {
            idle();
        }
    }

    @Override
    public void idle() {
        if (device != null && device.busy() && device.outlastsSpin()) {
            // A slow device's request in flight (librbd): spinning would only miss and take the CPU its threads
            // need; sleep through it at once and leave the wait out of the governor's judgement.
            if (!idling) {
                unjudged = true;
                idling = true;
            }
            sleep();
            return;
        }
        idling = true;
        if (device != null && device.unsubmitted()) {
            submitDeferred = false;
            if (!spinsFirst()) {
                sleep(); // submit and wait in one io_uring_enter
                return;
            }
            device.submit();
        }
        if (governor != null && !governor.shouldSpin()) {
            if (spun < EFFICIENCY_SPINS) {
                spun++;
                Thread.onSpinWait();
                return;
            }
            sleep();
            return;
        }
        if (spun < spins) {
            spun++;
            Thread.onSpinWait();
            return;
        }
        if (yielded < yields) {
            yielded++;
            long t0 = System.nanoTime();
            Thread.yield();
            if (System.nanoTime() - t0 < CONTENDED_NANOS) {
                return;
            }
            // another thread needed this CPU: stop polling, sleep now
        }
        sleep();
    }

    /** Whether this idle episode polls before it sleeps (else it sleeps after the short efficiency spin). */
    private boolean spinsFirst() {
        return governor != null ? governor.shouldSpin() : spins > EFFICIENCY_SPINS;
    }

    private void sleep() {
        if (rx == null || rx.armInterrupt()) {
            sleeps++;
            slept = true;
            if (device != null && device.busy()) {
                device.await(doorbell, sleepTimeoutMillis * 1_000_000L);
            } else {
                if (device != null && device.unsubmitted()) {
                    device.submit();
                }
                doorbell.await(sleepTimeoutMillis);
            }
        } else if (device != null && device.unsubmitted()) {
            device.submit(); // a packet raced in: the agent goes on working, the device too
        }
        if (rx != null) {
            rx.maskInterrupts();
        }
        reset();
    }

    @Override
    public void reset() {
        spun = 0;
        yielded = 0;
    }

    /** The adaptive policy's state, or null for a fixed strategy (status and tests). */
    public SpinGovernor governor() {
        return governor;
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
