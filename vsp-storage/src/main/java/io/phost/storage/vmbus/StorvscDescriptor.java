package io.phost.storage.vmbus;

import java.lang.foreign.ValueLayout;
import java.util.UUID;

/**
 * The storvsc wire format (Linux {@code drivers/scsi/storvsc_drv.c}; all little-endian, packed).
 * <pre>
 * struct vstor_packet (64 bytes; 48 before protocol 5.1, which lacks the win8 extension)
 *   0 operation u32   4 flags u32 (REQUEST_COMPLETION_FLAG=1)   8 status u32 (0 = success)
 *  12 union { vmscsi_request | channel_properties | protocol_version | u16 sub_channel_count | u8[52] }
 *
 * struct vmscsi_request (at 12; 52 bytes)
 *   0 length u16        2 srb_status u8      3 scsi_status u8
 *   4 port u8  5 path_id u8  6 target_id u8  7 lun u8
 *   8 cdb_length u8     9 sense_info_length u8   10 data_in u8 (0 write, 1 read, 2 unknown)   11 reserved
 *  12 data_transfer_length u32
 *  16 cdb[16] / sense_data[20] (union, 20 bytes)
 *  36 win8 extension: reserve u16, queue_tag u8, queue_action u8, srb_flags u32, time_out u32, queue_sort_key u32
 *
 * struct vmstorage_channel_properties (at 12; 24 bytes)
 *   0 reserved u32   4 max_channel_cnt u16   6 reserved u16   8 flags u32 (MULTI_CHANNEL=1)
 *  12 max_transfer_bytes u32   16 reserved u64
 *
 * struct vmstorage_protocol_version (at 12): major_minor u16, revision u16
 * </pre>
 * Requests carrying data arrive as GPA-direct packets (type 9) whose single range lists the data pages.
 */
public final class StorvscDescriptor {
    /** storvsc's SCSI controller class GUID. */
    public static final UUID SCSI_INTERFACE = UUID.fromString("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f");

    public static final int OP_COMPLETE_IO = 1;
    public static final int OP_REMOVE_DEVICE = 2;
    public static final int OP_EXECUTE_SRB = 3;
    public static final int OP_RESET_LUN = 4;
    public static final int OP_RESET_ADAPTER = 5;
    public static final int OP_RESET_BUS = 6;
    public static final int OP_BEGIN_INITIALIZATION = 7;
    public static final int OP_END_INITIALIZATION = 8;
    public static final int OP_QUERY_PROTOCOL_VERSION = 9;
    public static final int OP_QUERY_PROPERTIES = 10;
    public static final int OP_ENUMERATE_BUS = 11;
    public static final int OP_FCHBA_DATA = 12;
    public static final int OP_CREATE_SUB_CHANNELS = 13;

    public static final int REQUEST_COMPLETION_FLAG = 1;
    public static final int STATUS_SUCCESS = 0;
    /** NTSTATUS STATUS_UNSUCCESSFUL / STATUS_INVALID_DEVICE_REQUEST: what Hyper-V answers to bad requests. */
    public static final int STATUS_UNSUCCESSFUL = 0xC0000001;
    public static final int STATUS_INVALID_DEVICE_REQUEST = 0xC0000010;
    public static final int STATUS_REVISION_MISMATCH = 0xC0000059;

    public static final int VERSION_WIN8 = 0x0501;
    public static final int VERSION_WIN8_1 = 0x0600;
    public static final int VERSION_WIN10 = 0x0602;

    public static final int PACKET_SIZE = 64;
    public static final int OPERATION_OFFSET = 0;
    public static final int FLAGS_OFFSET = 4;
    public static final int STATUS_OFFSET = 8;
    public static final int UNION_OFFSET = 12;

    public static final int SRB_LENGTH = UNION_OFFSET;
    public static final int SRB_SRB_STATUS = UNION_OFFSET + 2;
    public static final int SRB_SCSI_STATUS = UNION_OFFSET + 3;
    public static final int SRB_PORT = UNION_OFFSET + 4;
    public static final int SRB_PATH_ID = UNION_OFFSET + 5;
    public static final int SRB_TARGET_ID = UNION_OFFSET + 6;
    public static final int SRB_LUN = UNION_OFFSET + 7;
    public static final int SRB_CDB_LENGTH = UNION_OFFSET + 8;
    public static final int SRB_SENSE_INFO_LENGTH = UNION_OFFSET + 9;
    public static final int SRB_DATA_IN = UNION_OFFSET + 10;
    public static final int SRB_DATA_TRANSFER_LENGTH = UNION_OFFSET + 12;
    public static final int SRB_CDB = UNION_OFFSET + 16;
    public static final int SRB_SENSE = UNION_OFFSET + 16;
    public static final int SRB_SENSE_BUFFER_SIZE = 20;
    public static final int VMSCSI_REQUEST_LENGTH = 52;

    public static final int DATA_WRITE = 0;
    public static final int DATA_READ = 1;
    public static final int DATA_UNKNOWN = 2;

    public static final int PROP_MAX_CHANNEL_CNT = UNION_OFFSET + 4;
    public static final int PROP_FLAGS = UNION_OFFSET + 8;
    public static final int PROP_MAX_TRANSFER_BYTES = UNION_OFFSET + 12;
    public static final int PROP_MULTI_CHANNEL = 1;
    public static final int VERSION_MAJOR_MINOR = UNION_OFFSET;
    public static final int SUB_CHANNEL_COUNT = UNION_OFFSET;

    // SRB status codes (Windows srb.h).
    public static final int SRB_STATUS_SUCCESS = 0x01;
    public static final int SRB_STATUS_ABORTED = 0x02;
    public static final int SRB_STATUS_ERROR = 0x04;
    public static final int SRB_STATUS_INVALID_REQUEST = 0x06;
    public static final int SRB_STATUS_INVALID_LUN = 0x20;
    public static final int SRB_STATUS_AUTOSENSE_VALID = 0x80;

    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    private StorvscDescriptor() {}
}
