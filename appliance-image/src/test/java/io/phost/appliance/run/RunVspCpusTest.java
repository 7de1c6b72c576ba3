package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.core.sys.CpuAffinity;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `[host] vsp_cpus` keeps every VMBus channel agent of a running `phost run` on those CPUs, and only them. */
class RunVspCpusTest {
    @TempDir
    Path dir;

    @Test
    void shouldRunTheChannelAgentsOfAPartitionOnTheConfiguredCpu() throws Exception {
        int cpu = CpuAffinity.current().getLast();
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "pin-test"
            data_dir = "%s"
            vsp_cpus = [%d]

            [[disk]]
            name = "d"
            path = "d.raw"
            format = "raw"
            create = { type = "fixed", size = "16MiB" }

            [[partition]]
            name = "p"
            workload = { kind = "io", args = ["--rw", "randread", "--runtime", "60"] }
            [[partition.disk]]
            disk = "d"
            """.formatted(dir.resolve("data"), cpu));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--plain", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(30));
            long deadline = System.nanoTime() + 30_000_000_000L;
            Map<String, String> agents = Map.of();
            while (System.nanoTime() < deadline) {
                agents = agentAffinity(p.process().pid());
                if (agents.keySet().stream().anyMatch(n -> n.startsWith("vsp-storage"))) {
                    break; // the guest opened its storage channel
                }
                Thread.sleep(100);
            }
            assertTrue(agents.keySet().stream().anyMatch(n -> n.startsWith("vsp-storage")), "no storage agent: " + agents
                + "\n" + p.stderr());
            assertTrue(agents.keySet().stream().anyMatch(n -> n.startsWith("ic-")), "no integration-service agent: " + agents);
            for (Map.Entry<String, String> e : agents.entrySet()) {
                assertEquals(String.valueOf(cpu), e.getValue(), "thread " + e.getKey() + " runs only on CPU " + cpu);
            }
            String main = affinityOf(Path.of("/proc", String.valueOf(p.process().pid()), "status"));
            assertFalse(main.equals(String.valueOf(cpu)) && CpuAffinity.current().size() > 1,
                "only the agents are pinned, not the whole host: " + main);
        }
    }

    /** Channel-agent threads (vsp-*, ic-*) of {@code pid} and their Cpus_allowed_list. */
    private static Map<String, String> agentAffinity(long pid) throws IOException {
        Map<String, String> out = new LinkedHashMap<>();
        try (Stream<Path> tasks = Files.list(Path.of("/proc", String.valueOf(pid), "task"))) {
            for (Path t : tasks.toList()) {
                try {
                    String name = Files.readString(t.resolve("comm")).strip();
                    if (name.startsWith("vsp-") || name.startsWith("ic-")) {
                        out.put(name + "#" + t.getFileName(), affinityOf(t.resolve("status")));
                    }
                } catch (IOException gone) {
                    // the thread ended between listing and reading
                }
            }
        }
        return out;
    }

    private static String affinityOf(Path status) throws IOException {
        List<String> lines = Files.readAllLines(status);
        return lines.stream().filter(l -> l.startsWith("Cpus_allowed_list:")).map(l -> l.substring(18).strip())
            .findFirst().orElse("?");
    }
}
