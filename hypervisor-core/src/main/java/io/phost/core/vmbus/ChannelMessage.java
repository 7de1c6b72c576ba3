package io.phost.core.vmbus;

import static io.phost.core.vmbus.PacketDescriptor.U32;
import static io.phost.core.vmbus.PacketDescriptor.U64;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.UUID;

/**
 * Channel-management messages on the control socket, one per SOCK_SEQPACKET datagram, laid out like
 * Linux's {@code struct vmbus_channel_message_header} family (include/linux/hyperv.h). Little-endian.
 * Every message starts with
 * <pre>
 *  0            4            8
 *  | msgtype u32 | padding u32 | body ...          (at most {@link #MAX_LENGTH} bytes in all)
 * </pre>
 * Body layouts (byte offsets from the start of the message):
 * <pre>
 *  OFFERCHANNEL (1)        if_type guid@8 | if_instance guid@24 | reserved u64@40,@48 | chn_flags u16@56 |
 *                          mmio_megabytes u16@58 | user_def[120]@60 | sub_channel_index u16@180 |
 *                          reserved u16@182 | child_relid u32@184 | monitorid u8@188 | monitor_alloc u8@189 |
 *                          dedicated_interrupt u16@190 | connection_id u32@192                     = 196
 *  RESCIND_CHANNELOFFER(2) child_relid u32@8                                                         = 12
 *  REQUESTOFFERS (3)       -                                                                         =  8
 *  ALLOFFERS_DELIVERED (4) -                                                                         =  8
 *  OPENCHANNEL (5)         child_relid@8 | openid@12 | ringbuffer_gpadlhandle@16 | target_vp@20 |
 *                          downstream_ringbuffer_pageoffset@24 | userdata[120]@28                    = 148
 *                          + SCM_RIGHTS: [guest→host doorbell eventfd, host→guest doorbell eventfd]
 *  OPENCHANNEL_RESULT (6)  child_relid@8 | openid@12 | status@16 (0 = ok)                            = 20
 *  CLOSECHANNEL (7)        child_relid@8                                                             = 12
 *  GPADL_HEADER (8)        child_relid@8 | gpadl@12 | range_buflen u16@16 | rangecount u16@18 |
 *                          gpa_range{byte_count u32@20, byte_offset u32@24, pfn u64[]@28}   (≤ 26 pfns)
 *  GPADL_BODY (9)          msgnumber@8 | gpadl@12 | pfn u64[]@16                           (≤ 28 pfns)
 *  GPADL_CREATED (10)      child_relid@8 | gpadl@12 | creation_status@16                             = 20
 *  GPADL_TEARDOWN (11)     child_relid@8 | gpadl@12                                                  = 16
 *  GPADL_TORNDOWN (12)     gpadl@8                                                                   = 12
 *  INITIATE_CONTACT (14)   vmbus_version_requested@8 | target_vcpu@12 | interrupt_page u64@16 |
 *                          monitor_page1 u64@24 | monitor_page2 u64@32                               = 40
 *                          phost extension: credential[32]@40 | name_len u8@72 | name@73 (≤ 64 bytes)
 *                          + SCM_RIGHTS: [guest memory memfd] (sealed against shrink)
 *  VERSION_RESPONSE (15)   version_supported u8@8 | connection_state u8@9 | padding u16@10 |
 *                          msg_conn_id u32@12                                                        = 16
 *  UNLOAD (16), UNLOAD_RESPONSE (17)  -                                                              =  8
 * </pre>
 */
public final class ChannelMessage {
    public static final int OFFERCHANNEL = 1;
    public static final int RESCIND_CHANNELOFFER = 2;
    public static final int REQUESTOFFERS = 3;
    public static final int ALLOFFERS_DELIVERED = 4;
    public static final int OPENCHANNEL = 5;
    public static final int OPENCHANNEL_RESULT = 6;
    public static final int CLOSECHANNEL = 7;
    public static final int GPADL_HEADER = 8;
    public static final int GPADL_BODY = 9;
    public static final int GPADL_CREATED = 10;
    public static final int GPADL_TEARDOWN = 11;
    public static final int GPADL_TORNDOWN = 12;
    public static final int INITIATE_CONTACT = 14;
    public static final int VERSION_RESPONSE = 15;
    public static final int UNLOAD = 16;
    public static final int UNLOAD_RESPONSE = 17;

    /** Hyper-V's message payload limit (HV_MESSAGE_PAYLOAD_BYTE_COUNT). */
    public static final int MAX_LENGTH = 240;
    public static final int HEADER_LENGTH = 8;
    public static final int MSGTYPE_OFFSET = 0;

    public static final int OFFER_IF_TYPE = 8;
    public static final int OFFER_IF_INSTANCE = 24;
    public static final int OFFER_USER_DEF = 60;
    public static final int OFFER_USER_DEF_LENGTH = 120;
    public static final int OFFER_SUB_CHANNEL_INDEX = 180;
    public static final int OFFER_CHILD_RELID = 184;
    public static final int OFFER_CONNECTION_ID = 192;
    public static final int OFFER_LENGTH = 196;

    public static final int RELID = 8;
    public static final int RELID_LENGTH = 12;

    public static final int OPEN_OPENID = 12;
    public static final int OPEN_GPADL = 16;
    public static final int OPEN_TARGET_VP = 20;
    public static final int OPEN_DOWNSTREAM_OFFSET = 24;
    public static final int OPEN_USERDATA = 28;
    public static final int OPEN_USERDATA_LENGTH = 120;
    public static final int OPEN_LENGTH = 148;
    public static final int OPEN_RESULT_STATUS = 16;
    public static final int OPEN_RESULT_LENGTH = 20;

    public static final int GPADL_HANDLE = 12;
    public static final int GPADL_RANGE_BUFLEN = 16;
    public static final int GPADL_RANGECOUNT = 18;
    public static final int GPADL_BYTE_COUNT = 20;
    public static final int GPADL_BYTE_OFFSET = 24;
    public static final int GPADL_HEADER_PFNS = 28;
    public static final int GPADL_HEADER_MAX_PFNS = (MAX_LENGTH - GPADL_HEADER_PFNS) / 8;
    public static final int BODY_MSGNUMBER = 8;
    public static final int BODY_GPADL = 12;
    public static final int BODY_PFNS = 16;
    public static final int BODY_MAX_PFNS = (MAX_LENGTH - BODY_PFNS) / 8;
    public static final int GPADL_CREATED_STATUS = 16;
    public static final int GPADL_CREATED_LENGTH = 20;
    public static final int GPADL_TEARDOWN_LENGTH = 16;
    public static final int TORNDOWN_GPADL = 8;
    public static final int TORNDOWN_LENGTH = 12;

    public static final int CONTACT_VERSION = 8;
    public static final int CONTACT_TARGET_VCPU = 12;
    public static final int CONTACT_CREDENTIAL = 40;
    public static final int CREDENTIAL_LENGTH = 32;
    public static final int CONTACT_NAME_LENGTH = 72;
    public static final int CONTACT_NAME = 73;
    public static final int MAX_NAME_LENGTH = 64;
    public static final int VERSION_SUPPORTED = 8;
    public static final int VERSION_CONNECTION_STATE = 9;
    public static final int VERSION_MSG_CONN_ID = 12;
    public static final int VERSION_RESPONSE_LENGTH = 16;

    /** VERSION_WIN10_V5_3 … VERSION_WIN10: the versions this host speaks, newest first ((major << 16) | minor). */
    public static final int[] VERSIONS = {(5 << 16) | 3, (5 << 16) | 2, (5 << 16) | 1, (5 << 16), (4 << 16) | 1};

    /** Status values (NTSTATUS-like, as Hyper-V sends them). */
    public static final int STATUS_OK = 0;
    public static final int STATUS_UNSUCCESSFUL = 0xC0000001;
    public static final int STATUS_INVALID_PARAMETER = 0xC000000D;

    private ChannelMessage() {}

    public static int type(MemorySegment msg) {
        return msg.get(U32, MSGTYPE_OFFSET);
    }

    /** Clears the first {@code length} bytes and writes the header. */
    public static void header(MemorySegment msg, int type, int length) {
        msg.asSlice(0, length).fill((byte) 0);
        msg.set(U32, MSGTYPE_OFFSET, type);
    }

    public static int u32(MemorySegment msg, long offset) {
        return msg.get(U32, offset);
    }

    public static void u32(MemorySegment msg, long offset, int value) {
        msg.set(U32, offset, value);
    }

    public static long u64(MemorySegment msg, long offset) {
        return msg.get(U64, offset);
    }

    public static void u64(MemorySegment msg, long offset, long value) {
        msg.set(U64, offset, value);
    }

    public static int u16(MemorySegment msg, long offset) {
        return msg.get(PacketDescriptor.U16, offset) & 0xffff;
    }

    public static void u16(MemorySegment msg, long offset, int value) {
        msg.set(PacketDescriptor.U16, offset, (short) value);
    }

    /** Writes {@code id} in the Windows GUID byte order (first three fields little-endian). */
    public static void guid(MemorySegment msg, long offset, UUID id) {
        long msb = id.getMostSignificantBits();
        long lsb = id.getLeastSignificantBits();
        msg.set(U32, offset, (int) (msb >>> 32));
        msg.set(PacketDescriptor.U16, offset + 4, (short) (msb >>> 16));
        msg.set(PacketDescriptor.U16, offset + 6, (short) msb);
        for (int i = 0; i < 8; i++) {
            msg.set(ValueLayout.JAVA_BYTE, offset + 8 + i, (byte) (lsb >>> (56 - 8 * i)));
        }
    }

    /** Reads a GUID written by {@link #guid(MemorySegment, long, UUID)}. */
    public static UUID guid(MemorySegment msg, long offset) {
        long msb = ((long) msg.get(U32, offset) << 32)
            | ((long) (msg.get(PacketDescriptor.U16, offset + 4) & 0xffff) << 16)
            | (msg.get(PacketDescriptor.U16, offset + 6) & 0xffff);
        long lsb = 0;
        for (int i = 0; i < 8; i++) {
            lsb = (lsb << 8) | (msg.get(ValueLayout.JAVA_BYTE, offset + 8 + i) & 0xff);
        }
        return new UUID(msb, lsb);
    }

    public static String name(int type) {
        return switch (type) {
            case OFFERCHANNEL -> "OFFERCHANNEL";
            case RESCIND_CHANNELOFFER -> "RESCIND_CHANNELOFFER";
            case REQUESTOFFERS -> "REQUESTOFFERS";
            case ALLOFFERS_DELIVERED -> "ALLOFFERS_DELIVERED";
            case OPENCHANNEL -> "OPENCHANNEL";
            case OPENCHANNEL_RESULT -> "OPENCHANNEL_RESULT";
            case CLOSECHANNEL -> "CLOSECHANNEL";
            case GPADL_HEADER -> "GPADL_HEADER";
            case GPADL_BODY -> "GPADL_BODY";
            case GPADL_CREATED -> "GPADL_CREATED";
            case GPADL_TEARDOWN -> "GPADL_TEARDOWN";
            case GPADL_TORNDOWN -> "GPADL_TORNDOWN";
            case INITIATE_CONTACT -> "INITIATE_CONTACT";
            case VERSION_RESPONSE -> "VERSION_RESPONSE";
            case UNLOAD -> "UNLOAD";
            case UNLOAD_RESPONSE -> "UNLOAD_RESPONSE";
            default -> "msgtype " + Integer.toUnsignedString(type);
        };
    }
}
