package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.Main;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Metering (Measure-VM) of a process partition under a real `phost run`: the built-in {@code guest io} workload
 * writes a known 32 MiB over VMBus; the metered write bytes agree with that count and with the QoS flow's own
 * counter within ±2 %, CPU and memory were seen, and a reset zeroes the meters. Through the API and the CLI.
 */
class RunMeteringTest {
    private static final long WRITTEN = 32L << 20;

    @TempDir
    Path dir;

    @Test
    void shouldMeterAKnownAmountOfDiskIoAndResetToZero() throws Exception {
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "meter"
            data_dir = "%s"

            [[disk]]
            name = "d"
            path = "d.raw"
            format = "raw"
            create = { type = "fixed", size = "64MiB" }

            [[partition]]
            name = "p"
            memory = "64MiB"
            workload = { kind = "io", args = ["--rw", "write", "--bs", "4k", "--size", "32m"] }
            [[partition.disk]]
            disk = "d"
            """.formatted(dir.resolve("data")));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--plain", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);

            // The workload writes its 32 MiB and exits; wait until the flow has it all and two ticks have passed.
            long deadline = System.nanoTime() + Duration.ofSeconds(90).toNanos();
            Map<?, ?> disk = null;
            long flowBytes = 0;
            while (System.nanoTime() < deadline) {
                flowBytes = flowBytes(c);
                disk = disk(measure(c));
                if (flowBytes >= WRITTEN && disk != null && ((Number) disk.get("write_bytes")).longValue() >= WRITTEN) {
                    break;
                }
                Thread.sleep(250);
            }
            Thread.sleep(2500);
            flowBytes = flowBytes(c);
            Map<?, ?> m = measure(c);
            disk = disk(m);
            assertTrue(disk != null, m.toString());
            long written = ((Number) disk.get("write_bytes")).longValue();
            assertTrue(Math.abs(written - WRITTEN) <= WRITTEN * 0.02, "metered " + written + " vs the workload's " + WRITTEN);
            assertTrue(Math.abs(written - flowBytes) <= flowBytes * 0.02, "metered " + written + " vs the flow's " + flowBytes);
            long normalized = ((Number) disk.get("normalized_ios")).longValue();
            assertTrue(normalized >= WRITTEN / (8 << 10) * 0.98, "normalized I/Os: " + normalized + " " + m);
            assertTrue(((Number) m.get("cpu_seconds")).doubleValue() > 0, "cpu: " + m);
            assertTrue(((Number) m.get("peak_memory_bytes")).longValue() > 0, "memory: " + m);
            assertTrue(((Number) m.get("average_memory_bytes")).longValue() > 0, "memory: " + m);

            assertEquals(0, Main.execute("partition", "measure", "p", "--host", endpoint));
            assertEquals(0, Main.execute("partition", "measure", "p", "--reset", "--json", "--host", endpoint));
            Map<?, ?> zero = measure(c);
            Map<?, ?> zd = disk(zero);
            assertEquals(0L, ((Number) zd.get("write_bytes")).longValue(), zero.toString());
            assertEquals(0L, ((Number) zd.get("normalized_ios")).longValue(), zero.toString());
            assertEquals(0.0, ((Number) zero.get("cpu_seconds")).doubleValue(), zero.toString());

            HttpResponse reset = c.post("/v1/partitions/measure/reset?name=p");
            assertEquals(200, reset.status());
            assertEquals(404, c.get("/v1/partitions/measure?name=nope").status());
            assertEquals(400, c.get("/v1/partitions/measure").status());
            String metrics = c.get("/v1/metrics").bodyText();
            assertTrue(metrics.contains("# TYPE phost_partition_cpu_seconds_total counter")
                && metrics.contains("phost_partition_cpu_seconds_total{partition=\"p\"}"), metrics);
            assertTrue(metrics.contains("phost_partition_memory_bytes{partition=\"p\"}"), metrics);
            if (Files.isExecutable(Path.of("/usr/bin/promtool"))) {
                Process pt = new ProcessBuilder("/usr/bin/promtool", "check", "metrics").redirectErrorStream(true).start();
                pt.getOutputStream().write(metrics.getBytes(java.nio.charset.StandardCharsets.UTF_8));
                pt.getOutputStream().close();
                String out = new String(pt.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
                assertEquals(0, pt.waitFor(), out);
                assertEquals("", out.strip(), "promtool findings:\n" + out);
            }
        }
    }

    /** A process partition's NIC (the mixed workload's bridged TAP) is metered from its switch port's counters. */
    @Test
    void shouldMeterANicFromItsSwitchPort() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue("root".equals(System.getProperty("user.name")), "the workload's TAP needs root");
        String name = "m" + ProcessHandle.current().pid() % 100_000; // its TAP pt-NAME is unique on the host
        Path cfg = dir.resolve("nic.toml");
        Files.writeString(cfg, """
            [host]
            name = "meter-nic"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"

            [[disk]]
            name = "d"
            path = "d.raw"
            format = "raw"
            create = { type = "fixed", size = "16MiB" }

            [[partition]]
            name = "%s"
            workload = { kind = "mixed", args = ["--io", "--rw randread --bs 4k --runtime 0"] }
              [[partition.disk]]
              disk = "d"
              [[partition.nic]]
              switch = "lan"
            """.formatted(dir.resolve("data"), name));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--plain", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            Map<?, ?> nic = null;
            while (System.nanoTime() < deadline) {
                Map<?, ?> m = (Map<?, ?>) Json.parse(c.get("/v1/partitions/measure?name=" + name).bodyText());
                List<?> nics = (List<?>) m.get("nics");
                if (!nics.isEmpty()) {
                    nic = (Map<?, ?>) nics.getFirst();
                    if (((Number) nic.get("bytes_out")).longValue() + ((Number) nic.get("bytes_in")).longValue() > 0) {
                        break;
                    }
                }
                Thread.sleep(250);
            }
            assertTrue(nic != null, "no NIC metered: " + c.get("/v1/partitions/measure?name=" + name).bodyText());
            assertEquals("lan", nic.get("switch"));
            Map<?, ?> perSwitch = (Map<?, ?>) ((List<?>) ((Map<?, ?>) Json.parse(c.get("/v1/partitions/measure?name=" + name)
                .bodyText())).get("switches")).getFirst();
            assertEquals("lan", perSwitch.get("switch"));
            long metered = ((Number) nic.get("bytes_out")).longValue() + ((Number) nic.get("bytes_in")).longValue();
            assertTrue(metered > 0, "nothing crossed the port: " + nic);
            long port = 0;
            Map<?, ?> status = (Map<?, ?>) Json.parse(c.get("/v1/status").bodyText());
            for (Object o : (List<?>) status.get("switches")) {
                Map<?, ?> row = (Map<?, ?>) o;
                if (String.valueOf(row.get("port")).startsWith(name + "/")) {
                    port = ((Number) row.get("rx_bytes")).longValue() + ((Number) row.get("tx_bytes")).longValue();
                }
            }
            assertTrue(port >= metered, "the meter (" + metered + ") cannot exceed the port's counters (" + port + ")");
        }
    }

    private static Map<?, ?> measure(ManagementClient c) throws Exception {
        HttpResponse r = c.get("/v1/partitions/measure?name=p");
        assertEquals(200, r.status(), r.bodyText());
        return (Map<?, ?>) Json.parse(r.bodyText());
    }

    private static Map<?, ?> disk(Map<?, ?> m) {
        for (Object o : (List<?>) m.get("disks")) {
            if ("d".equals(((Map<?, ?>) o).get("disk"))) {
                return (Map<?, ?>) o;
            }
        }
        return null;
    }

    private static long flowBytes(ManagementClient c) throws Exception {
        for (Object o : (List<?>) Json.parse(c.get("/v1/qos/flows").bodyText())) {
            Map<?, ?> f = (Map<?, ?>) o;
            if ("p".equals(f.get("partition")) && "d".equals(f.get("disk"))) {
                return f.get("completedBytes") instanceof Number n ? n.longValue()
                    : ((Number) f.get("completed_bytes")).longValue();
            }
        }
        return 0;
    }
}
