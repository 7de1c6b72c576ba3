package io.phost.storage.scsi;

import io.phost.qos.QosFlow;
import io.phost.vhdx.RawDisk;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.storage.scsi.ScsiHarness.cdb;
import static io.phost.storage.scsi.ScsiHarness.rw10;
import static io.phost.storage.scsi.ScsiHarness.rw16;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class ScsiLunTest {
    private static final long SIZE = 4L << 20; // 8192 blocks of 512
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    MemoryDisk disk;
    ScsiTarget target;
    ScsiHarness h;

    @BeforeEach
    void setUp() {
        disk = MemoryDisk.ram(SIZE, 512, false);
        target = new ScsiTarget();
        target.add(0, new ScsiLun("disk0", disk));
        h = new ScsiHarness(target);
    }

    @AfterEach
    void tearDown() {
        h.close();
        disk.close();
    }

    private static void assertCheck(ScsiRequest r, int key, int ascq) {
        assertEquals(Scsi.STATUS_CHECK_CONDITION, r.status(), "status");
        assertEquals(18, r.senseLength());
        assertEquals(0x70, r.sense().get(ValueLayout.JAVA_BYTE, 0) & 0x7F, "fixed-format current sense");
        assertEquals(key, r.senseKey(), "sense key");
        assertEquals(ascq, r.ascq(), () -> "asc/ascq 0x" + Integer.toHexString(r.ascq()));
    }

    @Test
    void shouldAnswerTestUnitReadyWithGood() {
        assertEquals(Scsi.STATUS_GOOD, h.run(0, cdb(0, 0, 0, 0, 0, 0), ScsiRequest.DIR_NONE, null).status());
    }

    @Test
    void shouldReturnStandardInquiryWithVendorAndProduct() {
        MemorySegment b = h.buffer(96);
        ScsiRequest r = h.run(0, cdb(0x12, 0, 0, 0, 96, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertEquals(96, r.transferred());
        assertEquals(0, b.get(ValueLayout.JAVA_BYTE, 0));
        byte[] vendor = b.asSlice(8, 8).toArray(ValueLayout.JAVA_BYTE);
        assertEquals("PHOST   ", new String(vendor, StandardCharsets.US_ASCII));
    }

    @Test
    void shouldTruncateInquiryToAllocationLength() {
        MemorySegment b = h.buffer(96);
        ScsiRequest r = h.run(0, cdb(0x12, 0, 0, 0, 36, 0), ScsiRequest.DIR_IN, b);
        assertEquals(36, r.transferred());
    }

    @Test
    void shouldListSupportedVpdPagesAndServeEachOne() {
        MemorySegment b = h.buffer(255);
        ScsiRequest r = h.run(0, cdb(0x12, 1, 0x00, 0, 255, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        int n = b.get(ValueLayout.JAVA_BYTE, 3);
        assertEquals(6, n);
        for (int i = 0; i < n; i++) {
            int page = b.get(ValueLayout.JAVA_BYTE, 4 + i) & 0xFF;
            MemorySegment p = h.buffer(255);
            ScsiRequest pr = h.run(0, cdb(0x12, 1, page, 0, 255, 0), ScsiRequest.DIR_IN, p);
            assertEquals(Scsi.STATUS_GOOD, pr.status(), "page " + page);
            assertEquals(page, p.get(ValueLayout.JAVA_BYTE, 1) & 0xFF);
        }
        MemorySegment bl = h.buffer(64);
        h.run(0, cdb(0x12, 1, 0xB0, 0, 64, 0), ScsiRequest.DIR_IN, bl);
        assertEquals(ScsiLun.MAX_TRANSFER_BYTES / 512, bl.get(BE32, 8), "maximum transfer length in blocks");
        assertEquals(ScsiLun.MAX_UNMAP_DESCRIPTORS, bl.get(BE32, 24));
        MemorySegment id = h.buffer(255);
        h.run(0, cdb(0x12, 1, 0x83, 0, 255, 0), ScsiRequest.DIR_IN, id);
        assertEquals(0x6, (id.get(ValueLayout.JAVA_BYTE, 8) & 0xF0) >>> 4, "NAA 6 designator");
    }

    @Test
    void shouldRejectUnknownVpdPageAndPageCodeWithoutEvpd() {
        assertCheck(h.run(0, cdb(0x12, 1, 0x99, 0, 255, 0), ScsiRequest.DIR_IN, h.buffer(255)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        ScsiRequest r = h.run(0, cdb(0x12, 0, 0x80, 0, 255, 0), ScsiRequest.DIR_IN, h.buffer(255));
        assertCheck(r, Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        assertEquals(0xC0, r.sense().get(ValueLayout.JAVA_BYTE, 15) & 0xFF, "SKSV + C/D field pointer");
        assertEquals(2, r.sense().get(ValueLayout.JAVA_BYTE, 17), "points at byte 2");
    }

    @Test
    void shouldReportCapacityIn10And16ByteForms() {
        MemorySegment b = h.buffer(8);
        h.run(0, cdb(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), ScsiRequest.DIR_IN, b);
        assertEquals(SIZE / 512 - 1, b.get(BE32, 0));
        assertEquals(512, b.get(BE32, 4));
        MemorySegment c = h.buffer(32);
        ScsiRequest r = h.run(0, cdb(0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0), ScsiRequest.DIR_IN, c);
        assertEquals(32, r.transferred());
        assertEquals(SIZE / 512 - 1, c.get(BE64, 0));
        assertEquals(0x80, c.get(ValueLayout.JAVA_BYTE, 14) & 0x80, "LBPME: thin provisioning");
    }

    @Test
    void shouldWriteWith10ByteCdbAndReadBackWith16And12And6() {
        MemorySegment w = h.buffer(4096);
        for (int i = 0; i < 4096; i++) {
            w.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 7));
        }
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw10(0x2A, 100, 8), ScsiRequest.DIR_OUT, w).status());
        MemorySegment r16 = h.buffer(4096);
        ScsiRequest r = h.run(0, rw16(0x88, 100, 8), ScsiRequest.DIR_IN, r16);
        assertEquals(4096, r.transferred());
        assertEquals(-1, r16.mismatch(w));
        MemorySegment r12 = h.buffer(4096);
        h.run(0, cdb(0xA8, 0, 0, 0, 0, 100, 0, 0, 0, 8, 0, 0), ScsiRequest.DIR_IN, r12);
        assertEquals(-1, r12.mismatch(w));
        MemorySegment r6 = h.buffer(256 * 512);
        ScsiRequest six = h.run(0, cdb(0x08, 0, 0, 100 - 36 - 64 + 0, 0, 0), ScsiRequest.DIR_IN, r6);
        assertEquals(Scsi.STATUS_GOOD, six.status(), "READ(6) length 0 means 256 blocks");
        assertEquals(256 * 512, six.transferred());
    }

    @Test
    void shouldRejectLbaPastTheEndWithLbaOutOfRange() {
        assertCheck(h.run(0, rw10(0x28, SIZE / 512 - 1, 2), ScsiRequest.DIR_IN, h.buffer(1024)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw10(0x28, SIZE / 512 - 1, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
    }

    @Test
    void shouldRejectLbaPlusLengthThatOverflowsSixtyFourBits() {
        assertCheck(h.run(0, rw16(0x88, 0xFFFF_FFFF_FFFF_FFF0L, 0x20), ScsiRequest.DIR_IN, h.buffer(0x20 * 512)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
        assertCheck(h.run(0, rw16(0x8A, Long.MAX_VALUE, 1), ScsiRequest.DIR_OUT, h.buffer(512)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
    }

    @Test
    void shouldRejectTransferLengthThatDisagreesWithTheBuffer() {
        MemorySegment w = h.buffer(4096);
        w.fill((byte) 0x55);
        assertCheck(h.run(0, rw10(0x2A, 0, 16), ScsiRequest.DIR_OUT, w),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, 0), "nothing written");
    }

    @Test
    void shouldRejectDataDirectionThatDisagreesWithTheCommand() {
        assertCheck(h.run(0, rw10(0x2A, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
    }

    @Test
    void shouldRejectWritesToReadOnlyDiskWithDataProtect() {
        MemoryDisk ro = MemoryDisk.ram(1 << 20, 512, false);
        target.add(1, new ScsiLun("ro", ro, QosFlow.UNLIMITED, true, IoEngines.Kind.AUTO));
        assertCheck(h.run(1, rw10(0x2A, 0, 1), ScsiRequest.DIR_OUT, h.buffer(512)),
            Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
        MemorySegment ms = h.buffer(64);
        h.run(1, cdb(0x1A, 0, 0x3F, 0, 64, 0), ScsiRequest.DIR_IN, ms);
        assertEquals(0x80, ms.get(ValueLayout.JAVA_BYTE, 2) & 0x80, "MODE SENSE WP bit");
        assertEquals(Scsi.STATUS_GOOD, h.run(1, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
    }

    @Test
    void shouldAnswerBackendIoErrorWithMediumErrorAndKeepServing() {
        disk.failFrom(1 << 20);
        ScsiRequest r = h.run(0, rw10(0x28, (1 << 20) / 512, 1), ScsiRequest.DIR_IN, h.buffer(512));
        assertCheck(r, Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_UNRECOVERED_READ_ERROR);
        assertCheck(h.run(0, rw10(0x2A, (1 << 20) / 512, 1), ScsiRequest.DIR_OUT, h.buffer(512)),
            Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
        assertEquals(2, target.lun(0).stats().errors());
    }

    @Test
    void shouldRejectUnsupportedOpcodeWithInvalidCommandOperationCode() {
        assertCheck(h.run(0, cdb(0x1D, 0, 0, 0, 0, 0), ScsiRequest.DIR_NONE, null),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE);
        assertCheck(h.run(0, cdb(0xC0, 0, 0, 0, 0, 0), ScsiRequest.DIR_NONE, null),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE);
    }

    @Test
    void shouldUnmapDescribedRangesSoTheyReadAsZeros() {
        MemorySegment w = h.buffer(8192);
        w.fill((byte) 0xAB);
        h.run(0, rw10(0x2A, 0, 16), ScsiRequest.DIR_OUT, w);
        MemorySegment p = h.buffer(8 + 32);
        p.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0, (short) (6 + 32));
        p.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 2, (short) 32);
        p.set(BE64, 8, 0);
        p.set(BE32, 16, 2);
        p.set(BE64, 24, 8);
        p.set(BE32, 32, 4);
        ScsiRequest r = h.run(0, cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 40, 0), ScsiRequest.DIR_OUT, p);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, 0));
        assertEquals((byte) 0xAB, disk.contents().get(ValueLayout.JAVA_BYTE, 2 * 512));
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, 8 * 512 + 100));
        assertEquals((byte) 0xAB, disk.contents().get(ValueLayout.JAVA_BYTE, 12 * 512));
    }

    @Test
    void shouldRejectMalformedUnmapParameterLists() {
        MemorySegment p = h.buffer(24);
        p.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0, (short) 22);
        p.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 2, (short) 15);
        assertCheck(h.run(0, cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0), ScsiRequest.DIR_OUT, p),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST);
        assertCheck(h.run(0, cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0), ScsiRequest.DIR_OUT, p),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR);
        assertCheck(h.run(0, cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 200, 0), ScsiRequest.DIR_OUT, p),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR);
        MemorySegment q = h.buffer(24);
        q.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0, (short) 22);
        q.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 2, (short) 16);
        q.set(BE64, 8, SIZE / 512);
        q.set(BE32, 16, 1);
        assertCheck(h.run(0, cdb(0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0), ScsiRequest.DIR_OUT, q),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
    }

    @Test
    void shouldZeroOrUnmapWithWriteSame16WhenTheBlockIsZeros() {
        MemorySegment w = h.buffer(8192);
        w.fill((byte) 0x11);
        h.run(0, rw10(0x2A, 0, 16), ScsiRequest.DIR_OUT, w);
        MemorySegment zero = h.buffer(512);
        byte[] ws = rw16(0x93, 2, 4);
        ws[1] = 0x08; // UNMAP
        assertEquals(Scsi.STATUS_GOOD, h.run(0, ws, ScsiRequest.DIR_OUT, zero).status());
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, 2 * 512));
        assertEquals(0x11, disk.contents().get(ValueLayout.JAVA_BYTE, 6 * 512));
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x93, 10, 2), ScsiRequest.DIR_OUT, zero).status());
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, 11 * 512 + 511));
        assertEquals(0x11, disk.contents().get(ValueLayout.JAVA_BYTE, 12 * 512));
        assertEquals(2, target.lun(0).stats().unmaps(), "both went the unmap/zero way, not the pattern way");
        assertCheck(h.run(0, rw16(0x93, 8, 0), ScsiRequest.DIR_OUT, zero),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
    }

    @Test
    void shouldReplicateANonZeroBlockOverTheWholeRangeWithWriteSame16() {
        MemorySegment w = h.buffer(SIZE);
        w.fill((byte) 0x11);
        h.run(0, rw10(0x2A, 0, 4096), ScsiRequest.DIR_OUT, w.asSlice(0, 2L << 20));
        h.run(0, rw10(0x2A, 4096, 4096), ScsiRequest.DIR_OUT, w.asSlice(2L << 20, 2L << 20));
        MemorySegment block = patternBlock(512, 7);
        // 1000 blocks = 500 KiB: several pattern chunks and a short tail. The UNMAP bit must not unmap.
        byte[] ws = rw16(0x93, 3, 1000);
        ws[1] = 0x08;
        ScsiRequest r = h.run(0, ws, ScsiRequest.DIR_OUT, block);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertEquals(512, r.transferred(), "the one block of data-out");
        for (long lba = 3; lba < 1003; lba++) {
            assertEquals(-1, disk.contents().asSlice(lba * 512, 512).mismatch(block), "block " + lba);
        }
        assertEquals(0x11, disk.contents().get(ValueLayout.JAVA_BYTE, 3 * 512 - 1), "block before the range");
        assertEquals(0x11, disk.contents().get(ValueLayout.JAVA_BYTE, 1003 * 512), "block after the range");
        assertEquals(1000L * 512, target.lun(0).stats().bytesWritten() - (4L << 20));
    }

    @Test
    void shouldCheckWriteSame16RangesAndRefuseReadOnlyDisks() {
        MemorySegment block = patternBlock(512, 3);
        long blocks = SIZE / 512;
        assertCheck(h.run(0, rw16(0x93, blocks - 4, 5), ScsiRequest.DIR_OUT, block),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
        assertCheck(h.run(0, rw16(0x93, 0xFFFF_FFFF_FFFF_FFF0L, 0x20), ScsiRequest.DIR_OUT, block),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
        assertCheck(h.run(0, rw16(0x93, 0, (ScsiLun.MAX_UNMAP_BYTES / 512) + 1), ScsiRequest.DIR_OUT, block),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        assertCheck(h.run(0, rw16(0x93, 0, 4), ScsiRequest.DIR_OUT, h.buffer(1024)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR);
        assertCheck(h.run(0, rw16(0x93, 0, 4), ScsiRequest.DIR_IN, block),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, (blocks - 1) * 512), "nothing written");
        assertEquals(0, disk.contents().get(ValueLayout.JAVA_BYTE, 0), "nothing written");
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x93, blocks - 4, 4), ScsiRequest.DIR_OUT, block).status(),
            "the last four blocks are in range");
        assertEquals(-1, disk.contents().asSlice(SIZE - 512, 512).mismatch(block));
        MemoryDisk ro = MemoryDisk.ram(1 << 20, 512, false);
        target.add(1, new ScsiLun("ro", ro, QosFlow.UNLIMITED, true, IoEngines.Kind.AUTO));
        assertCheck(h.run(1, rw16(0x93, 0, 4), ScsiRequest.DIR_OUT, block),
            Scsi.KEY_UNIT_ATTENTION, Scsi.ASC_REPORTED_LUNS_DATA_HAS_CHANGED); // a hot-add: told once
        assertCheck(h.run(1, rw16(0x93, 0, 4), ScsiRequest.DIR_OUT, block), Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
        assertEquals(0, ro.contents().get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void shouldRunTwoPatternWriteSamesOnOneQueueOneAfterTheOther() {
        MemorySegment a = patternBlock(512, 5);
        MemorySegment b = patternBlock(512, 9);
        int[] done = {0};
        try (ScsiQueue q = new ScsiQueue(target, 4, 4, r -> done[0]++)) {
            ScsiRequest ra = q.tryAcquire().reset(0, rw16(0x93, 0, 600), ScsiRequest.DIR_OUT, 1);
            ra.data().add(a);
            ScsiRequest rb = q.tryAcquire().reset(0, rw16(0x93, 600, 700), ScsiRequest.DIR_OUT, 2);
            rb.data().add(b);
            q.submit(ra);
            q.submit(rb); // waits for the pattern buffer
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (done[0] < 2 && System.nanoTime() < deadline) {
                q.awaitWork(1_000_000L);
            }
            assertEquals(2, done[0]);
            assertEquals(Scsi.STATUS_GOOD, ra.status());
            assertEquals(Scsi.STATUS_GOOD, rb.status());
        }
        for (long lba = 0; lba < 1300; lba++) {
            assertEquals(-1, disk.contents().asSlice(lba * 512, 512).mismatch(lba < 600 ? a : b), "block " + lba);
        }
    }

    @Test
    void shouldWritePatternWriteSameThroughTheDefaultEngineToAnODirectFile(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("ws.raw");
        RawDisk.createSparse(file, 8L << 20);
        try (RawDisk fd = RawDisk.openFile(file, false, true)) {
            target.add(2, new ScsiLun("file", fd));
            int bs = fd.logicalSectorSize();
            MemorySegment block = patternBlock(bs, 11);
            long count = (1L << 20) / bs + 3; // 1 MiB and three blocks: eight full chunks and a tail
            assertEquals(Scsi.STATUS_GOOD, h.run(2, rw16(0x93, 1, count), ScsiRequest.DIR_OUT, block).status());
            assertEquals(Scsi.STATUS_GOOD, h.run(2, cdb(0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0), ScsiRequest.DIR_NONE, null).status());
            byte[] bytes = Files.readAllBytes(file);
            byte[] expect = block.toArray(ValueLayout.JAVA_BYTE);
            for (long lba = 1; lba <= count; lba++) {
                assertEquals(-1, java.util.Arrays.mismatch(bytes, (int) (lba * bs), (int) ((lba + 1) * bs), expect, 0, bs),
                    "block " + lba + " via " + h.queue.engineName(2));
            }
            assertEquals(0, bytes[bs - 1], "block 0 untouched");
            assertEquals(0, bytes[(int) ((count + 1) * bs)], "block after the range untouched");
            target.remove(2);
        }
    }

    /** A block whose bytes differ from each other and from other seeds' blocks. */
    private MemorySegment patternBlock(int size, int seed) {
        MemorySegment m = h.buffer(size);
        for (int i = 0; i < size; i++) {
            m.set(ValueLayout.JAVA_BYTE, i, (byte) (seed * 31 + i * 7 + 1));
        }
        return m;
    }

    @Test
    void shouldSynchronizeCacheAndCheckItsRange() {
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw10(0x35, 0, 0), ScsiRequest.DIR_NONE, null).status());
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x91, 0, 0), ScsiRequest.DIR_NONE, null).status());
        assertCheck(h.run(0, rw16(0x91, SIZE / 512, 1), ScsiRequest.DIR_NONE, null),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
        assertEquals(2, target.lun(0).stats().flushes());
    }

    @Test
    void shouldServeModeSense6And10AndRejectSavedValues() {
        MemorySegment b = h.buffer(255);
        ScsiRequest r = h.run(0, cdb(0x1A, 0, 0x08, 0, 255, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertEquals(8, b.get(ValueLayout.JAVA_BYTE, 3), "block descriptor length");
        assertEquals(0x08, b.get(ValueLayout.JAVA_BYTE, 12), "caching page");
        assertEquals(0x04, b.get(ValueLayout.JAVA_BYTE, 14) & 0x04, "WCE");
        MemorySegment t = h.buffer(255);
        ScsiRequest r10 = h.run(0, cdb(0x5A, 0x08, 0x3F, 0, 0, 0, 0, 0, 255, 0), ScsiRequest.DIR_IN, t);
        assertEquals(Scsi.STATUS_GOOD, r10.status());
        assertEquals(r10.transferred() - 2, t.get(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN), 0));
        assertCheck(h.run(0, cdb(0x1A, 0, 0xC8, 0, 255, 0), ScsiRequest.DIR_IN, h.buffer(255)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_SAVING_PARAMETERS_NOT_SUPPORTED);
        assertCheck(h.run(0, cdb(0x1A, 0, 0x19, 0, 255, 0), ScsiRequest.DIR_IN, h.buffer(255)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
    }

    @Test
    void shouldReportLunsAndAnswerAbsentLunsPerSpc() {
        target.add(5, new ScsiLun("d5", MemoryDisk.ram(1 << 20, 512, false)));
        MemorySegment b = h.buffer(64);
        ScsiRequest r = h.run(3, cdb(0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertEquals(16, b.get(BE32, 0));
        assertEquals(0, b.get(ValueLayout.JAVA_BYTE, 9));
        assertEquals(5, b.get(ValueLayout.JAVA_BYTE, 17));
        MemorySegment inq = h.buffer(96);
        assertEquals(Scsi.STATUS_GOOD, h.run(3, cdb(0x12, 0, 0, 0, 96, 0), ScsiRequest.DIR_IN, inq).status());
        assertEquals(0x7F, inq.get(ValueLayout.JAVA_BYTE, 0), "peripheral qualifier 011b: no LU");
        assertCheck(h.run(3, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        assertCheck(h.run(0, cdb(0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0), ScsiRequest.DIR_IN, b),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
    }

    @Test
    void shouldReturnNoSenseFromRequestSense() {
        MemorySegment b = h.buffer(18);
        ScsiRequest r = h.run(0, cdb(0x03, 0, 0, 0, 18, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertEquals(0x70, b.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(0, b.get(ValueLayout.JAVA_BYTE, 2));
    }

    @Test
    void shouldHotAddAndHotRemoveLunsWhileTheQueueRuns() throws Exception {
        MemoryDisk d7 = MemoryDisk.ram(1 << 20, 512, false);
        assertCheck(h.run(7, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        target.add(7, new ScsiLun("d7", d7));
        assertCheck(h.run(7, rw10(0x2A, 0, 1), ScsiRequest.DIR_OUT, h.buffer(512)),
            Scsi.KEY_UNIT_ATTENTION, Scsi.ASC_REPORTED_LUNS_DATA_HAS_CHANGED);
        assertEquals(Scsi.STATUS_GOOD, h.run(7, rw10(0x2A, 0, 1), ScsiRequest.DIR_OUT, h.buffer(512)).status());
        ScsiLun removed = target.remove(7);
        assertTrue(ScsiTarget.awaitIdle(removed, 1000));
        assertCheck(h.run(7, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)),
            Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        MemoryDisk again = MemoryDisk.ram(2 << 20, 4096, false);
        target.add(7, new ScsiLun("d7b", again));
        assertCheck(h.run(7, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(4096)),
            Scsi.KEY_UNIT_ATTENTION, Scsi.ASC_REPORTED_LUNS_DATA_HAS_CHANGED);
        MemorySegment cap = h.buffer(8);
        h.run(7, cdb(0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0), ScsiRequest.DIR_IN, cap);
        assertEquals(4096, cap.get(BE32, 4), "the new disk's geometry");
        assertEquals(Scsi.STATUS_GOOD, h.run(7, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, h.buffer(4096)).status());
        d7.close();
    }

    @Test
    void shouldDeferIoThatQosDelaysWithoutBlockingTheQueue() {
        int[] asked = {0};
        QosFlow slow = new QosFlow() {
            @Override
            public long tryAdmit(int bytes, long nowNanos) {
                return asked[0]++ < 3 ? 1_000_000L : 0;
            }

            @Override
            public void completed(int bytes, long latencyNanos, long nowNanos) {
            }
        };
        target.add(2, new ScsiLun("qos", MemoryDisk.ram(1 << 20, 512, false), slow, false, IoEngines.Kind.AUTO));
        ScsiRequest r = h.queue.tryAcquire();
        r.reset(2, rw10(0x28, 0, 1), ScsiRequest.DIR_IN, 0);
        r.data().add(h.buffer(512));
        int before = h.completions;
        h.queue.submit(r);
        assertEquals(before, h.completions, "submit returned without waiting for QoS");
        long deadline = System.nanoTime() + 2_000_000_000L;
        while (h.completions == before && System.nanoTime() < deadline) {
            h.queue.awaitWork(100_000L);
        }
        assertEquals(before + 1, h.completions);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        assertTrue(asked[0] >= 4);
        h.queue.release(r);
    }
}
