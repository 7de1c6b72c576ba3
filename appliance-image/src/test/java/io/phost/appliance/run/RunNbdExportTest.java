package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.phost.appliance.mgmt.ManagementAddress;
import io.phost.appliance.mgmt.ManagementClient;
import io.phost.core.text.Json;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * `phost run` exports the disks that set nbd_export, and real NBD clients use them: qemu-io writes a pattern
 * into a VHDX through the export, reads it back, and after the host stops `qemu-img` finds the pattern in
 * the image file; a read-only disk refuses writes.
 */
class RunNbdExportTest {
    @TempDir
    Path dir;

    @Test
    void shouldServeConfiguredDisksToRealNbdClients() throws Exception {
        assumeTrue(onPath("qemu-io") && onPath("qemu-img"), "qemu-utils not installed (apt-get install qemu-utils)");
        Path data = dir.resolve("data");
        Path sock = dir.resolve("nbd.sock");
        Path cfg = dir.resolve("appliance.toml");
        Files.writeString(cfg, """
            [host]
            name = "nbd-test"
            data_dir = "%s"
            nbd = "unix:%s"

            [[disk]]
            name = "scratch"
            path = "scratch.vhdx"
            format = "vhdx"
            nbd_export = true
            create = { type = "dynamic", size = "64MiB" }

            [[disk]]
            name = "golden"
            path = "golden.raw"
            format = "raw"
            read_only = true
            nbd_export = true
            create = { type = "fixed", size = "4MiB" }

            [[disk]]
            name = "private"
            path = "private.raw"
            format = "raw"
            create = { type = "fixed", size = "4MiB" }
            """.formatted(data, sock));
        String scratch = "nbd+unix:///scratch?socket=" + sock;
        try (PhostProcess p = PhostProcess.start(dir.resolve("run"), "run", "--config", cfg.toString())) {
            p.awaitLine("phost: ready", Duration.ofSeconds(30));
            run("qemu-io", "-f", "raw", "-c", "write -P 0xa5 1M 256k", scratch);
            String read = run("qemu-io", "-f", "raw", "-c", "read -P 0xa5 1M 256k", scratch);
            assertTrue(read.contains("read 262144/262144 bytes"), read);
            String info = run("qemu-img", "info", "--output=json", scratch);
            assertTrue(info.contains("\"virtual-size\": 67108864"), info);

            ProcessResult ro = exec("qemu-io", "-f", "raw", "-c", "write -P 1 0 4k", "nbd+unix:///golden?socket=" + sock);
            assertTrue(ro.exitCode != 0 || ro.output.contains("failed") || ro.output.contains("read-only")
                || ro.output.contains("Permission denied"), "a read-only export must refuse writes: " + ro.output);
            ProcessResult none = exec("qemu-img", "info", "nbd+unix:///private?socket=" + sock);
            assertTrue(none.exitCode != 0, "a disk without nbd_export is not exported: " + none.output);

            ManagementAddress a = ManagementAddress.parse(Files.readAllLines(dir.resolve("run/endpoint")).getFirst());
            Map<?, ?> status = (Map<?, ?>) Json.parse(new ManagementClient(a, null).get("/v1/status").bodyText());
            Map<?, ?> nbd = (Map<?, ?>) status.get("nbd");
            List<?> exports = (List<?>) nbd.get("exports");
            assertEquals(2, exports.size(), status.toString());
            Map<?, ?> first = (Map<?, ?>) exports.getFirst();
            assertEquals("scratch", first.get("export"));
            assertTrue(((Number) first.get("bytes_written")).longValue() >= 262144, first.toString());

            p.process().destroy();
            assertTrue(p.process().waitFor(10, TimeUnit.SECONDS));
            assertEquals(0, p.process().exitValue(), p.stderr());
            assertTrue(!Files.exists(sock), "the NBD socket is removed at stop");
        }
        // The write went through the VHDX engine into the image: qemu reads it from the file itself.
        String check = run("qemu-io", "-f", "vhdx", "-r", "-c", "read -P 0xa5 1M 256k", data.resolve("scratch.vhdx").toString());
        assertTrue(check.contains("read 262144/262144 bytes"), check);
        run("qemu-img", "check", "-f", "vhdx", data.resolve("scratch.vhdx").toString());
    }

    private record ProcessResult(int exitCode, String output) {
    }

    private static ProcessResult exec(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), String.join(" ", cmd) + " hung");
        return new ProcessResult(p.exitValue(), out);
    }

    private static String run(String... cmd) throws IOException, InterruptedException {
        ProcessResult r = exec(cmd);
        assertEquals(0, r.exitCode, String.join(" ", cmd) + ": " + r.output);
        return r.output;
    }

    private static boolean onPath(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(d, tool))) {
                return true;
            }
        }
        return false;
    }
}
