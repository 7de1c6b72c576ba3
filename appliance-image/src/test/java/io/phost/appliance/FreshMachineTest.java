package io.phost.appliance;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The README's test command on a machine without a peer tool fails in one line naming the Debian package
 * (.ci/check-peers, run by the parent POM before anything is built), instead of passing by skipping tests.
 * Simulated with a PATH that holds every peer of .ci/run's list but promtool.
 */
class FreshMachineTest {
    private static final Path CHECK = Path.of("..", ".ci", "check-peers").toAbsolutePath().normalize();

    @Test
    void shouldNameTheMissingPackageInOneLineWhenAPeerToolIsAbsent(@TempDir Path bin) throws Exception {
        String pairs = Files.readString(CHECK.resolveSibling("run")).replace("\\\n", " ");
        pairs = pairs.substring(pairs.indexOf("for pkg_cmd in ") + 15, pairs.indexOf("; do"));
        assertTrue(pairs.contains("prometheus:promtool"), ".ci/run installs promtool: " + pairs);
        for (String tool : List.of("tr", "sed", "dirname")) {
            link(bin, tool);
        }
        for (String pair : pairs.trim().split("\\s+")) {
            String cmd = pair.substring(pair.indexOf(':') + 1);
            if (!cmd.equals("promtool")) {
                link(bin, cmd);
            }
        }
        Result without = check(bin);
        assertEquals(1, without.exit(), without.out());
        assertEquals(1, without.out().strip().lines().count(), "one line: " + without.out());
        assertTrue(without.out().startsWith("phost: missing test peers (Debian packages): prometheus;"), without.out());

        link(bin, "promtool");
        Result with = check(bin);
        assertEquals(0, with.exit(), with.out());
        assertEquals("", with.out());
    }

    private static void link(Path bin, String tool) throws IOException, InterruptedException {
        for (String dir : List.of("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")) {
            Path p = Path.of(dir, tool);
            if (Files.isExecutable(p)) {
                Files.createSymbolicLink(bin.resolve(tool), p);
                return;
            }
        }
        throw new AssertionError(tool + " is not installed here: bash .ci/run installs the test peers");
    }

    private record Result(int exit, String out) {
    }

    private static Result check(Path bin) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder("/bin/bash", CHECK.toString()).redirectErrorStream(true);
        pb.environment().put("PATH", bin.toString());
        Process p = pb.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        return new Result(p.exitValue(), out);
    }
}
