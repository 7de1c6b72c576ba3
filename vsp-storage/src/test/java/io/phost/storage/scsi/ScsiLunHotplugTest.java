package io.phost.storage.scsi;

import io.phost.storage.backend.MemoryDisk;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import static io.phost.storage.scsi.ScsiHarness.cdb;
import static io.phost.storage.scsi.ScsiHarness.rw16;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * LUN hot-add and hot-remove on a running target (Hyper-V's Add-/Remove-VMHardDiskDrive on a SCSI controller): each
 * initiator's next command gets REPORTED LUNS DATA HAS CHANGED once (SPC-4 §5.14; queues of one initiator share it),
 * REPORT LUNS clears it and lists the new inventory, and a removed LUN answers LOGICAL UNIT NOT SUPPORTED.
 */
class ScsiLunHotplugTest {
    private final MemoryDisk first = MemoryDisk.ram(1L << 20, 512, false);
    private final MemoryDisk added = MemoryDisk.ram(2L << 20, 512, false);
    private final ScsiTarget target = new ScsiTarget();
    private final List<ScsiHarness> harnesses = new ArrayList<>();

    @AfterEach
    void tearDown() {
        harnesses.forEach(ScsiHarness::close);
        first.close();
        added.close();
    }

    private ScsiHarness queue(ScsiTarget.Initiator initiator) {
        ScsiHarness h = new ScsiHarness(target, initiator);
        harnesses.add(h);
        return h;
    }

    private static ScsiRequest read(ScsiHarness h, int lun) {
        return h.run(lun, rw16(0x88, 0, 1), ScsiRequest.DIR_IN, h.buffer(512));
    }

    private static void assertUnitAttention(ScsiRequest r) {
        assertEquals(Scsi.STATUS_CHECK_CONDITION, r.status());
        assertEquals(Scsi.KEY_UNIT_ATTENTION, r.senseKey());
        assertEquals(Scsi.ASC_REPORTED_LUNS_DATA_HAS_CHANGED, r.ascq());
    }

    private static List<Integer> reportLuns(ScsiHarness h) {
        MemorySegment b = h.buffer(8 + 8 * 8);
        ScsiRequest r = h.run(0, cdb(0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 72, 0, 0), ScsiRequest.DIR_IN, b);
        assertEquals(Scsi.STATUS_GOOD, r.status());
        List<Integer> luns = new ArrayList<>();
        int length = b.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN), 0);
        for (int at = 8; at < 8 + length; at += 8) {
            luns.add((int) b.get(ValueLayout.JAVA_BYTE, at + 1));
        }
        return luns;
    }

    @Test
    void shouldTellEachInitiatorOnceThatTheLunsChanged() {
        target.add(0, new ScsiLun("lun0", first));
        ScsiTarget.Initiator guest = target.newInitiator();
        ScsiHarness primary = queue(guest);
        ScsiHarness subChannel = queue(guest);
        ScsiHarness other = queue(target.newInitiator());
        assertEquals(Scsi.STATUS_GOOD, read(primary, 0).status(), "no change yet: no unit attention");
        assertEquals(Scsi.STATUS_GOOD, read(other, 0).status());

        target.add(1, new ScsiLun("lun1", added));
        assertEquals(Scsi.STATUS_GOOD, primary.run(0, cdb(0x12, 0, 0, 0, 36, 0), ScsiRequest.DIR_IN, primary.buffer(36)).status(),
            "INQUIRY does not take the unit attention");
        assertUnitAttention(read(subChannel, 0));
        assertEquals(Scsi.STATUS_GOOD, read(primary, 0).status(), "once per initiator, not per queue");
        assertEquals(Scsi.STATUS_GOOD, read(primary, 1).status(), "the new LUN serves I/O");
        assertUnitAttention(read(other, 1));
        assertEquals(Scsi.STATUS_GOOD, read(other, 1).status());
        assertEquals(Scsi.STATUS_GOOD, read(queue(target.newInitiator()), 0).status(),
            "an initiator that connects after the change has nothing to learn");
    }

    @Test
    void shouldClearTheUnitAttentionWithReportLuns() {
        target.add(0, new ScsiLun("lun0", first));
        ScsiHarness h = queue(target.newInitiator());
        assertEquals(Scsi.STATUS_GOOD, read(h, 0).status());
        target.add(3, new ScsiLun("lun3", added));
        assertEquals(List.of(0, 3), reportLuns(h), "REPORT LUNS answers, and clears the unit attention");
        assertEquals(Scsi.STATUS_GOOD, read(h, 3).status());
    }

    @Test
    void shouldAnswerLogicalUnitNotSupportedAfterARemove() throws Exception {
        target.add(0, new ScsiLun("lun0", first));
        ScsiLun unit = new ScsiLun("lun1", added);
        target.add(1, unit);
        ScsiHarness h = queue(target.newInitiator());
        assertEquals(Scsi.STATUS_GOOD, h.run(1, rw16(0x8A, 0, 8), ScsiRequest.DIR_OUT, h.buffer(4096)).status());

        assertEquals(unit, target.remove(1));
        assertTrue(ScsiTarget.awaitIdle(unit, 1000), "its in-flight commands finished");
        assertNull(target.lun(1));
        ScsiRequest gone = read(h, 1);
        assertEquals(Scsi.STATUS_CHECK_CONDITION, gone.status(), "a removed LUN is not told about itself");
        assertEquals(Scsi.KEY_ILLEGAL_REQUEST, gone.senseKey());
        assertEquals(Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED, gone.ascq());
        assertUnitAttention(read(h, 0));
        assertEquals(List.of(0), reportLuns(h));
        assertEquals(Scsi.STATUS_GOOD, read(h, 0).status());
    }
}
