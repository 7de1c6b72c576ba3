package io.phost.storage.scsi;

import io.phost.storage.backend.MemoryDisk;
import io.phost.vhdx.VirtualDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static io.phost.storage.scsi.ScsiHarness.cdb;
import static io.phost.storage.scsi.ScsiHarness.rw16;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A live grow ({@link ScsiLun#swapGrownDisk}): the LUN's capacity follows the grown disk, and a SCSI initiator's
 * next command (not INQUIRY) gets CAPACITY DATA HAS CHANGED once (Linux storvsc rescans on it); a virtio-blk LUN
 * gets no unit attention (its driver learns the size from the config change).
 */
class ScsiLunGrowTest {
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private final MemoryDisk small = MemoryDisk.ram(4L << 20, 512, false);
    private final MemoryDisk big = MemoryDisk.ram(8L << 20, 512, false);
    private final ScsiLun lun = new ScsiLun("grow0", small);
    private final ScsiTarget target = new ScsiTarget();
    private ScsiHarness h;

    @AfterEach
    void tearDown() {
        if (h != null) {
            h.close();
        }
        small.close();
        big.close();
    }

    private void grow(boolean unitAttention) throws InterruptedException {
        target.add(0, lun);
        h = new ScsiHarness(target);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
        assertEquals(true, lun.pauseIo(1000));
        assertEquals(small, lun.swapGrownDisk(big, unitAttention));
        lun.resumeIo();
    }

    private long lastLba() {
        MemorySegment b = h.buffer(32);
        ScsiRequest r = h.run(0, cdb(0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        return b.get(BE64, 0);
    }

    @Test
    void shouldReportCapacityDataHasChangedOnceAfterAGrow() throws Exception {
        grow(true);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, cdb(0x12, 0, 0, 0, 36, 0), ScsiRequest.DIR_IN, h.buffer(36)).status(),
            "INQUIRY does not take the unit attention");
        ScsiRequest r = h.run(0, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512));
        assertEquals(Scsi.STATUS_CHECK_CONDITION, r.status());
        assertEquals(Scsi.KEY_UNIT_ATTENTION, r.senseKey());
        assertEquals(Scsi.ASC_CAPACITY_DATA_HAS_CHANGED, r.ascq());
        assertEquals((8L << 20) / 512 - 1, lastLba(), "READ CAPACITY(16) reports the grown size");
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x8A, 12_000, 8), ScsiRequest.DIR_OUT, h.buffer(4096)).status(),
            "a write past the old end");
        assertEquals(16384, lun.blocks());
    }

    /** An RBD image grown by {@code rbd resize}: the same disk object, a larger {@code size()}. */
    @Test
    void shouldTellTheInitiatorWhenTheDiskGrewInPlace() throws Exception {
        long[] reported = {4L << 20};
        VirtualDisk inPlace = resizedInPlace(reported, "grows-in-place");
        ScsiLun grows = new ScsiLun("grow1", inPlace);
        target.add(0, grows);
        h = new ScsiHarness(target);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
        assertFalse(grows.followDiskSize(true), "nothing grew yet");
        reported[0] = 8L << 20;
        assertTrue(grows.followDiskSize(true));
        ScsiRequest r = h.run(0, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512));
        assertEquals(Scsi.STATUS_CHECK_CONDITION, r.status());
        assertEquals(Scsi.KEY_UNIT_ATTENTION, r.senseKey());
        assertEquals(Scsi.ASC_CAPACITY_DATA_HAS_CHANGED, r.ascq());
        assertEquals((8L << 20) / 512 - 1, lastLba(), "READ CAPACITY(16) reports the grown size");
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x8A, 12_000, 8), ScsiRequest.DIR_OUT, h.buffer(4096)).status(),
            "a write past the old end");
        assertFalse(grows.followDiskSize(true), "the same size again is no change (and no second unit attention)");
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
    }

    /** An RBD image rolled back to a smaller snapshot: the same disk object, a smaller {@code size()}. */
    @Test
    void shouldShrinkWithTheDiskAfterARollbackToASmallerSnapshot() throws Exception {
        long[] reported = {8L << 20};
        VirtualDisk inPlace = resizedInPlace(reported, "rolled-back");
        ScsiLun lun8 = new ScsiLun("shrink0", inPlace);
        target.add(0, lun8);
        h = new ScsiHarness(target);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x88, 12_000, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
        reported[0] = 4L << 20;
        assertTrue(lun8.followDiskSize(true), "the smaller size is a change");
        ScsiRequest r = h.run(0, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512));
        assertEquals(Scsi.KEY_UNIT_ATTENTION, r.senseKey());
        assertEquals(Scsi.ASC_CAPACITY_DATA_HAS_CHANGED, r.ascq());
        assertEquals((4L << 20) / 512 - 1, lastLba(), "READ CAPACITY(16) reports the snapshot's size");
        assertEquals(Scsi.STATUS_CHECK_CONDITION, h.run(0, rw16(0x88, 12_000, 1), ScsiRequest.DIR_IN, h.buffer(512)).status(),
            "a read past the new end is out of range");
        assertEquals(8192, lun8.blocks());
    }

    @Test
    void shouldGrowAVirtioBlkLunWithoutAUnitAttention() throws Exception {
        grow(false);
        assertEquals(Scsi.STATUS_GOOD, h.run(0, rw16(0x88, 12_000, 1), ScsiRequest.DIR_IN, h.buffer(512)).status());
    }

    @Test
    void shouldRefuseASmallerDiskAndAnUnpausedLun() throws Exception {
        assertThrows(IllegalStateException.class, () -> lun.swapGrownDisk(big, true), "I/O not paused");
        ScsiLun onBig = new ScsiLun("grow1", big);
        onBig.pauseIo(1000);
        assertThrows(IllegalArgumentException.class, () -> onBig.swapGrownDisk(small, true));
        assertEquals(16384, onBig.blocks());
    }

    /**
     * An RBD image resized by {@code rbd resize} or a snapshot rollback: the same disk object (backed by {@code big})
     * whose {@code size()} is whatever {@code reported[0]} says.
     */
    private VirtualDisk resizedInPlace(long[] reported, String format) {
        return new VirtualDisk() {
            public long size() { return reported[0]; }
            public int logicalSectorSize() { return 512; }
            public int physicalSectorSize() { return 512; }
            public boolean readOnly() { return false; }
            public void read(long offset, MemorySegment dst) throws IOException { big.read(offset, dst); }
            public void write(long offset, MemorySegment src) throws IOException { big.write(offset, src); }
            public void flush() { }
            public void writeZeroes(long offset, long length) throws IOException { big.writeZeroes(offset, length); }
            public String format() { return format; }
            public void close() { }
        };
    }
}
