package io.phost.vswitch;

import static io.phost.vswitch.EthernetDescriptor.TYPE_ARP;
import static io.phost.vswitch.EthernetDescriptor.TYPE_IPV4;
import static io.phost.vswitch.EthernetDescriptor.TYPE_IPV6;

import org.agrona.DirectBuffer;

/**
 * DHCP guard and router guard: look past the Ethernet header of a frame from a guarded port.
 * <pre>
 * IPv4: 0: ver/IHL  6: flags (MF 0x2000) / fragment offset (13 bits)  9: protocol   then IHL*4: L4 header
 *   UDP: 0 src port, 2 dst port, 8: BOOTP op (2 = BOOTREPLY: OFFER/ACK/NAK) ... 8+236: magic cookie 63825363
 *   ICMP type @0 (5 redirect, 9 router advertisement)
 * IPv6: 6: next header  40: extension headers (hop-by-hop 0, routing 43, fragment 44, dest-opts 60, AH 51)
 *   UDP: DHCPv6 message type @8 (2 ADVERTISE, 7 REPLY, 10 RECONFIGURE, 13 RELAY-REPL); ICMPv6 type @0 (134 RA, 137 redirect)
 * </pre>
 * DHCP is recognised by content and by the client's port, not by the server's source port: a server message
 * is what a client would act on, so UDP to the client port (68, DHCPv6 546), from the server port (67, 547), a
 * DHCPv6 server or relay message (ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL) to the relay port 547, or a BOOTREPLY
 * with the DHCP magic cookie on any ports is dropped. Only first fragments carry the L4 header
 * (later ones cannot be reassembled without it); a first fragment or packet that cuts the L4 header (or the
 * IPv6 extension chain) short hides what it is and is dropped on a guarded port (RFC 7112 requires the whole
 * header chain in the first fragment).
 */
final class Guards {
    static final int PASS = 0;
    static final int DHCP = 1;
    static final int ROUTER = 2;
    private static final int MAX_EXTENSION_HEADERS = 8;
    private static final int BOOTP_COOKIE_OFFSET = 236;
    private static final int DHCP_MAGIC_COOKIE = 0x6382_5363;

    private Guards() {}

    /**
     * ARP inspection and the IPv4 spoofing guard: false when an ARP packet's sender protocol address (offset 14)
     * or an IPv4 packet's source address (offset 12) is neither one of {@code allowed} nor 0.0.0.0 (a DHCP
     * client before its lease, an RFC 5227 ARP probe). A packet too short to show the address is dropped too
     * (a guarded port has nothing to hide). Other ethertypes (IPv6 included) pass: not inspected here.
     * <pre>
     * ARP (IPv4 over Ethernet): 0 htype 2 ptype 4 hlen 5 plen 6 op 8 sender MAC 14 sender IP 18 target MAC 24 target IP
     * </pre>
     */
    static boolean claimsOwnAddress(DirectBuffer b, int l3, int end, int type, int[] allowed) {
        int at;
        if (type == TYPE_ARP) {
            at = l3 + 14;
        } else if (type == TYPE_IPV4) {
            at = l3 + 12;
        } else {
            return true;
        }
        if (end - at < 4) {
            return false;
        }
        int ip = b.getInt(at, java.nio.ByteOrder.BIG_ENDIAN);
        if (ip == 0) {
            return true;
        }
        for (int a : allowed) {
            if (a == ip) {
                return true;
            }
        }
        return false;
    }

    /** The sender address an ARP or IPv4 packet claims (as {@link #claimsOwnAddress} reads it), or 0. */
    static int claimedIpv4(DirectBuffer b, int l3, int end, int type) {
        int at = type == TYPE_ARP ? l3 + 14 : type == TYPE_IPV4 ? l3 + 12 : -1;
        return at < 0 || end - at < 4 ? 0 : b.getInt(at, java.nio.ByteOrder.BIG_ENDIAN);
    }

    /** {@code l3}..{@code end} is the network-layer packet of the given ethertype. */
    static int check(DirectBuffer b, int l3, int end, int type, boolean dhcpGuard, boolean routerGuard) {
        if (type == TYPE_IPV4) {
            if (end - l3 < 20) {
                return PASS;
            }
            int ihl = (b.getByte(l3) & 0x0f) * 4;
            end = Math.min(end, l3 + EthernetDescriptor.u16(b, l3 + 2)); // Ethernet padding is not packet
            int fragOffset = EthernetDescriptor.u16(b, l3 + 6) & 0x1fff;
            if (ihl < 20 || fragOffset != 0) {
                return PASS;
            }
            int l4 = l3 + ihl;
            int proto = b.getByte(l3 + 9) & 0xff;
            if (proto == 17 && dhcpGuard) {
                if (end - l4 < 8) {
                    return DHCP; // the UDP header is hidden (tiny first fragment or cut packet)
                }
                int src = EthernetDescriptor.u16(b, l4);
                int dst = EthernetDescriptor.u16(b, l4 + 2);
                if (src == 67 || dst == 68 || isBootReply(b, l4 + 8, end)) {
                    return DHCP;
                }
            }
            if (proto == 1 && routerGuard) {
                if (end - l4 < 1) {
                    return ROUTER;
                }
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
            end = end6(b, l3, end);
            long u = upperLayer6(b, l3, end);
            if (u == LATER_FRAGMENT) {
                return PASS; // a later fragment: useless without the first, which is checked
            }
            if (u == HIDDEN) {
                // The chain is cut, or longer than any real sender makes it: a guarded port does not get to hide
                // an RA or a DHCPv6 reply behind it.
                return hidden(dhcpGuard, routerGuard);
            }
            int next = (int) (u >>> 32);
            int p = (int) u;
            if (next == 17 && dhcpGuard) {
                if (end - p < 8) {
                    return DHCP;
                }
                int src = EthernetDescriptor.u16(b, p);
                int dst = EthernetDescriptor.u16(b, p + 2);
                if (src == 547 || dst == 546 || dst == 547 && isServerMessage6(b, p + 8, end)) {
                    return DHCP;
                }
            }
            if (next == 58 && routerGuard) {
                if (end - p < 1) {
                    return ROUTER; // ICMPv6 header pushed out of the first fragment: an RA could hide there
                }
                int icmp = b.getByte(p) & 0xff;
                if (icmp == 134 || icmp == 137) {
                    return ROUTER;
                }
            }
        }
        return PASS;
    }

    /** {@link #upperLayer6}: a later fragment (offset above 0), which carries no upper-layer header. */
    static final long LATER_FRAGMENT = -1;
    /** {@link #upperLayer6}: the extension chain is cut short or deeper than {@value #MAX_EXTENSION_HEADERS}. */
    static final long HIDDEN = -2;

    /** End of an IPv6 packet at {@code l3}: its payload length, so Ethernet padding is never read as packet. */
    static int end6(DirectBuffer b, int l3, int end) {
        int payloadLength = EthernetDescriptor.u16(b, l3 + 4);
        return payloadLength == 0 ? end : Math.min(end, l3 + 40 + payloadLength); // 0: a jumbogram
    }

    /**
     * Walks the IPv6 extension headers (hop-by-hop 0, routing 43, fragment 44, dest-opts 60, AH 51) of the packet
     * at {@code l3}: {@code next header << 32 | offset} of the upper-layer header, or LATER_FRAGMENT, or HIDDEN.
     */
    static long upperLayer6(DirectBuffer b, int l3, int end) {
        int next = b.getByte(l3 + 6) & 0xff;
        int p = l3 + 40;
        for (int i = 0; ; i++) {
            boolean extension = next == 0 || next == 43 || next == 60 || next == 51 || next == 44;
            if (extension && i == MAX_EXTENSION_HEADERS) {
                return HIDDEN;
            }
            if (next == 0 || next == 43 || next == 60 || next == 51) {
                if (end - p < 2) {
                    return HIDDEN;
                }
                int len = next == 51 ? ((b.getByte(p + 1) & 0xff) + 2) * 4 : ((b.getByte(p + 1) & 0xff) + 1) * 8;
                next = b.getByte(p) & 0xff;
                p += len;
            } else if (next == 44) {
                if (end - p < 8) {
                    return HIDDEN;
                }
                if (EthernetDescriptor.u16(b, p + 2) >>> 3 != 0) {
                    return LATER_FRAGMENT;
                }
                next = b.getByte(p) & 0xff;
                p += 8;
            } else {
                return ((long) next << 32) | p;
            }
        }
    }

    private static int hidden(boolean dhcpGuard, boolean routerGuard) {
        return routerGuard ? ROUTER : DHCP;
    }

    /**
     * A DHCPv6 message only servers and relays send (ADVERTISE, REPLY, RECONFIGURE, RELAY-REPL): toward port 547 it
     * would feed a relay agent, whatever the source port.
     */
    private static boolean isServerMessage6(DirectBuffer b, int message, int end) {
        if (end - message < 1) {
            return false;
        }
        int type = b.getByte(message) & 0xff;
        return type == 2 || type == 7 || type == 10 || type == 13;
    }

    /** A BOOTP BOOTREPLY (op 2) carrying the DHCP magic cookie: a DHCP OFFER, ACK or NAK on whatever ports. */
    private static boolean isBootReply(DirectBuffer b, int bootp, int end) {
        return end - bootp >= BOOTP_COOKIE_OFFSET + 4 && (b.getByte(bootp) & 0xff) == 2
            && b.getInt(bootp + BOOTP_COOKIE_OFFSET, java.nio.ByteOrder.BIG_ENDIAN) == DHCP_MAGIC_COOKIE;
    }
}
