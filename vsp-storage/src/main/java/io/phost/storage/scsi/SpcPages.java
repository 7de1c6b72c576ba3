package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

import static io.phost.storage.scsi.ScsiLun.DONE;
import static io.phost.storage.scsi.ScsiLun.MAX_TRANSFER_BYTES;
import static io.phost.storage.scsi.ScsiLun.MAX_UNMAP_BYTES;
import static io.phost.storage.scsi.ScsiLun.MAX_UNMAP_DESCRIPTORS;
import static io.phost.storage.scsi.ScsiRequest.U16;
import static io.phost.storage.scsi.ScsiRequest.U32;
import static io.phost.storage.scsi.ScsiRequest.U64;

/**
 * SPC-4 pages of one emulated LUN: standard and VPD INQUIRY (identity, block limits, provisioning), MODE
 * SENSE (caching and control pages) and REQUEST SENSE. Responses are built in the queue's scratch buffer
 * and scattered into the request's data, cut to the allocation length.
 */
final class SpcPages {
    private static final byte[] VENDOR = "PHOST   ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] PRODUCT = "Virtual Disk    ".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] REVISION = "1.0 ".getBytes(StandardCharsets.US_ASCII);
    /** Transfer size the guest is told works best (VPD B0 OPTIMAL TRANSFER LENGTH). */
    private static final int OPTIMAL_TRANSFER_BYTES = 64 << 10;
    /** Unmap granularity advertised (VPD B0 OPTIMAL UNMAP GRANULARITY). */
    private static final int UNMAP_GRANULARITY_BYTES = 4 << 10;

    private final ScsiLun lun;
    private final int blockSize;
    private final int blockShift;
    private final boolean readOnly;
    /** The disk frees space on unmap: advertised as thin provisioning (LBPU, LBPWS). */
    private final boolean discard;
    private final byte[] serial;
    private final long naa;

    SpcPages(ScsiLun lun, boolean discard, long diskSize) {
        this.lun = lun;
        this.blockSize = lun.blockSize();
        this.blockShift = Integer.numberOfTrailingZeros(blockSize);
        this.readOnly = lun.readOnly();
        this.discard = discard;
        String name = lun.name();
        String s = Long.toHexString(name.hashCode() & 0xFFFFFFFFL) + Long.toHexString(diskSize);
        this.serial = ("PH" + s).getBytes(StandardCharsets.US_ASCII);
        // NAA 6 (IEEE registered extended): 4-bit NAA, 24-bit OUI (locally administered), 36-bit vendor id.
        this.naa = (0x6L << 60) | (0x02_50_F2L << 36) | ((name.hashCode() & 0xFFFFFFFFL) << 4) | (diskSize & 0xF);
    }

    static int respond(ScsiRequest r, MemorySegment scratch, int length, int allocation) {
        int n = (int) Math.min(Math.min(length, allocation), r.data().totalLength());
        r.data().scatterFrom(scratch, 0, n);
        r.good(n);
        return DONE;
    }

    static int requestSense(ScsiRequest r, MemorySegment scratch) {
        if ((r.u8(1) & 0x01) != 0) { // DESC: descriptor-format sense is not supported
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        // Autosense delivers errors with each command, so there is never deferred sense: NO SENSE.
        SenseData.writeFixed(scratch, Scsi.KEY_NO_SENSE, Scsi.ASC_NONE, -1, -1);
        return respond(r, scratch, Scsi.FIXED_SENSE_LENGTH, r.u8(4));
    }

    int inquiry(ScsiRequest r, MemorySegment scratch) {
        int flags = r.u8(1);
        int page = r.u8(2);
        int alloc = r.u16(3);
        if ((flags & 0x02) != 0) { // CMDDT (obsolete)
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        scratch.asSlice(0, 256).fill((byte) 0);
        if ((flags & 0x01) == 0) {
            if (page != 0) {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 2, 1);
                return DONE;
            }
            return respond(r, scratch, standardInquiry(scratch, 0x00), alloc);
        }
        int len;
        switch (page) {
            case 0x00 -> {
                byte[] pages = {0x00, (byte) 0x80, (byte) 0x83, (byte) 0xB0, (byte) 0xB1, (byte) 0xB2};
                for (int i = 0; i < pages.length; i++) {
                    scratch.set(ValueLayout.JAVA_BYTE, 4 + i, pages[i]);
                }
                len = 4 + pages.length;
            }
            case 0x80 -> {
                MemorySegment.copy(MemorySegment.ofArray(serial), 0, scratch, 4, serial.length);
                len = 4 + serial.length;
            }
            case 0x83 -> {
                int at = 4;
                // Designator 1: NAA (binary, LU association, type 3), 8 bytes.
                scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x01);
                scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x03);
                scratch.set(ValueLayout.JAVA_BYTE, at + 3, (byte) 8);
                scratch.set(U64, at + 4, naa);
                at += 12;
                // Designator 2: T10 vendor ID (ASCII, type 1): vendor + serial.
                scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x02);
                scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x01);
                scratch.set(ValueLayout.JAVA_BYTE, at + 3, (byte) (8 + serial.length));
                MemorySegment.copy(MemorySegment.ofArray(VENDOR), 0, scratch, at + 4, 8);
                MemorySegment.copy(MemorySegment.ofArray(serial), 0, scratch, at + 12, serial.length);
                at += 12 + serial.length;
                len = at;
            }
            case 0xB0 -> { // Block limits
                scratch.set(ValueLayout.JAVA_BYTE, 4, (byte) 0x01); // WSNZ
                scratch.set(U32, 8, MAX_TRANSFER_BYTES >>> blockShift);
                scratch.set(U32, 12, Math.max(1, OPTIMAL_TRANSFER_BYTES >>> blockShift));
                scratch.set(U32, 20, (int) (MAX_UNMAP_BYTES >>> blockShift));
                scratch.set(U32, 24, MAX_UNMAP_DESCRIPTORS);
                scratch.set(U32, 28, Math.max(1, UNMAP_GRANULARITY_BYTES >>> blockShift));
                scratch.set(U64, 36, MAX_UNMAP_BYTES >>> blockShift);
                len = 64;
            }
            case 0xB1 -> { // Block device characteristics: non-rotating medium
                scratch.set(U16, 4, (short) 1);
                len = 64;
            }
            case 0xB2 -> { // Logical block provisioning: LBPU, LBPWS (when the disk discards), LBPRZ; thin provisioned
                scratch.set(ValueLayout.JAVA_BYTE, 5, (byte) ((discard ? 0x80 | 0x40 : 0) | 0x04));
                scratch.set(ValueLayout.JAVA_BYTE, 6, (byte) (discard ? 0x02 : 0x00));
                len = 8;
            }
            default -> {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 2, 1);
                return DONE;
            }
        }
        scratch.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x00); // direct-access block device, connected
        scratch.set(ValueLayout.JAVA_BYTE, 1, (byte) page);
        scratch.set(U16, 2, (short) (len - 4));
        return respond(r, scratch, len, alloc);
    }

    /** Standard INQUIRY data (SPC-4 6.6.2), 96 bytes, with the given peripheral qualifier/type byte. */
    static int standardInquiry(MemorySegment s, int peripheral) {
        s.asSlice(0, 96).fill((byte) 0);
        s.set(ValueLayout.JAVA_BYTE, 0, (byte) peripheral);
        s.set(ValueLayout.JAVA_BYTE, 2, (byte) 0x06);       // SPC-4
        s.set(ValueLayout.JAVA_BYTE, 3, (byte) 0x12);       // HISUP, response data format 2
        s.set(ValueLayout.JAVA_BYTE, 4, (byte) (96 - 5));
        s.set(ValueLayout.JAVA_BYTE, 7, (byte) 0x02);       // CMDQUE
        MemorySegment.copy(MemorySegment.ofArray(VENDOR), 0, s, 8, 8);
        MemorySegment.copy(MemorySegment.ofArray(PRODUCT), 0, s, 16, 16);
        MemorySegment.copy(MemorySegment.ofArray(REVISION), 0, s, 32, 4);
        return 96;
    }

    int modeSense(ScsiRequest r, MemorySegment scratch, boolean ten) {
        boolean dbd = (r.u8(1) & 0x08) != 0;
        int pc = r.u8(2) >>> 6;
        int page = r.u8(2) & 0x3F;
        int subpage = r.u8(3);
        int alloc = ten ? r.u16(7) : r.u8(4);
        if (pc == 3) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_SAVING_PARAMETERS_NOT_SUPPORTED, 2, 1);
            return DONE;
        }
        if (subpage != 0 && !(page == 0x3F && subpage == 0xFF)) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 3, 1);
            return DONE;
        }
        if (page != 0x08 && page != 0x0A && page != 0x3F) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 2, 1);
            return DONE;
        }
        scratch.asSlice(0, 128).fill((byte) 0);
        boolean changeable = pc == 1;
        int header = ten ? 8 : 4;
        int at = header;
        if (!dbd) {
            scratch.set(U32, at, (int) Math.min(lun.blocks(), 0xFFFFFF)); // density 0 + 24-bit block count
            scratch.set(U32, at + 4, blockSize & 0xFFFFFF);
            at += 8;
        }
        if (page == 0x08 || page == 0x3F) { // Caching: write-back cache enabled (flushes via SYNCHRONIZE CACHE)
            scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x08);
            scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x12);
            scratch.set(ValueLayout.JAVA_BYTE, at + 2, (byte) (changeable ? 0 : 0x04));
            at += 20;
        }
        if (page == 0x0A || page == 0x3F) { // Control
            scratch.set(ValueLayout.JAVA_BYTE, at, (byte) 0x0A);
            scratch.set(ValueLayout.JAVA_BYTE, at + 1, (byte) 0x0A);
            at += 12;
        }
        byte deviceSpecific = (byte) (readOnly ? 0x80 : 0x00);
        if (ten) {
            scratch.set(U16, 0, (short) (at - 2));
            scratch.set(ValueLayout.JAVA_BYTE, 3, deviceSpecific);
            scratch.set(U16, 6, (short) (dbd ? 0 : 8));
        } else {
            scratch.set(ValueLayout.JAVA_BYTE, 0, (byte) (at - 1));
            scratch.set(ValueLayout.JAVA_BYTE, 2, deviceSpecific);
            scratch.set(ValueLayout.JAVA_BYTE, 3, (byte) (dbd ? 0 : 8));
        }
        return respond(r, scratch, at, alloc);
    }

}
