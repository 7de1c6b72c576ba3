package io.phost.storage.scsi;

import java.lang.foreign.MemorySegment;

import static io.phost.storage.scsi.ScsiLun.DONE;

/**
 * The LUN kind every disk gets: SCSI emulated over the disk, block commands by {@link SbcCommands} and
 * identity and mode pages by {@link SpcPages}; REPORT LUNS is the target's.
 */
final class EmulatedLun implements LunKind {
    private final ScsiLun lun;
    final SbcCommands sbc;
    private final SpcPages spc;

    EmulatedLun(ScsiLun lun, SbcCommands sbc, SpcPages spc) {
        this.lun = lun;
        this.sbc = sbc;
        this.spc = spc;
    }

    @Override
    public boolean passesThrough() {
        return false;
    }

    @Override
    public int prepare(ScsiRequest r, int opcode, MemorySegment scratch, ScsiTarget target) {
        switch (opcode) {
            case Scsi.TEST_UNIT_READY -> {
                lun.stats().recordOther();
                return SbcCommands.noData(r);
            }
            case Scsi.REQUEST_SENSE -> {
                lun.stats().recordOther();
                return spc.requestSense(r, scratch);
            }
            case Scsi.INQUIRY -> {
                lun.stats().recordOther();
                return spc.inquiry(r, scratch);
            }
            case Scsi.MODE_SENSE_6, Scsi.MODE_SENSE_10 -> {
                lun.stats().recordOther();
                return spc.modeSense(r, scratch, opcode == Scsi.MODE_SENSE_10);
            }
            case Scsi.READ_CAPACITY_10 -> {
                lun.stats().recordOther();
                return sbc.readCapacity10(r, scratch);
            }
            case Scsi.SERVICE_ACTION_IN_16 -> {
                if ((r.u8(1) & 0x1F) != Scsi.SAI_READ_CAPACITY_16) {
                    r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_FIELD_IN_CDB, 1, 1);
                    return DONE;
                }
                lun.stats().recordOther();
                return sbc.readCapacity16(r, scratch);
            }
            case Scsi.REPORT_LUNS -> {
                lun.stats().recordOther();
                return target.reportLuns(r, scratch);
            }
            case Scsi.READ_6 -> {
                long lba = ((r.u8(1) & 0x1FL) << 16) | r.u16(2);
                int len = r.u8(4);
                return sbc.readWrite(r, true, lba, len == 0 ? 256 : len, false);
            }
            case Scsi.WRITE_6 -> {
                long lba = ((r.u8(1) & 0x1FL) << 16) | r.u16(2);
                int len = r.u8(4);
                return sbc.readWrite(r, false, lba, len == 0 ? 256 : len, false);
            }
            case Scsi.READ_10, Scsi.WRITE_10 -> {
                if (SbcCommands.protectBits(r)) {
                    return DONE;
                }
                return sbc.readWrite(r, opcode == Scsi.READ_10, r.u32(2), r.u16(7), (r.u8(1) & 0x08) != 0);
            }
            case Scsi.READ_12, Scsi.WRITE_12 -> {
                if (SbcCommands.protectBits(r)) {
                    return DONE;
                }
                return sbc.readWrite(r, opcode == Scsi.READ_12, r.u32(2), r.u32(6), (r.u8(1) & 0x08) != 0);
            }
            case Scsi.READ_16, Scsi.WRITE_16 -> {
                if (SbcCommands.protectBits(r)) {
                    return DONE;
                }
                return sbc.readWrite(r, opcode == Scsi.READ_16, r.u64(2), r.u32(10), (r.u8(1) & 0x08) != 0);
            }
            case Scsi.SYNCHRONIZE_CACHE_10 -> {
                return sbc.synchronizeCache(r, r.u32(2), r.u16(7));
            }
            case Scsi.SYNCHRONIZE_CACHE_16 -> {
                return sbc.synchronizeCache(r, r.u64(2), r.u32(10));
            }
            case Scsi.UNMAP -> {
                return sbc.unmap(r, scratch);
            }
            case Scsi.WRITE_SAME_16 -> {
                return sbc.writeSame16(r, scratch);
            }
            default -> {
                r.checkCondition(Scsi.KEY_ILLEGAL_REQUEST, Scsi.ASC_INVALID_COMMAND_OPERATION_CODE, 0, 1);
                return DONE;
            }
        }
    }
}
