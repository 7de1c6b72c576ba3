package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicReferenceArray;

import static io.phost.storage.scsi.ScsiRequest.U32;

/**
 * A virtual SCSI target (one per controller/partition) holding up to {@link #MAX_LUNS} logical units.
 * LUNs can be added and removed while queues run: queues read the table on every command, and a removed
 * LUN rejects new commands at once while its in-flight ones finish ({@link #remove} then
 * {@link #awaitIdle}). Commands to an empty LUN get what SPC-4 prescribes: INQUIRY answers with
 * peripheral qualifier 011b, REPORT LUNS works, everything else is LOGICAL UNIT NOT SUPPORTED.
 */
public final class ScsiTarget {
    public static final int MAX_LUNS = 64;

    private final AtomicReferenceArray<ScsiLun> luns = new AtomicReferenceArray<>(MAX_LUNS);
    private volatile long generation;

    /** Adds {@code unit} at {@code lun}; throws when the slot is taken. */
    public void add(int lun, ScsiLun unit) {
        checkLun(lun);
        if (!luns.compareAndSet(lun, null, unit)) {
            throw new IllegalStateException("LUN " + lun + " is in use");
        }
        generation++;
    }

    /** Removes the unit at {@code lun} (new commands fail from now on) and returns it, or null. */
    public ScsiLun remove(int lun) {
        checkLun(lun);
        ScsiLun unit = luns.getAndSet(lun, null);
        if (unit != null) {
            unit.removed = true;
            generation++;
        }
        return unit;
    }

    /** Waits until {@code unit} has no command executing; true when idle within the timeout. */
    public static boolean awaitIdle(ScsiLun unit, long timeoutMillis) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        while (unit.inFlight() > 0) {
            if (System.currentTimeMillis() > deadline) {
                return false;
            }
            Thread.sleep(1);
        }
        return true;
    }

    public ScsiLun lun(int lun) {
        return lun >= 0 && lun < MAX_LUNS ? luns.get(lun) : null;
    }

    /** Changes on every add/remove (transports use it to tell the initiator to rescan). */
    public long generation() {
        return generation;
    }

    public int count() {
        int n = 0;
        for (int i = 0; i < MAX_LUNS; i++) {
            if (luns.get(i) != null) {
                n++;
            }
        }
        return n;
    }

    private static void checkLun(int lun) {
        if (lun < 0 || lun >= MAX_LUNS) {
            throw new IllegalArgumentException("LUN " + lun + " outside 0.." + (MAX_LUNS - 1));
        }
    }

    /** REPORT LUNS (SPC-4 6.33): 8-byte header, then one 8-byte single-level LUN per unit. */
    int reportLuns(ScsiRequest r, MemorySegment scratch) {
        int select = r.u8(2);
        long alloc = r.u32(6);
        if (select > 2 || alloc < 16) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, select > 2 ? 2 : 6, 1);
            return ScsiLun.DONE;
        }
        int at = 8;
        scratch.asSlice(0, 8 + 8L * MAX_LUNS).fill((byte) 0);
        if (select != 1) { // 1 = well-known LUNs only: we have none
            for (int i = 0; i < MAX_LUNS; i++) {
                if (luns.get(i) != null) {
                    scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) i); // peripheral addressing, bus 0
                    at += 8;
                }
            }
        }
        scratch.set(U32, 0, at - 8);
        int n = (int) Math.min(Math.min(at, alloc), r.data().totalLength());
        r.data().scatterFrom(scratch, 0, n);
        r.good(n);
        return ScsiLun.DONE;
    }

    /** A command addressed to an empty LUN. */
    void noSuchLun(ScsiRequest r, MemorySegment scratch) {
        int opcode = r.opcode();
        if (opcode == Scsi.REPORT_LUNS && r.cdbLength() >= 12) {
            reportLuns(r, scratch);
        } else if (opcode == Scsi.INQUIRY && r.cdbLength() >= 6 && (r.u8(1) & 0x03) == 0 && r.u8(2) == 0) {
            int len = SpcPages.standardInquiry(scratch, 0x7F); // qualifier 011b, type 1Fh: no LU here
            int n = (int) Math.min(Math.min(len, r.u16(3)), r.data().totalLength());
            r.data().scatterFrom(scratch, 0, n);
            r.good(n);
        } else if (opcode == Scsi.REQUEST_SENSE && r.cdbLength() >= 6) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        } else {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LOGICAL_UNIT_NOT_SUPPORTED);
        }
    }
}
