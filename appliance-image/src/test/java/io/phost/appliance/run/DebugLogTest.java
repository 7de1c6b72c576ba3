package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** -Dphost.log.level=DEBUG adds a logfmt line per management request; at the default INFO there is none. */
class DebugLogTest {
    @TempDir
    Path dir;

    @Test
    void debugLevelLogsEveryApiRequestWithItsStatusAndTime() throws Exception {
        assertTrue(requestLines("DEBUG").stream().anyMatch(l -> l.contains("level=DEBUG logger=phost.mgmt msg=\"request\" method=GET path=/v1/health status=200 ms=")),
            "a DEBUG line for GET /v1/health");
        assertEquals(List.of(), requestLines("INFO"), "no request lines at INFO");
    }

    private List<String> requestLines(String level) throws Exception {
        Path d = Files.createTempDirectory(dir, level);
        Path sock = d.resolve("m.sock");
        Path cfg = d.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "debug"
            data_dir = "%s"
            management = "unix:%s"
            """.formatted(d.resolve("data"), sock));
        try (PhostProcess p = PhostProcess.start(d.resolve("rt"), List.of("-Dphost.log.level=" + level), "run", "--plain",
            "--config", cfg.toString(), "--duration", "30s")) {
            p.awaitLine("phost: ready", Duration.ofSeconds(60));
            Process curl = new ProcessBuilder("curl", "-sS", "--unix-socket", sock.toString(), "http://phost/v1/health")
                .redirectErrorStream(true).start();
            String body = new String(curl.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(curl.waitFor(20, TimeUnit.SECONDS) && curl.exitValue() == 0, "curl: " + body);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (level.equals("DEBUG") && !p.stderr().contains("path=/v1/health") && System.nanoTime() < deadline) {
                Thread.sleep(100);
            }
            List<String> lines = p.stderr().lines().filter(l -> l.contains("msg=\"request\"")).toList();
            assertFalse(p.stderr().contains("level=ERROR"), p.stderr());
            return lines;
        }
    }
}
