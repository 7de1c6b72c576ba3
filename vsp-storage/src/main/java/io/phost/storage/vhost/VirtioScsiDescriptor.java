package io.phost.storage.vhost;

import java.lang.foreign.ValueLayout;

/**
 * virtio-scsi wire layouts (virtio 1.2 §5.6), little-endian, with the default sizes QEMU's
 * {@code vhost-user-scsi-pci} puts in its config space (cdb_size 32, sense_size 96; QEMU refuses a driver
 * that changes them).
 * <pre>
 *  queues: 0 control, 1 event, 2.. request
 *  request, device-readable (51 + data-out)   u8 lun[8] @0 | le64 id @8 | u8 task_attr @16 | u8 prio @17
 *                                             | u8 crn @18 | u8 cdb[32] @19 | data-out @51
 *  request, device-writable (108 + data-in)   le32 sense_len @0 | le32 residual @4 | le16 status_qualifier @8
 *                                             | u8 status @10 | u8 response @11 | u8 sense[96] @12 | data-in @108
 *  lun[8]: 1, target, 0x40 | (lun >> 8), lun & 0xff, 0, 0, 0, 0 (single-level flat space)
 *  control TMF (24 + 1)      le32 type 0 @0 | le32 subtype @4 | u8 lun[8] @8 | le64 id @16  → u8 response
 *  control AN (16 + 5)       le32 type 1|2 @0 | u8 lun[8] @4 | le32 event_requested @12 → le32 event_actual | u8 response
 *  event (16)                le32 event @0 | u8 lun[8] @4 | le32 reason @12
 * </pre>
 */
final class VirtioScsiDescriptor {
    static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED;
    static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED;

    static final int CDB_SIZE = 32;
    static final int SENSE_SIZE = 96;
    static final int REQ_LUN_OFFSET = 0;
    static final int REQ_ID_OFFSET = 8;
    static final int REQ_CDB_OFFSET = 19;
    static final int REQ_LENGTH = REQ_CDB_OFFSET + CDB_SIZE;
    static final int RESP_SENSE_LEN_OFFSET = 0;
    static final int RESP_RESIDUAL_OFFSET = 4;
    static final int RESP_STATUS_OFFSET = 10;
    static final int RESP_RESPONSE_OFFSET = 11;
    static final int RESP_SENSE_OFFSET = 12;
    static final int RESP_LENGTH = RESP_SENSE_OFFSET + SENSE_SIZE;

    static final int CTRL_TYPE_OFFSET = 0;
    static final int T_TMF = 0;
    static final int T_AN_QUERY = 1;
    static final int T_AN_SUBSCRIBE = 2;
    static final int TMF_LENGTH = 24;
    static final int TMF_SUBTYPE_OFFSET = 4;
    static final int TMF_LUN_OFFSET = 8;
    static final int TMF_ID_OFFSET = 16;
    static final int TMF_ABORT_TASK = 0;
    static final int TMF_ABORT_TASK_SET = 1;
    static final int TMF_CLEAR_TASK_SET = 3;
    static final int TMF_I_T_NEXUS_RESET = 4;
    static final int TMF_LOGICAL_UNIT_RESET = 5;
    static final int TMF_QUERY_TASK = 6;
    static final int TMF_QUERY_TASK_SET = 7;
    static final int AN_LENGTH = 16;

    static final int EVENT_LENGTH = 16;
    static final int T_NO_EVENT = 0;

    // Responses (virtio 1.2 §5.6.6.1, §5.6.6.2).
    static final byte S_OK = 0;
    static final byte S_OVERRUN = 1;
    static final byte S_ABORTED = 2;
    static final byte S_BAD_TARGET = 3;
    static final byte S_FAILURE = 9;
    static final byte S_FUNCTION_COMPLETE = 0;
    static final byte S_FUNCTION_SUCCEEDED = 10;
    static final byte S_FUNCTION_REJECTED = 11;
    static final byte S_INCORRECT_LUN = 12;

    static final int CONTROL_QUEUE = 0;
    static final int EVENT_QUEUE = 1;
    static final int FIRST_REQUEST_QUEUE = 2;

    private VirtioScsiDescriptor() {}

    /** The LUN a single-level {@code lun[8]} (bytes b0..b3) names on target 0, or -1 for another target or format. */
    static int lun(int b0, int b1, int b2, int b3) {
        if (b0 != 1 || b1 != 0) {
            return -1;
        }
        if (b2 == 0) {
            return b3;
        }
        if ((b2 & 0xC0) != 0x40) {
            return -1;
        }
        return ((b2 & 0x3F) << 8) | b3;
    }
}
