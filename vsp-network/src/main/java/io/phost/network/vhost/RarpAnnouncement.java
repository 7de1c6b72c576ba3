package io.phost.network.vhost;

import org.agrona.concurrent.UnsafeBuffer;

/**
 * The frame QEMU's {@code announce_self} sends for a migrated guest, which a vhost-user back-end with the RARP
 * protocol feature sends instead (SEND_RARP): a broadcast RARP "request reverse" from the guest's MAC, so
 * switches along the way learn the MAC's new port. A process partition's synthetic NIC sends the same frame after
 * a move to another appliance ({@link io.phost.network.NetVsp#announce}).
 * <pre>
 *   ff:ff:ff:ff:ff:ff  MAC  0x8035 | htype 1  ptype 0x0800  hlen 6  plen 4  op 3 | sha MAC  spa 0  tha MAC  tpa 0 | pad to 60
 * </pre>
 */
public final class RarpAnnouncement {
    public static final int LENGTH = 60;
    static final int ETHERTYPE = 0x8035;

    private RarpAnnouncement() {
    }

    /** Writes the announcement for {@code mac} into {@code b} at 0 (LENGTH bytes). */
    public static void write(UnsafeBuffer b, long mac) {
        b.setMemory(0, LENGTH, (byte) 0);
        b.setMemory(0, 6, (byte) 0xFF);
        putMac(b, 6, mac);
        b.putByte(12, (byte) (ETHERTYPE >> 8));
        b.putByte(13, (byte) ETHERTYPE);
        b.putByte(15, (byte) 1);      // htype Ethernet
        b.putByte(16, (byte) 0x08);   // ptype IPv4
        b.putByte(18, (byte) 6);      // hlen
        b.putByte(19, (byte) 4);      // plen
        b.putByte(21, (byte) 3);      // op: request reverse
        putMac(b, 22, mac);           // sha; spa 0
        putMac(b, 32, mac);           // tha; tpa 0
    }

    private static void putMac(UnsafeBuffer b, int at, long mac) {
        for (int i = 0; i < 6; i++) {
            b.putByte(at + i, (byte) (mac >>> (8 * (5 - i))));
        }
    }
}
