package io.phost.core.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.vmbus.PollingMode;
import org.junit.jupiter.api.Test;

/**
 * The in-flight window of a polling queue worker (issue 14, twelfth session): after the handler returned chains the
 * worker keeps looking at the rings (no sleep on the device) until {@link VringPoller#SPIN_NANOS} pass with no work,
 * so a driver's refill reaches the device at once; with nothing returned (a lone request on the device) it does not
 * spin, and an idle episode forgets a pending window.
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
        assertFalse(p.spinWhileInFlight(q), "nothing returned yet: sleep on the device");
        p.answered();
        long start = System.nanoTime();
        int passes = 0;
        while (p.spinWhileInFlight(q)) {
            passes++;
            if (System.nanoTime() - start > 10_000_000_000L) {
                throw new AssertionError("the window never ended after " + passes + " passes");
            }
        }
        long took = System.nanoTime() - start;
        assertTrue(took >= VringPoller.SPIN_NANOS, "the window lasts at least " + VringPoller.SPIN_NANOS + " ns, took " + took);
        assertTrue(passes > 0);
        assertFalse(p.spinWhileInFlight(q), "one window per answer: the next empty pass sleeps");
        assertEquals(1, p.inFlightSpins());
        assertEquals(1, kicksOff[0], "kicks turned off once, when the window began");
    }

    @Test
    void shouldKeepTheWindowOpenWhileWorkComes() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered();
        assertTrue(p.spinWhileInFlight(q));
        for (int i = 0; i < 5; i++) {
            p.worked(); // the driver's refill popped while spinning
            assertTrue(p.spinWhileInFlight(q), "work in the window starts it again (pass " + i + ")");
        }
        assertEquals(1, p.inFlightSpins(), "still the first window");
        while (p.spinWhileInFlight(q)) {
            Thread.onSpinWait();
        }
        assertFalse(p.spinWhileInFlight(q));
    }

    @Test
    void shouldForgetAPendingWindowWhenNothingIsInFlight() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered();
        assertFalse(p.poll(null, () -> false), "no work before this idle episode: it does not spin");
        assertFalse(p.spinWhileInFlight(q), "a lone request submitted after an idle episode does not spin on the device");
    }

    @Test
    void shouldNeverSpinInEfficiencyMode() {
        assertNull(VringPoller.of(PollingMode.EFFICIENCY), "no poller: the worker sleeps on the device at once");
    }
}
