package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** `phost run --config` as a real process: serves /health, /status, /metrics; SIGTERM stops it with exit 0 in 5 s. */
class RunLifecycleTest {
    @TempDir
    Path dir;

    @Test
    void shouldServeHealthAndStatusAndStopCleanlyOnSigterm() throws Exception {
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "lifecycle-test"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"
            """.formatted(data));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            String ready = p.awaitLine("phost: ready", Duration.ofSeconds(30));
            assertTrue(ready.contains("name=lifecycle-test"), ready);
            ManagementAddress a = ManagementAddress.parse(Files.readAllLines(dir.resolve("run/endpoint")).getFirst());
            ManagementClient c = new ManagementClient(a, null);
            assertEquals(Map.of("status", "ok"), Json.parse(c.get("/v1/health").bodyText()));
            HttpResponse status = c.get("/v1/status");
            assertEquals(200, status.status());
            Map<?, ?> doc = (Map<?, ?>) Json.parse(status.bodyText());
            assertEquals("running", doc.get("state"));
            assertTrue(doc.get("switches").toString().contains("switch=lan"), "a switch without ports is listed: " + doc);
            String metrics = c.get("/v1/metrics").bodyText();
            assertTrue(metrics.contains("# TYPE phost_up gauge") && metrics.contains("\nphost_up 1")
                && metrics.contains("phost_host_info{name=\"lifecycle-test\"} 1"), metrics);

            long t0 = System.nanoTime();
            p.process().destroy(); // SIGTERM
            assertTrue(p.process().waitFor(5, TimeUnit.SECONDS), "phost did not stop within 5 s after SIGTERM");
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(System.nanoTime() - t0 < 5_000_000_000L);
            assertTrue(!Files.exists(dir.resolve("run/endpoint")), "endpoint withdrawn");
            assertTrue(!Files.exists(data.resolve("phost.sock")), "socket removed");
        }
    }

    /** Closing the terminal sends SIGHUP: the same orderly stop as SIGTERM (before: killed by the default action). */
    @Test
    void shouldStopCleanlyOnSighupWhenTheTerminalCloses() throws Exception {
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "hup-test"
            data_dir = "%s"

            [[switch]]
            name = "lan"
            type = "private"
            """.formatted(data));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(30));
            assertEquals(0, new ProcessBuilder("kill", "-HUP", Long.toString(p.process().pid())).start().waitFor());
            assertTrue(p.process().waitFor(5, TimeUnit.SECONDS), "phost did not stop within 5 s after SIGHUP");
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(!Files.exists(dir.resolve("run/endpoint")), "endpoint withdrawn");
            assertTrue(!Files.exists(data.resolve("phost.sock")), "socket removed");
        }
    }

    @Test
    void shouldRefuseABadConfigWithEveryErrorAndCreateNothing() throws Exception {
        Path data = dir.resolve("never-created");
        Path cfg = dir.resolve("bad.toml");
        Files.writeString(cfg, """
            [host]
            name = "bad"
            data_dir = "%s"
            colour = "blue"

            [[disk]]
            name = "d"
            path = "d.vhdx"
            format = "vhdx"
            create = { type = "dynamic", size = "1GiB" }

            [[partition]]
            name = "p"
            vcpus = 0
            memory = "64MiB"
              [[partition.disk]]
              disk = "missing"
              lun = 0
            """.formatted(data));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            assertTrue(p.process().waitFor(30, TimeUnit.SECONDS));
            assertEquals(2, p.process().exitValue(), p.stderr());
            String err = p.stderr();
            assertTrue(err.contains(cfg + ":4:1: host.colour"), err);
            assertTrue(err.contains(cfg + ":14:1: partition[0].vcpus"), err);
            assertTrue(err.contains("missing"), err);
            assertTrue(!Files.exists(data), "a refused config must not create the data dir");
        }
    }

    @Test
    void shouldServeConfigErrorsOnTheEndpointWhenAskedInsteadOfExiting() throws Exception {
        Path cfg = dir.resolve("broken.toml");
        Files.writeString(cfg, "[host]\nname = \"x\"\ndata_dir = \"/nonexistent-never-created\"\nspeed = 3\n");
        Path sock = dir.resolve("err.sock");
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(),
            "--on-config-error", "unix:" + sock)) {
            p.awaitLine("phost: config-error", Duration.ofSeconds(30));
            HttpResponse h = new ManagementClient(ManagementAddress.parse("unix:" + sock), null).get("/v1/health");
            assertEquals(503, h.status());
            assertTrue(h.bodyText().contains(cfg + ":4:1: host.speed"), h.bodyText());
            p.process().destroy();
            assertTrue(p.process().waitFor(5, TimeUnit.SECONDS));
            assertEquals(2, p.process().exitValue());
            assertTrue(!Files.exists(Path.of("/nonexistent-never-created")));
        }
    }
}
