package io.phost.core.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.vmbus.PollingMode;
import org.junit.jupiter.api.Test;

/**
 * The in-flight window of a polling queue worker (issue 14, twelfth session): after the handler returned chains the
 * worker keeps looking at the rings (no sleep on the device, kicks off) until the driver has refilled as many as it
 * got back or {@link VringPoller#SPIN_NANOS} pass with no work, so a driver's refill reaches the device at once; with
 * nothing returned (a lone request on the device) it does not spin, and an idle episode forgets a pending window.
 */
class VringPollerInFlightTest {
    /** Counts disableKicks; every other call answers a default (the poller uses nothing else here). */
    private final int[] kicksOff = new int[1];
    private final Virtqueue q = (Virtqueue) java.lang.reflect.Proxy.newProxyInstance(Virtqueue.class.getClassLoader(),
        new Class<?>[] {Virtqueue.class}, (proxy, m, args) -> {
            if (m.getName().equals("disableKicks")) {
                kicksOff[0]++;
            }
            return m.getReturnType() == boolean.class ? Boolean.FALSE : m.getReturnType() == int.class ? 0 : null;
        });

    @Test
    void shouldSpinOnlyAfterChainsWereReturnedAndStopAfterTheWindow() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        assertFalse(p.spinWhileInFlight(q, 4), "nothing returned yet: sleep on the device");
        p.answered(4); // one of four completed: three in flight, the driver owes one
        long start = System.nanoTime();
        int passes = 0;
        while (p.spinWhileInFlight(q, 3)) {
            passes++;
            if (System.nanoTime() - start > 10_000_000_000L) {
                throw new AssertionError("the window never ended after " + passes + " passes");
            }
        }
        long took = System.nanoTime() - start;
        assertTrue(took >= VringPoller.SPIN_NANOS, "with no refill the window lasts " + VringPoller.SPIN_NANOS + " ns, took " + took);
        assertTrue(passes > 0);
        assertFalse(p.spinWhileInFlight(q, 3), "one window per answer: the next empty pass sleeps");
        assertEquals(1, p.inFlightSpins());
        assertEquals(1, kicksOff[0], "kicks turned off once, when the window began");
    }

    @Test
    void shouldKeepTheWindowOpenUntilTheDriverRefilledWhatItGotBack() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered(8); // five of eight completed
        assertTrue(p.spinWhileInFlight(q, 3));
        for (int inFlight = 4; inFlight < 8; inFlight++) {
            p.worked(); // one refill popped while spinning
            assertTrue(p.spinWhileInFlight(q, inFlight), "still owed " + (8 - inFlight) + ": the window goes on");
        }
        p.worked(); // the fifth refill
        assertFalse(p.spinWhileInFlight(q, 8), "everything given back was refilled: sleep on the device at once");
        assertEquals(1, p.inFlightSpins(), "one window");
        assertFalse(p.spinWhileInFlight(q, 8));
    }

    @Test
    void shouldNotSpinWhenTheRefillCameBeforeTheWorkerLooked() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered(6);
        assertFalse(p.spinWhileInFlight(q, 6), "back at six already");
        assertEquals(0, p.inFlightSpins());
        assertEquals(0, kicksOff[0]);
    }

    @Test
    void shouldForgetAPendingWindowWhenNothingIsInFlight() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered(1);
        assertFalse(p.poll(null, () -> false), "no work before this idle episode: it does not spin");
        assertFalse(p.spinWhileInFlight(q, 1), "a lone request submitted after an idle episode does not spin on the device");
    }

    @Test
    void shouldNeverSpinInEfficiencyMode() {
        assertNull(VringPoller.of(PollingMode.EFFICIENCY), "no poller: the worker sleeps on the device at once");
    }
}
