package io.phost.network;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.UUID;

/**
 * The phost network protocol over VMBus: netvsc's NVSP message numbers and layouts for initialisation,
 * buffers, data packets, sub-channels and the data-path switch, with two simplifications (documented in
 * docs/vswitch.md): the data message carries a raw Ethernet frame in the buffer section instead of an RNDIS
 * packet, and MAC/MTU/link come from one QUERY_CONFIG message instead of RNDIS OID queries. Offload state
 * (what netvsc carries as RNDIS per-packet info: checksum info, LSO/GSO info) travels as a virtio_net_hdr in
 * front of each frame when the guest asks for it in NDIS_CONFIG ({@link #CAP_VNET_HDR}):
 * <pre>
 *  section without the header:  [ Ethernet frame ]                         (MTU-sized sections, 2 KiB min)
 *  section with the header:     [ virtio_net_hdr 12 ][ Ethernet frame ]    (66,048-byte sections: a 64 KiB
 *                                 flags gso_type hdr_len gso_size           GSO super-frame fits)
 *                                 csum_start csum_offset num_buffers(0)
 *  SEND_RNDIS_PKT length counts the header. Guest → host: NEEDS_CSUM / gso_type describe an unfinished frame
 *  (the switch finishes it for ports that cannot). Host → guest: only what the guest listed in its caps.
 * </pre> Every message is
 * an inband VMBus packet (type 6) whose payload starts with a u32 message type; all fields little-endian.
 * <pre>
 * guest → host                                              host → guest (completion, type 11, same trans id)
 *  INIT            1: u32 type | u32 min_ver | u32 max_ver    INIT_COMPLETE 2: type | u32 version | u32 status
 *  QUERY_CONFIG 4096: u32 type                                 4097: type | status | u8 mac[6] u16 pad | u32 mtu | u32 link
 *  NDIS_CONFIG   125: u32 type | u32 mtu | u64 caps            (no completion; before the buffers)
 *                    caps bit 32: per-frame virtio_net_hdr; bits 0-5: FrameSink.OFFLOAD_* the guest finishes
 *  SEND_RECV_BUF 101: u32 type | u32 gpadl | u16 id           102: type | status | u32 sections(1) |
 *                                                                   u32 offset | u32 sub_alloc_size | u32 num_sub_allocs | u32 end
 *  SEND_SEND_BUF 104: u32 type | u32 gpadl | u16 id           105: type | status | u32 section_size
 *  SEND_RNDIS_PKT 107: u32 type | u32 channel_type(0 data) | u32 section_index | u32 length
 *                                                              108: type | status
 *  SWITCH_DATA_PATH 129: u32 type | u32 active (0 synthetic, 1 VF)   (no completion)
 *  SUBCHANNEL 132: u32 type | u32 op (1 allocate) | u32 count  132: type | status | u32 count offered
 * host → guest
 *  SEND_RNDIS_PKT 107 (completion requested, trans id = section): a received frame in recv buffer section
 *     u32 type | u32 channel_type | u32 section_index | u32 length;  guest completes with 108
 *  LINK_STATE 4098: u32 type | RNDIS_INDICATE_STATUS_MSG: u32 msg_type (7) | u32 msg_length (20) |
 *     u32 status (RNDIS_STATUS_MEDIA_CONNECT 0x4001000B / _DISCONNECT 0x4001000C) | u32 buf_length (0) | u32 buf_offset (0)
 * </pre>
 */
public final class NvspDescriptor {
    /** netvsc's device class (hv_netvsc binds to this GUID). */
    public static final UUID NETVSC_TYPE = UUID.fromString("f8615163-df3e-46c5-913f-f2d2f965ed0e");

    public static final int MSG_INIT = 1;
    public static final int MSG_INIT_COMPLETE = 2;
    public static final int MSG_SEND_RECV_BUF = 101;
    public static final int MSG_SEND_RECV_BUF_COMPLETE = 102;
    public static final int MSG_SEND_SEND_BUF = 104;
    public static final int MSG_SEND_SEND_BUF_COMPLETE = 105;
    public static final int MSG_SEND_RNDIS_PKT = 107;
    public static final int MSG_SEND_RNDIS_PKT_COMPLETE = 108;
    public static final int MSG_NDIS_CONFIG = 125;
    public static final int MSG_SWITCH_DATA_PATH = 129;
    public static final int MSG_SUBCHANNEL = 132;
    public static final int MSG_QUERY_CONFIG = 4096;
    public static final int MSG_QUERY_CONFIG_COMPLETE = 4097;
    public static final int MSG_LINK_STATE = 4098;
    /** RNDIS (MS-RNDIS 2.2.10): a status indication, and the two media states a NIC's link reports with it. */
    public static final int RNDIS_INDICATE_STATUS_MSG = 7;
    public static final int RNDIS_STATUS_MEDIA_CONNECT = 0x4001_000B;
    public static final int RNDIS_STATUS_MEDIA_DISCONNECT = 0x4001_000C;
    /** LINK_STATE's length: the NVSP type, then the RNDIS indication (5 u32). */
    public static final int LINK_STATE_LENGTH = 24;

    public static final int STATUS_SUCCESS = 1;
    public static final int STATUS_FAILURE = 2;

    /** NVSP 6.1 (0x60001), the newest netvsc speaks; we accept guests offering a range that includes it. */
    public static final int VERSION_61 = 0x60001;
    public static final int VERSION_5 = 0x50000;

    public static final int TYPE_OFFSET = 0;
    public static final int INIT_MIN_OFFSET = 4;
    public static final int INIT_MAX_OFFSET = 8;
    public static final int INIT_LENGTH = 12;
    public static final int BUF_GPADL_OFFSET = 4;
    public static final int BUF_ID_OFFSET = 8;
    public static final int BUF_LENGTH = 10;
    public static final int PKT_CHANNEL_TYPE_OFFSET = 4;
    public static final int PKT_SECTION_OFFSET = 8;
    public static final int PKT_LENGTH_OFFSET = 12;
    public static final int PKT_LENGTH = 16;
    public static final int NDIS_MTU_OFFSET = 4;
    public static final int NDIS_CONFIG_LENGTH = 16;
    public static final int NDIS_CAPS_OFFSET = 8;
    /** NDIS_CONFIG caps: every section starts with a 12-byte virtio_net_hdr, both ways. */
    public static final long CAP_VNET_HDR = 1L << 32;
    /** NDIS_CONFIG caps: the FrameSink.OFFLOAD_* bits (csum, TSO4, TSO6, TSO_ECN, UFO, USO) the guest finishes. */
    public static final long CAP_OFFLOAD_MASK = 0x3f;
    /** Per-frame header length with {@link #CAP_VNET_HDR} (virtio_net_hdr with num_buffers, as TAP uses). */
    public static final int FRAME_HDR_LENGTH = 12;
    /** Section size with the header: header + largest GSO frame (65,550 bytes), rounded up to 512. */
    public static final int GSO_SECTION_SIZE = (FRAME_HDR_LENGTH + 65_550 + 511) & ~511;
    public static final int DATA_PATH_OFFSET = 4;
    public static final int DATA_PATH_LENGTH = 8;
    public static final int SUBCHANNEL_OP_OFFSET = 4;
    public static final int SUBCHANNEL_COUNT_OFFSET = 8;
    public static final int SUBCHANNEL_LENGTH = 12;
    public static final int STATUS_OFFSET = 4;
    public static final int CONFIG_MAC_OFFSET = 8;
    public static final int CONFIG_MTU_OFFSET = 16;
    public static final int CONFIG_LINK_OFFSET = 20;
    public static final int CONFIG_COMPLETE_LENGTH = 24;

    /** Section size of both buffers: one MTU-1500 frame with a VLAN tag fits. */
    public static final int SECTION_SIZE = 2048;

    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private NvspDescriptor() {}

    public static int u32(MemorySegment m, long offset) {
        return m.get(U32, offset);
    }

    public static void u32(MemorySegment m, long offset, int value) {
        m.set(U32, offset, value);
    }

    public static int u16(MemorySegment m, long offset) {
        return m.get(U16, offset) & 0xffff;
    }

    public static void u16(MemorySegment m, long offset, int value) {
        m.set(U16, offset, (short) value);
    }
}
