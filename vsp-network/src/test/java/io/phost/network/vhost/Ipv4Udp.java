package io.phost.network.vhost;

/** Builds an Ethernet/IPv4/UDP frame and checks its UDP checksum (test helper). */
final class Ipv4Udp {
    static final int L4_OFFSET = 34;

    static byte[] frame(long dst, long src, int payload) {
        byte[] b = new byte[L4_OFFSET + 8 + payload];
        for (int i = 0; i < 6; i++) {
            b[i] = (byte) (dst >>> (8 * (5 - i)));
            b[6 + i] = (byte) (src >>> (8 * (5 - i)));
        }
        b[12] = 0x08;
        b[14] = 0x45;
        int ipLen = 20 + 8 + payload;
        b[16] = (byte) (ipLen >> 8);
        b[17] = (byte) ipLen;
        b[22] = 64;
        b[23] = 17;
        byte[] s = {10, 0, 0, 1};
        byte[] d = {10, 0, 0, 2};
        System.arraycopy(s, 0, b, 26, 4);
        System.arraycopy(d, 0, b, 30, 4);
        int c = ~sum(b, 14, 20, 0) & 0xffff;
        b[24] = (byte) (c >> 8);
        b[25] = (byte) c;
        b[34] = 0x30;
        b[35] = 0x39;
        b[36] = 0x00;
        b[37] = 0x35;
        int udpLen = 8 + payload;
        b[38] = (byte) (udpLen >> 8);
        b[39] = (byte) udpLen;
        for (int i = 0; i < payload; i++) {
            b[42 + i] = (byte) (i * 13 + 1);
        }
        return b;
    }

    static int pseudo(byte[] b) {
        int udpLen = b.length - L4_OFFSET;
        int s = sum(b, 26, 8, 0);
        return s + 17 + udpLen;
    }

    /** Stores the folded pseudo-header sum (not complemented) in the UDP checksum field: CHECKSUM_PARTIAL. */
    static void putPseudoHeaderSum(byte[] b) {
        int s = fold(pseudo(b));
        b[40] = (byte) (s >> 8);
        b[41] = (byte) s;
    }

    static boolean checksumValid(byte[] b) {
        if (b[40] == 0 && b[41] == 0) {
            return false;
        }
        return fold(sum(b, L4_OFFSET, b.length - L4_OFFSET, pseudo(b))) == 0xffff;
    }

    static int sum(byte[] b, int off, int len, int initial) {
        long s = initial;
        for (int i = 0; i < len; i += 2) {
            int hi = b[off + i] & 0xff;
            int lo = i + 1 < len ? b[off + i + 1] & 0xff : 0;
            s += (hi << 8) | lo;
        }
        return fold((int) Math.min(Integer.MAX_VALUE, s));
    }

    static int fold(int s) {
        long x = s & 0xFFFFFFFFL;
        while ((x >> 16) != 0) {
            x = (x & 0xffff) + (x >> 16);
        }
        return (int) x;
    }

    private Ipv4Udp() {
    }
}
