package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * DHCP snooping: reads a DHCPACK that a server on an allowed port (one without the DHCP guard) sends to a client,
 * so the IP spoofing guard of the client's port may also allow the address it was leased, until the lease ends.
 * <pre>
 *   IPv4 (first fragment) → UDP 67 → 68 → BOOTP: op @0 = 2 (BOOTREPLY), hlen @2 = 6, yiaddr @16, chaddr @28,
 *   magic cookie @236, options @240: 53 (message type) = 5 (ACK), 51 (lease time, seconds; absent = infinite)
 * </pre>
 * DHCPv6 (RFC 8415): a REPLY a server on an allowed port sends to a client leases the addresses of its IA_NA / IA_TA
 * options; the client is the frame's destination MAC (a server answers the client's link-local address directly).
 * <pre>
 *   IPv6 (after extension headers) → UDP 547 → 546 → msg-type @0 = 7 (REPLY), transaction id @1..3, options @4:
 *   option: code (2) length (2) data.  IA_NA (3): IAID, T1, T2 (4 each), then options;  IA_TA (4): IAID, then options
 *   IAADDR (5), inside an IA: address (16), preferred lifetime (4), valid lifetime (4; 0 = ended, 0xffffffff = infinite)
 * </pre>
 * A RELAY-REPL (UDP 547 → 547, msg-type 13) sent to a client's MAC (a relay agent, or a lightweight relay
 * (RFC 6221), behind that port) counts as the REPLY its Relay Message option carries, through up to
 * {@value #MAX_RELAY_DEPTH} nested relays (deeper, or malformed, is ignored):
 * <pre>
 *   RELAY-REPL: msg-type @0 = 13, hop-count @1, link-address @2, peer-address @18, options @34 (Relay Message = 9)
 * </pre>
 * One instance per switch, used on its thread; the result is left in fields (no allocation per packet).
 */
final class DhcpSnooping {
    private static final int BOOTP_HEADER = 236;
    private static final int DHCP_MAGIC_COOKIE = 0x6382_5363;
    private static final int ACK = 5;
    private static final int REPLY6 = 7;
    private static final int IA_NA = 3;
    private static final int IA_TA = 4;
    private static final int IAADDR = 5;
    private static final int RELAY_REPL = 13;
    private static final int RELAY_MSG = 9;
    /** msg-type, hop-count, link-address, peer-address. */
    private static final int RELAY_HEADER = 34;
    /** RFC 8415's HOP_COUNT_LIMIT: no real chain of relays nests deeper. */
    static final int MAX_RELAY_DEPTH = 8;
    static final long INFINITE = -1;

    /** The last ACK's client hardware address, leased address and lease time in seconds (INFINITE for none). */
    long clientMac;
    int leasedAddress;
    long leaseSeconds;

    /** The last DHCPv6 REPLY's addresses (high, low pairs) and their valid lifetimes in seconds (INFINITE for none). */
    static final int MAX_ADDRESSES6 = 4;
    final long[] addresses6 = new long[2 * MAX_ADDRESSES6];
    final long[] lifetimes6 = new long[MAX_ADDRESSES6];
    int count6;

    /** True when the IPv4 packet {@code l3}..{@code end} is a DHCPACK to a client; fills the fields. */
    boolean readAck(DirectBuffer b, int l3, int end) {
        if (end - l3 < 20 || (b.getByte(l3) & 0xf0) != 0x40 || (b.getByte(l3 + 9) & 0xff) != 17
            || (EthernetDescriptor.u16(b, l3 + 6) & 0x1fff) != 0) {
            return false;
        }
        int l4 = l3 + (b.getByte(l3) & 0x0f) * 4;
        if (end - l4 < 8 || EthernetDescriptor.u16(b, l4) != 67 || EthernetDescriptor.u16(b, l4 + 2) != 68) {
            return false;
        }
        int bootp = l4 + 8;
        if (end - bootp < BOOTP_HEADER + 4 || b.getByte(bootp) != 2 || b.getByte(bootp + 2) != 6
            || b.getInt(bootp + BOOTP_HEADER, java.nio.ByteOrder.BIG_ENDIAN) != DHCP_MAGIC_COOKIE) {
            return false;
        }
        int type = 0;
        long lease = INFINITE;
        int o = bootp + BOOTP_HEADER + 4;
        while (o < end) {
            int code = b.getByte(o) & 0xff;
            if (code == 255) {
                break;
            }
            if (code == 0) {
                o++;
                continue;
            }
            if (o + 2 > end) {
                return false;
            }
            int len = b.getByte(o + 1) & 0xff;
            if (o + 2 + len > end) {
                return false; // an option runs past the packet: not trusted
            }
            if (code == 53 && len == 1) {
                type = b.getByte(o + 2) & 0xff;
            } else if (code == 51 && len == 4) {
                long s = b.getInt(o + 2, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL;
                lease = s == 0xffff_ffffL ? INFINITE : s;
            }
            o += 2 + len;
        }
        if (type != ACK) {
            return false;
        }
        clientMac = (b.getInt(bootp + 28, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL) << 16
            | (b.getShort(bootp + 32, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff);
        leasedAddress = b.getInt(bootp + 16, java.nio.ByteOrder.BIG_ENDIAN);
        leaseSeconds = lease;
        return leasedAddress != 0;
    }

    /**
     * True when the IPv6 packet {@code l3}..{@code end} is a DHCPv6 REPLY to a client (or a RELAY-REPL carrying
     * one) with at least one IA address; fills addresses6, lifetimes6, count6 (the first {@value #MAX_ADDRESSES6}). A malformed option (one
     * that runs past its container) makes the whole reply untrusted.
     */
    boolean readReply6(DirectBuffer b, int l3, int end) {
        count6 = 0;
        if (end - l3 < 40 || (b.getByte(l3) & 0xf0) != 0x60) {
            return false;
        }
        end = Guards.end6(b, l3, end);
        long u = Guards.upperLayer6(b, l3, end);
        if (u < 0 || (u >>> 32) != 17) {
            return false;
        }
        int l4 = (int) u;
        if (end - l4 < 12 || EthernetDescriptor.u16(b, l4) != 547) {
            return false;
        }
        int dstPort = EthernetDescriptor.u16(b, l4 + 2);
        int message = l4 + 8;
        int messageEnd = Math.min(end, l4 + EthernetDescriptor.u16(b, l4 + 4));
        int type = b.getByte(message) & 0xff;
        if (dstPort == 547 && type == RELAY_REPL) {
            for (int depth = 0; type == RELAY_REPL; depth++) {
                if (depth == MAX_RELAY_DEPTH) {
                    return false;
                }
                long m = relayMessage(b, message, messageEnd);
                if (m < 0) {
                    return false;
                }
                message = (int) (m >>> 32);
                messageEnd = (int) m;
                type = b.getByte(message) & 0xff;
            }
        } else if (dstPort != 546) {
            return false;
        }
        return type == REPLY6 && readReplyOptions(b, message + 4, messageEnd);
    }

    /**
     * The Relay Message option of the RELAY-REPL at {@code o}..{@code end}: {@code start << 32 | end} of the message
     * it carries (at least its 4-byte header), or -1 when there is none or an option runs past the RELAY-REPL.
     */
    private static long relayMessage(DirectBuffer b, int o, int end) {
        long found = -1;
        for (o += RELAY_HEADER; o < end; ) {
            if (end - o < 4) {
                return -1;
            }
            int code = EthernetDescriptor.u16(b, o);
            int len = EthernetDescriptor.u16(b, o + 2);
            int data = o + 4;
            if (end - data < len) {
                return -1;
            }
            if (code == RELAY_MSG && found < 0) {
                if (len < 4) {
                    return -1;
                }
                found = ((long) data << 32) | (data + len);
            }
            o = data + len;
        }
        return found;
    }

    private boolean readReplyOptions(DirectBuffer b, int o, int end) {
        while (o < end) {
            if (end - o < 4) {
                return fail6();
            }
            int code = EthernetDescriptor.u16(b, o);
            int len = EthernetDescriptor.u16(b, o + 2);
            int data = o + 4;
            if (end - data < len) {
                return fail6();
            }
            int skip = code == IA_NA ? 12 : code == IA_TA ? 4 : -1;
            if (skip >= 0 && (len < skip || !readIaAddresses(b, data + skip, data + len))) {
                return fail6();
            }
            o = data + len;
        }
        return count6 > 0;
    }

    private boolean readIaAddresses(DirectBuffer b, int o, int end) {
        while (o < end) {
            if (end - o < 4) {
                return false;
            }
            int code = EthernetDescriptor.u16(b, o);
            int len = EthernetDescriptor.u16(b, o + 2);
            int data = o + 4;
            if (end - data < len) {
                return false;
            }
            if (code == IAADDR) {
                if (len < 24) {
                    return false;
                }
                if (count6 < MAX_ADDRESSES6) {
                    addresses6[2 * count6] = b.getLong(data, java.nio.ByteOrder.BIG_ENDIAN);
                    addresses6[2 * count6 + 1] = b.getLong(data + 8, java.nio.ByteOrder.BIG_ENDIAN);
                    long valid = b.getInt(data + 20, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL;
                    lifetimes6[count6++] = valid == 0xffff_ffffL ? INFINITE : valid;
                }
            }
            o = data + len;
        }
        return true;
    }

    private boolean fail6() {
        count6 = 0;
        return false;
    }
}
