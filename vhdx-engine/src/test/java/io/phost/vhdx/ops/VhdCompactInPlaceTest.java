package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import static io.phost.vhdx.Tools.runOk;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Compact of a VHD in place (Optimize-VHD): the same file (inode) and footer (unique id, timestamp), so a
 * child stays linked and reads the same; a SIGKILL at any moment leaves an image that qemu opens and that
 * reads the same as a reference ({@code qemu-img compare}; qemu-img 7.2 has no check for VHD, and its vpc
 * driver does not follow a differencing VHD's parent, so children are read through ours only). Fixed VHD and
 * VHDX images are left as they are, as Optimize-VHD does. Recipe:
 * <pre>
 *   phost vhd compact base.vhd; qemu-img compare -f vpc -F raw base.vhd reference.raw
 * </pre>
 */
class VhdCompactInPlaceTest {
    private static final int MIB = 1 << 20;

    @TempDir
    Path dir;

    /**
     * A dynamic VHD of 24 blocks of 2 MiB: data, allocated blocks of zeros (every 5th), unmapped ones (every
     * 3rd of the first 15: holes in the middle of the file) and a block with a sparse 4 KiB write.
     */
    private static byte[] build(Path img, int seed) throws Exception {
        VirtualDisks.create(img, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 48L * MIB)).close();
        try (VirtualDisk d = VirtualDisks.open(img, false)) {
            byte[] b = new byte[2 * MIB];
            for (int i = 0; i < 24; i++) {
                long off = (long) i * 2 * MIB;
                if (i % 5 == 4) {
                    d.write(off, MemorySegment.ofArray(new byte[2 * MIB]));
                } else if (i == 22) {
                    Tools.pattern(MemorySegment.ofArray(b).asSlice(0, 4096), off + MIB, seed);
                    d.write(off + MIB, MemorySegment.ofArray(b).asSlice(0, 4096));
                } else {
                    Tools.pattern(MemorySegment.ofArray(b), off, seed + i);
                    d.write(off, MemorySegment.ofArray(b));
                }
            }
            for (int i = 0; i < 15; i += 3) {
                d.unmap((long) i * 2 * MIB, 2 * MIB);
            }
            d.flush();
            return Tools.readAll(d);
        }
    }

    private static byte[] read(Path img) throws Exception {
        try (VirtualDisk d = VirtualDisks.open(img, true)) {
            return Tools.readAll(d);
        }
    }

    private Path reference(String name, byte[] content) throws Exception {
        Path raw = dir.resolve(name);
        Files.write(raw, content);
        return raw;
    }

    /** qemu opens the image (and its chain) and reads exactly {@code raw}. */
    private static void qemuReadsTheSame(Path vhd, Path raw) throws Exception {
        if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
            runOk("qemu-img", "info", "--backing-chain", vhd.toString());
            runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", vhd.toString(), raw.toString());
        }
    }

    @Test
    void shouldCompactAVhdParentInPlaceSoItsChildStillOpensAndReadsTheSame() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        build(base, 1);
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            byte[] b = new byte[64 << 10];
            Arrays.fill(b, (byte) 7);
            c.write(5L * MIB, MemorySegment.ofArray(b));
            c.write(40L * MIB, MemorySegment.ofArray(b));
        }
        byte[] expectedChild = read(child);
        byte[] expectedBase = read(base);
        Object inode = Files.getAttribute(base, "unix:ino");
        byte[] footer = footerOf(base);
        long sizeBefore = Files.size(base);
        DiskOps.CompactResult r = DiskOps.compact(base, CompactMode.FULL, Progress.NONE);
        assertNull(r.note());
        assertEquals(inode, Files.getAttribute(base, "unix:ino"), "the same file, not a replacement");
        assertArrayEquals(footer, footerOf(base), "footer unchanged: unique id and timestamp a child checks");
        // 5 blocks unmapped (0, 3, 6, 9, 12) and 3 more of zeros (4, 14, 19) released: 16 of 24 stay
        assertTrue(r.fileSizeAfter() <= sizeBefore - 8L * 2 * MIB, "file cut: " + sizeBefore + " -> " + r.fileSizeAfter());
        assertTrue(r.diskBytesAfter() < r.diskBytesBefore(), "less on disk: " + r);
        assertArrayEquals(expectedBase, read(base));
        assertArrayEquals(expectedChild, read(child), "the child reads through the compacted parent");
        assertEquals(0, DiskOps.check(base, false).exitCode(), DiskOps.check(base, false).toString());
        assertEquals(0, DiskOps.check(child, false).exitCode(), DiskOps.check(child, false).toString());
        qemuReadsTheSame(base, reference("base.raw", expectedBase));
    }

    @Test
    void shouldCompactADifferencingVhdInPlaceKeepingItsGrandchildLinked() throws Exception {
        Path base = dir.resolve("db.vhd");
        Path mid = dir.resolve("dm.vhd");
        Path top = dir.resolve("dt.vhd");
        build(base, 2);
        try (VirtualDisk m = VirtualDisks.create(mid, CreateOptions.differencing(DiskFormat.VHD, base))) {
            byte[] b = new byte[2 * MIB];
            for (int i = 0; i < 24; i += 2) {
                Tools.pattern(MemorySegment.ofArray(b), (long) i * 2 * MIB, 50 + i);
                m.write((long) i * 2 * MIB, MemorySegment.ofArray(b).asSlice(0, i % 4 == 0 ? 2 * MIB : 8192));
            }
            m.write(6L * MIB, MemorySegment.ofArray(new byte[2 * MIB])); // zeros that hide the parent: kept
        }
        VirtualDisks.create(top, CreateOptions.differencing(DiskFormat.VHD, mid)).close();
        byte[] expected = read(mid);
        Object inode = Files.getAttribute(mid, "unix:ino");
        DiskOps.compact(mid, CompactMode.FULL, Progress.NONE);
        assertEquals(inode, Files.getAttribute(mid, "unix:ino"), "the same file, not a replacement");
        assertArrayEquals(expected, read(mid));
        assertArrayEquals(expected, read(top), "the grandchild still opens and reads the same");
        assertEquals(0, DiskOps.check(mid, false).exitCode(), DiskOps.check(mid, false).toString());
    }

    @Test
    void shouldReadTheSameWhenAnInPlaceVhdCompactIsKilled() throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Random rnd = new Random(2121);
        int rounds = Boolean.getBoolean("phost.soak") ? 40 : 4;
        Map<String, Integer> outcomes = new TreeMap<>();
        Path timed = dir.resolve("timed.vhd");
        build(timed, 99);
        Process t = startCompact(java, timed);
        long t0 = System.nanoTime();
        assertTrue(t.waitFor(60, TimeUnit.SECONDS));
        // capped: under heavy disk load one fdatasync can take seconds, and the kills would wait that long
        int spanMs = (int) Math.min(3000, Math.max(50, (System.nanoTime() - t0) / 1_000_000));
        for (int round = 0; round < rounds; round++) {
            Path img = dir.resolve("k" + round + ".vhd");
            Path child = dir.resolve("k" + round + "c.vhd");
            byte[] expected = build(img, round);
            VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, img)).close();
            Path raw = reference("k" + round + ".raw", expected);
            long built = Files.size(img);
            Process p = startCompact(java, img);
            Thread.sleep(rnd.nextInt(Math.max(1, spanMs / 2))); // the span includes the JVM's exit: most kills inside the work
            p.destroyForcibly(); // SIGKILL
            assertTrue(p.waitFor(30, TimeUnit.SECONDS));
            outcomes.merge(Files.size(img) == built ? "killed before the cut" : "cut", 1, Integer::sum);
            assertArrayEquals(expected, read(img), "round " + round + ": killed");
            assertArrayEquals(expected, read(child), "round " + round + ": the child still opens");
            assertEquals(0, DiskOps.check(img, false).exitCode(), "round " + round + ": " + DiskOps.check(img, false));
            qemuReadsTheSame(img, raw);
            DiskOps.compact(img, CompactMode.FULL, Progress.NONE); // finishing the job from any state
            assertArrayEquals(expected, read(child), "round " + round + ": compacted after the kill");
            qemuReadsTheSame(img, raw);
            Files.delete(child);
            Files.delete(img);
            Files.delete(raw);
        }
        System.out.println("in-place VHD compact kill outcomes: " + outcomes);
    }

    @Test
    void shouldLeaveFixedImagesAsTheyAreAsOptimizeVhdDoes() throws Exception {
        for (DiskFormat format : new DiskFormat[] {DiskFormat.VHDX, DiskFormat.VHD}) {
            Path img = dir.resolve("fixed." + format.id());
            try (VirtualDisk d = VirtualDisks.create(img, CreateOptions.of(format, DiskType.FIXED, 8L * MIB))) {
                d.write(MIB, MemorySegment.ofArray(new byte[4096]).fill((byte) 1));
            }
            byte[] before = Files.readAllBytes(img);
            Object inode = Files.getAttribute(img, "unix:ino");
            for (CompactMode mode : new CompactMode[] {CompactMode.FULL, CompactMode.QUICK}) {
                DiskOps.CompactResult r = DiskOps.compact(img, mode, Progress.NONE);
                assertNotNull(r.note(), format + " " + mode + ": says why nothing was done");
                assertTrue(r.note().contains("fixed") && r.note().contains("retrim"), r.note());
                assertEquals(inode, Files.getAttribute(img, "unix:ino"), format + ": not replaced");
                assertArrayEquals(before, Files.readAllBytes(img), format + " " + mode + ": unchanged");
                assertEquals(r.diskBytesBefore(), r.diskBytesAfter());
            }
        }
    }

    private static byte[] footerOf(Path vhd) throws Exception {
        try (VhdDisk d = VhdDisk.open(vhd, true)) {
            byte[] f = new byte[512];
            MemorySegment.copy(d.footer().segment(), 0, MemorySegment.ofArray(f), 0, 512);
            return f;
        }
    }

    private static Process startCompact(String java, Path img) throws Exception {
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
            MergeMain.class.getName(), "compact", img.toString()).redirectErrorStream(true).start();
        BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream()));
        for (String line; (line = out.readLine()) != null && !line.equals("go"); ) {
            // "started" and JVM warnings come first
        }
        return p;
    }
}
