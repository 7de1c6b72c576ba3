package io.phost.vswitch;

import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * Offload state travelling with a frame: the fields of a virtio_net_hdr (little-endian on the wire), the same
 * header TAP ({@code IFF_VNET_HDR}), AF_PACKET ({@code PACKET_VNET_HDR}) and a virtio-net guest use, so a
 * vhost-user-net or TAP adapter fills it with one {@link #readFrom} and writes it back with {@link #writeTo}.
 * <pre>
 *   0: u8 flags (1 = NEEDS_CSUM, 2 = DATA_VALID)   1: u8 gso_type (0 NONE, 1 TCPV4, 3 UDP (UFO), 4 TCPV6,
 *                                                                  5 UDP_L4 (USO), 0x80 ECN bit)
 *   2: u16 hdr_len   4: u16 gso_size   6: u16 csum_start   8: u16 csum_offset   [10: u16 num_buffers]
 * </pre>
 * NEEDS_CSUM: the checksum field at csum_start + csum_offset holds the pseudo-header sum; whoever transmits
 * sums from csum_start to the end and stores the complement (CHECKSUM_PARTIAL). gso_type != NONE: the frame
 * is a super-frame to be cut into gso_size payload pieces. DATA_VALID is only a hint (the checksum was
 * checked) and needs nothing from a receiver. {@link #requiredOffloads} says which {@link FrameSink#offloads}
 * bits a destination needs to take the frame as it is; otherwise the switch completes it in software
 * ({@code SoftwareOffload}).
 * csum_start and hdr_len count from the start of the Ethernet frame, so adding or removing a VLAN tag
 * moves them by 4 ({@link #copyShifted}). One mutable instance per producer, reused for every frame.
 */
public final class PacketMeta {
    public static final int FLAG_NEEDS_CSUM = 1;
    public static final int FLAG_DATA_VALID = 2;
    public static final int GSO_NONE = 0;
    public static final int GSO_TCPV4 = 1;
    public static final int GSO_UDP = 3;
    public static final int GSO_TCPV6 = 4;
    public static final int GSO_UDP_L4 = 5;
    public static final int GSO_ECN = 0x80;
    /** Bytes of a virtio_net_hdr without num_buffers, and with it (VERSION_1 / MRG_RXBUF). */
    public static final int VNET_HDR_LENGTH = 10;
    public static final int VNET_HDR_MRG_LENGTH = 12;
    /** A frame with nothing to offload; sinks without offload support accept only these. */
    public static final PacketMeta NONE = new PacketMeta();

    public int flags;
    public int gsoType;
    public int hdrLen;
    public int gsoSize;
    public int csumStart;
    public int csumOffset;

    /** True when the frame needs nothing from its receiver: no partial checksum, no segmentation. */
    public boolean isPlain() {
        return (flags & FLAG_NEEDS_CSUM) == 0 && gsoType == 0;
    }

    /** The {@link FrameSink} offload bits a destination must have to take this frame unchanged. */
    public int requiredOffloads() {
        int need = (flags & FLAG_NEEDS_CSUM) != 0 ? FrameSink.OFFLOAD_CSUM : 0;
        switch (gsoType & ~GSO_ECN) {
            case GSO_NONE -> { }
            case GSO_TCPV4 -> need |= FrameSink.OFFLOAD_CSUM | FrameSink.OFFLOAD_TSO4
                | ((gsoType & GSO_ECN) != 0 ? FrameSink.OFFLOAD_TSO_ECN : 0);
            case GSO_TCPV6 -> need |= FrameSink.OFFLOAD_CSUM | FrameSink.OFFLOAD_TSO6
                | ((gsoType & GSO_ECN) != 0 ? FrameSink.OFFLOAD_TSO_ECN : 0);
            case GSO_UDP_L4 -> need |= FrameSink.OFFLOAD_CSUM | FrameSink.OFFLOAD_USO;
            default -> need |= FrameSink.OFFLOAD_UFO;
        }
        return need;
    }

    public PacketMeta clear() {
        flags = 0;
        gsoType = 0;
        hdrLen = 0;
        gsoSize = 0;
        csumStart = 0;
        csumOffset = 0;
        return this;
    }

    /** Reads a virtio_net_hdr at {@code offset}. */
    public PacketMeta readFrom(DirectBuffer b, int offset) {
        flags = b.getByte(offset) & 0xff;
        gsoType = b.getByte(offset + 1) & 0xff;
        hdrLen = b.getShort(offset + 2, ByteOrder.LITTLE_ENDIAN) & 0xffff;
        gsoSize = b.getShort(offset + 4, ByteOrder.LITTLE_ENDIAN) & 0xffff;
        csumStart = b.getShort(offset + 6, ByteOrder.LITTLE_ENDIAN) & 0xffff;
        csumOffset = b.getShort(offset + 8, ByteOrder.LITTLE_ENDIAN) & 0xffff;
        return this;
    }

    /** Writes a virtio_net_hdr of {@code length} (10 or 12) bytes at {@code offset}; num_buffers = 0. */
    public void writeTo(MutableDirectBuffer b, int offset, int length) {
        b.putByte(offset, (byte) flags);
        b.putByte(offset + 1, (byte) gsoType);
        b.putShort(offset + 2, (short) hdrLen, ByteOrder.LITTLE_ENDIAN);
        b.putShort(offset + 4, (short) gsoSize, ByteOrder.LITTLE_ENDIAN);
        b.putShort(offset + 6, (short) csumStart, ByteOrder.LITTLE_ENDIAN);
        b.putShort(offset + 8, (short) csumOffset, ByteOrder.LITTLE_ENDIAN);
        if (length >= 12) {
            b.putShort(offset + 10, (short) 0, ByteOrder.LITTLE_ENDIAN);
        }
    }

    /** This := other with frame-relative offsets moved by {@code delta} bytes (a VLAN tag added or removed). */
    public PacketMeta copyShifted(PacketMeta other, int delta) {
        flags = other.flags;
        gsoType = other.gsoType;
        gsoSize = other.gsoSize;
        csumOffset = other.csumOffset;
        hdrLen = other.hdrLen == 0 ? 0 : other.hdrLen + delta;
        csumStart = (other.flags & FLAG_NEEDS_CSUM) == 0 ? other.csumStart : other.csumStart + delta;
        return this;
    }
}
