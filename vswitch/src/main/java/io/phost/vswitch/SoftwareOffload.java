package io.phost.vswitch;

import static io.phost.vswitch.EthernetDescriptor.TPID_8021Q;
import static io.phost.vswitch.EthernetDescriptor.TYPE_IPV4;
import static io.phost.vswitch.EthernetDescriptor.TYPE_IPV6;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * What a NIC (or the kernel's software GSO) does for a destination that cannot take an unfinished frame:
 * completes a partial checksum (virtio NEEDS_CSUM / CHECKSUM_PARTIAL) and cuts a GSO super-frame (TCPv4,
 * TCPv6, UDP_L4) into gso_size pieces with their own headers and checksums. Works in one preallocated scratch
 * buffer (the original frame stays untouched for other ports of a flood) and allocates nothing per frame.
 * <pre>
 *  super-frame:  [eth (+802.1Q)][IPv4 | IPv6 (+ext)][TCP | UDP hdr][ payload: gso_size | gso_size | ... | rest ]
 *  segment i:    [eth          ][IP: len, id0+i, csum][TCP: seq0+i*gso_size, FIN/PSH last only, CWR first only,
 *                                                      csum | UDP: len, csum][ payload piece i ]
 * </pre>
 * Checksums of segments are computed from scratch (pseudo header + L4), never patched from the partial sum,
 * so a wrong partial sum from a sender cannot survive into the segments. UFO (gso_type 3, IP fragmentation)
 * is not done: TAPs and sockets here are never given TUN_F_UFO, and such frames are refused.
 * One instance per switch thread.
 */
final class SoftwareOffload {
    /** Every segment or the completed frame went out. */
    static final int SENT = 0;
    /** The destination filled up part-way (the rest is lost, as on a full NIC queue). */
    static final int FULL = 1;
    /** A GSO kind not done in software (UFO), or headers that do not match the metadata. */
    static final int UNSUPPORTED = 2;

    private static final int TCP = 6;
    private static final int UDP = 17;
    private final UnsafeBuffer scratch = new UnsafeBuffer(ByteBuffer.allocateDirect(VSwitch.MAX_FRAME + 64));
    /** Frames and bytes handed to the sink by the last {@link #transmit}. */
    int sentFrames;
    long sentBytes;

    /**
     * Completes or segments {@code b[off, off + len)} into {@code sink}, each IP packet at most {@code mtu} bytes
     * (0 = only gso_size limits); returns SENT, FULL or UNSUPPORTED.
     */
    int transmit(FrameSink sink, DirectBuffer b, int off, int len, PacketMeta meta, int mtu) {
        sentFrames = 0;
        sentBytes = 0;
        int gso = meta.gsoType & ~PacketMeta.GSO_ECN;
        if (gso == PacketMeta.GSO_NONE) {
            return completeChecksum(sink, b, off, len, meta);
        }
        if (gso != PacketMeta.GSO_TCPV4 && gso != PacketMeta.GSO_TCPV6 && gso != PacketMeta.GSO_UDP_L4) {
            return UNSUPPORTED;
        }
        return segment(sink, b, off, len, meta, gso, mtu);
    }

    private int completeChecksum(FrameSink sink, DirectBuffer b, int off, int len, PacketMeta meta) {
        int start = meta.csumStart;
        int field = start + meta.csumOffset;
        if (start < EthernetDescriptor.HEADER_LENGTH || field + 2 > len) {
            return UNSUPPORTED;
        }
        scratch.putBytes(0, b, off, len);
        // The field holds the pseudo-header sum; summing over it and complementing gives the checksum.
        int csum = fold(sum(scratch, start, len - start, 0));
        int value = ~csum & 0xffff;
        scratch.putShort(field, (short) (value == 0 ? 0xffff : value), ByteOrder.BIG_ENDIAN);
        return emit(sink, len);
    }

    private int segment(FrameSink sink, DirectBuffer b, int off, int len, PacketMeta meta, int gso, int mtu) {
        int l3 = EthernetDescriptor.HEADER_LENGTH;
        int etype = EthernetDescriptor.u16(b, off + EthernetDescriptor.TYPE_OFFSET);
        if (etype == TPID_8021Q) {
            l3 = EthernetDescriptor.TAGGED_HEADER_LENGTH;
            etype = EthernetDescriptor.u16(b, off + EthernetDescriptor.INNER_TYPE_OFFSET);
        }
        boolean v4 = etype == TYPE_IPV4;
        if (!v4 && etype != TYPE_IPV6 || gso == PacketMeta.GSO_TCPV4 && !v4 || gso == PacketMeta.GSO_TCPV6 && v4) {
            return UNSUPPORTED;
        }
        int proto = gso == PacketMeta.GSO_UDP_L4 ? UDP : TCP;
        int l4;
        if (v4) {
            if (len - l3 < 20 || (b.getByte(off + l3) & 0xf0) != 0x40 || (b.getByte(off + l3 + 9) & 0xff) != proto) {
                return UNSUPPORTED;
            }
            l4 = l3 + (b.getByte(off + l3) & 0x0f) * 4;
            if (l4 < l3 + 20) {
                return UNSUPPORTED;
            }
        } else {
            if (len - l3 < 40) {
                return UNSUPPORTED;
            }
            // Extension headers: trust csum_start (the sender's stack put it at L4); without it only a bare header.
            l4 = (meta.flags & PacketMeta.FLAG_NEEDS_CSUM) != 0 ? meta.csumStart : l3 + 40;
            if (l4 < l3 + 40 || l4 == l3 + 40 && (b.getByte(off + l3 + 6) & 0xff) != proto) {
                return UNSUPPORTED;
            }
        }
        int l4Header;
        if (proto == TCP) {
            if (len - l4 < 20) {
                return UNSUPPORTED;
            }
            l4Header = ((b.getByte(off + l4 + 12) & 0xf0) >>> 4) * 4;
            if (l4Header < 20) {
                return UNSUPPORTED;
            }
        } else {
            l4Header = 8;
        }
        int headers = l4 + l4Header;
        int mss = meta.gsoSize;
        if (mtu != 0) {
            mss = Math.min(mss, mtu - (headers - l3)); // the destination's MTU caps the pieces as well
        }
        if (headers > len || mss <= 0 || headers + mss > scratch.capacity()) {
            return UNSUPPORTED;
        }
        int payload = len - headers;
        int ipId = v4 ? EthernetDescriptor.u16(b, off + l3 + 4) : 0;
        long seq = proto == TCP ? b.getInt(off + l4 + 4, ByteOrder.BIG_ENDIAN) & 0xffff_ffffL : 0;
        int tcpFlags = proto == TCP ? b.getByte(off + l4 + 13) & 0xff : 0;
        int pos = 0;
        int i = 0;
        do {
            int piece = Math.min(mss, payload - pos);
            boolean last = pos + piece >= payload;
            scratch.putBytes(0, b, off, headers);
            scratch.putBytes(headers, b, off + headers + pos, piece);
            int l4Length = l4Header + piece; // the pseudo header's upper-layer length (IPv6 extension headers excluded)
            if (v4) {
                scratch.putShort(l3 + 2, (short) (headers - l3 + piece), ByteOrder.BIG_ENDIAN);
                scratch.putShort(l3 + 4, (short) (ipId + i), ByteOrder.BIG_ENDIAN);
                scratch.putShort(l3 + 10, (short) 0);
                int ihl = l4 - l3;
                scratch.putShort(l3 + 10, (short) (~fold(sum(scratch, l3, ihl, 0)) & 0xffff), ByteOrder.BIG_ENDIAN);
            } else {
                scratch.putShort(l3 + 4, (short) (headers - l3 - 40 + piece), ByteOrder.BIG_ENDIAN);
            }
            int csumField;
            if (proto == TCP) {
                scratch.putInt(l4 + 4, (int) (seq + pos), ByteOrder.BIG_ENDIAN);
                int flags = tcpFlags;
                if (!last) {
                    flags &= ~0x09; // FIN and PSH only on the last piece
                }
                if (i > 0) {
                    flags &= ~0x80; // CWR only on the first
                }
                scratch.putByte(l4 + 13, (byte) flags);
                csumField = l4 + 16;
            } else {
                scratch.putShort(l4 + 4, (short) l4Length, ByteOrder.BIG_ENDIAN);
                csumField = l4 + 6;
            }
            scratch.putShort(csumField, (short) 0);
            long s = pseudoHeader(scratch, l3, v4, proto, l4Length);
            int value = ~fold(sum(scratch, l4, l4Length, s)) & 0xffff;
            scratch.putShort(csumField, (short) (value == 0 && proto == UDP ? 0xffff : value), ByteOrder.BIG_ENDIAN);
            int r = emit(sink, headers + piece);
            if (r != SENT) {
                return r;
            }
            pos += piece;
            i++;
        } while (pos < payload);
        return SENT;
    }

    private int emit(FrameSink sink, int length) {
        if (!sink.tryTransmit(scratch, 0, length, PacketMeta.NONE)) {
            return FULL;
        }
        sentFrames++;
        sentBytes += length;
        return SENT;
    }

    private static long pseudoHeader(DirectBuffer b, int l3, boolean v4, int proto, int l4Length) {
        if (v4) {
            return sum(b, l3 + 12, 8, proto + l4Length);
        }
        return sum(b, l3 + 8, 32, proto + l4Length);
    }

    /** One's-complement sum (unfolded) of {@code b[from, from + length)} as big-endian 16-bit words, plus {@code initial}. */
    static long sum(DirectBuffer b, int from, int length, long initial) {
        long s = initial;
        int i = from;
        int end = from + length;
        // 32-bit words fold to the same 16-bit one's-complement sum (2^16 ≡ 1 mod 2^16 - 1); a long cannot
        // overflow within a 64 KiB frame.
        for (; i + 4 <= end; i += 4) {
            s += b.getInt(i, ByteOrder.BIG_ENDIAN) & 0xffff_ffffL;
        }
        if (i + 2 <= end) {
            s += b.getShort(i, ByteOrder.BIG_ENDIAN) & 0xffff;
            i += 2;
        }
        if (i < end) {
            s += (b.getByte(i) & 0xff) << 8;
        }
        return s;
    }

    static int fold(long s) {
        while ((s >>> 16) != 0) {
            s = (s & 0xffff) + (s >>> 16);
        }
        return (int) s;
    }
}
