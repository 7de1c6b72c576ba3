package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhd.VhdFormatException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.vhdx.Tools.runOk;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Every image operation against real files; qemu-img verifies where it can. Recipes:
 * <pre>
 *   qemu-img compare -f raw -F vpc   src.raw dst.vhd     # convert output equals its source
 *   qemu-img compare -f raw -F vhdx  src.raw dst.vhdx
 *   qemu-img check -f vhdx dst.vhdx                      # our VHDX output is consistent (vpc has no check)
 *   qemu-img info -f vpc grown.vhd                       # the size qemu sees after resize
 * </pre>
 */
class DiskOpsTest {
    @TempDir
    Path dir;

    /** A 64 MiB sparse raw file with data at a few places, one chunk of explicit zeros. */
    private Path sampleRaw() throws Exception {
        Path raw = dir.resolve("src.raw");
        try (VirtualDisk d = VirtualDisks.create(raw, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, 64L << 20))) {
            byte[] buf = new byte[1 << 20];
            for (long off : new long[] {0, 5L << 20, 33L << 20, (64L << 20) - (1 << 20)}) {
                Tools.pattern(MemorySegment.ofArray(buf), off, 1);
                d.write(off, MemorySegment.ofArray(buf));
            }
            d.write(20L << 20, MemorySegment.ofArray(new byte[1 << 20])); // allocated zeros: must not be copied
        }
        return raw;
    }

    @Test
    void shouldConvertAnyFormatToAnyOtherSparselyAndIdentically() throws Exception {
        Tools.assumeTool("qemu-img");
        Path raw = sampleRaw();
        byte[] expected = Files.readAllBytes(raw);
        Path vhd = dir.resolve("a.vhd");
        DiskOps.CopyResult r = DiskOps.convert(raw, vhd, DiskFormat.VHD, DiskType.DYNAMIC, 0, Progress.NONE);
        assertEquals(4L << 20, r.bytesWritten(), "only the non-zero chunks are written");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "vpc", raw.toString(), vhd.toString());
        assertEquals(4 * (2L << 20), DiskOps.info(vhd).allocatedBytes());

        Path vhdx = dir.resolve("b.vhdx");
        DiskOps.convert(vhd, vhdx, DiskFormat.VHDX, DiskType.DYNAMIC, 0, Progress.NONE);
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", raw.toString(), vhdx.toString());
        runOk("qemu-img", "check", "-q", "-f", "vhdx", vhdx.toString());

        Path fixed = dir.resolve("c.vhd");
        DiskOps.convert(vhdx, fixed, DiskFormat.VHD, DiskType.FIXED, 0, Progress.NONE);
        Path back = dir.resolve("d.raw");
        DiskOps.convert(fixed, back, DiskFormat.RAW, DiskType.DYNAMIC, 0, Progress.NONE);
        assertArrayEquals(expected, Files.readAllBytes(back));
        assertTrue(DiskOps.diskBytes(back) <= 6L << 20, "raw output stays sparse: " + DiskOps.diskBytes(back));
    }

    @Test
    void shouldFlattenADifferencingChainIntoANewImage() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        try (VirtualDisk b = VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8L << 20))) {
            byte[] buf = new byte[1 << 20];
            java.util.Arrays.fill(buf, (byte) 1);
            b.write(0, MemorySegment.ofArray(buf));
            b.write(6L << 20, MemorySegment.ofArray(buf));
        }
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            byte[] buf = new byte[4096];
            java.util.Arrays.fill(buf, (byte) 2);
            c.write(4096, MemorySegment.ofArray(buf));
            c.write(3L << 20, MemorySegment.ofArray(buf));
        }
        byte[] view;
        try (VirtualDisk c = VirtualDisks.open(child, true)) {
            view = Tools.readAll(c);
        }
        Path flat = dir.resolve("flat.raw");
        DiskOps.mergeInto(child, flat, DiskFormat.RAW, DiskType.DYNAMIC, Progress.NONE);
        assertArrayEquals(view, Files.readAllBytes(flat));
        assertTrue(Files.exists(child) && Files.exists(base), "merge --into leaves the chain alone");
    }

    @Test
    void shouldMergeAVhdChildIntoItsParentAndDeleteTheChild() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        try (VirtualDisk b = VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8L << 20))) {
            byte[] buf = new byte[1 << 20];
            java.util.Arrays.fill(buf, (byte) 1);
            b.write(0, MemorySegment.ofArray(buf));
        }
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            byte[] buf = new byte[1536];
            java.util.Arrays.fill(buf, (byte) 2);
            c.write(512, MemorySegment.ofArray(buf));
            c.write(5L << 20, MemorySegment.ofArray(buf));
        }
        byte[] view;
        try (VirtualDisk c = VirtualDisks.open(child, true)) {
            view = Tools.readAll(c);
        }
        DiskOps.CopyResult r = DiskOps.mergeIntoParent(child, false, Progress.NONE);
        assertEquals(2 * 1536, r.bytesWritten(), "only the sectors the child stores");
        assertFalse(Files.exists(child));
        try (VirtualDisk b = VirtualDisks.open(base, true)) {
            assertArrayEquals(view, Tools.readAll(b));
        }
    }

    @Test
    void shouldMergeAVhdxChildIntoItsParent() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.avhdx");
        try (VirtualDisk b = VirtualDisks.create(base,
            CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20).withBlockSize(1 << 20))) {
            byte[] buf = new byte[1 << 20];
            java.util.Arrays.fill(buf, (byte) 1);
            b.write(0, MemorySegment.ofArray(buf));
            b.write(9L << 20, MemorySegment.ofArray(buf));
        }
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHDX, base))) {
            byte[] buf = new byte[8192];
            java.util.Arrays.fill(buf, (byte) 2);
            c.write(4096, MemorySegment.ofArray(buf));
            c.write(12L << 20, MemorySegment.ofArray(buf));
        }
        byte[] view;
        try (VirtualDisk c = VirtualDisks.open(child, true)) {
            view = Tools.readAll(c);
        }
        DiskOps.mergeIntoParent(child, true, Progress.NONE);
        assertTrue(Files.exists(child));
        try (VirtualDisk b = VirtualDisks.open(base, true)) {
            assertArrayEquals(view, Tools.readAll(b));
        }
    }

    @Test
    void shouldGrowVhdImagesAndKeepTheirData() throws Exception {
        Tools.assumeTool("qemu-img");
        for (DiskType type : new DiskType[] {DiskType.DYNAMIC, DiskType.FIXED}) {
            Path vhd = dir.resolve("grow-" + type.id() + ".vhd");
            byte[] buf = new byte[1 << 20];
            Tools.pattern(MemorySegment.ofArray(buf), 0, 4);
            try (VirtualDisk d = VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, type, 4L << 20))) {
                d.write(3L << 20, MemorySegment.ofArray(buf));
            }
            long newSize = DiskOps.resize(vhd, 100L << 20, true, Progress.NONE);
            assertEquals(100L << 20, newSize);
            try (VirtualDisk d = VirtualDisks.open(vhd, false)) {
                assertEquals(100L << 20, d.size());
                byte[] back = new byte[1 << 20];
                d.read(3L << 20, MemorySegment.ofArray(back));
                assertArrayEquals(buf, back);
                d.read(50L << 20, MemorySegment.ofArray(back));
                assertArrayEquals(new byte[1 << 20], back, "the new tail reads as zeros");
                d.write(90L << 20, MemorySegment.ofArray(buf)); // a block past the old BAT
            }
            assertTrue(runOk("qemu-img", "info", "-f", "vpc", vhd.toString()).contains("(" + (100L << 20) + " bytes)"));
            Path raw = dir.resolve("grow-" + type.id() + ".raw");
            try (VirtualDisk d = VirtualDisks.open(vhd, true)) {
                Files.write(raw, Tools.readAll(d));
            }
            runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", vhd.toString(), raw.toString());
            VhdFormatException e = assertThrows(VhdFormatException.class, () -> DiskOps.resize(vhd, 8L << 20, true, Progress.NONE));
            assertEquals(VhdFormatException.Reason.UNSUPPORTED, e.reason());
        }
    }

    @Test
    void shouldGrowVhdxAndShrinkItOnlyWhenTheTailIsUnused() throws Exception {
        Path vhdx = dir.resolve("r.vhdx");
        byte[] buf = new byte[1 << 20];
        Tools.pattern(MemorySegment.ofArray(buf), 0, 6);
        try (VirtualDisk d = VirtualDisks.create(vhdx,
            CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 64L << 20).withBlockSize(1 << 20))) {
            d.write(2L << 20, MemorySegment.ofArray(buf));
            d.write(40L << 20, MemorySegment.ofArray(buf));
        }
        assertThrows(RuntimeException.class, () -> DiskOps.resize(vhdx, 32L << 20, true, Progress.NONE)); // data past the new end
        assertEquals(128L << 20, DiskOps.resize(vhdx, 128L << 20, true, Progress.NONE));
        try (VirtualDisk d = VirtualDisks.open(vhdx, false)) {
            assertEquals(128L << 20, d.size());
            d.writeZeroes(40L << 20, 1 << 20);
        }
        assertEquals(16L << 20, DiskOps.resize(vhdx, 16L << 20, true, Progress.NONE));
        try (VirtualDisk d = VirtualDisks.open(vhdx, true)) {
            byte[] back = new byte[1 << 20];
            d.read(2L << 20, MemorySegment.ofArray(back));
            assertArrayEquals(buf, back);
        }
    }

    @Test
    void shouldCompactAVhdSoTheFileShrinksAndReadsTheSame() throws Exception {
        Tools.assumeTool("qemu-img");
        Path vhd = dir.resolve("c.vhd");
        byte[] buf = new byte[2 << 20];
        Tools.pattern(MemorySegment.ofArray(buf), 0, 8);
        try (VirtualDisk d = VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 32L << 20))) {
            for (long off = 0; off < 32L << 20; off += 2L << 20) {
                d.write(off, MemorySegment.ofArray(buf));
            }
            // Zero most of it the way a guest would: by writing zeros (blocks stay allocated).
            byte[] zeros = new byte[2 << 20];
            for (long off = 2L << 20; off < 30L << 20; off += 2L << 20) {
                d.write(off, MemorySegment.ofArray(zeros));
            }
        }
        byte[] before;
        try (VirtualDisk d = VirtualDisks.open(vhd, true)) {
            before = Tools.readAll(d);
        }
        byte[] id;
        try (VhdDisk d = VhdDisk.open(vhd, true)) {
            id = d.uniqueId();
        }
        DiskOps.CompactResult r = DiskOps.compact(vhd, Progress.NONE);
        assertTrue(r.fileSizeAfter() < (5L << 20), "file shrank to " + r.fileSizeAfter() + " from " + r.fileSizeBefore());
        try (VhdDisk d = VhdDisk.open(vhd, true)) {
            assertArrayEquals(before, Tools.readAll(d));
            assertArrayEquals(id, d.uniqueId(), "unique id kept: children stay linked");
        }
        Path raw = dir.resolve("c.raw");
        Files.write(raw, before);
        runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", vhd.toString(), raw.toString());
    }

    @Test
    void shouldCompactRawAndVhdxImages() throws Exception {
        Path raw = sampleRaw();
        byte[] expected = Files.readAllBytes(raw);
        long before = DiskOps.info(raw).allocatedBytes();
        DiskOps.CompactResult r = DiskOps.compact(raw, Progress.NONE);
        // data extents, not st_blocks: punching a hole may add or free an ext4/XFS extent-tree block
        assertEquals(before - (1L << 20), DiskOps.info(raw).allocatedBytes(), "the explicit zero megabyte is punched out");
        assertTrue(r.diskBytesAfter() < r.diskBytesBefore(), r.toString());
        assertArrayEquals(expected, Files.readAllBytes(raw));

        Path vhdx = dir.resolve("x.vhdx");
        DiskOps.convert(raw, vhdx, DiskFormat.VHDX, DiskType.DYNAMIC, 1 << 20, Progress.NONE);
        try (VirtualDisk d = VirtualDisks.open(vhdx, false)) {
            d.write(10L << 20, MemorySegment.ofArray(new byte[1 << 20])); // allocates a zero block
        }
        long fileBefore = Files.size(vhdx);
        DiskOps.CompactResult x = DiskOps.compact(vhdx, Progress.NONE);
        assertTrue(x.fileSizeAfter() < fileBefore, x.toString());
        try (VirtualDisk d = VirtualDisks.open(vhdx, true)) {
            assertArrayEquals(expected, Tools.readAll(d));
        }
    }

    @Test
    void shouldReparentAVhdChildOnlyToTheImageItWasMadeFrom() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4L << 20)).close();
        VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base)).close();
        Path elsewhere = Files.createDirectories(dir.resolve("store")).resolve("renamed-base.vhd");
        Files.move(base, elsewhere);
        assertThrows(VhdFormatException.class, () -> VhdDisk.open(child, true));
        Path other = dir.resolve("other.vhd");
        VirtualDisks.create(other, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4L << 20)).close();
        VhdFormatException e = assertThrows(VhdFormatException.class, () -> DiskOps.setParent(child, other, false));
        assertEquals(VhdFormatException.Reason.PARENT_MISMATCH, e.reason());
        DiskOps.setParent(child, elsewhere, false);
        assertEquals(elsewhere.toString(), DiskOps.info(child).parentChain().getFirst());
        assertEquals(0, DiskOps.check(child, false).exitCode());
    }

    @Test
    void shouldReportAndRepairADamagedVhdFooter() throws Exception {
        Path vhd = dir.resolve("k.vhd");
        try (VirtualDisk d = VirtualDisks.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8L << 20))) {
            d.write(0, MemorySegment.ofArray(new byte[4096]));
        }
        assertEquals(0, DiskOps.check(vhd, false).exitCode());
        byte[] all = Files.readAllBytes(vhd);
        all[all.length - 512 + 40] ^= 1; // original size: checksum now wrong
        Files.write(vhd, all);
        CheckReport r = DiskOps.check(vhd, false);
        assertEquals(1, r.exitCode(), r.toString());
        CheckReport fixed = DiskOps.check(vhd, true);
        assertEquals(0, fixed.exitCode(), fixed.toString());
        assertEquals(0, DiskOps.check(vhd, false).exitCode());
        all = Files.readAllBytes(vhd);
        all[512 + 20] ^= 1; // dynamic header: checksum wrong, nothing to repair it from
        Files.write(vhd, all);
        assertEquals(2, DiskOps.check(vhd, true).exitCode());
    }

    @Test
    void shouldDescribeImagesInInfoAndJson() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.avhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 8L << 20)).close();
        VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHDX, base)).close();
        ImageInfo i = DiskOps.info(child);
        assertEquals("vhdx", i.format());
        assertEquals("differencing", i.type());
        assertEquals(8L << 20, i.virtualSize());
        assertEquals(1, i.parentChain().size());
        assertEquals("clean", i.logState());
        assertTrue(i.toJson().startsWith("{\"path\":"), i.toJson());
        assertTrue(i.toJson().contains("\"parentChain\":[\""), i.toJson());
        assertEquals(0, DiskOps.check(child, false).exitCode());
        ImageInfo raw = DiskOps.info(sampleRaw());
        assertEquals("raw", raw.format());
        assertEquals(5L << 20, raw.allocatedBytes());
    }

    @Test
    void shouldReparentAVhdxChildAndCheckAndRepairVhdxImages() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.avhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 8L << 20)).close();
        VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHDX, base)).close();
        Path moved = Files.createDirectories(dir.resolve("m")).resolve("b2.vhdx");
        Files.move(base, moved);
        DiskOps.setParent(child, moved, false);
        assertEquals(moved.toRealPath(), Path.of(DiskOps.info(child).parentChain().getFirst()).toRealPath());
        assertEquals(0, DiskOps.check(child, false).exitCode());

        byte[] all = Files.readAllBytes(moved);
        all[128 * 1024 + 100] ^= 1; // the second header: its checksum no longer matches
        Files.write(moved, all);
        CheckReport r = DiskOps.check(moved, false);
        assertEquals(1, r.exitCode(), r.toString());
        CheckReport fixed = DiskOps.check(moved, true);
        assertEquals(0, fixed.exitCode(), fixed.toString());
        assertEquals(0, DiskOps.check(moved, false).exitCode());
    }

    @Test
    void shouldCompactADifferencingVhdWithoutLosingItsZerosOrItsParent() throws Exception {
        Path base = dir.resolve("cbase.vhd");
        Path child = dir.resolve("cchild.vhd");
        try (VirtualDisk b = VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L << 20))) {
            byte[] ones = new byte[16 << 20];
            java.util.Arrays.fill(ones, (byte) 1);
            b.write(0, MemorySegment.ofArray(ones));
        }
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            c.write(2L << 20, MemorySegment.ofArray(new byte[1 << 20])); // zeros that hide the parent
            byte[] twos = new byte[4096];
            java.util.Arrays.fill(twos, (byte) 2);
            c.write(9L << 20, MemorySegment.ofArray(twos));
            c.unmap(12L << 20, 2L << 20); // differencing unmap writes zeros too
        }
        byte[] before;
        try (VirtualDisk c = VirtualDisks.open(child, true)) {
            before = Tools.readAll(c);
        }
        DiskOps.compact(child, Progress.NONE);
        try (VhdDisk c = VhdDisk.open(child, true)) {
            assertArrayEquals(before, Tools.readAll(c));
            assertEquals(base.toRealPath(), c.parentPath().toRealPath());
        }
        assertEquals(0, DiskOps.check(child, false).exitCode());
    }
}
