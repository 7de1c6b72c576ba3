package io.phost.appliance.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.phost.perf.BenchResult;
import io.phost.perf.vswitch.SwitchBenchSuite;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Issue 17: the switch suite's points report the median of their rounds with min/median/max of both sides. */
class SwitchRoundsTest {
    @Test
    void shouldReportTheMedianRoundWithMinMedianMaxOfBothSides() {
        BenchResult r = SwitchBenchSuite.roundsResult(BenchResult.vsPeer("tcp", 2.0, "Gbit/s", "bridge", 3.0),
            new double[] {3e9, 1e9, 2e9}, new double[] {4e9, 3e9, 5e9}, 1e9, "Gbit/s");
        assertEquals(Map.of("phost_min", 1.0, "phost_median", 2.0, "phost_max", 3.0, "peer_min", 3.0, "peer_median", 4.0,
            "peer_max", 5.0, "rounds", 3.0), r.series());
        assertEquals("Gbit/s", r.seriesUnit());

        BenchResult f = SwitchBenchSuite.medianOf(new BenchResult[] {
            BenchResult.alone("fwd", 5.0, "Mpps").withSeries(Map.of("frames", 50.0)),
            BenchResult.alone("fwd", 3.0, "Mpps").withSeries(Map.of("frames", 30.0)),
            BenchResult.alone("fwd", 4.0, "Mpps").withSeries(Map.of("frames", 40.0))});
        assertEquals(4.0, f.value(), "the median round");
        assertEquals(Map.of("frames", 40.0, "min", 3.0, "median", 4.0, "max", 5.0, "rounds", 3.0), f.series());
    }
}
