package io.phost.vhdx.vhdx;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.vhdx.Crc32c;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.UUID;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class VhdxHostileAndLogTest {
    @TempDir
    Path dir;

    /** Layout of images we create (see VhdxImageWriter). */
    static final long LOG = 1 << 20;
    static final long META = 2 << 20;
    static final long BAT = 3 << 20;

    private Path image(String name) throws Exception {
        Path p = dir.resolve(name);
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(VhdxDiskTest.pattern(1, 8192)));
        }
        return p;
    }

    /** A copy taken after a flush whose log entry is durable, with the in-place BAT update undone. */
    private Path crashedBeforeApply() throws Exception {
        Path live = dir.resolve("live.vhdx");
        Path crashed = dir.resolve("crashed.vhdx");
        try (VhdxDisk d = VhdxDisk.create(live, VhdxCreateOptions.dynamic(16L << 20).withBlockSize(1 << 20))) {
            d.write(3L << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(9, 1 << 20)));
            d.flush();
            Files.copy(live, crashed);
        }
        try (RandomAccessFile f = new RandomAccessFile(crashed.toFile(), "rw")) {
            f.seek(BAT);
            f.write(new byte[4096]); // as if the crash hit before the BAT sector was applied
        }
        return crashed;
    }

    static void edit(Path p, long off, byte[] bytes) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.seek(off);
            f.write(bytes);
        }
    }

    static byte[] readAt(Path p, long off, int n) throws Exception {
        byte[] b = new byte[n];
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "r")) {
            f.seek(off);
            f.readFully(b);
        }
        return b;
    }

    static void fixRegionTables(Path p) throws Exception {
        for (long t : new long[] {RegionTableDescriptor.TABLE_1_FILE_OFFSET, RegionTableDescriptor.TABLE_2_FILE_OFFSET}) {
            byte[] b = readAt(p, t, 65536);
            Le.put32(b, 4, Crc32c.compute(b, 0, 65536, 4));
            edit(p, t, b);
        }
    }

    @Test
    void shouldReplayLogInMemoryWhenOpenedReadOnly() throws Exception {
        Path p = crashedBeforeApply();
        byte[] before = Files.readAllBytes(p);
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, d.logState());
            assertEquals(VhdxDisk.BlockState.FULLY_PRESENT, d.blockState(3));
            assertArrayEquals(VhdxDiskTest.pattern(9, 1 << 20), VhdxDiskTest.read(d, 3L << 20, 1 << 20));
        }
        assertArrayEquals(before, Files.readAllBytes(p), "read-only open wrote to the file");
        VhdxCheck.Report r = VhdxCheck.check(p);
        assertTrue(r.findings().stream().anyMatch(f -> f.code().equals("DIRTY_LOG") && f.fileOffset() == LOG), r.toString());
    }

    @Test
    void shouldReplayLogInPlaceWhenOpenedReadWrite() throws Exception {
        Path p = crashedBeforeApply();
        try (VhdxDisk d = VhdxDisk.open(p, false)) {
            assertEquals(VhdxDisk.LogState.REPLAYED, d.logState());
            assertArrayEquals(VhdxDiskTest.pattern(9, 1 << 20), VhdxDiskTest.read(d, 3L << 20, 1 << 20));
        }
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertEquals(VhdxDisk.LogState.CLEAN, d.logState());
            assertArrayEquals(VhdxDiskTest.pattern(9, 1 << 20), VhdxDiskTest.read(d, 3L << 20, 1 << 20));
        }
        assertTrue(VhdxCheck.check(p).clean());
    }

    @Test
    void shouldRepairDirtyLogAndDamagedHeaderCopy() throws Exception {
        Path p = crashedBeforeApply();
        edit(p, VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET + 100, new byte[] {1, 2, 3});
        VhdxCheck.Report r = VhdxCheck.check(p);
        assertFalse(r.clean());
        assertFalse(r.hasErrors(), r.toString());
        VhdxCheck.Report after = VhdxCheck.repair(p);
        assertTrue(after.clean(), after.toString());
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertArrayEquals(VhdxDiskTest.pattern(9, 1 << 20), VhdxDiskTest.read(d, 3L << 20, 1 << 20));
        }
    }

    @Test
    void shouldRefuseLogWhoseFlushedFileOffsetIsBeyondTheFile() throws Exception {
        Path p = crashedBeforeApply();
        byte[] entry = readAt(p, LOG, 4096);
        assertEquals(LogDescriptor.ENTRY_SIGNATURE, Le.i32(entry, 0));
        int len = Le.i32(entry, 8);
        byte[] whole = readAt(p, LOG, len);
        Le.put64(whole, LogDescriptor.FLUSHED_FILE_OFFSET_OFFSET, 1L << 40);
        Le.put32(whole, 4, Crc32c.compute(whole, 0, len, 4));
        edit(p, LOG, whole);
        VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
        assertEquals(Reason.LOG_NOT_REPLAYABLE, e.reason());
        assertEquals(LOG, e.fileOffset());
    }

    @Test
    void shouldRefuseUnknownRequiredRegionAndIgnoreUnknownOptionalOne() throws Exception {
        Path p = image("region.vhdx");
        for (int required = 0; required < 2; required++) {
            for (long t : new long[] {RegionTableDescriptor.TABLE_1_FILE_OFFSET, RegionTableDescriptor.TABLE_2_FILE_OFFSET}) {
                byte[] b = readAt(p, t, 65536);
                Le.put32(b, 8, 3);
                int e = 16 + 2 * 32;
                Le.putGuid(b, e, UUID.fromString("11111111-2222-3333-4444-555555555555"));
                Le.put64(b, e + 16, 40L << 20);
                Le.put32(b, e + 24, 1 << 20);
                Le.put32(b, e + 28, required);
                edit(p, t, b);
            }
            fixRegionTables(p);
            if (required == 0) {
                // An optional region outside the file is still out of bounds; extend the file to hold it.
                try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
                    f.setLength(41L << 20);
                }
                VhdxDisk.open(p, true).close();
            } else {
                VhdxFormatException ex = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
                assertEquals(Reason.UNKNOWN_REQUIRED_REGION, ex.reason());
                assertEquals(RegionTableDescriptor.TABLE_1_FILE_OFFSET + 16 + 64, ex.fileOffset());
            }
        }
    }

    @Test
    void shouldRefuseVirtualSizeAbove64TiB() throws Exception {
        Path p = image("huge.vhdx");
        byte[] table = readAt(p, META, 256);
        long sizeItem = -1;
        for (int i = 0; i < Le.u16(table, 10); i++) {
            int e = 32 + 32 * i;
            if (Le.guid(table, e).equals(MetadataDescriptor.VIRTUAL_DISK_SIZE)) {
                sizeItem = META + Le.u32(table, e + 16);
            }
        }
        byte[] v = new byte[8];
        Le.put64(v, 0, (64L << 40) + 512);
        edit(p, sizeItem, v);
        VhdxFormatException e = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
        assertEquals(Reason.BAD_VIRTUAL_SIZE, e.reason());
        assertEquals(sizeItem, e.fileOffset());
    }

    @Test
    void shouldRefuseBatEntryPointingIntoMetadata() throws Exception {
        Path p = image("bat.vhdx");
        byte[] e = new byte[8];
        Le.put64(e, 0, BatDescriptor.entry(BatDescriptor.PAYLOAD_FULLY_PRESENT, META));
        edit(p, BAT + 8, e);
        VhdxFormatException ex = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
        assertEquals(Reason.BAD_BAT_ENTRY, ex.reason());
        assertEquals(BAT + 8, ex.fileOffset());
    }

    @Test
    void shouldRefuseFileWithoutIdentifier() throws Exception {
        Path p = image("id.vhdx");
        edit(p, 0, new byte[8]);
        VhdxFormatException ex = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
        assertEquals(Reason.BAD_SIGNATURE, ex.reason());
        assertEquals(0, ex.fileOffset());
    }

    @Test
    void shouldUseTheValidHeaderWhenTheNewerCopyIsCorrupt() throws Exception {
        Path p = image("hdr.vhdx");
        long seq1 = Le.i64(readAt(p, VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET, 16), 8);
        long seq2 = Le.i64(readAt(p, VhdxHeaderDescriptor.HEADER_2_FILE_OFFSET, 16), 8);
        long newer = seq1 > seq2 ? VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET : VhdxHeaderDescriptor.HEADER_2_FILE_OFFSET;
        edit(p, newer + 40, new byte[] {7});
        try (VhdxDisk d = VhdxDisk.open(p, true)) {
            assertArrayEquals(VhdxDiskTest.pattern(1, 8192), VhdxDiskTest.read(d, 0, 8192));
        }
        VhdxCheck.Report r = VhdxCheck.check(p);
        assertTrue(r.findings().stream().anyMatch(f -> f.code().equals("HEADER_COPY_BAD") && f.fileOffset() == newer), r.toString());
        edit(p, (newer == VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET ? VhdxHeaderDescriptor.HEADER_2_FILE_OFFSET
            : VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET) + 40, new byte[] {7});
        VhdxFormatException ex = assertThrows(VhdxFormatException.class, () -> VhdxDisk.open(p, true));
        assertEquals(Reason.NO_VALID_HEADER, ex.reason());
    }
}
