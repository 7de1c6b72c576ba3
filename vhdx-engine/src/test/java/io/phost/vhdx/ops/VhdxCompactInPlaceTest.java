package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Compact of a dynamic VHDX in place (Optimize-VHD): the same file (inode), VirtualDiskId and DataWriteGuid
 * (a child stays linked), blocks moved from the end into the space of released ones, the file cut; and a
 * SIGKILL at a random point of it leaves an image that reads the same and passes our check, qemu-img check
 * and qemu-img compare against the reference content (qemu 7.2 opens no differencing VHDX: the differencing
 * rounds are checked by our reader and check only).
 * Recipe: {@code phost vhd compact IMG} then {@code qemu-img check -f vhdx IMG; qemu-img compare -f vhdx -F raw IMG ref.raw}.
 */
class VhdxCompactInPlaceTest {
    @TempDir
    Path dir;

    /** 48 blocks of 1 MiB: data, released ones (every third of the first 30), some all-zero ones. */
    private static byte[] build(Path img, int seed) throws Exception {
        VirtualDisks.create(img, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 48L << 20).withBlockSize(1 << 20)).close();
        try (VirtualDisk d = VirtualDisks.open(img, false)) {
            byte[] b = new byte[1 << 20];
            for (int i = 0; i < 48; i++) {
                if (i % 7 == 5) {
                    d.write((long) i << 20, MemorySegment.ofArray(new byte[1 << 20])); // allocated, zeros
                } else {
                    Tools.pattern(MemorySegment.ofArray(b), (long) i << 20, seed + i);
                    d.write((long) i << 20, MemorySegment.ofArray(b));
                }
            }
            for (int i = 0; i < 30; i += 3) {
                d.unmap((long) i << 20, 1 << 20);
            }
            d.flush();
            byte[] all = new byte[48 << 20];
            d.read(0, MemorySegment.ofArray(all));
            return all;
        }
    }

    private static byte[] read(Path img) throws Exception {
        try (VirtualDisk d = VirtualDisks.open(img, true)) {
            byte[] all = new byte[(int) d.size()];
            d.read(0, MemorySegment.ofArray(all));
            return all;
        }
    }

    @Test
    void shouldCompactADynamicVhdxInPlaceKeepingTheFileAndItsChildren() throws Exception {
        Path img = dir.resolve("p.vhdx");
        Path child = dir.resolve("c.vhdx");
        byte[] expected = build(img, 1);
        VhdxDisk.create(child, io.phost.vhdx.vhdx.VhdxCreateOptions.differencing(img)).close();
        Object inode = Files.getAttribute(img, "unix:ino");
        UUID guid;
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            guid = d.dataWriteGuid();
        }
        long sizeBefore = Files.size(img);
        DiskOps.CompactResult r = DiskOps.compact(img, CompactMode.FULL, Progress.NONE);
        assertEquals(inode, Files.getAttribute(img, "unix:ino"), "the same file, not a replacement");
        // 10 released + 7 zero blocks (block 12 is both) dropped: 32 of 48 stay, moved down into the freed space
        assertTrue(r.fileSizeAfter() <= sizeBefore - (16L << 20), "file cut: " + sizeBefore + " -> " + r.fileSizeAfter());
        assertTrue(r.diskBytesAfter() < r.diskBytesBefore(), "less on disk: " + r);
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            assertEquals(guid, d.dataWriteGuid(), "children stay linked");
            assertEquals(32L << 20, d.allocatedBytes());
        }
        assertArrayEquals(expected, read(img));
        assertArrayEquals(expected, read(child), "the child reads through the compacted parent");
        assertEquals(0, DiskOps.check(img, false).exitCode());
        if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
            Tools.runOk("qemu-img", "check", "-q", "-f", "vhdx", img.toString());
        }
    }

    @Test
    void shouldReadTheSameWhenAnInPlaceCompactIsKilled() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Random rnd = new Random(21);
        int rounds = Boolean.getBoolean("phost.soak") ? 40 : 6;
        java.util.Map<String, Integer> outcomes = new java.util.TreeMap<>();
        // How long a whole compact takes in a child JVM here, so the kills spread over all of it.
        Path timed = dir.resolve("timed.vhdx");
        build(timed, 99);
        Process t = startCompact(java, timed);
        BufferedReader tout = new BufferedReader(new InputStreamReader(t.getInputStream()));
        awaitGo(tout);
        long t0 = System.nanoTime();
        for (String l; (l = tout.readLine()) != null && !l.equals("done"); ) {
            // nothing else is printed
        }
        int spanMs = (int) Math.max(20, (System.nanoTime() - t0) / 1_000_000 * 5 / 4);
        assertTrue(t.waitFor(30, TimeUnit.SECONDS));
        for (int round = 0; round < rounds; round++) {
            Path img = dir.resolve("k" + round + ".vhdx");
            byte[] expected = build(img, round);
            long built = Files.size(img);
            Process p = startCompact(java, img);
            BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()));
            String line = awaitGo(out);
            assertEquals("go", line, "child opened the image and is about to compact it");
            Thread.sleep(spanMs / 3 + rnd.nextInt(spanMs)); // the zero scan comes first: most kills after it
            p.destroyForcibly(); // SIGKILL
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
            assertArrayEquals(expected, read(img), "round " + round + ": read-only, log replayed in memory");
            boolean live = logLive(img);
            outcomes.merge(Files.size(img) == built ? (live ? "killed with a live log" : "killed, log empty")
                : "finished", 1, Integer::sum);
            Path raw = dir.resolve("k" + round + ".raw");
            Files.write(raw, expected);
            qemuChecksAndReadsTheSame(img, raw, live, round);
            VirtualDisks.open(img, false).close(); // read-write: a log left behind is replayed, as any open does
            assertArrayEquals(expected, read(img), "round " + round + ": after the replay");
            CheckReport report = DiskOps.check(img, false);
            assertEquals(0, report.exitCode(), "round " + round + ": " + report);
            DiskOps.compact(img, CompactMode.FULL, Progress.NONE); // finishing the job from any state
            assertArrayEquals(expected, read(img), "round " + round + ": compacted after the kill");
            assertEquals(0, DiskOps.check(img, false).exitCode());
            qemuChecksAndReadsTheSame(img, raw, false, round);
            Files.delete(img);
            Files.delete(raw);
        }
        System.out.println("in-place compact kill outcomes: " + outcomes);
    }

    /**
     * qemu-img check finds no fault in the image and qemu-img compare reads exactly {@code raw}. A log a kill
     * left live is replayed by qemu itself ({@code check -r all}, what qemu asks for) on a copy, so our own
     * replay is not what qemu sees.
     */
    private void qemuChecksAndReadsTheSame(Path img, Path raw, boolean liveLog, int round) throws Exception {
        if (!Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
            return;
        }
        Path copy = dir.resolve("qemu-" + round + ".vhdx");
        Files.copy(img, copy, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        if (liveLog) {
            Tools.runOk("qemu-img", "check", "-r", "all", "-f", "vhdx", copy.toString());
        }
        Tools.runOk("qemu-img", "check", "-f", "vhdx", copy.toString());
        Tools.runOk("qemu-img", "compare", "-q", "-f", "vhdx", "-F", "raw", copy.toString(), raw.toString());
        Files.delete(copy);
    }

    /**
     * A differencing VHDX over {@code base} (48 MiB of data): whole blocks, 64 KiB pieces (PARTIALLY_PRESENT,
     * sector bitmaps through the log), zero blocks and unmapped ones; returns the child's view.
     */
    private static byte[] buildChild(Path base, Path child, int seed) throws Exception {
        build(base, seed + 100);
        VhdxDisk.create(child, io.phost.vhdx.vhdx.VhdxCreateOptions.differencing(base)).close();
        try (VirtualDisk d = VirtualDisks.open(child, false)) {
            byte[] b = new byte[1 << 20];
            for (int i = 0; i < 48; i++) {
                Tools.pattern(MemorySegment.ofArray(b), (long) i << 20, seed + i);
                switch (i % 4) {
                    case 0 -> d.write((long) i << 20, MemorySegment.ofArray(b));
                    case 1 -> d.write(((long) i << 20) + (128 << 10), MemorySegment.ofArray(b).asSlice(0, 64 << 10));
                    case 2 -> d.write((long) i << 20, MemorySegment.ofArray(new byte[1 << 20]));
                    default -> { }
                }
            }
            for (int i = 0; i < 24; i += 4) {
                d.unmap((long) i << 20, 1 << 20);
            }
            d.flush();
        }
        return read(child);
    }

    @Test
    void shouldCompactADifferencingVhdxInPlaceAndSurviveKills() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Random rnd = new Random(18);
        int rounds = Boolean.getBoolean("phost.soak") ? 20 : 3;
        java.util.Map<String, Integer> outcomes = new java.util.TreeMap<>();
        for (int round = 0; round <= rounds; round++) {
            Path base = dir.resolve("db" + round + ".vhdx");
            Path child = dir.resolve("dc" + round + ".avhdx");
            Path grandchild = dir.resolve("dg" + round + ".avhdx");
            byte[] expected = buildChild(base, child, round);
            VhdxDisk.create(grandchild, io.phost.vhdx.vhdx.VhdxCreateOptions.differencing(child)).close();
            Object inode = Files.getAttribute(child, "unix:ino");
            UUID guid;
            try (VhdxDisk d = VhdxDisk.open(child, true)) {
                guid = d.dataWriteGuid();
            }
            long built = Files.size(child);
            if (round > 0) { // round 0 runs undisturbed; the others are SIGKILLed at a random moment first
                Process p = startCompact(java, child);
                assertEquals("go", awaitGo(new BufferedReader(new InputStreamReader(p.getInputStream()))));
                Thread.sleep(rnd.nextInt(400));
                p.destroyForcibly();
                assertTrue(p.waitFor(30, TimeUnit.SECONDS));
                assertArrayEquals(expected, read(child), "round " + round + ": killed");
                assertArrayEquals(expected, read(grandchild), "round " + round + ": the grandchild still opens");
                outcomes.merge(Files.size(child) == built ? "killed" : "finished", 1, Integer::sum);
            }
            DiskOps.compact(child, CompactMode.FULL, Progress.NONE);
            assertEquals(inode, Files.getAttribute(child, "unix:ino"), "the same file, not a replacement");
            assertTrue(Files.size(child) < built, "file cut: " + built + " -> " + Files.size(child));
            try (VhdxDisk d = VhdxDisk.open(child, true)) {
                assertEquals(guid, d.dataWriteGuid(), "children stay linked");
            }
            assertArrayEquals(expected, read(child));
            assertArrayEquals(expected, read(grandchild), "the grandchild reads through the compacted child");
            assertEquals(0, DiskOps.check(child, false).exitCode(), DiskOps.check(child, false).toString());
        }
        System.out.println("differencing in-place compact kill outcomes: " + outcomes);
    }

    private static Process startCompact(String java, Path img) throws Exception {
        return new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
            MergeMain.class.getName(), "compact", img.toString()).redirectErrorStream(true).start();
    }

    /** Reads the child's output up to "go" ("started" and JVM warnings come first). */
    private static String awaitGo(BufferedReader out) throws Exception {
        String line;
        while ((line = out.readLine()) != null && !line.equals("go")) {
            // skip
        }
        return line;
    }

    private static boolean logLive(Path img) throws Exception {
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            return d.logState() == VhdxDisk.LogState.REPLAYED_IN_MEMORY;
        }
    }
}
