package io.phost.vswitch;

import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;

/**
 * Ethernet II frame layout as the switch reads it (network byte order, FCS not present).
 * <pre>
 *   0                   6                  12        14        16        18
 *  +-------------------+-------------------+---------+---------+---------+-----------
 *  | destination MAC   | source MAC        | type    | payload ...                     untagged
 *  +-------------------+-------------------+---------+---------+---------+-----------
 *  | destination MAC   | source MAC        | 0x8100  | TCI     | type    | payload     802.1Q tagged
 *  +-------------------+-------------------+---------+---------+---------+-----------
 *  TCI = PCP(3) | DEI(1) | VID(12); VID 0 = priority tag only; VID 4095 reserved.
 * </pre>
 * MAC addresses are handled as the low 48 bits of a long, first octet most significant, so the I/G
 * (multicast) bit of the first octet is bit 40.
 */
public final class EthernetDescriptor {
    public static final int DST_OFFSET = 0;
    public static final int SRC_OFFSET = 6;
    public static final int TYPE_OFFSET = 12;
    public static final int TCI_OFFSET = 14;
    public static final int INNER_TYPE_OFFSET = 16;
    public static final int HEADER_LENGTH = 14;
    public static final int TAGGED_HEADER_LENGTH = 18;
    public static final int VLAN_TAG_LENGTH = 4;
    public static final int TPID_8021Q = 0x8100;
    public static final int TPID_8021AD = 0x88a8;
    public static final int TYPE_IPV4 = 0x0800;
    public static final int TYPE_IPV6 = 0x86dd;
    public static final int TYPE_ARP = 0x0806;
    public static final long MULTICAST_BIT = 1L << 40;
    public static final long BROADCAST = 0xffff_ffff_ffffL;
    public static final int VID_MASK = 0xfff;
    public static final int VID_RESERVED = 0xfff;

    private EthernetDescriptor() {}

    public static long mac(DirectBuffer b, int offset) {
        return ((b.getInt(offset, ByteOrder.BIG_ENDIAN) & 0xffff_ffffL) << 16)
            | (b.getShort(offset + 4, ByteOrder.BIG_ENDIAN) & 0xffffL);
    }

    public static void putMac(MutableDirectBuffer b, int offset, long mac) {
        b.putInt(offset, (int) (mac >>> 16), ByteOrder.BIG_ENDIAN);
        b.putShort(offset + 4, (short) mac, ByteOrder.BIG_ENDIAN);
    }

    public static int u16(DirectBuffer b, int offset) {
        return b.getShort(offset, ByteOrder.BIG_ENDIAN) & 0xffff;
    }

    public static boolean isMulticast(long mac) {
        return (mac & MULTICAST_BIT) != 0;
    }

    /** "02:00:00:00:00:01" to its 48-bit value; throws IllegalArgumentException on anything else. */
    public static long parseMac(String text) {
        String[] parts = text.trim().split("[:-]");
        if (parts.length != 6) {
            throw new IllegalArgumentException("not a MAC address: " + text);
        }
        long mac = 0;
        for (String p : parts) {
            if (p.length() != 2) {
                throw new IllegalArgumentException("not a MAC address: " + text);
            }
            mac = (mac << 8) | Integer.parseInt(p, 16);
        }
        return mac;
    }

    public static String formatMac(long mac) {
        StringBuilder sb = new StringBuilder(17);
        for (int shift = 40; shift >= 0; shift -= 8) {
            int octet = (int) ((mac >>> shift) & 0xff);
            if (sb.length() > 0) {
                sb.append(':');
            }
            sb.append(Character.forDigit(octet >> 4, 16)).append(Character.forDigit(octet & 0xf, 16));
        }
        return sb.toString();
    }
}
