package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.ConfigLoader;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.appliance.util.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The shipped examples/appliance.toml runs as is: {@code phost run} on it (data_dir in a temp dir; the
 * host-specific management/NBD socket paths and CPU pinning removed) brings every partition to RUNNING,
 * and they stay there (same pid, no faults) for longer than a crashing workload would live.
 */
class ExampleConfigRunTest {
    private static final Duration STAYS = Duration.ofSeconds(8);

    @TempDir
    Path dir;

    @Test
    void shouldRunEveryPartitionOfTheShippedExampleAndKeepItRunning() throws Exception {
        String example = Files.readString(Path.of("..", "examples", "appliance.toml"));
        Path data = dir.resolve("data");
        String local = example
            .replaceFirst("(?m)^data_dir = .*$", "data_dir = \"" + data + "\"")
            .replaceFirst("(?m)^management = .*$", "")
            .replaceFirst("(?m)^nbd = .*$", "")
            .replaceFirst("(?m)^vsp_cpus = .*$", "");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, local);
        ApplianceConfig config = ConfigLoader.load(cfg);
        List<String> names = config.partitions().stream().map(PartitionConfig::name).toList();
        assertTrue(names.size() >= 2, "the example has partitions: " + names);

        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            ManagementClient c = new ManagementClient(ManagementAddress.parse("unix:" + data.resolve("phost.sock")), null);
            Map<String, Map<?, ?>> first = awaitAllRunning(c, names, p);
            long until = System.nanoTime() + STAYS.toNanos();
            while (System.nanoTime() < until) {
                Thread.sleep(1000);
                for (Map<?, ?> now : partitions(c).values()) {
                    Map<?, ?> then = first.get((String) now.get("name"));
                    assertEquals("RUNNING", now.get("state"), "partition left RUNNING: " + now + "\n" + p.stderr());
                    assertEquals(then.get("pid"), now.get("pid"), "partition restarted: " + now);
                    assertEquals(0L, ((Number) now.get("fault_count")).longValue(), "faults: " + now);
                }
            }
            PromtoolCheck.assertLintsClean(c.get("/metrics").bodyText(), names);
            p.process().destroy();
            assertTrue(p.process().waitFor(20, TimeUnit.SECONDS), "phost stops on SIGTERM");
            assertEquals(0, p.process().exitValue(), p.stderr());
        }
    }

    private static Map<String, Map<?, ?>> awaitAllRunning(ManagementClient c, List<String> names, PhostProcess p)
        throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        Map<String, Map<?, ?>> last = Map.of();
        while (System.nanoTime() < deadline) {
            last = partitions(c);
            if (last.keySet().containsAll(names) && last.values().stream().allMatch(m -> "RUNNING".equals(m.get("state")))) {
                return last;
            }
            Thread.sleep(500);
        }
        throw new AssertionError("not every partition reached RUNNING: " + last.values() + "\n" + p.stderr());
    }

    private static Map<String, Map<?, ?>> partitions(ManagementClient c) throws Exception {
        Map<String, Map<?, ?>> out = new HashMap<>();
        for (Object o : (List<?>) Json.parse(c.get("/partitions").bodyText())) {
            Map<?, ?> m = (Map<?, ?>) o;
            out.put((String) m.get("name"), m);
        }
        return out;
    }
}
