package io.phost.vhdx;

import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Test helpers: running qemu-img/qemu-io, patterns. */
public final class Tools {
    private Tools() {}

    public static void assumeTool(String tool) {
        boolean found = List.of("/usr/bin/", "/usr/local/bin/", "/bin/").stream()
            .anyMatch(d -> Files.isExecutable(Path.of(d + tool)));
        Assumptions.assumeTrue(found, tool + " is not installed (apt-get install qemu-utils)");
    }

    /** Runs a command, returns stdout+stderr; fails on a non-zero exit unless {@code allowFail}. */
    public static Result run(String... cmd) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException("timeout: " + String.join(" ", cmd));
        }
        return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
    }

    public static String runOk(String... cmd) throws IOException, InterruptedException {
        Result r = run(cmd);
        if (r.exit() != 0) {
            throw new AssertionError(String.join(" ", cmd) + " exited " + r.exit() + ": " + r.output());
        }
        return r.output();
    }

    public record Result(int exit, String output) {
    }

    /** Fills {@code seg} with a pattern derived from the disk offset and a seed. */
    public static void pattern(MemorySegment seg, long diskOffset, int seed) {
        for (long i = 0; i < seg.byteSize(); i += 8) {
            long v = (diskOffset + i) * 0x9E3779B97F4A7C15L ^ seed;
            seg.set(ValueLayout.JAVA_LONG_UNALIGNED, i, v);
        }
    }

    public static byte[] readAll(VirtualDisk d) throws IOException {
        byte[] all = new byte[Math.toIntExact(d.size())];
        d.read(0, MemorySegment.ofArray(all));
        return all;
    }

    public static MemorySegment alloc(Arena a, long n) {
        return a.allocate(n, 4096);
    }
}
