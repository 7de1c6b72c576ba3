package io.phost.vswitch;

import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * Offload state travelling with a frame: the fields of a virtio_net_hdr (little-endian on the wire).
 * <pre>
 *   0: u8 flags (1 = NEEDS_CSUM)   1: u8 gso_type (0 NONE, 1 TCPV4, 3 UDP, 4 TCPV6, 0x80 ECN bit)
 *   2: u16 hdr_len   4: u16 gso_size   6: u16 csum_start   8: u16 csum_offset   [10: u16 num_buffers]
 * </pre>
 * csum_start and hdr_len count from the start of the Ethernet frame, so adding or removing a VLAN tag
 * moves them by 4 ({@link #copyShifted}). One mutable instance per producer, reused for every frame.
 */
public final class PacketMeta {
    public static final int FLAG_NEEDS_CSUM = 1;
    /** A frame with nothing to offload; sinks without offload support accept only these. */
    public static final PacketMeta NONE = new PacketMeta();

    public int flags;
    public int gsoType;
    public int hdrLen;
    public int gsoSize;
    public int csumStart;
    public int csumOffset;

    public boolean isPlain() {
        return flags == 0 && gsoType == 0;
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
