package io.phost.vhdx.vhd;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.ops.CheckReport;
import io.phost.vhdx.ops.DiskOps;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Crash safety of VHD allocation: a child JVM ({@link #main}) writes 4 KiB records to fresh slots of a dynamic
 * VHD (allocating blocks all the time), flushes after each and prints "ACK index slot"; the test SIGKILLs it
 * at a random moment, then checks that the image opens, passes our check, and that every acknowledged record
 * reads back intact; the next round reopens the same image and continues. 12 rounds by default, 100 with
 * -Dphost.soak=true. Finally qemu-img compares the image with our raw export.
 */
class VhdCrashTest {
    static final long SIZE = 64L << 20;
    static final int SLOTS = (int) (SIZE / 4096);

    @TempDir
    Path dir;

    @Test
    void shouldKeepEveryFlushedWriteAcrossKills() throws Exception {
        Path vhd = dir.resolve("crash.vhd");
        VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, SIZE)
            .withBlockSize(256 << 10)).close();
        int rounds = Boolean.getBoolean("phost.soak") ? 100 : 12;
        Map<Integer, Integer> acked = new HashMap<>(); // slot -> write index
        int next = 0;
        Random rnd = new Random(42);
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        for (int round = 0; round < rounds && next < SLOTS - 1000; round++) {
            Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-XX:TieredStopAtLevel=1",
                "-cp", System.getProperty("java.class.path"), VhdCrashTest.class.getName(), vhd.toString(),
                Integer.toString(next)).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            List<int[]> lines = new ArrayList<>();
            Thread reader = Thread.ofPlatform().start(() -> {
                try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.US_ASCII))) {
                    for (String l; (l = r.readLine()) != null; ) {
                        String[] f = l.split(" ");
                        if (f.length == 3 && f[0].equals("ACK")) {
                            synchronized (lines) {
                                lines.add(new int[] {Integer.parseInt(f[1]), Integer.parseInt(f[2])});
                                lines.notifyAll();
                            }
                        }
                    }
                } catch (Exception ignored) {
                    // the child died mid-line
                }
            });
            synchronized (lines) {
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                while (lines.isEmpty() && p.isAlive() && System.nanoTime() < deadline) {
                    lines.wait(100);
                }
            }
            assertTrue(p.isAlive() || !lines.isEmpty(), "child started and wrote");
            Thread.sleep(50 + rnd.nextInt(400));
            p.destroyForcibly(); // SIGKILL
            p.waitFor(30, TimeUnit.SECONDS);
            reader.join(10_000);
            int maxIndex = next - 1;
            synchronized (lines) {
                for (int[] l : lines) {
                    acked.put(l[1], l[0]);
                    maxIndex = Math.max(maxIndex, l[0]);
                }
            }
            // The write after the last ACK may or may not have landed: its slot is never used again.
            next = maxIndex + 2;
            CheckReport report = DiskOps.check(vhd, false);
            assertEquals(0, report.exitCode(), "round " + round + ": " + report);
            try (VirtualDisk d = VirtualDisks.open(vhd, true); Arena a = Arena.ofConfined()) {
                MemorySegment buf = a.allocate(4096, 4096);
                MemorySegment expected = a.allocate(4096, 4096);
                for (Map.Entry<Integer, Integer> e : acked.entrySet()) {
                    long off = (long) e.getKey() * 4096;
                    d.read(off, buf);
                    Tools.pattern(expected, off, e.getValue());
                    assertEquals(-1, buf.mismatch(expected), "round " + round + ": acknowledged write "
                        + e.getValue() + " at " + off + " lost");
                }
            }
        }
        assertTrue(acked.size() > 20, "the children acknowledged writes: " + acked.size());
        if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
            Path raw = dir.resolve("crash.raw");
            try (VirtualDisk d = VirtualDisks.open(vhd, true)) {
                Files.write(raw, Tools.readAll(d));
            }
            Tools.runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", vhd.toString(), raw.toString());
        }
    }

    /** Slot of write {@code index}: a fixed permutation, so writes land all over the disk and allocate. */
    static int slot(int index) {
        return (int) ((index * 7919L + 13) % SLOTS);
    }

    /** The child: write, flush, acknowledge, forever (until killed). */
    public static void main(String[] args) throws Exception {
        Path vhd = Path.of(args[0]);
        int index = Integer.parseInt(args[1]);
        try (VirtualDisk d = VirtualDisks.open(vhd, false); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            while (index < SLOTS) {
                int s = slot(index);
                long off = (long) s * 4096;
                Tools.pattern(buf, off, index);
                d.write(off, buf);
                d.flush();
                System.out.println("ACK " + index + " " + s);
                System.out.flush();
                index++;
            }
        }
    }
}
