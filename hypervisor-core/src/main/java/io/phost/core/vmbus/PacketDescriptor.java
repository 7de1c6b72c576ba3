package io.phost.core.vmbus;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * One VMBus packet in a ring (Linux {@code struct vmpacket_descriptor}).
 * <pre>
 *   0               2               4               6               8                              16
 *  +---------------+---------------+---------------+---------------+-------------------------------+
 *  | type     u16  | offset8  u16  | len8     u16  | flags    u16  | trans_id                  u64 |
 *  +---------------+---------------+---------------+---------------+-------------------------------+
 *  | descriptor extension (GPA-direct: u32 reserved, u32 range_count, gpa_range[]) ... offset8*8    |
 *  | data ...                                                         padded to 8 bytes, len8*8    |
 *  +-----------------------------------------------------------------------------------------------+
 *  | trailer u64: writer's write_index before this packet, in the high 32 bits                      |
 *  +-----------------------------------------------------------------------------------------------+
 *  offset8 = data offset / 8 (>= 2), len8 = packet length without trailer / 8.
 * </pre>
 */
public final class PacketDescriptor {
    public static final int TYPE_OFFSET = 0;
    public static final int OFFSET8_OFFSET = 2;
    public static final int LEN8_OFFSET = 4;
    public static final int FLAGS_OFFSET = 6;
    public static final int TRANS_ID_OFFSET = 8;
    public static final int HEADER_LENGTH = 16;
    public static final int TRAILER_LENGTH = 8;

    /** VM_PKT_DATA_INBAND */
    public static final int TYPE_INBAND = 6;
    /** VM_PKT_DATA_USING_GPA_DIRECT */
    public static final int TYPE_GPA_DIRECT = 9;
    /** VM_PKT_COMP */
    public static final int TYPE_COMPLETION = 11;
    /** VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED */
    public static final int FLAG_COMPLETION_REQUESTED = 1;
    /** Largest packet len8 can describe. */
    public static final int MAX_PACKET_LENGTH = 0xffff * 8;

    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private PacketDescriptor() {}

    public static int type(MemorySegment buf, long packet) {
        return buf.get(U16, packet + TYPE_OFFSET) & 0xffff;
    }

    public static int offset8(MemorySegment buf, long packet) {
        return buf.get(U16, packet + OFFSET8_OFFSET) & 0xffff;
    }

    public static int len8(MemorySegment buf, long packet) {
        return buf.get(U16, packet + LEN8_OFFSET) & 0xffff;
    }

    public static int flags(MemorySegment buf, long packet) {
        return buf.get(U16, packet + FLAGS_OFFSET) & 0xffff;
    }

    public static long transId(MemorySegment buf, long packet) {
        return buf.get(U64, packet + TRANS_ID_OFFSET);
    }

    /**
     * Where the data of the packet at {@code packet} starts ({@code hv_pkt_data}). The ring validated
     * offset8 before handing the packet out, but a hostile guest may rewrite the bytes since: callers that
     * need the value more than once must read it once and keep it.
     */
    public static long dataOffset(MemorySegment buf, long packet) {
        return packet + 8L * offset8(buf, packet);
    }

    /** Packet length without trailer, as the ring validated it, minus the descriptor: {@code hv_pkt_datalen}. */
    public static int dataLength(MemorySegment buf, long packet, int packetLength) {
        int off = 8 * offset8(buf, packet);
        return off > packetLength ? 0 : packetLength - off;
    }

    /** 8-byte aligned size of {@code n}. */
    public static int align8(int n) {
        return (n + 7) & ~7;
    }
}
