package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.vhdx.VhdxFormatException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Resize (grow in place, grow with BAT relocation, fixed grow, shrink) and set-parent; qemu-img checks the results. */
class VhdxResizeAndReparentTest {
    @TempDir
    Path dir;

    private static void qemuCheck(Path p, long expectedSize) throws Exception {
        if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
            Qemu.ok("qemu-img", "check", "-f", "vhdx", p.toString());
            String info = Qemu.ok("qemu-img", "info", "-f", "vhdx", "--output=json", p.toString());
            assertTrue(info.contains("\"virtual-size\": " + expectedSize), info);
        }
    }

    @Test
    void shouldGrowDynamicImageInPlaceAndKeepData() throws Exception {
        Path p = dir.resolve("g.vhdx");
        byte[] data = VhdxDiskTest.pattern(1, 1 << 20);
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic((16L << 20) - 512).withBlockSize(1 << 20))) {
            d.write((15L << 20) - 512, MemorySegment.ofArray(java.util.Arrays.copyOf(data, 512)));
            d.write(0, MemorySegment.ofArray(data));
        }
        VhdxDisk.resize(p, 64L << 20);
        try (VhdxDisk d = VhdxDisk.open(p, false)) {
            assertEquals(64L << 20, d.size());
            assertArrayEquals(data, VhdxDiskTest.read(d, 0, 1 << 20));
            assertArrayEquals(java.util.Arrays.copyOf(data, 512), VhdxDiskTest.read(d, (15L << 20) - 512, 512));
            assertArrayEquals(new byte[512], VhdxDiskTest.read(d, (16L << 20) - 512, 512));
            d.write(63L << 20, MemorySegment.ofArray(data));
        }
        assertTrue(VhdxCheck.check(p).clean());
        qemuCheck(p, 64L << 20);
    }

    @Test
    void shouldRelocateTheBatWhenGrowingBeyondItsRegion() throws Exception {
        Path p = dir.resolve("big.vhdx");
        byte[] data = VhdxDiskTest.pattern(2, 1 << 20);
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20))) {
            d.write(5L << 20, MemorySegment.ofArray(data));
        }
        long newSize = 300L << 30; // 300 GiB of 1 MiB blocks needs a 3 MiB BAT; the old region is 1 MiB
        VhdxDisk.resize(p, newSize);
        try (VhdxDisk d = VhdxDisk.open(p, false)) {
            assertEquals(newSize, d.size());
            assertNotEquals(3L << 20, d.batOffset());
            assertArrayEquals(data, VhdxDiskTest.read(d, 5L << 20, 1 << 20));
            d.write(newSize - (1 << 20), MemorySegment.ofArray(data));
        }
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertArrayEquals(data, VhdxDiskTest.read(d, newSize - (1 << 20), 1 << 20));
        }
        assertTrue(VhdxCheck.check(p).clean(), () -> "check");
        qemuCheck(p, newSize);
    }

    @Test
    void shouldAllocateNewBlocksWhenGrowingFixedImage() throws Exception {
        Path p = dir.resolve("f.vhdx");
        VhdxDisk.create(p, VhdxCreateOptions.fixed(8L << 20).withBlockSize(1 << 20)).close();
        VhdxDisk.resize(p, 12L << 20);
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertEquals(DiskType.FIXED, d.type());
            for (long b = 0; b < 12; b++) {
                assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, d.blockState(b));
            }
            assertArrayEquals(new byte[1 << 20], VhdxDiskTest.read(d, 11L << 20, 1 << 20));
        }
        qemuCheck(p, 12L << 20);
    }

    @Test
    void shouldShrinkOnlyWhenTheTailHoldsNoData() throws Exception {
        Path p = dir.resolve("s.vhdx");
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(32L << 20).withBlockSize(1 << 20))) {
            d.write(2L << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(3, 1 << 20)));
            d.write(20L << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(3, 4096)));
        }
        assertThrows(IllegalArgumentException.class, () -> VhdxDisk.resize(p, 8L << 20));
        try (VhdxDisk d = VhdxDisk.open(p, false)) {
            d.unmap(20L << 20, 1 << 20);
        }
        byte[] before = java.nio.file.Files.readAllBytes(p);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> VhdxDisk.resize(p, (2L << 20) + 4096)); // would cut block 2's data after 4 KiB (issue 21, defect 3)
        assertTrue(e.getMessage().contains("virtual offset " + ((2L << 20) + 4096)), e.getMessage());
        assertArrayEquals(before, java.nio.file.Files.readAllBytes(p), "a refused shrink leaves the file alone");
        try (VhdxDisk d = VhdxDisk.open(p, false)) {
            d.writeZeroes((2L << 20) + 4096, (1 << 20) - 4096);
        }
        VhdxDisk.resize(p, (2L << 20) + 4096); // the cut-off tail of block 2 is zeros now
        VhdxDisk.resize(p, 32L << 20);
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertArrayEquals(java.util.Arrays.copyOf(VhdxDiskTest.pattern(3, 1 << 20), 4096), VhdxDiskTest.read(d, 2L << 20, 4096));
            assertArrayEquals(new byte[(1 << 20) - 4096], VhdxDiskTest.read(d, (2L << 20) + 4096, (1 << 20) - 4096));
        }
        qemuCheck(p, 32L << 20);
    }

    @Test
    void shouldReparentAMovedParentAndCheckTheLinkage() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.avhdx");
        Path other = dir.resolve("other.vhdx");
        byte[] data = VhdxDiskTest.pattern(4, 2 << 20);
        try (VhdxDisk d = VhdxDisk.create(base, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(data));
        }
        try (VhdxDisk d = VhdxDisk.create(child, VhdxCreateOptions.differencing(base))) {
            d.write(4096, MemorySegment.ofArray(VhdxDiskTest.pattern(5, 4096)));
        }
        System.arraycopy(VhdxDiskTest.pattern(5, 4096), 0, data, 4096, 4096);
        Path moved = Files.createDirectories(dir.resolve("elsewhere/deeper")).resolve("renamed-base.vhdx");
        Files.move(base, moved);
        VhdxFormatException lost = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(child, true));
        assertEquals(VhdxFormatException.Reason.BAD_PARENT_LOCATOR, lost.reason());

        VhdxDisk.create(other, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20)).close();
        VhdxFormatException mismatch = assertThrows(VhdxFormatException.class, () -> VhdxDisk.setParent(child, other, false));
        assertEquals(VhdxFormatException.Reason.PARENT_LINKAGE_MISMATCH, mismatch.reason());

        VhdxDisk.setParent(child, moved, false);
        try (VhdxDisk d = VhdxDisk.open(child, true)) {
            assertEquals(moved.toAbsolutePath().normalize(), d.parentChain().getFirst().path());
            assertArrayEquals(data, VhdxDiskTest.read(d, 0, 2 << 20));
            assertTrue(d.parentLocator().get("relative_path").contains("elsewhere\\deeper\\renamed-base.vhdx"), d.parentLocator().toString());
        }
        VhdxDisk.setParent(child, other, true);
        try (VhdxDisk d = VhdxDisk.open(child, true)) {
            assertEquals(other.toAbsolutePath().normalize(), d.parentChain().getFirst().path());
        }
    }

    @Test
    void shouldRefuseASecondWriterOnTheSameImage() throws Exception {
        Path p = dir.resolve("lock.vhdx");
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(8L << 20))) {
            java.io.IOException e = assertThrows(java.io.IOException.class, () -> VhdxDisk.open(p, false));
            assertTrue(e.getMessage().contains("in use"), e.getMessage());
            assertThrows(java.io.IOException.class, () -> VhdxDisk.open(p, true));
        }
        try (VhdxDisk a = VhdxDisk.open(p, true); VhdxDisk b = VhdxDisk.open(p, true)) {
            assertEquals(a.size(), b.size());
        }
    }
}
