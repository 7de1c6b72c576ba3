package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Storage QoS end to end: `phost run` with two real child partitions doing 4 KiB random reads over the
 * VMBus SCSI path on raw files, under two policies; the flows' measured IOPS must sit at their limits, and
 * a live policy change must take effect.
 */
class QosEndToEndTest {
    @TempDir
    Path dir;

    @Test
    void shouldHoldEachPartitionToItsPolicyAndApplyLiveChanges() throws Exception {
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("qos.toml");
        String workload = "workload = { kind = \"io\", args = [\"--rw\", \"randread\", \"--bs\", \"4k\", \"--iodepth\", \"8\", \"--runtime\", \"60\"] }";
        Files.writeString(cfg, """
            [host]
            name = "qos-e2e"
            data_dir = "%s"

            [[qos_policy]]
            name = "slow"
            max_iops = 50

            [[qos_policy]]
            name = "medium"
            max_iops = 150

            [[disk]]
            name = "a"
            path = "a.raw"
            format = "raw"
            qos_policy = "slow"
            create = { type = "fixed", size = "64MiB" }

            [[disk]]
            name = "b"
            path = "b.raw"
            format = "raw"
            qos_policy = "medium"
            create = { type = "fixed", size = "64MiB" }

            [[partition]]
            name = "pa"
            memory = "64MiB"
            %s
              [[partition.disk]]
              disk = "a"
              lun = 0

            [[partition]]
            name = "pb"
            memory = "64MiB"
            %s
              [[partition.disk]]
              disk = "b"
              lun = 0
            """.formatted(data, workload, workload));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            ManagementClient c = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            Map<String, Double> iops = awaitSteadyIops(c, 2, Duration.ofSeconds(30));
            assertHeldTo(50, iops.get("pa"), "pa under 'slow'");
            assertHeldTo(150, iops.get("pb"), "pb under 'medium'");
            assertTrue(iops.get("pb") > 2 * iops.get("pa"), "pb's larger limit shows: " + iops);

            assertEquals(200, c.post("/v1/qos/policies?name=slow&max_iops=100").status());
            Thread.sleep(2500);
            Map<String, Double> after = awaitSteadyIops(c, 2, Duration.ofSeconds(10));
            assertHeldTo(100, after.get("pa"), "pa after raising 'slow' to 100 on the running host");
            assertTrue(after.get("pa") > 1.5 * iops.get("pa"), "the raised limit took effect: " + iops + " -> " + after);
            p.process().destroy();
            p.process().waitFor();
        }
    }

    /**
     * Polls /qos/flows until {@code n} flows report IOPS three times in a row (the rolling window is full) and
     * returns each flow's median of those three: at 50 IOPS one I/O is 2% of a one-second window, and a sampler
     * delayed by a loaded machine can see one or two extra in a single window.
     */
    private static Map<String, Double> awaitSteadyIops(ManagementClient c, int n, Duration timeout) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        int steady = 0;
        Map<String, Double> last = Map.of();
        List<Map<String, Double>> samples = new java.util.ArrayList<>();
        while (System.nanoTime() < deadline) {
            Map<String, Double> now = new HashMap<>();
            for (Object o : (List<?>) Json.parse(c.get("/v1/qos/flows").bodyText())) {
                Map<?, ?> f = (Map<?, ?>) o;
                double v = ((Number) f.get("initiator_iops")).doubleValue();
                if (v > 0) {
                    now.put((String) f.get("partition"), v);
                }
            }
            steady = now.size() == n ? steady + 1 : 0;
            last = now;
            samples.add(now);
            if (steady >= 3) {
                Map<String, Double> median = new HashMap<>();
                for (String k : now.keySet()) {
                    median.put(k, samples.subList(samples.size() - 3, samples.size()).stream()
                        .mapToDouble(m -> m.get(k)).sorted().toArray()[1]);
                }
                return median;
            }
            Thread.sleep(1000);
        }
        throw new AssertionError("flows never became steady: " + last);
    }

    /**
     * A limit is never exceeded (5% for the rolling window's edges); the guest reaches at least 60% of it.
     * The lower bound is loose on purpose: on a loaded 2-core machine the guest JVM, not QoS, can be the
     * bottleneck. Accuracy (+-2% per second) is measured by `phost bench qos`, not asserted here.
     */
    private static void assertHeldTo(double limit, Double actual, String what) {
        assertTrue(actual != null && actual <= limit * 1.05 && actual >= limit * 0.6,
            what + ": limit " + limit + " but measured " + actual);
    }
}
