package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * IPv6 spoofing guard and ND inspection for a port with IPv6 entries in its {@code ip_addresses}.
 * <pre>
 * IPv6: 8 source address (16)  24 destination (16)  40: extension headers, then ICMPv6
 * ICMPv6 ND (RFC 4861):  0 type  1 code  2 checksum
 *   133 RS   4 reserved                 8: options
 *   135 NS   4 reserved   8 target (16) 24: options
 *   136 NA   4 flags      8 target (16) 24: options
 *   option:  0 type (1 source / 2 target link-layer address)  1 length in 8-byte units (0 = malformed)  2 MAC
 * </pre>
 * A port may send from its listed addresses, from the link-local address its MAC makes (EUI-64, fe80::/64, which
 * the guest's stack uses for ND before anything else) and from :: (duplicate address detection); anything else is
 * SPOOF. ND inspection (the IPv6 counterpart of ARP inspection): a neighbour advertisement may only announce one
 * of those addresses as its target, and a link-layer address option in RS/NS/NA must be the port's own MAC (when
 * the port has one); otherwise ND. Addresses a DHCPv6 REPLY leased to the port (snooped) count as listed until the
 * lease ends. A packet too short to show what is checked is dropped too.
 */
final class Ipv6Guard {
    static final int PASS = 0;
    static final int SPOOF = 1;
    static final int ND = 2;
    private static final long LINK_LOCAL_HI = 0xfe80_0000_0000_0000L;
    private static final int MAX_OPTIONS = 16;

    private Ipv6Guard() {}

    /** The interface identifier of {@code mac}'s EUI-64 link-local address (RFC 4291 appendix A). */
    static long eui64(long mac) {
        long upper = (mac >>> 24) ^ 0x02_00_00L; // flip the universal/local bit
        return (upper << 40) | 0xff_fe00_0000L | (mac & 0xff_ffffL);
    }

    /**
     * The port's listed addresses (hi, lo pairs) and DHCPv6 leases at {@code now}; its MAC (-1 none); link-layer
     * address options are inspected unless the port may spoof its MAC.
     */
    static int check(DirectBuffer b, int l3, int end, Port port, long now) {
        long mac = port.mac;
        boolean checkMac = !port.macSpoofing;
        if (end - l3 < 40) {
            return SPOOF;
        }
        end = Guards.end6(b, l3, end);
        long srcHi = b.getLong(l3 + 8, java.nio.ByteOrder.BIG_ENDIAN);
        long srcLo = b.getLong(l3 + 16, java.nio.ByteOrder.BIG_ENDIAN);
        if (!(srcHi == 0 && srcLo == 0) && !owns(srcHi, srcLo, port, now)) {
            return SPOOF;
        }
        long u = Guards.upperLayer6(b, l3, end);
        if (u == Guards.HIDDEN) {
            return ND; // an ND message could hide behind it
        }
        if (u == Guards.LATER_FRAGMENT || (u >>> 32) != 58) {
            return PASS;
        }
        int icmp = (int) u;
        if (end - icmp < 1) {
            return ND;
        }
        int type = b.getByte(icmp) & 0xff;
        int options;
        if (type == 133) {
            options = icmp + 8;
        } else if (type == 135 || type == 136) {
            options = icmp + 24;
        } else {
            return PASS;
        }
        if (end < options) {
            return ND;
        }
        if (type == 136 && !owns(b.getLong(icmp + 8, java.nio.ByteOrder.BIG_ENDIAN),
            b.getLong(icmp + 16, java.nio.ByteOrder.BIG_ENDIAN), port, now)) {
            return ND; // advertising an address the port is not configured with
        }
        return mac == -1 || !checkMac ? PASS : checkLinkLayerOptions(b, options, end, mac);
    }

    private static int checkLinkLayerOptions(DirectBuffer b, int p, int end, long mac) {
        for (int i = 0; i < MAX_OPTIONS && p < end; i++) {
            if (end - p < 2) {
                return ND;
            }
            int len = (b.getByte(p + 1) & 0xff) * 8;
            if (len == 0 || end - p < len) {
                return ND; // RFC 4861: a zero-length option makes the message invalid
            }
            int kind = b.getByte(p) & 0xff;
            if ((kind == 1 || kind == 2) && (len < 8 || EthernetDescriptor.mac(b, p + 2) != mac)) {
                return ND;
            }
            p += len;
        }
        return p < end ? ND : PASS;
    }

    private static boolean owns(long hi, long lo, Port port, long now) {
        long mac = port.mac;
        long[] allowed = port.ipv6Addresses;
        if (mac != -1 && hi == LINK_LOCAL_HI && lo == eui64(mac) || port.leased6(hi, lo, now)) {
            return true;
        }
        for (int i = 0; i < allowed.length; i += 2) {
            if (allowed[i] == hi && allowed[i + 1] == lo) {
                return true;
            }
        }
        return false;
    }
}
