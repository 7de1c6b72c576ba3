package io.phost.perf.vhost;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The floor of the added-latency point: the trivial responder completes the driver's requests; the arithmetic. */
class TrivialBlkResponderTest {
    @Test
    @Timeout(60)
    void shouldCompleteEveryRequestOfTheSameDriverWithStatusOk() throws Exception {
        Path dir = Files.createTempDirectory("phost-trivial-blk");
        try {
            // VhostBlkLoad fails on any status but OK and on a request that never completes
            VhostBenchSuite.Rate rate = VhostBenchSuite.trivial(BenchContext.of(true, dir, dir, BenchContext.STDERR), 64L << 20, 0.3, 0);
            assertTrue(rate.perSecond() > 0, "requests per second " + rate);
            assertTrue(rate.cpuNsPerIo() > 0, "the responder thread's CPU is counted: " + rate);
        } finally {
            Files.deleteIfExists(dir.resolve("trivial.sock"));
            Files.deleteIfExists(dir);
        }
    }

    @Test
    void shouldReportThePerRoundDifferenceOfTheRoundTripsAndOfTheCpuPerRequest() {
        // round trips 20, 40, 25 us against 16, 20, 20 us: differences 4, 20, 5 -> median 5
        VhostBenchSuite.Rate[] phost = {rate(20, 3000), rate(40, 5000), rate(25, 4000)};
        VhostBenchSuite.Rate[] floor = {rate(16, 1000), rate(20, 1500), rate(20, 1200)};
        VhostBenchSuite.Rate[] qsd = {rate(30, 9000), rate(30, 8000), rate(30, 7000)};
        BenchResult r = VhostBenchSuite.addedLatency(phost, floor, qsd);
        assertEquals(5, r.value(), 1e-9);
        assertEquals(4, r.series().get("added_us_min"), 1e-9);
        assertEquals(20, r.series().get("added_us_max"), 1e-9);
        assertEquals(20, r.series().get("trivial_round_trip_us_median"), 1e-9);
        assertEquals(2800, r.series().get("added_cpu_ns_per_io_median"), 1e-9, "2000, 3500, 2800");
        assertEquals(8000, r.series().get("qsd_cpu_ns_per_io_median"), 1e-9);
        assertEquals("us", r.unit());
    }

    private static VhostBenchSuite.Rate rate(double roundTripUs, double cpuNs) {
        return new VhostBenchSuite.Rate(1e6 / roundTripUs, cpuNs);
    }
}
