package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.vhdx.VhdxFormatException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class VhdxDiskTest {
    @TempDir
    Path dir;

    static byte[] pattern(long seed, int n) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    static byte[] read(VhdxDisk d, long off, int n) throws Exception {
        byte[] b = new byte[n];
        d.read(off, MemorySegment.ofArray(b));
        return b;
    }

    @Test
    void shouldReadBackWritesAcrossBlocksAfterReopen() throws Exception {
        Path f = dir.resolve("a.vhdx");
        byte[] one = pattern(1, 3 << 20);
        try (VhdxDisk d = VhdxDisk.create(f, VhdxCreateOptions.dynamic(64L << 20).withBlockSize(1 << 20))) {
            assertEquals(DiskType.DYNAMIC, d.type());
            assertArrayEquals(new byte[4096], read(d, 0, 4096));
            d.write((1 << 20) - 512, MemorySegment.ofArray(one));
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = a.allocate(one.length, 4096);
                d.read((1 << 20) - 512, s);
                assertArrayEquals(one, s.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            d.flush();
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            assertArrayEquals(one, read(d, (1 << 20) - 512, one.length));
            assertArrayEquals(new byte[512], read(d, (1 << 20) - 1024, 512));
            assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, d.blockState(1));
            assertEquals(VhdxDisk.BlockState.NOT_PRESENT, d.blockState(10));
            assertEquals(VhdxDisk.LogState.CLEAN, d.logState());
        }
    }

    @Test
    void shouldChangeDataWriteGuidOnceBeforeTheFirstChangeReachesTheOnDiskImage() throws Exception {
        Path f = dir.resolve("g.vhdx");
        UUID before;
        try (VhdxDisk d = VhdxDisk.create(f, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20))) {
            before = d.dataWriteGuid();
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            assertEquals(before, d.dataWriteGuid(), "a read-only open changes nothing");
        }
        UUID after;
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            d.write(0, MemorySegment.ofArray(pattern(2, 4096)));
            assertEquals(before, d.dataWriteGuid(), "a write into a new block is unreachable on disk until the flush");
            d.flush();
            after = d.dataWriteGuid();
            assertNotEquals(before, after, "the flush that logs the new block starts the session");
            d.write(4096, MemorySegment.ofArray(pattern(3, 4096)));
            d.flush();
            assertEquals(after, d.dataWriteGuid());
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            assertEquals(after, d.dataWriteGuid());
        }
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            d.write(8192, MemorySegment.ofArray(pattern(4, 4096)));
            assertNotEquals(after, d.dataWriteGuid(), "a write into a block the on-disk BAT maps changes it at once");
        }
    }

    @Test
    void shouldAllocateFreshBlocksWithoutAnyFdatasyncUntilTheGuestFlushes() throws Exception {
        Path f = dir.resolve("first.vhdx");
        VhdxDisk.create(f, VhdxCreateOptions.dynamic(64L << 20).withBlockSize(1 << 20)).close();
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            long syncs = d.fileSyncs();
            for (int b = 0; b < 16; b++) {
                d.write((long) b << 20, MemorySegment.ofArray(pattern(b, 4096)));
            }
            assertEquals(syncs, d.fileSyncs(), "16 first writes: no header rewrite, no log entry, no fdatasync");
            d.flush();
            long afterFlush = d.fileSyncs() - syncs;
            // a parentless image: session header, log entry and data share one fdatasync, as a raw file's flush
            assertEquals(1, afterFlush, "one flush commits every allocation in one log entry, one fdatasync");
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            for (int b = 0; b < 16; b++) {
                assertArrayEquals(pattern(b, 4096), read(d, (long) b << 20, 4096));
            }
        }
        VhdxCheck.Report report = VhdxCheck.check(f);
        assertTrue(report.clean(), report::toString);
    }

    /**
     * The session start costs no fdatasync of its own: the non-current slot (made current by its higher
     * sequence number) and the first log entry are made durable by one fdatasync, the other copy is written
     * after it without a sync of its own (the next flush's makes it durable). A copy of the file taken right after the first flush (as a crash would leave it,
     * the log live) opens with every flushed write, also with the unsynced copy lost, and qemu replays the
     * same log ({@code qemu-img check -r all}).
     */
    @Test
    void shouldStartTheSessionWithOneHeaderFdatasync() throws Exception {
        Path f = dir.resolve("one-header.vhdx");
        Path crashed = dir.resolve("crashed.vhdx");
        VhdxDisk.create(f, VhdxCreateOptions.dynamic(64L << 20).withBlockSize(1 << 20)).close();
        byte[] before = Files.readAllBytes(f);
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            d.write(0, MemorySegment.ofArray(pattern(7, 4096)));
            d.write(5L << 20, MemorySegment.ofArray(pattern(8, 4096)));
            long syncs = d.fileSyncs();
            d.flush();
            assertEquals(1, d.fileSyncs() - syncs, "one header copy and the log entry share one fdatasync");
            byte[] now = Files.readAllBytes(f);
            long h1 = VhdxHeaderDescriptor.headerFileOffset(0);
            long h2 = VhdxHeaderDescriptor.headerFileOffset(1);
            boolean firstSame = java.util.Arrays.equals(before, (int) h1, (int) h1 + 4096, now, (int) h1, (int) h1 + 4096);
            boolean secondSame = java.util.Arrays.equals(before, (int) h2, (int) h2 + 4096, now, (int) h2, (int) h2 + 4096);
            assertFalse(firstSame || secondSame, "both copies carry the session (the second without its own fdatasync)");
            Files.write(crashed, now);
            // a crash that lost the unsynced second copy: the pre-session bytes there, the synced copy current
            byte[] lost = now.clone();
            long newer = Le.i64(now, (int) h1 + 8) > Le.i64(now, (int) h2 + 8) ? h1 : h2;
            long older = newer == h1 ? h2 : h1;
            System.arraycopy(before, (int) newer, lost, (int) newer, 4096);
            Files.write(dir.resolve("lost-second.vhdx"), lost);
            try (VhdxDisk l = VhdxDisk.open(dir.resolve("lost-second.vhdx"), true)) {
                assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, l.logState(), "the synced copy (" + older + ") holds the log");
                assertArrayEquals(pattern(8, 4096), read(l, 5L << 20, 4096));
            }
        }
        try (VhdxDisk d = VhdxDisk.open(crashed, true)) {
            assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, d.logState());
            assertArrayEquals(pattern(7, 4096), read(d, 0, 4096));
            assertArrayEquals(pattern(8, 4096), read(d, 5L << 20, 4096));
        }
        if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
            Path q = dir.resolve("crashed-qemu.vhdx");
            Files.copy(crashed, q);
            Qemu.ok("qemu-img", "check", "-r", "all", "-f", "vhdx", q.toString());
            Qemu.ok("qemu-img", "check", "-f", "vhdx", q.toString());
            try (VhdxDisk d = VhdxDisk.open(q, true)) {
                assertArrayEquals(pattern(8, 4096), read(d, 5L << 20, 4096));
            }
        }
        try (VhdxDisk d = VhdxDisk.open(crashed, false)) {
            assertEquals(VhdxDisk.LogState.REPLAYED, d.logState());
        }
        assertTrue(VhdxCheck.check(crashed).clean());
        assertTrue(VhdxCheck.check(f).clean());
    }

    /**
     * A parentless image's first flush shares one fdatasync between data, file extension, session header
     * and log entry, so a crash during it may leave any subset of them. Each subset must open (read-only
     * and read-write), pass our check, keep the data flushed in an earlier open, and show each new block
     * either with its data or as zeros (what it read before): never another block's data or garbage.
     */
    @Test
    void shouldSurviveEveryPartOfAFirstFlushThatSharesOneFdatasync() throws Exception {
        Path f = dir.resolve("shared-sync.vhdx");
        VhdxDisk.create(f, VhdxCreateOptions.dynamic(64L << 20).withBlockSize(1 << 20)).close();
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            d.write(0, MemorySegment.ofArray(pattern(1, 4096)));
        }
        byte[] base = Files.readAllBytes(f);
        byte[] now;
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            d.write(5L << 20, MemorySegment.ofArray(pattern(5, 4096)));
            d.write(9L << 20, MemorySegment.ofArray(pattern(9, 4096)));
            long syncs = d.fileSyncs();
            d.flush();
            assertEquals(1, d.fileSyncs() - syncs, "no parent: one fdatasync for the whole first flush");
            now = Files.readAllBytes(f); // the live log: as a crash right after the flush leaves it
        }
        long logOff = VhdxImageWriter.LOG_OFFSET;
        long logEnd = logOff + (1 << 20);
        long h1 = VhdxHeaderDescriptor.headerFileOffset(0);
        long h2 = VhdxHeaderDescriptor.headerFileOffset(1);
        // What the flush wrote inside the old file: both headers, the log entry, the BAT page in place.
        java.util.function.LongPredicate header = o -> (o >= h1 && o < h1 + 4096) || (o >= h2 && o < h2 + 4096);
        java.util.function.LongPredicate log = o -> o >= logOff && o < logEnd;
        java.util.function.LongPredicate bat = o -> o < base.length && !header.test(o) && !log.test(o);
        // Nothing in place is durable without the sync: every variant below has the BAT page as it was.
        record Variant(String name, boolean headerLanded, boolean logLanded, boolean dataLanded, boolean newData) {}
        Variant[] variants = {
            new Variant("everything landed", true, true, true, true),
            new Variant("header and entry landed, data and extension lost", true, true, false, false),
            new Variant("entry and data landed, header lost", false, true, true, false),
            new Variant("header and data landed, entry lost", true, false, true, false),
            new Variant("nothing landed", false, false, false, false),
        };
        for (Variant v : variants) {
            byte[] img = java.util.Arrays.copyOf(now, v.dataLanded ? now.length : base.length); // lost: the appended blocks and extension
            for (int o = 0; o < base.length; o++) {
                boolean keep = (header.test(o) && v.headerLanded) || (log.test(o) && v.logLanded);
                if (!keep && (header.test(o) || log.test(o) || bat.test(o))) {
                    img[o] = base[o];
                }
            }
            Path c = dir.resolve("variant.vhdx");
            Files.write(c, img);
            for (boolean readOnly : new boolean[] {true, false}) {
                try (VhdxDisk d = VhdxDisk.open(c, readOnly)) {
                    assertArrayEquals(pattern(1, 4096), read(d, 0, 4096), v.name + ": data of an earlier open");
                    for (int b : new int[] {5, 9}) {
                        byte[] got = read(d, (long) b << 20, 4096);
                        byte[] want = v.newData ? pattern(b, 4096) : new byte[4096];
                        assertArrayEquals(want, got, v.name + ": block " + b + " (readOnly=" + readOnly + ")");
                    }
                }
            }
            VhdxCheck.Report report = VhdxCheck.check(c);
            assertTrue(report.clean(), v.name + ": " + report);
            if (Files.isExecutable(Path.of("/usr/bin/qemu-img"))) {
                Qemu.ok("qemu-img", "check", "-f", "vhdx", c.toString());
            }
            Files.delete(c);
        }
    }

    @Test
    void shouldKeepTheDataFdatasyncBeforeTheFirstEntryOfADifferencingImage() throws Exception {
        Path base = dir.resolve("parent.vhdx");
        Path child = dir.resolve("child.vhdx");
        VhdxDisk.create(base, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20)).close();
        VhdxDisk.create(child, VhdxCreateOptions.differencing(base)).close();
        try (VhdxDisk d = VhdxDisk.open(child, false)) {
            d.write(3L << 20, MemorySegment.ofArray(pattern(3, 4096)));
            long syncs = d.fileSyncs();
            d.flush();
            // a lost data block would hide the parent's sectors: data and header first, then the entry
            assertEquals(2, d.fileSyncs() - syncs);
        }
    }

    @Test
    void shouldLogBlocksAllocatedBeforeAnyFlushWhenClosed() throws Exception {
        Path f = dir.resolve("close.vhdx");
        VhdxDisk.create(f, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20)).close();
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            d.write(3L << 20, MemorySegment.ofArray(pattern(7, 4096)));
        }
        try (VhdxDisk d = VhdxDisk.open(f, false)) {
            assertArrayEquals(pattern(7, 4096), read(d, 3L << 20, 4096));
            assertEquals(VhdxDisk.LogState.CLEAN, d.logState());
            d.unmap(3L << 20, 1 << 20); // a metadata-only change before any session: close must log it too
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            assertArrayEquals(new byte[4096], read(d, 3L << 20, 4096));
        }
        VhdxCheck.Report report = VhdxCheck.check(f);
        assertTrue(report.clean(), report::toString);
    }

    @Test
    void shouldReadUnmappedBlocksAsZeros() throws Exception {
        Path f = dir.resolve("u.vhdx");
        try (VhdxDisk d = VhdxDisk.create(f, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(pattern(4, 3 << 20)));
            d.unmap(512, (2 << 20) - 512);
            assertEquals(VhdxDisk.BlockState.UNMAPPED, d.blockState(1));
            assertArrayEquals(new byte[(2 << 20) - 512], read(d, 512, (2 << 20) - 512));
            assertArrayEquals(java.util.Arrays.copyOfRange(pattern(4, 3 << 20), 0, 512), read(d, 0, 512));
            d.writeZeroes(2 << 20, 1 << 20);
            assertEquals(VhdxDisk.BlockState.ZERO, d.blockState(2));
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            assertEquals(VhdxDisk.BlockState.UNMAPPED, d.blockState(1));
            assertArrayEquals(new byte[3 << 20], zeroFirst(read(d, 0, 3 << 20)));
        }
    }

    private static byte[] zeroFirst(byte[] b) {
        java.util.Arrays.fill(b, 0, 512, (byte) 0);
        return b;
    }

    @Test
    void shouldCreateFixedImageWithEveryBlockPresent() throws Exception {
        Path f = dir.resolve("fixed.vhdx");
        try (VhdxDisk d = VhdxDisk.create(f, VhdxCreateOptions.fixed(10L << 20).withBlockSize(1 << 20).withLogicalSectorSize(4096))) {
            assertEquals(DiskType.FIXED, d.type());
            for (long b = 0; b < d.blockCount(); b++) {
                assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, d.blockState(b));
            }
            d.write(8192, MemorySegment.ofArray(pattern(5, 8192)));
            assertThrows(IllegalArgumentException.class, () -> d.write(512, MemorySegment.ofArray(new byte[4096])));
        }
        try (VhdxDisk d = VhdxDisk.open(f, true)) {
            assertArrayEquals(pattern(5, 8192), read(d, 8192, 8192));
            assertEquals(4096, d.logicalSectorSize());
        }
    }

    @Test
    void shouldReadDifferencingChainThroughPartiallyPresentBlocks() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path mid = dir.resolve("sub/mid.avhdx");
        Path top = dir.resolve("top.avhdx");
        Files.createDirectories(mid.getParent());
        byte[] b = pattern(6, 4 << 20);
        try (VhdxDisk d = VhdxDisk.create(base, VhdxCreateOptions.dynamic(4L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(b));
        }
        try (VhdxDisk d = VhdxDisk.create(mid, VhdxCreateOptions.differencing(base))) {
            assertEquals(DiskType.DIFFERENCING, d.type());
            d.write(4096, MemorySegment.ofArray(pattern(7, 1024)));
            System.arraycopy(pattern(7, 1024), 0, b, 4096, 1024);
            assertEquals(VhdxDisk.BlockState.PARTIALLY_PRESENT, d.blockState(0));
        }
        try (VhdxDisk d = VhdxDisk.create(top, VhdxCreateOptions.differencing(mid))) {
            d.write(1 << 20, MemorySegment.ofArray(pattern(8, 1 << 20)));
            System.arraycopy(pattern(8, 1 << 20), 0, b, 1 << 20, 1 << 20);
            d.write((2 << 20) + 512, MemorySegment.ofArray(pattern(9, 512)));
            System.arraycopy(pattern(9, 512), 0, b, (2 << 20) + 512, 512);
            assertArrayEquals(b, read(d, 0, b.length));
        }
        try (VhdxDisk d = VhdxDisk.open(top, true)) {
            assertArrayEquals(b, read(d, 0, b.length));
            assertEquals(2, d.parentChain().size());
            assertEquals(mid.toAbsolutePath().normalize(), d.parentChain().get(0).path());
        }
        // Writing to the base changes its DataWriteGuid: the child's linkage no longer matches.
        try (VhdxDisk d = VhdxDisk.open(base, false)) {
            d.write(0, MemorySegment.ofArray(new byte[512]));
        }
        VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(top, true));
        assertEquals(VhdxFormatException.Reason.PARENT_LINKAGE_MISMATCH, e.reason());
    }
}
