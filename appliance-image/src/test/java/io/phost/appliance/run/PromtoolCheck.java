package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/** Runs {@code promtool check metrics} (Debian package prometheus) on a /metrics document, plus the grouping rule. */
final class PromtoolCheck {
    private PromtoolCheck() {
    }

    static void assertLintsClean(String metrics, List<String> partitions) throws IOException, InterruptedException {
        Path promtool = Path.of("/usr/bin/promtool");
        assertTrue(Files.isExecutable(promtool),
            "promtool is missing: apt-get install prometheus (bash .ci/run installs every peer the tests use)");
        Process p = new ProcessBuilder(promtool.toString(), "check", "metrics").redirectErrorStream(true).start();
        p.getOutputStream().write(metrics.getBytes(StandardCharsets.UTF_8));
        p.getOutputStream().close();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS), "promtool finishes");
        assertEquals(0, p.exitValue(), "promtool check metrics:\n" + out + "\n---\n" + metrics);
        assertEquals("", out.strip(), "promtool has no lint findings:\n" + out);

        // Every family's samples are contiguous under its own # TYPE (a strict parser's grouping rule).
        Set<String> closed = new HashSet<>();
        String current = null;
        for (String line : metrics.split("\n")) {
            if (line.startsWith("# TYPE ")) {
                String family = line.split(" ")[2];
                assertFalse(closed.contains(family), "family " + family + " appears twice");
                if (current != null) {
                    closed.add(current);
                }
                current = family;
            } else if (!line.startsWith("#") && !line.isBlank()) {
                String name = line.split("[{ ]")[0];
                assertTrue(current != null && name.startsWith(current), "sample " + name + " outside its family " + current);
            }
        }
        for (String partition : partitions) {
            assertTrue(metrics.contains("phost_partition_state{partition=\"" + partition + "\",phost_partition_state=\"RUNNING\"} 1"),
                "state set of " + partition + ":\n" + metrics);
        }
        for (String family : List.of("# TYPE phost_storage_latency_seconds histogram", "# TYPE phost_storage_reads_total counter",
            "# TYPE phost_build_info gauge", "# TYPE process_cpu_seconds_total counter", "# TYPE jvm_memory_used_bytes gauge")) {
            assertTrue(metrics.contains(family), family + " in:\n" + metrics);
        }
        assertFalse(metrics.contains("micro"), "base units only (seconds, bytes)");
        assertFalse(metrics.contains("disk=\"web-web-os\""), "one label value per disk: the config's name");
    }
}
