package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * The flows stateful ACL rules ({@link PortAcl#stateful}) let through on one port, so their packets pass both ways
 * without the rules. A fixed open-addressing table, preallocated, one thread (the switch's), nothing allocated per
 * packet. Keys are oriented from the port's side, so a flow and its replies share an entry:
 * <pre>
 *   localHi, localLo   = the partition's address (IPv4 as IPv4-mapped ::ffff:a.b.c.d)
 *   remoteHi, remoteLo = the other end's
 *   ports = closing(1) << 40 | protocol(8) << 32 | localPort(16) << 16 | remotePort(16)
 *   seen = last packet (System.nanoTime); EMPTY for a slot never used
 *   idle timeout: TCP 300 s, UDP 60 s; a TCP flow that carried a FIN or RST (closing) 10 s
 *   insert: linear probing within PROBE slots of the hash; a full window evicts its least recently seen entry
 * </pre>
 * IPv4 and IPv6 TCP and UDP (first fragments, which carry the ports; IPv6 after its extension headers) are tracked.
 */
final class AclFlowTable {
    static final int CAPACITY = 4096;
    static final long TCP_IDLE_NANOS = 300_000_000_000L;
    static final long UDP_IDLE_NANOS = 60_000_000_000L;
    static final long CLOSING_IDLE_NANOS = 10_000_000_000L;
    private static final long CLOSING = 1L << 40;
    private static final long IPV4_MAPPED = 0xffff_0000_0000L;
    private static final int PROBE = 16;
    private static final long EMPTY = Long.MIN_VALUE;

    private final long[] localHi = new long[CAPACITY];
    private final long[] localLo = new long[CAPACITY];
    private final long[] remoteHi = new long[CAPACITY];
    private final long[] remoteLo = new long[CAPACITY];
    private final long[] ports = new long[CAPACITY];
    private final long[] seen = new long[CAPACITY];
    private long evictions;
    // The current packet's key, set by key().
    private long kLocalHi;
    private long kLocalLo;
    private long kRemoteHi;
    private long kRemoteLo;
    private long kPorts;
    /** The current packet is TCP with FIN or RST: its flow is closing. */
    private boolean kClosing;

    AclFlowTable() {
        java.util.Arrays.fill(seen, EMPTY);
    }

    /**
     * Reads the flow key of the frame whose L3 payload (ethertype {@code type}) is {@code l3}..{@code end};
     * {@code towardsPort}: the frame goes to the port (its destination is the local end). False when the packet is
     * not trackable (not IPv4/IPv6 TCP/UDP, a later fragment, or too short).
     */
    boolean key(DirectBuffer b, int l3, int end, int type, boolean towardsPort) {
        int proto;
        int l4;
        long srcHi;
        long srcLo;
        long dstHi;
        long dstLo;
        if (type == EthernetDescriptor.TYPE_IPV4) {
            if (end - l3 < 20) {
                return false;
            }
            proto = b.getByte(l3 + 9) & 0xff;
            l4 = l3 + (b.getByte(l3) & 0x0f) * 4;
            if ((EthernetDescriptor.u16(b, l3 + 6) & 0x1fff) != 0) {
                return false;
            }
            srcHi = 0;
            srcLo = IPV4_MAPPED | (b.getInt(l3 + 12, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL);
            dstHi = 0;
            dstLo = IPV4_MAPPED | (b.getInt(l3 + 16, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL);
        } else if (type == EthernetDescriptor.TYPE_IPV6) {
            if (end - l3 < 40) {
                return false;
            }
            end = Guards.end6(b, l3, end);
            long u = Guards.upperLayer6(b, l3, end);
            if (u == Guards.HIDDEN || u == Guards.LATER_FRAGMENT) {
                return false;
            }
            proto = (int) (u >>> 32);
            l4 = (int) u;
            srcHi = b.getLong(l3 + 8, java.nio.ByteOrder.BIG_ENDIAN);
            srcLo = b.getLong(l3 + 16, java.nio.ByteOrder.BIG_ENDIAN);
            dstHi = b.getLong(l3 + 24, java.nio.ByteOrder.BIG_ENDIAN);
            dstLo = b.getLong(l3 + 32, java.nio.ByteOrder.BIG_ENDIAN);
        } else {
            return false;
        }
        if ((proto != 6 && proto != 17) || end - l4 < 4) {
            return false;
        }
        long srcPort = EthernetDescriptor.u16(b, l4);
        long dstPort = EthernetDescriptor.u16(b, l4 + 2);
        kLocalHi = towardsPort ? dstHi : srcHi;
        kLocalLo = towardsPort ? dstLo : srcLo;
        kRemoteHi = towardsPort ? srcHi : dstHi;
        kRemoteLo = towardsPort ? srcLo : dstLo;
        kPorts = (long) proto << 32 | (towardsPort ? dstPort << 16 | srcPort : srcPort << 16 | dstPort);
        kClosing = proto == 6 && end - l4 >= 14 && (b.getByte(l4 + 13) & 0x05) != 0; // FIN or RST
        return true;
    }

    /** True (and the entry refreshed) when the current key is a live flow. */
    boolean refresh(long now) {
        int slot = find(now);
        if (slot < 0) {
            return false;
        }
        seen[slot] = now;
        if (kClosing) {
            ports[slot] |= CLOSING; // FIN or RST: the flow ends 10 s after its last packet
        }
        return true;
    }

    /** Records the current key as a live flow. */
    void record(long now) {
        if (refresh(now)) {
            return;
        }
        int home = home();
        int victim = -1;
        for (int i = 0; i < PROBE; i++) {
            int s = (home + i) & (CAPACITY - 1);
            if (seen[s] == EMPTY || expired(s, now)) {
                victim = s;
                break;
            }
            if (victim < 0 || seen[s] - seen[victim] < 0) {
                victim = s;
            }
        }
        if (seen[victim] != EMPTY && !expired(victim, now)) {
            evictions++; // the window is full of live flows: the least recently seen one goes
        }
        localHi[victim] = kLocalHi;
        localLo[victim] = kLocalLo;
        remoteHi[victim] = kRemoteHi;
        remoteLo[victim] = kRemoteLo;
        ports[victim] = kPorts | (kClosing ? CLOSING : 0);
        seen[victim] = now;
    }

    /** Live flows now (walks the table: for status, not per packet). */
    int size(long now) {
        int n = 0;
        for (int s = 0; s < CAPACITY; s++) {
            if (seen[s] != EMPTY && !expired(s, now)) {
                n++;
            }
        }
        return n;
    }

    /** Live flows that had to make room for new ones. */
    long evictions() {
        return evictions;
    }

    private int find(long now) {
        int home = home();
        for (int i = 0; i < PROBE; i++) {
            int s = (home + i) & (CAPACITY - 1);
            if (seen[s] == EMPTY) {
                return -1; // slots are never emptied, so the key is not further on
            }
            if ((ports[s] & ~CLOSING) == kPorts && localLo[s] == kLocalLo && remoteLo[s] == kRemoteLo
                && localHi[s] == kLocalHi && remoteHi[s] == kRemoteHi) {
                return expired(s, now) ? -1 : s;
            }
        }
        return -1;
    }

    private boolean expired(int s, long now) {
        long p = ports[s];
        long idle = (p & CLOSING) != 0 ? CLOSING_IDLE_NANOS : ((p >>> 32) & 0xff) == 6 ? TCP_IDLE_NANOS : UDP_IDLE_NANOS;
        return now - seen[s] > idle;
    }

    private int home() {
        long h = (kLocalLo ^ kLocalHi * 31) * 0x9E37_79B9_7F4A_7C15L ^ (kRemoteLo ^ kRemoteHi * 31) * 0xC2B2_AE3D_27D4_EB4FL
            ^ kPorts * 0x1656_67B1_9E37_79F9L;
        h ^= h >>> 31;
        return (int) h & (CAPACITY - 1);
    }
}
