package io.phost.appliance.run;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.concurrent.TimeUnit;

/**
 * The project's test guest ({@code tools/test-guest}: Debian cloud kernel + busybox initramfs), built once per
 * test JVM. Fails (does not skip) when it cannot be built or QEMU is missing: VM tests need real guests.
 */
final class TestGuestKit {
    private static Path built;

    private TestGuestKit() {}

    /** The directory holding {@code vmlinuz} and {@code initramfs.gz}. */
    static synchronized Path directory() throws IOException, InterruptedException {
        if (built != null) {
            return built;
        }
        assertTrue(onPath("qemu-system-x86_64"), "qemu-system-x86_64 is not installed (Debian: qemu-system-x86; bash .ci/run installs it)");
        Path root = Path.of("").toAbsolutePath();
        while (root != null && !Files.isRegularFile(root.resolve("tools/test-guest/build.sh"))) {
            root = root.getParent();
        }
        assertTrue(root != null, "tools/test-guest/build.sh not found above " + Path.of("").toAbsolutePath());
        Process p = new ProcessBuilder("bash", root.resolve("tools/test-guest/build.sh").toString())
            .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertTrue(p.waitFor(300, TimeUnit.SECONDS), "test-guest build hung");
        assertEquals(0, p.exitValue(), "tools/test-guest/build.sh failed: " + out);
        Path dir = Path.of(out.lines().reduce((a, b) -> b).orElse(""));
        assertTrue(Files.isRegularFile(dir.resolve("vmlinuz")) && Files.isRegularFile(dir.resolve("initramfs.gz")),
            "no vmlinuz/initramfs.gz in " + dir);
        built = dir;
        return dir;
    }

    /** Appended to a command line: the guest does not start qemu-guest-agent (stops go through ACPI). */
    static final String NO_AGENT = " phost.agent=0";

    /** A kernel command line that runs {@code script} (busybox sh) in the guest; {@code hold} keeps it up after. */
    static String cmdline(String script, boolean hold) {
        String b64 = Base64.getEncoder().encodeToString(script.getBytes(StandardCharsets.UTF_8));
        return "console=ttyS0 quiet phost.script=" + b64 + (hold ? " phost.hold=1" : "");
    }

    static boolean onPath(String exe) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(d, exe))) {
                return true;
            }
        }
        return false;
    }

    /**
     * A {@code qemu-system-x86_64} in {@code bin} (put {@code bin} first on phost's PATH) that runs the real one with its
     * arguments passed through {@code perArg}: a bash fragment run for each argument {@code $a}, which may change
     * {@code a} or append to the array {@code extra} (added after all arguments). Returns {@code bin}.
     */
    static Path qemuWrapper(Path bin, String perArg) throws IOException {
        String real = null;
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (real == null && Files.isExecutable(Path.of(d, "qemu-system-x86_64"))) {
                real = Path.of(d, "qemu-system-x86_64").toString();
            }
        }
        assertTrue(real != null, "qemu-system-x86_64 is missing");
        Files.createDirectories(bin);
        Path wrapper = bin.resolve("qemu-system-x86_64");
        Files.writeString(wrapper, """
            #!/bin/bash
            args=(); extra=()
            for a in "$@"; do
            %2$s
            args+=("$a"); done
            exec %1$s "${args[@]}" "${extra[@]}"
            """.formatted(real, perArg));
        Files.setPosixFilePermissions(wrapper, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
        return bin;
    }
}
