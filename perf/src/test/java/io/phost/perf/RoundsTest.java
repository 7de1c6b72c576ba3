package io.phost.perf;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class RoundsTest {
    @Test
    void shouldRunRoundsInAbbaOrder() {
        boolean[] first = new boolean[8];
        for (int i = 0; i < 8; i++) {
            first[i] = Rounds.oursFirst(i);
        }
        assertArrayEquals(new boolean[] {true, false, false, true, true, false, false, true}, first);
    }

    @Test
    void shouldReportMinMedianMaxAndTheRatioOfMedians() {
        BenchResult r = Rounds.compare("x", "Mpps", new double[] {10, 30, 20}, "peer", new double[] {10.5, 10, 9.5}, false);
        assertEquals(20, r.value());
        assertEquals(10, r.peerValue());
        assertEquals(2.0, r.ratio(), 1e-9);
        assertEquals(10, r.series().get("ours_min"));
        assertEquals(30, r.series().get("ours_max"));
        assertEquals(0.1, r.series().get("peer_spread"), 1e-9);
        assertEquals(0.0, r.series().get("ratio_refused"));
    }

    @Test
    void shouldRefuseARatioWhenThePeerSpreadIsAboveTwentyPercent() {
        BenchResult r = Rounds.compare("x", "us", new double[] {1, 1, 1, 1}, "peer", new double[] {1, 1.3, 1, 1}, true);
        assertTrue(Double.isNaN(r.ratio()), "peer spread 30%: no ratio");
        assertEquals(1.0, r.series().get("peer_median"));
        assertEquals(1.0, r.series().get("ratio_refused"));
    }

    @Test
    void shouldRefuseARatioWithFewerThanThreeRounds() {
        assertFalse(Rounds.trustworthy(Rounds.Stats.of(new double[] {1, 1}), Rounds.Stats.of(new double[] {1, 1, 1})));
        assertTrue(Double.isNaN(Rounds.Stats.of(new double[] {Double.NaN}).median()));
    }

    @Test
    void shouldParseStealFromTheProcStatCpuLine() {
        long[] t = MachineLoad.parseCpuLine("cpu  1269077 119 401302 356370 7839 0 13031 4242 0 0");
        assertEquals(1269077, t[0]);
        assertEquals(356370, t[3]);
        assertEquals(4242, t[7]);
    }

    @Test
    void shouldReadTheRunQueueWaitFromSchedstat() {
        assertEquals(2345, Schedstat.parseWait("98765 2345 17\n"));
        assertTrue(Schedstat.waitNanos("") >= 0, "this process's threads are readable");
    }
}
