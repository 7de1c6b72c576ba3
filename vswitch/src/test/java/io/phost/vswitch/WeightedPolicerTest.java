package io.phost.vswitch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.Test;

/** The weighted cap towards a port, on a simulated clock: senders offer 1,500-byte frames every 100 us each. */
class WeightedPolicerTest {
    private static final long RATE = 5_000_000; // bytes/s; each sender below offers 15 MB/s
    private static final long STEP = 100_000;    // ns between one sender's frames
    private static final int FRAME = 1500;

    /** Bytes admitted per sender over {@code seconds} of simulated time (after the same time of warm-up). */
    private static long[] run(WeightedPolicer p, int[] weights, boolean[] sending, int seconds, long[] clock) {
        long[] admitted = new long[weights.length];
        long end = clock[0] + seconds * 1_000_000_000L;
        for (; clock[0] < end; clock[0] += STEP) {
            for (int s = 0; s < weights.length; s++) {
                if (sending[s] && p.tryAdmit(s, weights[s], FRAME, clock[0])) {
                    admitted[s] += FRAME;
                }
            }
        }
        return admitted;
    }

    @Test
    void shouldShareTheCapByWeightUnderContention() {
        long[] clock = {0};
        WeightedPolicer p = new WeightedPolicer(RATE, RATE / 10, 0);
        run(p, new int[] {3, 1}, new boolean[] {true, true}, 1, clock);
        long[] got = run(p, new int[] {3, 1}, new boolean[] {true, true}, 5, clock);
        double share = (double) got[0] / (got[0] + got[1]);
        assertEquals(0.75, share, 0.01, got[0] + " vs " + got[1]);
        assertEquals(5 * RATE, got[0] + got[1], 0.02 * 5 * RATE);
    }

    /** A live weight change (POST /v1/switches/port) moves the share with the next frames, without a restart. */
    @Test
    void shouldMoveTheShareWhenASendersWeightChangesUnderContention() {
        long[] clock = {0};
        WeightedPolicer p = new WeightedPolicer(RATE, RATE / 10, 0);
        run(p, new int[] {1, 1}, new boolean[] {true, true}, 1, clock);
        long[] even = run(p, new int[] {1, 1}, new boolean[] {true, true}, 2, clock);
        assertEquals(0.5, (double) even[0] / (even[0] + even[1]), 0.01);
        run(p, new int[] {30, 10}, new boolean[] {true, true}, 1, clock);
        long[] got = run(p, new int[] {30, 10}, new boolean[] {true, true}, 5, clock);
        assertEquals(0.75, (double) got[0] / (got[0] + got[1]), 0.01, got[0] + " vs " + got[1]);
    }

    @Test
    void shouldGiveALoneSenderTheWholeCapAndForgetSendersThatStopped() {
        long[] clock = {0};
        WeightedPolicer p = new WeightedPolicer(RATE, RATE / 10, 0);
        run(p, new int[] {100, 1}, new boolean[] {true, true}, 1, clock);
        long[] got = run(p, new int[] {100, 1}, new boolean[] {false, true}, 3, clock);
        assertEquals(3 * RATE, got[1], 0.05 * 3 * RATE, "weight 1 alone after weight 100 stopped");
    }

    @Test
    void shouldLendWhatASenderBelowItsShareLeavesUnused() {
        long[] clock = {0};
        WeightedPolicer p = new WeightedPolicer(RATE, RATE / 10, 0);
        long[] admitted = new long[2];
        long end = 6_000_000_000L;
        for (; clock[0] < end; clock[0] += STEP) {
            // Sender 0 (weight 3 of 4, share 3.75 MB/s) offers only 1.5 MB/s: one frame per ms.
            if (clock[0] % 1_000_000 == 0 && p.tryAdmit(0, 3, FRAME, clock[0]) && clock[0] >= 1_000_000_000L) {
                admitted[0] += FRAME;
            }
            if (p.tryAdmit(1, 1, FRAME, clock[0]) && clock[0] >= 1_000_000_000L) {
                admitted[1] += FRAME;
            }
        }
        assertEquals(5 * 1_500_000, admitted[0], 0.02 * 5 * 1_500_000, "the light sender gets all it asks");
        assertTrue(admitted[1] >= 0.95 * 5 * (RATE - 1_500_000), "the other takes the rest: " + admitted[1]);
    }

    @Test
    void shouldAdmitWithoutAllocating() {
        com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long[] clock = {0};
        WeightedPolicer p = new WeightedPolicer(RATE, RATE / 10, 0);
        int[] w = {3, 1, 7};
        boolean[] on = {true, true, true};
        for (int i = 0; i < 20; i++) {
            run(p, w, on, 1, clock);
        }
        long tid = Thread.currentThread().threadId();
        long before = mx.getThreadAllocatedBytes(tid);
        long t = clock[0];
        int admitted = 0;
        for (int i = 0; i < 30_000; i++) {
            t += STEP;
            admitted += p.tryAdmit(i % 3, w[i % 3], FRAME, t) ? 1 : 0;
        }
        long after = mx.getThreadAllocatedBytes(tid);
        assertTrue(admitted > 0);
        assertEquals(0, after - before, "bytes allocated for 30 000 frames");
    }

    /** Absolute reservations as weights: one unit per started Mbit/s, at least 1, at most MAX_WEIGHT. */
    @Test
    void shouldTurnAnAbsoluteReservationIntoAWeightThatHoldsIt() {
        assertEquals(1, PortConfig.absoluteWeight(0));
        assertEquals(1, PortConfig.absoluteWeight(1));
        assertEquals(30, PortConfig.absoluteWeight(30_000_000));
        assertEquals(31, PortConfig.absoluteWeight(30_000_001));
        assertEquals(PortConfig.MAX_WEIGHT, PortConfig.absoluteWeight(Long.MAX_VALUE));
        // 40 Mbit/s cap (5 MB/s): 30 Mbit/s reserved against two senders without a reservation.
        long[] clock = {0};
        WeightedPolicer p = new WeightedPolicer(RATE, RATE / 10, 0);
        int[] w = {PortConfig.absoluteWeight(30_000_000), PortConfig.absoluteWeight(0), PortConfig.absoluteWeight(0)};
        run(p, w, new boolean[] {true, true, true}, 1, clock);
        long[] got = run(p, w, new boolean[] {true, true, true}, 5, clock);
        assertTrue(got[0] * 8 / 5 >= 30_000_000, "reservation held: " + got[0] * 8 / 5 + " bit/s");
        assertTrue(got[1] > 0 && got[2] > 0);
    }
}
