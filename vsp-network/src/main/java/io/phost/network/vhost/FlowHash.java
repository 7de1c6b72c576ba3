package io.phost.network.vhost;

import org.agrona.DirectBuffer;

/**
 * Picks a receive queue for a frame so that one flow always lands on the same queue (virtio-net MQ's
 * automatic steering; RSS is not offered): IPv4/IPv6 addresses and TCP/UDP ports when present (one VLAN
 * tag skipped), else the MAC addresses. Symmetric (XOR), so both directions of a flow share the queue.
 */
final class FlowHash {
    private static final int TCP = 6;
    private static final int UDP = 17;

    private FlowHash() {
    }

    static int of(DirectBuffer b, int offset, int length) {
        int l3 = offset + 14;
        int type = u16(b, offset + 12);
        if (type == 0x8100 && length >= 18) {
            type = u16(b, offset + 16);
            l3 += 4;
        }
        int end = offset + length;
        int h;
        if (type == 0x0800 && l3 + 20 <= end) {
            h = b.getInt(l3 + 12) ^ b.getInt(l3 + 16);
            int proto = b.getByte(l3 + 9) & 0xff;
            int l4 = l3 + (b.getByte(l3) & 0xf) * 4;
            boolean fragment = (u16(b, l3 + 6) & 0x1fff) != 0;
            if ((proto == TCP || proto == UDP) && !fragment && l4 + 4 <= end) {
                h ^= ports(b, l4);
            }
        } else if (type == 0x86dd && l3 + 40 <= end) {
            h = 0;
            for (int i = 8; i < 40; i += 4) {
                h ^= b.getInt(l3 + i);
            }
            int next = b.getByte(l3 + 6) & 0xff;
            if ((next == TCP || next == UDP) && l3 + 44 <= end) {
                h ^= ports(b, l3 + 40);
            }
        } else {
            h = b.getInt(offset) ^ b.getInt(offset + 6) ^ u16(b, offset + 4) ^ u16(b, offset + 10);
        }
        h *= 0x9E3779B9;
        return h ^ (h >>> 16);
    }

    /** Source and destination port folded so that swapping them gives the same value. */
    private static int ports(DirectBuffer b, int l4) {
        return u16(b, l4) ^ u16(b, l4 + 2);
    }

    private static int u16(DirectBuffer b, int i) {
        return (b.getByte(i) & 0xff) << 8 | (b.getByte(i + 1) & 0xff);
    }
}
