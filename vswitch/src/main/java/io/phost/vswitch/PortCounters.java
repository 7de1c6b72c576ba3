package io.phost.vswitch;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.EnumMap;
import java.util.Map;

/**
 * Per-port counters. One writer (the switch's thread; VMQ workers have their own instance for what they
 * deliver); readers on other threads ({@code /status}, {@code /metrics}) use {@link #snapshot}. Opaque writes
 * keep each 64-bit value untorn and visible without a fence on the hot path.
 */
public final class PortCounters {
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final int RX_PACKETS = 0;
    private static final int RX_BYTES = 1;
    private static final int TX_PACKETS = 2;
    private static final int TX_BYTES = 3;
    private static final int MIRRORED = 4;
    private static final int MAC_LIMIT_HITS = 5;
    private static final int SOFTWARE_OFFLOAD = 6;
    private static final int DHCP_LEASES = 7;
    private static final int DROP_BASE = 8;

    /** Indices spaced so the hot counters share one cache line; drops follow. */
    private final long[] values = new long[DROP_BASE + DropReason.VALUES.length];

    private void add(int i, long delta) {
        LONGS.setOpaque(values, i, (long) LONGS.getOpaque(values, i) + delta);
    }

    private long get(int i) {
        return (long) LONGS.getOpaque(values, i);
    }

    void received(int bytes) {
        add(RX_PACKETS, 1);
        add(RX_BYTES, bytes);
    }

    void transmitted(int bytes) {
        add(TX_PACKETS, 1);
        add(TX_BYTES, bytes);
    }

    /** {@code frames} frames made in software (checksum completed or segmented) from one unfinished frame. */
    void transmittedSoftware(int frames, long bytes) {
        add(TX_PACKETS, frames);
        add(TX_BYTES, bytes);
        add(SOFTWARE_OFFLOAD, frames);
    }

    void mirrored() {
        add(MIRRORED, 1);
    }

    void mirrored(int frames) {
        add(MIRRORED, frames);
    }

    void dhcpLeaseLearned() {
        add(DHCP_LEASES, 1);
    }

    /** DHCPACKs to this port that its IP guard learned an address from (snooping). */
    public long dhcpLeasesLearned() {
        return get(DHCP_LEASES);
    }

    void macLimitHit() {
        add(MAC_LIMIT_HITS, 1);
    }

    void dropped(DropReason reason) {
        add(DROP_BASE + reason.ordinal(), 1);
    }

    public long rxPackets() {
        return get(RX_PACKETS);
    }

    public long rxBytes() {
        return get(RX_BYTES);
    }

    public long txPackets() {
        return get(TX_PACKETS);
    }

    public long txBytes() {
        return get(TX_BYTES);
    }

    public long mirroredPackets() {
        return get(MIRRORED);
    }

    public long macLimitHits() {
        return get(MAC_LIMIT_HITS);
    }

    /** Frames this port sent after the switch completed their checksum or segmented them (its sink takes no offloads). */
    public long softwareOffloadFrames() {
        return get(SOFTWARE_OFFLOAD);
    }

    public long drops(DropReason reason) {
        return get(DROP_BASE + reason.ordinal());
    }

    public long totalDrops() {
        long sum = 0;
        for (DropReason r : DropReason.VALUES) {
            sum += drops(r);
        }
        return sum;
    }

    /** A copy for reports: counter name to value (drops as drop_REASON), non-zero drops only. */
    public Map<String, Long> snapshot() {
        Map<String, Long> m = new java.util.LinkedHashMap<>();
        m.put("rx_packets", rxPackets());
        m.put("rx_bytes", rxBytes());
        m.put("tx_packets", txPackets());
        m.put("tx_bytes", txBytes());
        m.put("mirrored_packets", mirroredPackets());
        m.put("mac_limit_hits", macLimitHits());
        m.put("sw_offload_packets", softwareOffloadFrames());
        m.put("dhcp_leases_learned", dhcpLeasesLearned());
        for (DropReason r : DropReason.VALUES) {
            long v = drops(r);
            if (v != 0) {
                m.put("drop_" + r.name().toLowerCase(java.util.Locale.ROOT), v);
            }
        }
        return m;
    }

    /** As {@link #snapshot} but with every drop reason, zero or not (for /metrics: no missing series). */
    public Map<String, Long> all() {
        Map<String, Long> m = snapshot();
        for (DropReason r : DropReason.VALUES) {
            m.putIfAbsent("drop_" + r.name().toLowerCase(java.util.Locale.ROOT), drops(r));
        }
        return m;
    }

    /** Drops by reason, all reasons. */
    public Map<DropReason, Long> dropsByReason() {
        Map<DropReason, Long> m = new EnumMap<>(DropReason.class);
        for (DropReason r : DropReason.VALUES) {
            m.put(r, drops(r));
        }
        return m;
    }
}
