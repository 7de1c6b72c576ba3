package io.phost.vswitch;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/** Crafted frames and a recording sink for switch tests. */
final class Frames {
    private Frames() {}

    static final long A = 0x02_00_00_00_00_0aL;
    static final long B = 0x02_00_00_00_00_0bL;
    static final long C = 0x02_00_00_00_00_0cL;
    static final long D = 0x02_00_00_00_00_0dL;

    /** An Ethernet frame: dst, src, optional 802.1Q tag (vid >= 0), ethertype, payload. */
    static byte[] frame(long dst, long src, int vid, int type, byte[] payload) {
        int hdr = vid >= 0 ? 18 : 14;
        ByteBuffer bb = ByteBuffer.allocate(Math.max(60, hdr + payload.length)).order(ByteOrder.BIG_ENDIAN);
        bb.putShort((short) (dst >>> 32)).putInt((int) dst);
        bb.putShort((short) (src >>> 32)).putInt((int) src);
        if (vid >= 0) {
            bb.putShort((short) 0x8100).putShort((short) vid);
        }
        bb.putShort((short) type).put(payload);
        return bb.array();
    }

    static byte[] plain(long dst, long src) {
        return frame(dst, src, -1, 0x0800, ipv4(6, new byte[20]));
    }

    static byte[] tagged(long dst, long src, int vid) {
        return frame(dst, src, vid, 0x0800, ipv4(6, new byte[20]));
    }

    /** A minimal IPv4 header (IHL 5) around an L4 payload. */
    static byte[] ipv4(int proto, byte[] l4) {
        ByteBuffer bb = ByteBuffer.allocate(20 + l4.length);
        bb.put((byte) 0x45).put((byte) 0).putShort((short) (20 + l4.length)).putInt(0);
        bb.put((byte) 64).put((byte) proto).putShort((short) 0).putInt(0x0a000001).putInt(0x0a000002).put(l4);
        return bb.array();
    }

    static byte[] udp(int srcPort, int dstPort) {
        ByteBuffer bb = ByteBuffer.allocate(8 + 32);
        bb.putShort((short) srcPort).putShort((short) dstPort).putShort((short) 40).putShort((short) 0);
        return bb.array();
    }

    static byte[] icmpType(int type) {
        byte[] b = new byte[8];
        b[0] = (byte) type;
        return b;
    }

    /** IPv6 header (40 bytes), with optional extension headers before the L4 payload. */
    static byte[] ipv6(int next, byte[] rest) {
        ByteBuffer bb = ByteBuffer.allocate(40 + rest.length);
        bb.putInt(0x6000_0000).putShort((short) rest.length).put((byte) next).put((byte) 255);
        bb.put(new byte[32]).put(rest);
        return bb.array();
    }

    static byte[] hopByHop(int next, byte[] rest) {
        byte[] h = new byte[8 + rest.length];
        h[0] = (byte) next;
        h[1] = 0;
        System.arraycopy(rest, 0, h, 8, rest.length);
        return h;
    }

    static UnsafeBuffer buf(byte[] b) {
        return new UnsafeBuffer(b);
    }

    /** Records every frame it is given (copies), optionally refusing (queue full). */
    static final class Recorder implements FrameSink {
        final List<byte[]> frames = new ArrayList<>();
        boolean full;
        boolean offloads;

        @Override
        public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
            if (full) {
                return false;
            }
            byte[] copy = new byte[length];
            buffer.getBytes(offset, copy);
            frames.add(copy);
            return true;
        }

        @Override
        public boolean offloadCapable() {
            return offloads;
        }

        byte[] last() {
            return frames.get(frames.size() - 1);
        }

        int count() {
            return frames.size();
        }

        void clear() {
            frames.clear();
        }
    }

    static int vidOf(byte[] f) {
        if ((((f[12] & 0xff) << 8) | (f[13] & 0xff)) != 0x8100) {
            return -1;
        }
        return (((f[14] & 0xff) << 8) | (f[15] & 0xff)) & 0xfff;
    }
}
