package io.phost.vhdx;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

class RawDiskTest {
    @TempDir
    Path dir;

    @Test
    void shouldReadBackWritesFromNativeAndHeapSegments() throws Exception {
        Path p = dir.resolve("a.raw");
        try (RawDisk d = RawDisk.create(p, 8 << 20, false); Arena a = Arena.ofConfined()) {
            MemorySegment w = a.allocate(64 << 10, 4096);
            Tools.pattern(w, 4096, 1);
            d.write(4096, w);
            byte[] heap = new byte[3 << 20];
            Tools.pattern(MemorySegment.ofArray(heap), 1 << 20, 2);
            d.write(1 << 20, MemorySegment.ofArray(heap));
            MemorySegment r = a.allocate(64 << 10, 4096);
            d.read(4096, r);
            assertEquals(-1, r.mismatch(w));
            byte[] back = new byte[3 << 20];
            d.read(1 << 20, MemorySegment.ofArray(back));
            assertArrayEquals(heap, back);
            assertEquals("raw", d.format());
            assertEquals(8 << 20, d.size());
        }
        assertEquals(DiskFormat.RAW, VirtualDisks.detect(p));
    }

    @Test
    void shouldStartSparseAndPunchHolesOnUnmap() throws Exception {
        Path p = dir.resolve("b.raw");
        try (RawDisk d = RawDisk.create(p, 16 << 20, false); Arena a = Arena.ofConfined()) {
            assertEquals(0, d.allocatedBytes());
            assertEquals(d.size(), d.nextAllocated(0));
            MemorySegment w = a.allocate(1 << 20, 4096);
            Tools.pattern(w, 0, 3);
            d.write(4 << 20, w);
            assertEquals(4 << 20, d.nextAllocated(0));
            assertEquals(1 << 20, d.allocatedBytes());
            d.unmap(4 << 20, 1 << 20);
            assertEquals(0, d.allocatedBytes());
            MemorySegment r = a.allocate(1 << 20, 4096);
            d.read(4 << 20, r);
            assertEquals(-1, r.mismatch(a.allocate(1 << 20)));
            d.write(0, w);
            d.writeZeroes(0, 1 << 20);
            d.read(0, r);
            assertEquals(-1, r.mismatch(a.allocate(1 << 20)));
        }
    }

    @Test
    void shouldPreallocateFixedRawImages() throws Exception {
        Path p = dir.resolve("c.raw");
        try (RawDisk d = RawDisk.create(p, 4 << 20, true)) {
            // Preallocated (unwritten) extents read as zeros; SEEK_DATA may report them as holes.
            assertTrue(d.allocatedBytes() == 0 || d.allocatedBytes() == 4 << 20);
        }
        assertEquals(4 << 20, Files.size(p));
        assertTrue((Long) Files.getAttribute(p, "unix:size") == 4 << 20);
    }

    @Test
    void shouldRejectMisalignedAndOutOfRangeRequests() throws Exception {
        try (RawDisk d = RawDisk.create(dir.resolve("d.raw"), 1 << 20, false)) {
            assertThrows(IllegalArgumentException.class, () -> d.read(100, MemorySegment.ofArray(new byte[512])));
            assertThrows(IllegalArgumentException.class, () -> d.read(0, MemorySegment.ofArray(new byte[100])));
            assertThrows(IllegalArgumentException.class, () -> d.read((1 << 20) - 512, MemorySegment.ofArray(new byte[1024])));
            assertThrows(IllegalArgumentException.class, () -> d.write(-512, MemorySegment.ofArray(new byte[512])));
        }
    }

    @Test
    void shouldRefuseToOverwriteAnExistingFile() throws Exception {
        Path p = dir.resolve("e.raw");
        Files.write(p, new byte[512]);
        assertThrows(java.nio.file.FileAlreadyExistsException.class, () -> RawDisk.create(p, 1 << 20, false));
    }

    @Test
    void shouldRefuseWritesWhenOpenedReadOnly() throws Exception {
        Path p = dir.resolve("f.raw");
        RawDisk.create(p, 1 << 20, false).close();
        try (VirtualDisk d = VirtualDisks.open(p, true)) {
            assertTrue(d.readOnly());
            assertThrows(IllegalStateException.class, () -> d.write(0, MemorySegment.ofArray(new byte[512])));
        }
    }
}
