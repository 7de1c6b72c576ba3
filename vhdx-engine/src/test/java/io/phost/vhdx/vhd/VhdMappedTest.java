package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** {@link io.phost.vhdx.MappedDisk} on VHD: fixed, dynamic and differencing disks. */
class VhdMappedTest {
    private static final int MIB = 1 << 20;

    @TempDir
    Path dir;

    @Test
    void shouldMapAllocatedBlocksOfADynamicDiskToTheirDataArea() throws Exception {
        Path p = dir.resolve("d.vhd");
        try (VhdDisk d = VhdDisk.create(p, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8L * MIB));
             Arena a = Arena.ofConfined()) {
            assertEquals(-1, d.mapRead(0, 4096), "unallocated");
            assertEquals(-1, d.mapWrite(0, 4096), "a write must allocate");
            MemorySegment w = a.allocate(64 << 10, 4096);
            Tools.pattern(w, 2L * MIB, 3);
            d.write(2L * MIB, w); // block 1 (2 MiB blocks)
            long data = d.blockFileOffset(1) + 512; // a 512-byte bitmap sector precedes the data
            assertEquals(0, data % 4096, "data areas of images we write are 4 KiB aligned");
            assertEquals(data + 4096, d.mapRead(2L * MIB + 4096, 4096));
            assertEquals(data, d.mapWrite(2L * MIB, 2L * MIB), "a whole block maps");
            assertEquals(-1, d.mapRead(4L * MIB - 4096, 8192), "crosses a block boundary");
            assertEquals(-1, d.mapRead(2L * MIB + 256, 512), "unaligned");
            assertEquals(-1, d.mapRead(8L * MIB, 512), "past the end");
            MemorySegment back = a.allocate(64 << 10, 4096);
            try (PosixFile f = PosixFile.open(p, true)) {
                f.read(d.mapRead(2L * MIB, back.byteSize()), back, 0, back.byteSize());
            }
            assertEquals(-1, back.mismatch(w), "the mapped offset holds the disk's bytes");
            int fd = d.mappedFd();
            assertTrue(fd >= 0);
            long syncs = d.file().syncCount();
            d.flush();
            assertTrue(d.file().syncCount() > syncs, "flush fdatasyncs the image");
            d.unmap(2L * MIB, 2L * MIB);
            assertEquals(-1, d.mapRead(2L * MIB, 4096), "released block");
        }
        try (VhdDisk d = VhdDisk.open(p, true)) {
            assertEquals(-1, d.mapWrite(0, 512), "read-only");
        }
    }

    @Test
    void shouldMapAFixedDiskOntoItself() throws Exception {
        try (VhdDisk d = VhdDisk.create(dir.resolve("f.vhd"), CreateOptions.of(DiskFormat.VHD, DiskType.FIXED, 4L * MIB))) {
            assertEquals(MIB, d.mapRead(MIB, 8192));
            assertEquals(0, d.mapWrite(0, 4L * MIB));
            assertEquals(-1, d.mapWrite(4L * MIB - 512, 1024), "the footer is not the disk's");
            d.close();
            assertEquals(-1, d.mapRead(0, 512), "closed");
        }
    }

    @Test
    void shouldMapADifferencingDiskOnlyWhereEverySectorIsPresent() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        try (VhdDisk b = VhdDisk.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 4L * MIB))) {
            b.write(0, MemorySegment.ofArray(new byte[MIB]));
        }
        try (VhdDisk c = VhdDisk.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            assertEquals(-1, c.mapRead(0, 4096), "the parent's bytes");
            c.write(8192, MemorySegment.ofArray(new byte[8192]));
            long data = c.blockFileOffset(0) + 512;
            assertEquals(data + 8192, c.mapRead(8192, 8192));
            assertEquals(data + 12288, c.mapWrite(12288, 4096));
            assertEquals(-1, c.mapRead(4096, 8192), "first sector still from the parent");
            assertEquals(-1, c.mapWrite(16384, 512), "bitmap bit not set yet");
        }
    }
}
