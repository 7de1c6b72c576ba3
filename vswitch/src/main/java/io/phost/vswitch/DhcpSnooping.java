package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * DHCP snooping: reads a DHCPACK that a server on an allowed port (one without the DHCP guard) sends to a client,
 * so the IP spoofing guard of the client's port may also allow the address it was leased, until the lease ends.
 * <pre>
 *   IPv4 (first fragment) → UDP 67 → 68 → BOOTP: op @0 = 2 (BOOTREPLY), hlen @2 = 6, yiaddr @16, chaddr @28,
 *   magic cookie @236, options @240: 53 (message type) = 5 (ACK), 51 (lease time, seconds; absent = infinite)
 * </pre>
 * One instance per switch, used on its thread; the result is left in fields (no allocation per packet).
 */
final class DhcpSnooping {
    private static final int BOOTP_HEADER = 236;
    private static final int DHCP_MAGIC_COOKIE = 0x6382_5363;
    private static final int ACK = 5;
    static final long INFINITE = -1;

    /** The last ACK's client hardware address, leased address and lease time in seconds (INFINITE for none). */
    long clientMac;
    int leasedAddress;
    long leaseSeconds;

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
}
