package io.phost.storage.scsi;

/**
 * How a core request ended, in transport-neutral terms: an adapter maps this to its wire's status (virtio-blk
 * status byte, NBD errno) instead of reading SCSI sense itself. Derived from the request's status and sense,
 * so SCSI transports and block transports see the same outcome for the same failure.
 */
public enum BlockResult {
    OK,
    /** The host file system is full (SPACE ALLOCATION FAILED). */
    NO_SPACE,
    /** A write to a read-only LUN (WRITE PROTECTED). */
    READ_ONLY,
    /** The operation is not supported (INVALID COMMAND OPERATION CODE). */
    UNSUPPORTED,
    /** Bad range, alignment or field (any other ILLEGAL REQUEST). */
    INVALID,
    /** The backend failed (MEDIUM ERROR and everything else). */
    IO_ERROR;

    static BlockResult of(ScsiRequest r) {
        if (r.status() == Scsi.STATUS_GOOD) {
            return OK;
        }
        int key = r.senseKey();
        int ascq = r.ascq();
        if (key == Scsi.KEY_DATA_PROTECT) {
            return ascq == Scsi.ASC_SPACE_ALLOCATION_FAILED ? NO_SPACE : READ_ONLY;
        }
        if (key == Scsi.KEY_ILLEGAL_REQUEST) {
            return ascq == Scsi.ASC_INVALID_COMMAND_OPERATION_CODE ? UNSUPPORTED : INVALID;
        }
        return IO_ERROR;
    }
}
