package io.phost.perf.vhost;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The plumbing of the vhost-user-net bench point (no timing is asserted: numbers come from {@code phost bench vhost}). */
class VhostNetPointTest {
    @Test
    void shouldKickOnlyWhenTheAvailIndexPassesTheBackEndsAvailEvent() {
        assertTrue(VhostNetLoad.needEvent(5, 6, 5), "event 5 in [5, 6)");
        assertTrue(VhostNetLoad.needEvent(5, 10, 3), "event 5 in [3, 10)");
        assertFalse(VhostNetLoad.needEvent(10, 10, 3), "event 10 not yet passed");
        assertFalse(VhostNetLoad.needEvent(2, 10, 3), "event 2 passed before");
        assertTrue(VhostNetLoad.needEvent(0xFFFF, 2, 0xFFF0), "across the 16-bit wrap");
    }

    @Test
    void shouldAddUserAndSystemTicksOfAProcStatLineWhoseNameHasSpacesAndParentheses() {
        String stat = "4711 (dpdk (x) y) R 1 4711 4711 0 -1 4194304 900 0 0 0 1234 56 0 0 20 0 3 0 100 0 0";
        assertEquals(1234 + 56, VhostNetPoint.statTicks(stat));
    }

    @Test
    void shouldRunTestpmdWithoutHugePagesInIoModeBetweenTwoVhostPorts() {
        List<String> c = VhostNetPoint.testpmdCommand(Path.of("/x/a.sock"), Path.of("/x/b.sock"));
        assertEquals("dpdk-testpmd", c.getFirst());
        assertTrue(c.contains("--no-huge"));
        assertTrue(c.contains("--forward-mode=io"));
        assertTrue(c.contains("net_vhost0,iface=/x/a.sock,queues=1") && c.contains("net_vhost1,iface=/x/b.sock,queues=1"));
    }

    @Test
    void shouldCompareMediansAndKeepCpuAndAllocationPerFrameOfBothSides() {
        VhostNetPoint.Round[] ours = {new VhostNetPoint.Round(300, 900, 0, 400), new VhostNetPoint.Round(200, 1000, 0.5, 450),
            new VhostNetPoint.Round(100, 1100, 0, 500)};
        VhostNetPoint.Round[] peer = {new VhostNetPoint.Round(100, 500, Double.NaN), new VhostNetPoint.Round(105, 600, Double.NaN),
            new VhostNetPoint.Round(110, 700, Double.NaN)};
        BenchResult r = VhostNetPoint.result(ours, peer);
        assertEquals(200, r.value());
        assertEquals(105, r.peerValue());
        assertEquals(1000, r.series().get("ours_cpu_ns_per_frame_median"));
        assertEquals(0.5, r.series().get("ours_alloc_bytes_per_frame_max"));
        assertEquals(450, r.series().get("ours_thread_cpu_ns_per_frame_median"), "the data path's threads alone");
        assertEquals(600, r.series().get("peer_cpu_ns_per_frame_median"));
        assertTrue(Double.isNaN(VhostNetPoint.result(ours, null).ratio()), "no peer, no ratio");
    }

    @Test
    void shouldCountOnlyTheThreadsStartedSinceTheSnapshot() {
        assertArrayEquals(new long[] {7, 9}, VhostNetPoint.startedSince(new long[] {1, 7, 2, 9}, new long[] {1, 2, 3}));
    }

    /** A real (short) phost round: frames cross the switch from port A to port B and the round's figures are filled in. */
    @Test
    @Timeout(60)
    void shouldForwardFramesFromPortAToPortBThroughPhostsSwitch() throws Exception {
        Path dir = Files.createTempDirectory("phost-vnet-bench");
        try {
            VhostNetPoint.Round r = VhostNetPoint.ours(BenchContext.of(true, dir, dir, BenchContext.STDERR), 0.3, 0);
            assertTrue(r.pps() > 0, "frames per second " + r.pps());
            assertTrue(r.cpuNsPerFrame() > 0, "CPU per frame " + r.cpuNsPerFrame());
            assertFalse(Double.isNaN(r.allocBytesPerFrame()), "phost's threads' allocation is measured");
        } finally {
            try (Stream<Path> s = Files.walk(dir)) {
                s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    @Test
    void shouldOfferTheNetPointAloneAsSuiteVhostNet() {
        io.phost.perf.BenchSuite s = java.util.ServiceLoader.load(io.phost.perf.BenchSuite.class).stream()
            .map(java.util.ServiceLoader.Provider::get).filter(x -> x.name().equals("vhost-net")).findFirst()
            .orElseThrow(() -> new AssertionError("no suite vhost-net in META-INF/services"));
        assertTrue(s instanceof VhostNetBenchSuite, s.getClass().getName());
        assertTrue(s.description().contains("vhost-user-net"), s.description());
    }
}
