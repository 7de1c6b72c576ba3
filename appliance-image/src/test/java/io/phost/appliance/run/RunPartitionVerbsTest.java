package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
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
 * The lifecycle verbs on a process partition of a running `phost run`, through the CLI and the API:
 * an {@code autostart = false} partition is started later, paused, resumed, stopped, started again and
 * killed; unknown names and impossible verbs are errors; {@code logs} and {@code console} answer.
 */
class RunPartitionVerbsTest {
    @TempDir
    Path dir;

    @Test
    void shouldDriveAProcessPartitionThroughEveryVerb() throws Exception {
        Path data = dir.resolve("data");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "verbs"
            data_dir = "%s"

            [[partition]]
            name = "later"
            memory = "16MiB"
            autostart = false
            workload = { kind = "idle" }
            """.formatted(data));
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString(), "--plain")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            String endpoint = Files.readAllLines(dir.resolve("run/endpoint")).getFirst();
            ManagementClient c = new ManagementClient(ManagementAddress.parse(endpoint), null);
            assertEquals("created", state(c));

            assertEquals(0, Main.execute("partition", "start", "later", "--host", endpoint));
            awaitState(c, "running");
            assertEquals(0, Main.execute("partition", "pause", "later", "--host", endpoint));
            assertEquals("paused", state(c));
            assertEquals(409, c.post("/v1/partitions/pause?name=later").status(), "pausing a paused partition");
            assertEquals(0, Main.execute("partition", "resume", "later", "--host", endpoint));
            assertEquals("running", state(c));

            assertEquals(0, Main.execute("partition", "stop", "later", "--timeout", "5", "--host", endpoint));
            assertEquals("stopped", state(c));
            assertEquals(0, Main.execute("partition", "restart", "--all", "--host", endpoint));
            awaitState(c, "running");
            assertEquals(0, Main.execute("partition", "kill", "later", "--host", endpoint));
            Map<?, ?> killed = partition(c);
            assertEquals("stopped", killed.get("state"));
            assertEquals("killed by request", killed.get("reason"));
            assertTrue(String.valueOf(((Map<?, ?>) killed.get("details")).get("cgroup")).length() > 0, killed.toString());

            assertEquals(404, c.post("/v1/partitions/start?name=nope").status());
            assertEquals(400, c.post("/v1/partitions/start").status());
            assertNotEquals(0, Main.execute("partition", "resume", "later", "--host", endpoint));
            HttpResponse logs = c.get("/v1/partitions/logs?name=later");
            assertEquals(200, logs.status());
            HttpResponse console = c.get("/v1/partitions/console?name=later");
            assertEquals(404, console.status());
            assertTrue(console.bodyText().contains("process partition"), console.bodyText());
        }
    }

    private static Map<?, ?> partition(ManagementClient c) throws Exception {
        return (Map<?, ?>) ((List<?>) Json.parse(c.get("/v1/partitions").bodyText())).getFirst();
    }

    private static String state(ManagementClient c) throws Exception {
        return String.valueOf(partition(c).get("state"));
    }

    private static void awaitState(ManagementClient c, String wanted) throws Exception {
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (System.nanoTime() < deadline && !wanted.equals(state(c))) {
            Thread.sleep(50);
        }
        assertEquals(wanted, state(c), partition(c).toString());
    }
}
