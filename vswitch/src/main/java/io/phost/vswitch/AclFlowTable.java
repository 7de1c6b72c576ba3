package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * The flows stateful ACL rules ({@link PortAcl#stateful}) let through on one port, so their packets pass both ways
 * without the rules. A fixed open-addressing table, preallocated, one thread (the switch's), nothing allocated per
 * packet. Keys are oriented from the port's side, so a flow and its replies share an entry:
 * <pre>
 *   key1 = localIp(32) | remoteIp(32)                     local = the partition's end, remote = the other end
 *   key2 = protocol(8) << 32 | localPort(16) << 16 | remotePort(16)
 *   seen = last packet (System.nanoTime); EMPTY for a slot never used
 *   idle timeout: TCP 300 s, UDP 60 s (an expired entry is a miss and may be overwritten)
 *   insert: linear probing within PROBE slots of the hash; a full window evicts its least recently seen entry
 * </pre>
 * Only IPv4 TCP and UDP (first fragments, which carry the ports) are tracked.
 */
final class AclFlowTable {
    static final int CAPACITY = 4096;
    static final long TCP_IDLE_NANOS = 300_000_000_000L;
    static final long UDP_IDLE_NANOS = 60_000_000_000L;
    private static final int PROBE = 16;
    private static final long EMPTY = Long.MIN_VALUE;

    private final long[] key1 = new long[CAPACITY];
    private final long[] key2 = new long[CAPACITY];
    private final long[] seen = new long[CAPACITY];
    private long evictions;
    // The current packet's key, set by key().
    private long k1;
    private long k2;

    AclFlowTable() {
        java.util.Arrays.fill(seen, EMPTY);
    }

    /**
     * Reads the flow key of the frame whose L3 payload (ethertype {@code type}) is {@code l3}..{@code end};
     * {@code towardsPort}: the frame goes to the port (its destination is the local end). False when the packet is
     * not trackable (not IPv4 TCP/UDP, a later fragment, or too short).
     */
    boolean key(DirectBuffer b, int l3, int end, int type, boolean towardsPort) {
        if (type != EthernetDescriptor.TYPE_IPV4 || end - l3 < 20) {
            return false;
        }
        int proto = b.getByte(l3 + 9) & 0xff;
        int l4 = l3 + (b.getByte(l3) & 0x0f) * 4;
        if ((proto != 6 && proto != 17) || (EthernetDescriptor.u16(b, l3 + 6) & 0x1fff) != 0 || end - l4 < 4) {
            return false;
        }
        long src = b.getInt(l3 + 12, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL;
        long dst = b.getInt(l3 + 16, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL;
        long srcPort = EthernetDescriptor.u16(b, l4);
        long dstPort = EthernetDescriptor.u16(b, l4 + 2);
        k1 = towardsPort ? dst << 32 | src : src << 32 | dst;
        k2 = (long) proto << 32 | (towardsPort ? dstPort << 16 | srcPort : srcPort << 16 | dstPort);
        return true;
    }

    /** True (and the entry refreshed) when the current key is a live flow. */
    boolean refresh(long now) {
        int slot = find(now);
        if (slot < 0) {
            return false;
        }
        seen[slot] = now;
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
        key1[victim] = k1;
        key2[victim] = k2;
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
            if (key1[s] == k1 && key2[s] == k2) {
                return expired(s, now) ? -1 : s;
            }
        }
        return -1;
    }

    private boolean expired(int s, long now) {
        long idle = (key2[s] >>> 32) == 6 ? TCP_IDLE_NANOS : UDP_IDLE_NANOS;
        return now - seen[s] > idle;
    }

    private int home() {
        long h = k1 * 0x9E37_79B9_7F4A_7C15L ^ k2 * 0xC2B2_AE3D_27D4_EB4FL;
        h ^= h >>> 31;
        return (int) h & (CAPACITY - 1);
    }
}
