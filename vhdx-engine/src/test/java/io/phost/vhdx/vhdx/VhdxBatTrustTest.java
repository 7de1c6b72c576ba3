package io.phost.vhdx.vhdx;

import static io.phost.vhdx.vhdx.VhdxHostileAndLogTest.BAT;
import static io.phost.vhdx.vhdx.VhdxHostileAndLogTest.edit;
import static io.phost.vhdx.vhdx.VhdxHostileAndLogTest.readAt;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 16, defects 3, 4 and 11: a BAT entry must not lie about where a block is. Images are ours
 * (16 MiB dynamic, 1 MiB blocks: BAT at 3 MiB, payload entry i at BAT + 8i) with one entry edited.
 */
class VhdxBatTrustTest {
    @TempDir
    Path dir;

    private Path twoBlocks() throws Exception {
        Path p = dir.resolve("img.vhdx");
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(VhdxDiskTest.pattern(1, 1 << 20)));
            d.write(1 << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(2, 1 << 20)));
        }
        return p;
    }

    private static long entry(Path p, int i) throws Exception {
        return io.phost.vhdx.vhdx.Le.i64(readAt(p, BAT + 8L * i, 8), 0);
    }

    private static void setEntry(Path p, int i, long e) throws Exception {
        byte[] b = new byte[8];
        Le.put64(b, 0, e);
        edit(p, BAT + 8L * i, b);
    }

    @Test
    void shouldRefuseABatOffsetThatOverflowsPastTwoToTheSixtyThree() throws Exception {
        Path p = twoBlocks();
        setEntry(p, 1, (1L << 43) << BatDescriptor.FILE_OFFSET_SHIFT | BatDescriptor.PAYLOAD_FULLY_PRESENT);
        for (boolean readOnly : new boolean[] {true, false}) {
            VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, readOnly));
            assertEquals(Reason.BAD_BAT_ENTRY, e.reason());
            assertEquals(BAT + 8, e.fileOffset());
            assertTrue(e.getMessage().contains("FileOffsetMB 8796093022208 overflows"), e.getMessage());
        }
        VhdxCheck.Report r = VhdxCheck.check(p);
        assertTrue(r.hasErrors(), r.toString());
    }

    @Test
    void shouldNameOffsetZeroAsTheHeaderSectionNotTheEndOfFile() throws Exception {
        Path p = twoBlocks();
        setEntry(p, 1, BatDescriptor.PAYLOAD_FULLY_PRESENT);
        VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
        assertEquals(Reason.BAD_BAT_ENTRY, e.reason());
        assertTrue(e.getMessage().contains("FileOffsetMB 0 (the header section)"), e.getMessage());
    }

    @Test
    void shouldRefuseReadWriteOpensOfOverlappingBlocksAndLetReadersCopyTheDataOut() throws Exception {
        Path p = twoBlocks();
        long first = entry(p, 0);
        setEntry(p, 1, first); // block 1 now shares block 0's file space: a write to one would change the other
        VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, false));
        assertEquals(Reason.OVERLAP, e.reason());
        assertEquals(BAT + 8, e.fileOffset());
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertArrayEquals(VhdxDiskTest.pattern(1, 1 << 20), VhdxDiskTest.read(d, 1 << 20, 1 << 20));
        }
        VhdxCheck.Report r = VhdxCheck.check(p);
        assertTrue(r.findings().stream().anyMatch(f -> f.code().equals("BLOCKS_OVERLAP")), r.toString());
    }
}
