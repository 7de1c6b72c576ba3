package io.phost.vswitch;

import static io.phost.vswitch.EthernetDescriptor.TYPE_IPV4;
import static io.phost.vswitch.EthernetDescriptor.TYPE_IPV6;

import org.agrona.DirectBuffer;

/**
 * DHCP guard and router guard: look past the Ethernet header of a frame from a guarded port.
 * <pre>
 * IPv4: 0: ver/IHL  6: flags/fragment offset (13 bits)  9: protocol   then IHL*4: L4 header
 *   UDP source port @0 (67 = DHCP server); ICMP type @0 (5 redirect, 9 router advertisement)
 * IPv6: 6: next header  40: extension headers (hop-by-hop 0, routing 43, fragment 44, dest-opts 60, AH 51)
 *   UDP source port @0 (547 = DHCPv6 server/relay); ICMPv6 type @0 (134 RA, 137 redirect)
 * </pre>
 * A header too short to read is not guarded here: the receiver's stack cannot act on it either. Only first
 * fragments carry the L4 header, so later fragments pass.
 */
final class Guards {
    static final int PASS = 0;
    static final int DHCP = 1;
    static final int ROUTER = 2;
    private static final int MAX_EXTENSION_HEADERS = 8;

    private Guards() {}

    /** {@code l3}..{@code end} is the network-layer packet of the given ethertype. */
    static int check(DirectBuffer b, int l3, int end, int type, boolean dhcpGuard, boolean routerGuard) {
        if (type == TYPE_IPV4) {
            if (end - l3 < 20) {
                return PASS;
            }
            int ihl = (b.getByte(l3) & 0x0f) * 4;
            int fragOffset = EthernetDescriptor.u16(b, l3 + 6) & 0x1fff;
            if (ihl < 20 || fragOffset != 0) {
                return PASS;
            }
            int l4 = l3 + ihl;
            int proto = b.getByte(l3 + 9) & 0xff;
            if (proto == 17 && dhcpGuard && end - l4 >= 2 && EthernetDescriptor.u16(b, l4) == 67) {
                return DHCP;
            }
            if (proto == 1 && routerGuard && end - l4 >= 1) {
                int icmp = b.getByte(l4) & 0xff;
                if (icmp == 5 || icmp == 9) {
                    return ROUTER;
                }
            }
            return PASS;
        }
        if (type == TYPE_IPV6) {
            if (end - l3 < 40) {
                return PASS;
            }
            int next = b.getByte(l3 + 6) & 0xff;
            int p = l3 + 40;
            for (int i = 0; i < MAX_EXTENSION_HEADERS; i++) {
                if (next == 0 || next == 43 || next == 60) {
                    if (end - p < 2) {
                        return PASS;
                    }
                    int len = ((b.getByte(p + 1) & 0xff) + 1) * 8;
                    next = b.getByte(p) & 0xff;
                    p += len;
                } else if (next == 51) {
                    if (end - p < 2) {
                        return PASS;
                    }
                    int len = ((b.getByte(p + 1) & 0xff) + 2) * 4;
                    next = b.getByte(p) & 0xff;
                    p += len;
                } else if (next == 44) {
                    if (end - p < 8) {
                        return PASS;
                    }
                    int fragOffset = EthernetDescriptor.u16(b, p + 2) >>> 3;
                    if (fragOffset != 0) {
                        return PASS;
                    }
                    next = b.getByte(p) & 0xff;
                    p += 8;
                } else {
                    break;
                }
            }
            if (next == 0 || next == 43 || next == 60 || next == 51 || next == 44) {
                // More extension headers than any real sender uses: a guarded port does not get to hide an RA
                // or a DHCPv6 reply behind them.
                return routerGuard ? ROUTER : DHCP;
            }
            if (next == 17 && dhcpGuard && end - p >= 2 && EthernetDescriptor.u16(b, p) == 547) {
                return DHCP;
            }
            if (next == 58 && routerGuard && end - p >= 1) {
                int icmp = b.getByte(p) & 0xff;
                if (icmp == 134 || icmp == 137) {
                    return ROUTER;
                }
            }
        }
        return PASS;
    }
}
