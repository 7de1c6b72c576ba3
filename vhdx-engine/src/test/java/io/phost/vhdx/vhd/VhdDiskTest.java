package io.phost.vhdx.vhd;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.*;

class VhdDiskTest {
    @TempDir
    Path dir;

    @Test
    void shouldReadZerosFromAFreshDynamicDiskAndBackWhatWasWrittenAfterReopen() throws Exception {
        Path p = dir.resolve("d.vhd");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(3 << 20, 4096);
            Tools.pattern(w, 1 << 20, 7);
            try (VhdDisk d = VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 10 << 20))) {
                assertEquals(DiskType.DYNAMIC, d.type());
                assertEquals(0, d.allocatedBytes());
                MemorySegment r = a.allocate(10 << 20, 4096);
                d.read(0, r);
                assertEquals(-1, r.mismatch(a.allocate(10 << 20)));
                d.write(1 << 20, w); // spans blocks 0 and 1 (2 MiB blocks)
                assertEquals(4 << 20, d.allocatedBytes());
            }
            try (VhdDisk d = VhdDisk.open(p, true)) {
                MemorySegment r = a.allocate(3 << 20, 4096);
                d.read(1 << 20, r);
                assertEquals(-1, r.mismatch(w));
                MemorySegment head = a.allocate(1 << 20, 4096);
                d.read(0, head);
                assertEquals(-1, head.mismatch(a.allocate(1 << 20)));
            }
        }
    }

    /**
     * Allocation writes the bitmap and moves the footer ahead; the BAT sectors wait for the flush. A copy of
     * the file taken before the flush (what a SIGKILL leaves) is a valid image without the new blocks, one
     * taken after it has them; a clean close gives the room ahead back. Both copies pass our check and
     * {@code qemu-img check -f vpc}, and the unflushed copy takes new writes again.
     */
    @Test
    void shouldWriteTheBatAtFlushAndLeaveAValidImageWhenKilledBefore() throws Exception {
        Path p = dir.resolve("deferred.vhd");
        Path killed = dir.resolve("killed.vhd");
        Path flushed = dir.resolve("flushed.vhd");
        VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 64 << 20)).close();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(4096, 4096);
            MemorySegment r = a.allocate(4096, 4096);
            long blockEnd;
            try (VhdDisk d = VhdDisk.open(p, false)) {
                Tools.pattern(w, 0, 1);
                d.write(0, w);
                d.flush();
                for (int b : new int[] {5, 9}) {
                    Tools.pattern(w, (long) b << 21, b);
                    d.write((long) b << 21, w);
                }
                Files.copy(p, killed);
                d.flush();
                Files.copy(p, flushed);
                blockEnd = d.blockFileOffset(9) + VhdDisk.bitmapBytesFor(2 << 20) + (2 << 20);
                assertTrue(d.fileSize() > blockEnd + 512, "the footer moved ahead of the last block");
            }
            assertEquals(blockEnd + 512, Files.size(p), "close gives the room ahead back");
            for (Path c : new Path[] {killed, flushed, p}) {
                boolean hasNew = c != killed;
                assertEquals(0, io.phost.vhdx.ops.DiskOps.check(c, false).exitCode(), c.toString());
                if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
                    // qemu has no check for vpc: it must read what we read
                    Path raw = dir.resolve("export.raw");
                    try (VhdDisk d = VhdDisk.open(c, true)) {
                        Files.write(raw, Tools.readAll(d));
                    }
                    Tools.runOk("qemu-img", "compare", "-q", "-f", "vpc", "-F", "raw", c.toString(), raw.toString());
                    Files.delete(raw);
                }
                try (VhdDisk d = VhdDisk.open(c, true)) {
                    d.read(0, r);
                    Tools.pattern(w, 0, 1);
                    assertEquals(-1, r.mismatch(w), c + ": flushed before");
                    for (int b : new int[] {5, 9}) {
                        d.read((long) b << 21, r);
                        if (hasNew) {
                            Tools.pattern(w, (long) b << 21, b);
                        } else {
                            w.fill((byte) 0);
                        }
                        assertEquals(-1, r.mismatch(w), c + ": block " + b);
                    }
                }
            }
            try (VhdDisk d = VhdDisk.open(killed, false)) {
                Tools.pattern(w, 7L << 21, 7);
                d.write(7L << 21, w);
            }
            assertEquals(0, io.phost.vhdx.ops.DiskOps.check(killed, false).exitCode());
            try (VhdDisk d = VhdDisk.open(killed, true)) {
                d.read(7L << 21, r);
                assertEquals(-1, r.mismatch(w), "a write after the kill");
            }
        }
    }

    @Test
    void shouldAlignBlockDataTo4KiB() throws Exception {
        Path p = dir.resolve("align.vhd");
        try (VhdDisk d = VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8 << 20))) {
            d.write(6 << 20, MemorySegment.ofArray(new byte[4096]));
            d.write(0, MemorySegment.ofArray(new byte[4096]));
            for (int b : new int[] {0, 3}) {
                assertEquals(0, (d.blockFileOffset(b) + 512) % 4096, "block " + b);
            }
        }
    }

    @Test
    void shouldKeepExactSizeAndSpecGeometryWhenCreating() throws Exception {
        Path p = dir.resolve("g.vhd");
        long size = 1000L * 1000 * 1000 / 512 * 512;
        try (VhdDisk d = VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size))) {
            assertEquals(size, d.size());
            assertEquals("win ", d.footer().creatorApp());
            int[] chs = VhdFooter.geometryFor(size);
            assertEquals(chs[0], d.footer().cylinders());
            assertTrue(d.footer().geometrySectors() * 512 <= size);
        }
        // The spec's own example points: 16 heads / 63 sectors for a 1 GB disk.
        assertArrayEquals(new int[] {2080, 16, 63}, VhdFooter.geometryFor(2080L * 16 * 63 * 512));
    }

    @Test
    void shouldUseChsSizeForVirtualPcImagesAndCurrentSizeForHyperVOnes() throws Exception {
        try (Arena a = Arena.ofConfined()) {
            VhdFooter f = new VhdFooter(a.allocate(512));
            f.cookie().currentSize(100L << 20).geometry(200, 16, 63).creatorApp("vpc ");
            assertEquals(200L * 16 * 63 * 512, VhdDisk.virtualSize(f));
            f.creatorApp("win ");
            assertEquals(100L << 20, VhdDisk.virtualSize(f));
            f.creatorApp("qem2");
            assertEquals(100L << 20, VhdDisk.virtualSize(f));
            f.creatorApp("qemu").geometry(65535, 16, 255);
            assertEquals(100L << 20, VhdDisk.virtualSize(f));
        }
    }

    @Test
    void shouldReadThroughToTheParentUntilTheChildWritesASector() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("sub/child.vhd");
        Files.createDirectories(child.getParent());
        try (Arena a = Arena.ofConfined()) {
            MemorySegment baseData = a.allocate(4 << 20, 4096);
            Tools.pattern(baseData, 0, 1);
            try (VhdDisk d = VhdDisk.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 6 << 20))) {
                d.write(0, baseData);
            }
            MemorySegment sector = a.allocate(512, 512);
            Tools.pattern(sector, 4096, 9);
            try (VhdDisk c = VhdDisk.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
                assertEquals(DiskType.DIFFERENCING, c.type());
                assertEquals(6 << 20, c.size());
                c.write(4096, sector);
                c.writeZeroes(1 << 20, 4096);
            }
            try (VirtualDisk c = VirtualDisks.open(child, true)) {
                MemorySegment all = a.allocate(6 << 20, 4096);
                c.read(0, all);
                MemorySegment expected = a.allocate(6 << 20, 4096);
                expected.copyFrom(baseData);
                expected.asSlice(4096, 512).copyFrom(sector);
                expected.asSlice(1 << 20, 4096).fill((byte) 0);
                assertEquals(-1, all.mismatch(expected));
                VhdDisk vc = (VhdDisk) c;
                assertEquals(base.toRealPath(), vc.parentPath().toRealPath());
                List<long[]> stored = new ArrayList<>();
                vc.forEachStoredRange((o, l) -> stored.add(new long[] {o, l}));
                assertEquals(2, stored.size());
                assertArrayEquals(new long[] {4096, 512}, stored.get(0));
                assertArrayEquals(new long[] {1 << 20, 4096}, stored.get(1));
            }
            // The base moved: the relative locator fails, the absolute one finds it... unless it moved too.
            Path moved = dir.resolve("sub/base.vhd");
            Files.move(base, moved);
            try (VhdDisk c = VhdDisk.open(child, true)) {
                assertEquals(moved.toRealPath(), c.parentPath().toRealPath()); // found by the parent name beside the child
            }
        }
    }

    @Test
    void shouldRefuseAParentWithAnotherUniqueId() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        VhdDisk.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4 << 20)).close();
        VhdDisk.create(child, CreateOptions.differencing(DiskFormat.VHD, base)).close();
        Files.delete(base);
        VhdDisk.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4 << 20)).close();
        VhdFormatException e = assertThrows(VhdFormatException.class, () -> VhdDisk.open(child, true));
        assertEquals(VhdFormatException.Reason.PARENT_MISMATCH, e.reason());
        Files.delete(base);
        e = assertThrows(VhdFormatException.class, () -> VhdDisk.open(child, true));
        assertEquals(VhdFormatException.Reason.PARENT_NOT_FOUND, e.reason());
    }

    @Test
    void shouldReleaseWholeBlocksOnUnmapAndZeroPartialOnes() throws Exception {
        Path p = dir.resolve("u.vhd");
        try (VhdDisk d = VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8 << 20));
             Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(4 << 20, 4096);
            Tools.pattern(w, 0, 5);
            d.write(0, w);
            assertEquals(4 << 20, d.allocatedBytes());
            d.unmap(0, 2 << 20);
            d.unmap((2 << 20) + 4096, 4096);
            assertEquals(2 << 20, d.allocatedBytes());
            MemorySegment r = a.allocate(4 << 20, 4096);
            d.read(0, r);
            MemorySegment expected = a.allocate(4 << 20, 4096);
            expected.copyFrom(w);
            expected.asSlice(0, 2 << 20).fill((byte) 0);
            expected.asSlice((2 << 20) + 4096, 4096).fill((byte) 0);
            assertEquals(-1, r.mismatch(expected));
        }
    }

    @Test
    void shouldFixedDiskStoreDataAtTheStartAndFooterAtTheEnd() throws Exception {
        Path p = dir.resolve("f.vhd");
        try (VhdDisk d = VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.FIXED, 2 << 20))) {
            // 4 bytes is not a sector: refused before touching anything
            assertThrows(IllegalArgumentException.class, () -> d.write(512, MemorySegment.ofArray(new byte[4])));
        }
        try (VhdDisk d = VhdDisk.open(p, false)) {
            byte[] s = new byte[512];
            s[0] = 42;
            d.write(512, MemorySegment.ofArray(s));
        }
        byte[] file = Files.readAllBytes(p);
        assertEquals((2 << 20) + 512, file.length);
        assertEquals(42, file[512]);
        assertEquals('c', file[2 << 20]);
    }

    @Test
    void shouldAllocateEachBlockOnceUnderConcurrentWriters() throws Exception {
        Path p = dir.resolve("c.vhd");
        int blocks = 16;
        long bs = 1 << 20;
        try (VhdDisk d = VhdDisk.create(p,
            CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, blocks * bs).withBlockSize(bs))) {
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < 4; t++) {
                    int thread = t;
                    fs.add(pool.submit(() -> {
                        try (Arena a = Arena.ofConfined()) {
                            MemorySegment buf = a.allocate(4096, 4096);
                            // Every thread writes its own 4 KiB slots of every block, in a shuffled order.
                            Random r = new Random(thread);
                            List<Integer> order = new ArrayList<>();
                            for (int i = 0; i < blocks * 8; i++) {
                                order.add(i);
                            }
                            java.util.Collections.shuffle(order, r);
                            for (int i : order) {
                                long off = (i / 8) * bs + (long) ((i % 8) * 4 + thread) * 4096;
                                Tools.pattern(buf, off, 11);
                                d.write(off, buf);
                            }
                        }
                        return null;
                    }));
                }
                for (Future<?> f : fs) {
                    f.get();
                }
            } finally {
                pool.shutdown();
            }
            assertEquals(blocks * bs, d.allocatedBytes());
        }
        // Blocks start at 3584 (data 4 KiB aligned) and follow each other bs + 4 KiB apart; then the footer
        // (once closed: while open it sits further on, with room for the next allocations).
        long lastEnd = 3584 + (blocks - 1) * (bs + 4096) + 512 + bs;
        assertEquals(lastEnd + 512, Files.size(p), "one block per index, no leaks");
        try (VhdDisk d = VhdDisk.open(p, true); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096, 4096);
            MemorySegment expect = a.allocate(4096, 4096);
            for (long off = 0; off < blocks * bs; off += 4096) {
                d.read(off, buf);
                long slot = (off % bs) / 4096;
                if (slot < 32) {
                    Tools.pattern(expect, off, 11);
                } else {
                    expect.fill((byte) 0);
                }
                assertEquals(-1, buf.mismatch(expect), "offset " + off);
            }
        }
    }

    @Test
    void shouldKeepEverySectorOfConcurrentDifferencingWritesInTheSameBlocks() throws Exception {
        Path base = dir.resolve("cb.vhd");
        Path child = dir.resolve("cc.vhd");
        long size = 4L << 20;
        byte[] ones = new byte[(int) size];
        java.util.Arrays.fill(ones, (byte) 1);
        try (VhdDisk b = VhdDisk.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size))) {
            b.write(0, MemorySegment.ofArray(ones));
        }
        int threads = 4;
        try (VhdDisk c = VhdDisk.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            ExecutorService pool = Executors.newFixedThreadPool(threads);
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    int thread = t;
                    fs.add(pool.submit(() -> {
                        byte[] s = new byte[512];
                        java.util.Arrays.fill(s, (byte) (10 + thread));
                        // Thread t owns sectors t, t+8, t+16 ...: neighbours in the same bitmap bytes and words.
                        for (long sector = thread; sector < size / 512; sector += 8) {
                            c.write(sector * 512, MemorySegment.ofArray(s));
                        }
                        return null;
                    }));
                }
                for (Future<?> f : fs) {
                    f.get();
                }
            } finally {
                pool.shutdown();
            }
        }
        try (VhdDisk c = VhdDisk.open(child, true)) {
            byte[] all = new byte[(int) size];
            c.read(0, MemorySegment.ofArray(all));
            for (int sector = 0; sector < size / 512; sector++) {
                int owner = sector % 8;
                byte expected = owner < threads ? (byte) (10 + owner) : 1;
                assertEquals(expected, all[sector * 512], "sector " + sector);
                assertEquals(expected, all[sector * 512 + 511], "sector " + sector);
            }
        }
    }
}
