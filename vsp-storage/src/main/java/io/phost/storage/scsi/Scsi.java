package io.phost.storage.scsi;

/**
 * SCSI constants (SPC-4 / SBC-3): operation codes, status bytes, sense keys and the ASC/ASCQ pairs this
 * target reports. ASC/ASCQ are packed as {@code (asc << 8) | ascq}.
 */
public final class Scsi {
    // Operation codes. Group 0 (6-byte CDB): 0x00-0x1F; groups 1-2 (10): 0x20-0x5F; group 4 (16): 0x80-0x9F; group 5 (12): 0xA0-0xBF.
    public static final int TEST_UNIT_READY = 0x00;
    public static final int REQUEST_SENSE = 0x03;
    public static final int READ_6 = 0x08;
    public static final int WRITE_6 = 0x0A;
    public static final int INQUIRY = 0x12;
    public static final int MODE_SELECT_6 = 0x15;
    public static final int MODE_SENSE_6 = 0x1A;
    public static final int START_STOP_UNIT = 0x1B;
    public static final int READ_CAPACITY_10 = 0x25;
    public static final int READ_10 = 0x28;
    public static final int WRITE_10 = 0x2A;
    public static final int VERIFY_10 = 0x2F;
    public static final int SYNCHRONIZE_CACHE_10 = 0x35;
    public static final int WRITE_SAME_10 = 0x41;
    public static final int UNMAP = 0x42;
    public static final int LOG_SENSE = 0x4D;
    public static final int MODE_SENSE_10 = 0x5A;
    public static final int READ_16 = 0x88;
    public static final int WRITE_16 = 0x8A;
    public static final int SYNCHRONIZE_CACHE_16 = 0x91;
    public static final int WRITE_SAME_16 = 0x93;
    public static final int SERVICE_ACTION_IN_16 = 0x9E;
    public static final int SAI_READ_CAPACITY_16 = 0x10;
    public static final int REPORT_LUNS = 0xA0;
    public static final int READ_12 = 0xA8;
    public static final int WRITE_12 = 0xAA;

    // Status bytes.
    public static final byte STATUS_GOOD = 0x00;
    public static final byte STATUS_CHECK_CONDITION = 0x02;
    public static final byte STATUS_BUSY = 0x08;
    public static final byte STATUS_TASK_ABORTED = 0x40;

    // Sense keys.
    public static final int KEY_NO_SENSE = 0x0;
    public static final int KEY_NOT_READY = 0x2;
    public static final int KEY_MEDIUM_ERROR = 0x3;
    public static final int KEY_HARDWARE_ERROR = 0x4;
    public static final int KEY_ILLEGAL_REQUEST = 0x5;
    public static final int KEY_UNIT_ATTENTION = 0x6;
    public static final int KEY_DATA_PROTECT = 0x7;
    public static final int KEY_ABORTED_COMMAND = 0xB;

    // Additional sense code / qualifier.
    public static final int ASC_NONE = 0x0000;
    public static final int ASC_WRITE_ERROR = 0x0C00;
    /** SBC-3 "SPACE ALLOCATION FAILED WRITE PROTECT" (with DATA PROTECT): Linux reports it as ENOSPC. */
    public static final int ASC_SPACE_ALLOCATION_FAILED = 0x2707;
    public static final int ASC_UNRECOVERED_READ_ERROR = 0x1100;
    public static final int ASC_PARAMETER_LIST_LENGTH_ERROR = 0x1A00;
    public static final int ASC_INVALID_COMMAND_OPERATION_CODE = 0x2000;
    public static final int ASC_LBA_OUT_OF_RANGE = 0x2100;
    public static final int ASC_INVALID_FIELD_IN_CDB = 0x2400;
    public static final int ASC_LOGICAL_UNIT_NOT_SUPPORTED = 0x2500;
    public static final int ASC_INVALID_FIELD_IN_PARAMETER_LIST = 0x2600;
    public static final int ASC_WRITE_PROTECTED = 0x2700;
    public static final int ASC_SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900;
    public static final int ASC_REPORTED_LUNS_DATA_HAS_CHANGED = 0x3F0E;
    public static final int ASC_CAPACITY_DATA_HAS_CHANGED = 0x2A09;
    public static final int ASC_INTERNAL_TARGET_FAILURE = 0x4400;

    /** Fixed-format sense data length we return (18 bytes fits storvsc's 20-byte sense buffer). */
    public static final int FIXED_SENSE_LENGTH = 18;

    private Scsi() {}

    /** CDB length implied by the opcode's group code, or 0 for reserved/vendor groups. */
    public static int cdbLength(int opcode) {
        return switch (opcode >>> 5) {
            case 0 -> 6;
            case 1, 2 -> 10;
            case 4 -> 16;
            case 5 -> 12;
            default -> 0;
        };
    }
}
