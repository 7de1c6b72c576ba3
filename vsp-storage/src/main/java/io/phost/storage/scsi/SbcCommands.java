package io.phost.storage.scsi;

import io.phost.core.sys.DiskFullException;
import io.phost.storage.DiskStats;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.scsi.ScsiLun.DONE;
import static io.phost.storage.scsi.ScsiLun.IO;
import static io.phost.storage.scsi.ScsiLun.MAX_TRANSFER_BYTES;
import static io.phost.storage.scsi.ScsiLun.MAX_UNMAP_BYTES;
import static io.phost.storage.scsi.ScsiLun.MAX_UNMAP_DESCRIPTORS;
import static io.phost.storage.scsi.ScsiRequest.U16;
import static io.phost.storage.scsi.ScsiRequest.U32;
import static io.phost.storage.scsi.ScsiRequest.U64;

/**
 * SBC-3 block commands of one LUN: READ/WRITE (6/10/12/16), SYNCHRONIZE CACHE, UNMAP, WRITE SAME (16) and
 * READ CAPACITY, decoded into an engine operation on the request; the typed block requests of non-SCSI
 * transports ({@link #prepareBlock}); and the mapping of engine results back to status and sense.
 *
 * <p>CDBs are hostile: every LBA range is checked with overflow-safe arithmetic against the capacity,
 * transfer lengths must equal the data buffer's length, reserved/unsupported bits are rejected with
 * ILLEGAL REQUEST and a field pointer, and nothing is allocated per command.
 */
final class SbcCommands {
    private final ScsiLun lun;
    private final int blockSize;
    private final int blockShift;
    private final boolean readOnly;
    /** The disk frees space on unmap: advertised as thin provisioning (LBPME). */
    private final boolean discard;
    private final int physicalExponent;
    private final DiskStats stats;

    SbcCommands(ScsiLun lun, boolean discard, int physicalExponent) {
        this.lun = lun;
        this.blockSize = lun.blockSize();
        this.blockShift = Integer.numberOfTrailingZeros(blockSize);
        this.readOnly = lun.readOnly();
        this.discard = discard;
        this.physicalExponent = physicalExponent;
        this.stats = lun.stats();
    }

    static int noData(ScsiRequest r) {
        r.good(0);
        return DONE;
    }

    /** RDPROTECT/WRPROTECT (byte 1 bits 7-5) need protection information, which we do not format. */
    static boolean protectBits(ScsiRequest r) {
        if ((r.u8(1) & 0xE0) != 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return true;
        }
        return false;
    }

    /** True (and DATA PROTECT set) when the LUN is read-only: for commands that write. */
    private boolean writeProtected(ScsiRequest r) {
        if (readOnly) {
            r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_WRITE_PROTECTED);
            return true;
        }
        return false;
    }

    /** True (and CHECK CONDITION set) when [lba, lba+count) is not inside the disk. Overflow-safe. */
    private boolean outOfRange(ScsiRequest r, long lba, long count) {
        // lba is unsigned 64-bit in the 16-byte CDBs: negative means >= 2^63, always past the end.
        if (lba < 0 || count < 0 || lba > lun.blocks() || count > lun.blocks() - lba) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_LBA_OUT_OF_RANGE);
            return true;
        }
        return false;
    }

    private boolean directionMismatch(ScsiRequest r, int expected) {
        int d = r.direction();
        if (d != ScsiRequest.DIR_UNKNOWN && d != expected && r.data().totalLength() != 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 0, 1);
            return true;
        }
        return false;
    }

    /**
     * Validates a block request a transport built with {@link ScsiRequest#block} (no CDB), with the checks a
     * decoded CDB gets: a write to a read-only LUN is DATA PROTECT; a range past the capacity or not in whole
     * blocks, or data that does not match the length, is ILLEGAL REQUEST. Returns {@link #IO} or {@link #DONE}.
     */
    int prepareBlock(ScsiRequest r) {
        r.target = lun;
        r.fuaFlush = false;
        r.unmapNext = 1;
        r.read = r.op == BlockOp.READ;
        if (r.op.writes() && writeProtected(r)) {
            return DONE;
        }
        switch (r.op) {
            case BlockOp.READ, BlockOp.WRITE -> {
                if (badByteRange(r, r.ioOffset, r.ioLength)) {
                    return DONE;
                }
                if (r.ioLength != r.data().totalLength()) {
                    r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
                    return DONE;
                }
                r.fua &= !r.read;
                return r.ioLength == 0 ? noData(r) : IO;
            }
            case BlockOp.FLUSH -> {
                r.ioOffset = 0;
                r.ioLength = 0;
                return IO;
            }
            case BlockOp.UNMAP, BlockOp.WRITE_ZEROES -> {
                int count = 0;
                for (int i = 0; i < r.unmapCount; i++) {
                    if (badByteRange(r, r.unmapOffset[i], r.unmapLength[i])) {
                        return DONE;
                    }
                    if (r.unmapLength[i] > 0) { // empty ranges are no-ops: keep the rest packed
                        r.unmapOffset[count] = r.unmapOffset[i];
                        r.unmapLength[count] = r.unmapLength[i];
                        count++;
                    }
                }
                r.unmapCount = count;
                if (count == 0) {
                    return noData(r);
                }
                r.ioOffset = r.unmapOffset[0];
                r.ioLength = r.unmapLength[0];
                return IO;
            }
            default -> {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE);
                return DONE;
            }
        }
    }

    /** A byte range that is not whole blocks or not within the capacity: sets ILLEGAL REQUEST and returns true. */
    private boolean badByteRange(ScsiRequest r, long offset, long length) {
        if (((offset | length) & (blockSize - 1)) != 0) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB);
            return true;
        }
        return outOfRange(r, offset >> blockShift, length >> blockShift); // negative stays negative: refused
    }

    int readWrite(ScsiRequest r, boolean read, long lba, long count, boolean fua) {
        if (directionMismatch(r, read ? ScsiRequest.DIR_IN : ScsiRequest.DIR_OUT)) {
            return DONE;
        }
        if (!read && writeProtected(r)) {
            return DONE;
        }
        if (outOfRange(r, lba, count)) {
            return DONE;
        }
        long bytes = count << blockShift; // count < 2^32, blockShift <= 16: no overflow
        if (bytes != r.data().totalLength()) {
            // The CDB and the buffer the initiator described disagree: refuse rather than guess.
            int field = r.cdbLength() == 6 ? 4 : r.cdbLength() == 10 ? 7 : r.cdbLength() == 12 ? 6 : 10;
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, field, 1);
            return DONE;
        }
        if (bytes == 0) {
            return noData(r);
        }
        if (bytes > MAX_TRANSFER_BYTES) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, r.cdbLength() == 16 ? 10 : 7, 1);
            return DONE;
        }
        r.read = read;
        r.op = read ? BlockOp.READ : BlockOp.WRITE;
        r.ioOffset = lba << blockShift;
        r.ioLength = bytes;
        r.fua = fua && !read;
        return IO;
    }

    int synchronizeCache(ScsiRequest r, long lba, long count) {
        if (outOfRange(r, lba, count)) {
            return DONE;
        }
        r.read = false;
        r.op = BlockOp.FLUSH;
        r.ioOffset = 0;
        r.ioLength = 0;
        return IO;
    }

    int unmap(ScsiRequest r, MemorySegment scratch) {
        if ((r.u8(1) & 0x01) != 0) { // ANCHOR
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        if (writeProtected(r)) {
            return DONE;
        }
        int paramLen = r.u16(7);
        if (paramLen == 0) {
            return noData(r);
        }
        if (paramLen < 8 || paramLen > r.data().totalLength()) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR, 7, 1);
            return DONE;
        }
        int max = (int) Math.min(paramLen, Math.min(scratch.byteSize(), 8 + 16L * MAX_UNMAP_DESCRIPTORS));
        r.data().gatherTo(scratch, 0, max);
        int dataLen = scratch.get(U16, 0) & 0xFFFF;
        int descLen = scratch.get(U16, 2) & 0xFFFF;
        if (descLen % 16 != 0 || descLen + 8L > paramLen || dataLen + 2L < descLen + 8L) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST, 2, 0);
            return DONE;
        }
        int n = descLen / 16;
        if (n > MAX_UNMAP_DESCRIPTORS) {
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST, 2, 0);
            return DONE;
        }
        int count = 0;
        for (int i = 0; i < n; i++) {
            long lba = scratch.get(U64, 8 + 16L * i);
            long len = scratch.get(U32, 16 + 16L * i) & 0xFFFFFFFFL;
            if (outOfRange(r, lba, len)) {
                return DONE;
            }
            if ((len << blockShift) > MAX_UNMAP_BYTES) {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_PARAMETER_LIST, 16 + 16 * i, 0);
                return DONE;
            }
            if (len > 0) {
                r.unmapOffset[count] = lba << blockShift;
                r.unmapLength[count] = len << blockShift;
                count++;
            }
        }
        if (count == 0) {
            return noData(r);
        }
        r.read = false;
        r.op = BlockOp.UNMAP;
        r.unmapCount = count;
        r.unmapNext = 1;
        r.ioOffset = r.unmapOffset[0];
        r.ioLength = r.unmapLength[0];
        return IO;
    }

    int writeSame16(ScsiRequest r, MemorySegment scratch) {
        int flags = r.u8(1);
        boolean unmapBit = (flags & 0x08) != 0;
        boolean ndob = (flags & 0x01) != 0;
        if ((flags & 0x10) != 0 || (flags & 0xE0) != 0) { // ANCHOR, WRPROTECT
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
            return DONE;
        }
        if (writeProtected(r)) {
            return DONE;
        }
        long lba = r.u64(2);
        long count = r.u32(10);
        if (count == 0 || (count << blockShift) > MAX_UNMAP_BYTES) { // WSNZ=1 in VPD B0
            r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 10, 1);
            return DONE;
        }
        if (outOfRange(r, lba, count)) {
            return DONE;
        }
        r.read = false;
        if (!ndob) {
            if (directionMismatch(r, ScsiRequest.DIR_OUT)) {
                return DONE;
            }
            if (r.data().totalLength() != blockSize) {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_PARAMETER_LIST_LENGTH_ERROR, 10, 1);
                return DONE;
            }
            if (!r.data().isZero(blockSize)) {
                // A pattern is written even with the UNMAP bit: unmapped blocks would read as zeros, not as
                // the pattern (SBC-3 5.45: the device unmaps only when that reads back the same). The
                // queue copies the block into its pattern buffer and writes [offset, offset+length) in
                // chunks; ioOffset advances per chunk.
                r.op = BlockOp.WRITE_PATTERN;
                r.unmapCount = 0;
                r.unmapOffset[0] = lba << blockShift;
                r.unmapLength[0] = count << blockShift;
                r.ioOffset = r.unmapOffset[0];
                r.ioLength = 0;
                return IO;
            }
        }
        r.op = unmapBit ? BlockOp.UNMAP : BlockOp.WRITE_ZEROES;
        r.unmapCount = 1;
        r.unmapNext = 1;
        r.unmapOffset[0] = lba << blockShift;
        r.unmapLength[0] = count << blockShift;
        r.ioOffset = r.unmapOffset[0];
        r.ioLength = r.unmapLength[0];
        return IO;
    }


    int readCapacity10(ScsiRequest r, MemorySegment scratch) {
        long last = lun.blocks() - 1;
        scratch.set(U32, 0, (int) Math.min(last, 0xFFFFFFFFL));
        scratch.set(U32, 4, blockSize);
        return SpcPages.respond(r, scratch, 8, 8);
    }

    int readCapacity16(ScsiRequest r, MemorySegment scratch) {
        long alloc = r.u32(10);
        scratch.asSlice(0, 32).fill((byte) 0);
        scratch.set(U64, 0, lun.blocks() - 1);
        scratch.set(U32, 8, blockSize);
        scratch.set(ValueLayout.JAVA_BYTE, 13, (byte) physicalExponent);
        scratch.set(ValueLayout.JAVA_BYTE, 14, (byte) ((discard ? 0x80 : 0) | 0x40)); // LBPME (discards), LBPRZ
        return SpcPages.respond(r, scratch, 32, (int) Math.min(alloc, 32));
    }

    /**
     * A write that failed for lack of space on the host file system (-ENOSPC or -EDQUOT): counted, and logged
     * once per LUN, so a full host disk is visible in status and logs instead of passing for a medium error.
     */
    private boolean noSpace(long result) {
        if (result != -DiskFullException.ENOSPC && result != -DiskFullException.EDQUOT) {
            return false;
        }
        if (stats.recordNoSpace()) {
            System.getLogger("phost.storage").log(System.Logger.Level.WARNING, "no space left for disk=" + lun.name()
                + " (the file system holding it is full; writes fail with SPACE ALLOCATION FAILED until space is freed)");
        }
        return true;
    }

    /** Maps an engine result to the request's status and sense, and counts it. */
    void complete(ScsiRequest r, long result, long nowNanos) {
        long latency = nowNanos - r.startNanos;
        switch (r.op) {
            case BlockOp.READ, BlockOp.WRITE -> {
                if (result == r.ioLength) {
                    r.good(result);
                    if (r.read) {
                        stats.recordRead(result, latency);
                    } else {
                        stats.recordWrite(result, latency);
                    }
                } else if (!r.read && noSpace(result)) {
                    r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_SPACE_ALLOCATION_FAILED);
                    r.senseInformation(r.ioOffset >>> blockShift);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, r.read ? Scsi.ASC_UNRECOVERED_READ_ERROR : Scsi.ASC_WRITE_ERROR);
                    r.senseInformation(r.ioOffset >>> blockShift);
                }
            }
            case BlockOp.WRITE_PATTERN -> {
                if (result == r.ioLength) {
                    r.good(blockSize); // the one block of data-out the command carried
                    stats.recordWrite(r.unmapLength[0], latency);
                } else if (noSpace(result)) {
                    r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_SPACE_ALLOCATION_FAILED);
                    r.senseInformation(r.ioOffset >>> blockShift);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
                    r.senseInformation(r.ioOffset >>> blockShift);
                }
            }
            case BlockOp.FLUSH -> {
                if (result == 0) {
                    r.good(0);
                    stats.recordFlush(latency);
                } else if (noSpace(result)) {
                    r.checkCondition(Scsi.KEY_DATA_PROTECT, Scsi.ASC_SPACE_ALLOCATION_FAILED);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
                }
            }
            default -> {
                if (result == 0) {
                    r.good(0);
                    stats.recordUnmap(latency);
                } else {
                    stats.recordError();
                    r.checkCondition(Scsi.KEY_MEDIUM_ERROR, Scsi.ASC_WRITE_ERROR);
                    r.senseInformation(r.ioOffset >>> blockShift);
                }
            }
        }
    }
}
