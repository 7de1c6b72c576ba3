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

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.UUID;

import static io.phost.vhdx.Tools.runOk;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Get-VHD's MinimumSize, FragmentationPercentage and Attached; Resize-VHD -ToMinimumSize (through
 * {@link ImageFacts#minimumSize}); Optimize-VHD modes and a differencing VHDX compacted; Set-VHD
 * -ResetDiskIdentifier; info on an orphaned VHD child. Recipes:
 * <pre>
 *   qemu-img compare -f raw -F raw before.raw after.raw    # a compacted image reads the same
 *   qemu-img check -f vhdx image.vhdx                      # and is consistent
 * </pre>
 */
class HyperVOptionsTest {
    @TempDir
    Path dir;

    private static void write(VirtualDisk d, long off, int len, int seed) throws Exception {
        byte[] b = new byte[len];
        Tools.pattern(MemorySegment.ofArray(b), off, seed);
        d.write(off, MemorySegment.ofArray(b));
    }

    private static String sha(Path p) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
    }

    private Path flatten(Path image, String name) throws Exception {
        Path out = dir.resolve(name);
        DiskOps.convert(image, out, DiskFormat.RAW, DiskType.DYNAMIC, 0, Progress.NONE);
        return out;
    }

    @Test
    void shouldReportTheMinimumSizeAsTheEndOfTheLastDataAndShrinkToIt() throws Exception {
        Path f = dir.resolve("m.vhdx");
        DiskOps.create(f, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 256L << 20).withBlockSize(1 << 20), false);
        try (VirtualDisk d = VirtualDisks.open(f, false)) {
            write(d, 0, 4096, 1);
            write(d, (100L << 20) + 512, 512, 2); // last data ends at 100 MiB + 1 KiB
            d.write(180L << 20, MemorySegment.ofArray(new byte[4096])); // allocated, but zeros
            d.flush();
        }
        assertEquals(Long.toString((100L << 20) + 1024), DiskOps.info(f).details().get("minimumSize"));
        try (VirtualDisk d = VirtualDisks.open(f, true)) {
            assertEquals(-1, ImageFacts.minimumSize(d, 4096), "a budget too small to reach the data says so");
        }
        Path before = flatten(f, "before.raw");
        // Resize-VHD -ToMinimumSize: the minimum rounded up to 1 MiB; refused one sector below the minimum
        assertThrows(IllegalArgumentException.class, () -> DiskOps.resize(f, (100L << 20) + 512, true, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> DiskOps.resize(f, 101L << 20, true, Progress.NONE),
            "a plain shrink trips on the allocated zero block at 180 MiB");
        assertEquals(101L << 20, ImageFacts.shrinkToMinimum(f, Progress.NONE), "compacted, then shrunk");
        assertEquals(101L << 20, ImageFacts.shrinkToMinimum(f, Progress.NONE), "already there");
        Path after = flatten(f, "after.raw");
        Tools.assumeTool("qemu-img");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", before.toString(), after.toString());
        runOk("qemu-img", "check", "-q", "-f", "vhdx", f.toString());
    }

    @Test
    void shouldReportFragmentationOfBlocksStoredOutOfOrder() throws Exception {
        Path inOrder = dir.resolve("a.vhdx");
        Path reversed = dir.resolve("b.vhdx");
        for (Path p : new Path[] {inOrder, reversed}) {
            DiskOps.create(p, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 64L << 20).withBlockSize(1 << 20), false);
        }
        try (VirtualDisk a = VirtualDisks.open(inOrder, false); VirtualDisk b = VirtualDisks.open(reversed, false)) {
            for (int i = 0; i < 5; i++) {
                write(a, (long) i << 20, 4096, i);
                write(b, (long) (4 - i) << 20, 4096, i); // file order is the reverse of virtual order
            }
            a.flush();
            b.flush();
        }
        assertEquals("0", DiskOps.info(inOrder).details().get("fragmentationPercentage"));
        assertEquals("100", DiskOps.info(reversed).details().get("fragmentationPercentage"));
        Path vhd = dir.resolve("c.vhd");
        DiskOps.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 64L << 20), false);
        try (VirtualDisk d = VirtualDisks.open(vhd, false)) {
            write(d, 0, 4096, 1);
            write(d, 20L << 20, 4096, 2);
            write(d, 2L << 20, 4096, 3); // block 1 after block 10 in the file: 2 of 2 pairs out of order
            d.flush();
        }
        assertEquals("100", DiskOps.info(vhd).details().get("fragmentationPercentage"));
    }

    @Test
    void shouldReportWhetherARunningProcessHasTheImageOpen() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20), false);
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, base), false);
        assertEquals("no", DiskOps.info(child).details().get("attached"));
        try (VirtualDisk open = VirtualDisks.open(child, false)) {
            assertTrue(DiskOps.info(child).details().get("attached").startsWith("yes (open read-write"));
            assertTrue(DiskOps.info(base).details().get("attached").startsWith("yes (open read-only"));
        }
        assertEquals(ImageFacts.Attached.NO, ImageFacts.attached(child));
    }

    /**
     * Optimize-VHD on a differencing VHDX: in place (same file), released and zero blocks give their space
     * back, it reads the same and stays linked. Sectors equal to the parent's are kept (the in-place compact
     * does not read the parent, as Optimize-VHD does not).
     */
    @Test
    void shouldCompactADifferencingVhdxKeepingItsDataAndItsChildren() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        Path grand = dir.resolve("grand.vhdx");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 64L << 20).withBlockSize(1 << 20), false);
        try (VirtualDisk d = VirtualDisks.open(base, false)) {
            write(d, 0, 8 << 20, 1);
            d.flush();
        }
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, base), false);
        try (VirtualDisk d = VirtualDisks.open(child, false)) {
            for (int i = 20; i < 40; i++) {
                write(d, (long) i << 20, 1 << 20, 7); // 20 blocks of data...
            }
            d.unmap(24L << 20, 8L << 20); // ...8 of them released by the guest
            d.write(30L << 20, MemorySegment.ofArray(new byte[1 << 20])); // one rewritten with zeros
            byte[] same = new byte[1 << 20];
            Tools.pattern(MemorySegment.ofArray(same), 2L << 20, 1);
            d.write(2L << 20, MemorySegment.ofArray(same)); // one written with the parent's own data
            write(d, 50L << 20, 4096, 9); // a partial block
            d.flush();
        }
        DiskOps.create(grand, CreateOptions.differencing(DiskFormat.VHDX, child), false);
        Path before = flatten(child, "before.raw");
        Path grandBefore = flatten(grand, "grand-before.raw");
        long bytesBefore = DiskOps.diskBytes(child);
        UUID id;
        UUID dw;
        try (VhdxDisk d = VhdxDisk.open(child, true)) {
            id = d.virtualDiskId();
            dw = d.dataWriteGuid();
        }
        Object inode = java.nio.file.Files.getAttribute(child, "unix:ino");
        DiskOps.CompactResult r = DiskOps.compact(child, CompactMode.FULL, Progress.NONE);
        assertTrue(r.diskBytesAfter() < bytesBefore, r.toString());
        // the file length stays: the sector-bitmap block of the partial block was allocated last and is not moved
        assertEquals(inode, java.nio.file.Files.getAttribute(child, "unix:ino"), "compacted in place");
        try (VhdxDisk d = VhdxDisk.open(child, true)) {
            assertEquals(id, d.virtualDiskId());
            assertEquals(dw, d.dataWriteGuid());
            assertEquals(base.toAbsolutePath(), d.parent().path().toAbsolutePath());
            assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, d.blockState(2), "the block equal to the parent's stays");
            assertFalse(d.fileRangesInUse().stream().anyMatch(u -> u.length == 3 && u[1] - u[0] == (1 << 20)
                && d.blockFileOffset(26) == u[0]), "an unmapped block stays released");
            assertEquals(VhdxDisk.BlockState.ZERO, d.blockState(30), "a block of zeros gives its space back");
        }
        Tools.assumeTool("qemu-img");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", before.toString(), flatten(child, "after.raw").toString());
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", grandBefore.toString(),
            flatten(grand, "grand-after.raw").toString());
        assertTrue(DiskOps.check(child, false).problems().isEmpty());
    }

    /** Quick mode drops what the metadata marks free and keeps zero-filled blocks; full drops those too. */
    @Test
    void shouldCompactQuicklyWithoutLookingForZeros() throws Exception {
        Path f = dir.resolve("q.vhdx");
        DiskOps.create(f, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 64L << 20).withBlockSize(1 << 20), false);
        try (VirtualDisk d = VirtualDisks.open(f, false)) {
            for (int i = 0; i < 10; i++) {
                write(d, (long) i << 20, 1 << 20, i);
            }
            d.unmap(0, 4L << 20); // 4 blocks released
            d.write(8L << 20, MemorySegment.ofArray(new byte[1 << 20])); // a block of zeros, still allocated
            d.flush();
        }
        Path before = flatten(f, "before.raw");
        DiskOps.compact(f, CompactMode.QUICK, Progress.NONE);
        assertEquals(6L << 20, DiskOps.info(f).allocatedBytes(), "quick: the zero block is kept");
        DiskOps.compact(f, CompactMode.FULL, Progress.NONE);
        assertEquals(5L << 20, DiskOps.info(f).allocatedBytes(), "full: the zero block is dropped");
        Tools.assumeTool("qemu-img");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", before.toString(), flatten(f, "after.raw").toString());
        runOk("qemu-img", "check", "-q", "-f", "vhdx", f.toString());
    }

    /**
     * Retrim (Optimize-VHD -Mode Retrim) punches the space of unmapped blocks and the zero pages inside
     * allocated ones out of the file, and changes nothing else: same allocation, size, identity and
     * content (qemu-img compare, qemu-img check), for VHDX and VHD.
     */
    @Test
    void shouldRetrimUnusedSpaceWithoutChangingTheImage() throws Exception {
        for (DiskFormat format : new DiskFormat[] {DiskFormat.VHDX, DiskFormat.VHD}) {
            Path f = dir.resolve("r." + format.id());
            long bs = format == DiskFormat.VHDX ? 1 << 20 : 2 << 20;
            DiskOps.create(f, CreateOptions.of(format, DiskType.DYNAMIC, 64L << 20).withBlockSize(bs), false);
            try (VirtualDisk d = VirtualDisks.open(f, false)) {
                for (int i = 0; i < 10; i++) {
                    write(d, i * bs, (int) bs, i);
                }
                d.unmap(0, 4 * bs); // released: VHDX keeps the file space, VHD punches it itself
                d.write(8 * bs, MemorySegment.ofArray(new byte[(int) bs])); // allocated, all zeros
                d.write(9 * bs, MemorySegment.ofArray(new byte[(int) bs / 2])); // half zeros
                d.flush();
            }
            Path before = flatten(f, "before-" + format.id() + ".raw");
            ImageInfo infoBefore = DiskOps.info(f);
            long sizeBefore = Files.size(f);
            long diskBefore = DiskOps.diskBytes(f);
            UUID guidBefore = format == DiskFormat.VHDX ? dataWriteGuid(f) : null;
            DiskOps.CompactResult r = DiskOps.compact(f, CompactMode.RETRIM, Progress.NONE);
            long freed = diskBefore - r.diskBytesAfter();
            long expected = (format == DiskFormat.VHDX ? 4 * bs : 0) + bs + bs / 2;
            assertTrue(freed >= expected, format + ": freed " + freed + " of at least " + expected);
            assertEquals(sizeBefore, Files.size(f), format + ": the file keeps its length");
            assertEquals(infoBefore.allocatedBytes(), DiskOps.info(f).allocatedBytes(), format + ": allocation unchanged");
            if (guidBefore != null) {
                assertEquals(guidBefore, dataWriteGuid(f), "children stay linked");
            }
            assertEquals(sha(before), sha(flatten(f, "after-" + format.id() + ".raw")), format + ": reads the same");
            Tools.assumeTool("qemu-img");
            String q = format == DiskFormat.VHDX ? "vhdx" : "vpc";
            runOk("qemu-img", "compare", "-q", "-f", q, "-F", "raw", f.toString(), before.toString());
            if (format == DiskFormat.VHDX) {
                runOk("qemu-img", "check", "-q", "-f", "vhdx", f.toString());
            }
        }
    }

    private static UUID dataWriteGuid(Path f) throws Exception {
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            return d.dataWriteGuid();
        }
    }

    @Test
    void shouldResetTheDiskIdentifierKeepingDataAndChildren() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20), false);
        try (VirtualDisk d = VirtualDisks.open(base, false)) {
            write(d, 0, 1 << 20, 3);
            d.flush();
        }
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, base), false);
        Path before = flatten(child, "before.raw");
        UUID old;
        try (VhdxDisk d = VhdxDisk.open(base, true)) {
            old = d.virtualDiskId();
        }
        UUID fresh = ImageSettings.resetDiskIdentifier(base);
        assertNotEquals(old, fresh);
        assertEquals(fresh.toString(), DiskOps.info(base).details().get("virtualDiskId"));
        Tools.assumeTool("qemu-img");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", before.toString(), flatten(child, "after.raw").toString());
        Path vhd = dir.resolve("x.vhd");
        DiskOps.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L << 20), false);
        String sum = sha(vhd);
        assertThrows(UnsupportedOperationException.class, () -> ImageSettings.resetDiskIdentifier(vhd));
        assertEquals(sum, sha(vhd), "a refusal leaves the file as it was");
    }

    /** Set-VHD -PhysicalSectorSizeBytes: in place, data and children untouched; VHD refused untouched. */
    @Test
    void shouldSetThePhysicalSectorSizeInPlace() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, 16L << 20), false);
        try (VirtualDisk d = VirtualDisks.open(base, false)) {
            write(d, 4096, 1 << 20, 5);
            d.flush();
        }
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHDX, base), false);
        Path before = flatten(child, "before.raw");
        assertEquals(4096, DiskOps.info(base).physicalSectorSize());
        ImageSettings.setPhysicalSectorSize(base, 512);
        assertEquals(512, DiskOps.info(base).physicalSectorSize());
        assertEquals(Long.toString(DiskOps.diskBytes(base)), DiskOps.info(base).details().get("diskSize"));
        assertThrows(IllegalArgumentException.class, () -> ImageSettings.setPhysicalSectorSize(base, 1024));
        Tools.assumeTool("qemu-img");
        runOk("qemu-img", "check", "-q", "-f", "vhdx", base.toString());
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "raw", before.toString(), flatten(child, "after.raw").toString());
        Path vhd = dir.resolve("x.vhd");
        DiskOps.create(vhd, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L << 20), false);
        String sum = sha(vhd);
        assertThrows(UnsupportedOperationException.class, () -> ImageSettings.setPhysicalSectorSize(vhd, 4096));
        assertEquals(sum, sha(vhd));
    }

    /** Convert-VHD choosing sector sizes: 4096/4096 (read back through phost) and 512/512 (checked by qemu). */
    @Test
    void shouldConvertChoosingSectorSizes() throws Exception {
        Path raw = dir.resolve("src.raw");
        try (VirtualDisk d = VirtualDisks.create(raw, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, 32L << 20))) {
            write(d, 3L << 20, 1 << 20, 4);
            d.flush();
        }
        Path big = dir.resolve("big.vhdx");
        ImageConvert.toNew(raw, null, big, DiskFormat.VHDX, DiskType.DYNAMIC, 0, 4096, 4096, null, 4096, false, Progress.NONE);
        ImageInfo i = DiskOps.info(big);
        assertEquals(4096, i.logicalSectorSize());
        assertEquals(4096, i.physicalSectorSize());
        assertEquals(sha(raw), sha(flatten(big, "big.raw")));
        Path small = dir.resolve("small.vhdx");
        ImageConvert.toNew(raw, null, small, DiskFormat.VHDX, DiskType.DYNAMIC, 0, 512, 512, null, 4096, false, Progress.NONE);
        assertEquals(512, DiskOps.info(small).physicalSectorSize());
        assertThrows(IllegalArgumentException.class, () -> ImageConvert.toNew(raw, null, dir.resolve("v.vhd"), DiskFormat.VHD,
            DiskType.DYNAMIC, 0, 4096, 4096, null, 4096, false, Progress.NONE));
        assertFalse(Files.exists(dir.resolve("v.vhd")));
        Tools.assumeTool("qemu-img");
        runOk("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", raw.toString(), small.toString());
    }

    /** A VHD child whose parent is gone still gets an info (what the file says, and the problem). */
    @Test
    void shouldDescribeAnOrphanedVhdChild() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        DiskOps.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L << 20), false);
        DiskOps.create(child, CreateOptions.differencing(DiskFormat.VHD, base), false);
        Files.delete(base);
        ImageInfo i = DiskOps.info(child);
        assertEquals("differencing", i.type());
        assertTrue(i.details().get("parentProblem").contains("PARENT_NOT_FOUND") || i.details().get("parentProblem").contains("not found"),
            i.details().toString());
        assertNotNull(i.details().get("parentUniqueId"));
    }
}
