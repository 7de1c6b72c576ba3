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
    @Test
    void shouldSpinOnlyAfterChainsWereReturnedAndStopAfterTheWindow() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        assertFalse(p.spinWhileInFlight(), "nothing returned yet: sleep on the device");
        p.answered();
        long start = System.nanoTime();
        int passes = 0;
        while (p.spinWhileInFlight()) {
            passes++;
            if (System.nanoTime() - start > 10_000_000_000L) {
                throw new AssertionError("the window never ended after " + passes + " passes");
            }
        }
        long took = System.nanoTime() - start;
        assertTrue(took >= VringPoller.SPIN_NANOS, "the window lasts at least " + VringPoller.SPIN_NANOS + " ns, took " + took);
        assertTrue(passes > 0);
        assertFalse(p.spinWhileInFlight(), "one window per answer: the next empty pass sleeps");
        assertEquals(1, p.inFlightSpins());
    }

    @Test
    void shouldKeepTheWindowOpenWhileWorkComes() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered();
        assertTrue(p.spinWhileInFlight());
        for (int i = 0; i < 5; i++) {
            p.worked(); // the driver's refill popped while spinning
            assertTrue(p.spinWhileInFlight(), "work in the window starts it again (pass " + i + ")");
        }
        assertEquals(1, p.inFlightSpins(), "still the first window");
        while (p.spinWhileInFlight()) {
            Thread.onSpinWait();
        }
        assertFalse(p.spinWhileInFlight());
    }

    @Test
    void shouldForgetAPendingWindowWhenNothingIsInFlight() {
        VringPoller p = VringPoller.of(PollingMode.LATENCY);
        p.answered();
        assertFalse(p.poll(null, () -> false), "no work before this idle episode: it does not spin");
        assertFalse(p.spinWhileInFlight(), "a lone request submitted after an idle episode does not spin on the device");
    }

    @Test
    void shouldNeverSpinInEfficiencyMode() {
        assertNull(VringPoller.of(PollingMode.EFFICIENCY), "no poller: the worker sleeps on the device at once");
    }
}
