package io.phost.vhdx.vhdx;

import io.phost.core.sys.PosixFile;

import static org.junit.jupiter.api.Assertions.*;

import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link io.phost.vhdx.MappedDisk} on VHDX: which ranges map onto the image file, that bytes moved through
 * the mapped offset are the disk's bytes, and that the cases that need the slow path say -1.
 */
class VhdxMappedTest {
    private static final int MIB = 1 << 20;

    @TempDir
    Path dir;

    @Test
    void shouldMapOnlyRangesInsideOneFullyPresentBlockOnceTheWriteSessionStarted() throws Exception {
        try (VhdxDisk d = VhdxDisk.create(dir.resolve("a.vhdx"), VhdxCreateOptions.dynamic(16L * MIB).withBlockSize(MIB))) {
            assertEquals(-1, d.mapRead(0, 4096), "unallocated block reads zeros: slow path");
            assertEquals(-1, d.mapWrite(0, 4096), "unallocated: a write must allocate");
            d.write(2L * MIB, MemorySegment.ofArray(VhdxDiskTest.pattern(1, 4096)));
            long base = d.blockFileOffset(2);
            assertTrue(base > 0);
            assertEquals(base + 8192, d.mapRead(2L * MIB + 8192, 4096));
            assertEquals(base + 8192, d.mapWrite(2L * MIB + 8192, 4096));
            assertEquals(base, d.mapWrite(2L * MIB, MIB), "a whole block maps");
            assertEquals(-1, d.mapRead(3L * MIB - 4096, 8192), "crosses into an unallocated block");
            d.write(3L * MIB, MemorySegment.ofArray(VhdxDiskTest.pattern(2, 4096)));
            assertEquals(-1, d.mapRead(3L * MIB - 4096, 8192), "crosses a block boundary even when both are allocated");
            assertEquals(-1, d.mapRead(2L * MIB + 100, 512), "unaligned offset");
            assertEquals(-1, d.mapRead(2L * MIB, 100), "unaligned length");
            assertEquals(-1, d.mapRead(2L * MIB, 0), "empty");
            assertEquals(-1, d.mapRead(-512, 512), "negative");
            assertEquals(-1, d.mapRead(16L * MIB, 512), "past the end");
            assertEquals(-1, d.mapRead(Long.MAX_VALUE - 511, 512), "overflowing");
            d.unmap(2L * MIB, MIB);
            assertEquals(-1, d.mapRead(2L * MIB, 4096), "unmapped block");
            d.writeZeroes(3L * MIB, MIB);
            assertEquals(-1, d.mapWrite(3L * MIB, 4096), "zero block: a write must allocate");
        }
    }

    @Test
    void shouldMoveTheDisksBytesThroughTheMappedFdAndSyncThemOnFlush() throws Exception {
        Path p = dir.resolve("b.vhdx");
        byte[] first = VhdxDiskTest.pattern(3, MIB);
        byte[] second = VhdxDiskTest.pattern(4, 64 << 10);
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(8L * MIB).withBlockSize(MIB));
             Arena a = Arena.ofConfined()) {
            d.write(MIB, MemorySegment.ofArray(first));
            d.flush();
            int fd = d.mappedFd();
            assertTrue(fd >= 0);
            assertEquals(fd, d.mappedFd(), "opened once");
            assertTrue(d.mappedAlignment() == 512 || d.mappedAlignment() == 1, "O_DIRECT (512) or buffered (1)");
            // Another handle on the mapped offsets (the engine uses the fd through io_uring).
            try (PosixFile f = PosixFile.open(p, false)) {
                MemorySegment buf = a.allocate(second.length, 4096);
                MemorySegment.copy(MemorySegment.ofArray(second), 0, buf, 0, second.length);
                f.write(d.mapWrite(MIB + 128 * 1024, second.length), buf, 0, second.length);
                MemorySegment back = a.allocate(4096, 4096);
                f.read(d.mapRead(MIB, 4096), back, 0, 4096);
                assertArrayEquals(java.util.Arrays.copyOf(first, 4096), back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            assertArrayEquals(second, VhdxDiskTest.read(d, MIB + 128 * 1024, second.length), "the disk sees the mapped write");
            long syncs = d.fileSyncs();
            d.flush(); // no BAT or bitmap change since the last flush
            assertTrue(d.fileSyncs() > syncs, "flush fdatasyncs the image even without metadata to commit");
        }
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            byte[] expected = first.clone();
            System.arraycopy(second, 0, expected, 128 * 1024, second.length);
            assertArrayEquals(expected, VhdxDiskTest.read(d, MIB, MIB));
            assertEquals(-1, d.mapWrite(MIB, 4096), "read-only");
            assertTrue(d.mapRead(MIB, 4096) > 0);
            d.close();
            assertEquals(-1, d.mapRead(MIB, 4096), "closed");
            assertEquals(-1, d.mappedFd(), "closed");
        }
    }

    @Test
    void shouldMapADifferencingImageOnlyWhereEverySectorIsInTheChild() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path child = dir.resolve("child.vhdx");
        try (VhdxDisk b = VhdxDisk.create(base, VhdxCreateOptions.dynamic(8L * MIB).withBlockSize(MIB))) {
            b.write(0, MemorySegment.ofArray(VhdxDiskTest.pattern(5, 2 * MIB)));
        }
        try (VhdxDisk c = VhdxDisk.create(child, VhdxCreateOptions.differencing(base))) {
            assertEquals(-1, c.mapRead(0, 4096), "not present: the parent's bytes");
            c.write(8192, MemorySegment.ofArray(VhdxDiskTest.pattern(6, 8192)));
            assertEquals(VhdxDisk.BlockState.PARTIALLY_PRESENT, c.blockState(0));
            long base0 = c.blockFileOffset(0);
            assertEquals(base0 + 8192, c.mapRead(8192, 8192), "every sector present in the child");
            assertEquals(base0 + 12288, c.mapWrite(12288, 4096));
            assertEquals(-1, c.mapRead(4096, 8192), "first sector comes from the parent");
            assertEquals(-1, c.mapWrite(16384, 4096), "a write there must set bitmap bits");
            c.write(MIB, MemorySegment.ofArray(VhdxDiskTest.pattern(7, MIB)));
            assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, c.blockState(1));
            assertEquals(c.blockFileOffset(1) + 4096, c.mapRead(MIB + 4096, 4096));
        }
    }

    @Test
    void shouldNotMapReadsWhileALogReplayedInMemoryPatchesTheFile() throws Exception {
        Path live = dir.resolve("live.vhdx");
        Path crashed = dir.resolve("crashed.vhdx");
        try (VhdxDisk d = VhdxDisk.create(live, VhdxCreateOptions.dynamic(16L * MIB).withBlockSize(MIB))) {
            d.write(3L * MIB, MemorySegment.ofArray(VhdxDiskTest.pattern(9, MIB)));
            d.flush();
            Files.copy(live, crashed);
        }
        try (RandomAccessFile f = new RandomAccessFile(crashed.toFile(), "rw")) {
            f.seek(VhdxHostileAndLogTest.BAT);
            f.write(new byte[4096]); // the crash hit before the BAT sector was applied in place
        }
        try (VhdxDisk d = VhdxDisk.open(crashed, true)) {
            assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, d.logState());
            assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, d.blockState(3));
            assertEquals(-1, d.mapRead(3L * MIB, 4096), "file reads need the overlay");
            assertArrayEquals(VhdxDiskTest.pattern(9, MIB), VhdxDiskTest.read(d, 3L * MIB, MIB));
        }
    }
}
