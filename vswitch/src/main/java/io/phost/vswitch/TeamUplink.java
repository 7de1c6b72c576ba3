package io.phost.vswitch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.agrona.DirectBuffer;

/**
 * Switch-embedded teaming (Hyper-V's SET, switch-independent, hashed by source MAC): several host interfaces as one
 * uplink port of an external switch.
 * <pre>
 *   out: member = the (hash(source MAC) mod U)-th member whose link is up (U of them)  → one vNIC stays on one member,
 *        several vNICs spread; a member going down moves only its MACs, and they move back when it returns (as
 *        SET rebalances on link recovery), with their first frame
 *   in:  unicast from any member; broadcast/multicast only from the primary (the first member that is up), since the
 *        physical switch floods those to every member and the partitions must see each once
 *   link: each member's sysfs operstate ("up", or "unknown" for drivers without carrier reporting), read every
 *         100 ms by a monitor thread into one bitmask the switch thread reads
 * </pre>
 * No allocation per frame. Each member is its own AF_PACKET socket ({@link PacketSocketPort}), so what the switch
 * sends on one member never comes back in on it; a frame sent on one member and flooded back on another by the
 * physical switch carries a vNIC's pinned MAC and is dropped as LOOP by the switch.
 */
public final class TeamUplink implements FrameSource, FrameSink {
    static final int MAX_MEMBERS = 8;
    private static final long CHECK_MILLIS = 100;
    private static final int ENETDOWN = 100;

    private final String[] names;
    private final PacketSocketPort[] members;
    private final Path sysfsRoot;
    private final FrameHandler[] filters;
    private final long[] txFrames;
    private final int offloads;
    private final Thread monitor;
    /** Bit i set: member i's link is up. Written by the monitor, read by the switch thread. */
    private volatile int upMask;
    private FrameHandler downstream;
    /** Frames that left by another member because the chosen one refused them. */
    private long sendFailovers;
    private int next;

    private TeamUplink(List<String> names, PacketSocketPort[] members, Path sysfsRoot) {
        this.names = names.toArray(new String[0]);
        this.members = members;
        this.sysfsRoot = sysfsRoot;
        this.txFrames = new long[members.length];
        this.filters = new FrameHandler[members.length];
        int common = FrameSink.OFFLOAD_TAP;
        for (int i = 0; i < members.length; i++) {
            int member = i;
            filters[i] = (b, off, len, meta) -> {
                // Group-address bit of the destination MAC: flooded copies arrive on every member; keep the primary's.
                if ((b.getByte(off) & 1) != 0 && member != primary(upMask)) {
                    return;
                }
                downstream.onFrame(b, off, len, meta);
            };
            common &= members[i].offloads();
        }
        this.offloads = common;
        this.upMask = readLinks();
        this.monitor = Thread.ofPlatform().daemon().name("team-" + String.join("+", this.names)).start(this::watch);
    }

    /** Opens an AF_PACKET socket on each of {@code interfaces} (2..8, distinct); {@code sysfsRoot} is "/sys". */
    public static TeamUplink open(List<String> interfaces, Path sysfsRoot) {
        if (interfaces.size() < 2 || interfaces.size() > MAX_MEMBERS || interfaces.stream().distinct().count() != interfaces.size()) {
            throw new IllegalArgumentException("a team has 2.." + MAX_MEMBERS + " distinct interfaces: " + interfaces);
        }
        PacketSocketPort[] ports = new PacketSocketPort[interfaces.size()];
        try {
            for (int i = 0; i < ports.length; i++) {
                ports[i] = PacketSocketPort.open(interfaces.get(i));
            }
        } catch (RuntimeException e) {
            for (PacketSocketPort p : ports) {
                if (p != null) {
                    p.close();
                }
            }
            throw e;
        }
        return new TeamUplink(interfaces, ports, sysfsRoot == null ? Path.of("/sys") : sysfsRoot);
    }

    private void watch() {
        while (!Thread.currentThread().isInterrupted()) {
            try {
                Thread.sleep(CHECK_MILLIS);
            } catch (InterruptedException e) {
                return;
            }
            upMask = readLinks();
        }
    }

    private int readLinks() {
        int mask = 0;
        for (int i = 0; i < names.length; i++) {
            try {
                String state = Files.readString(sysfsRoot.resolve("class/net").resolve(names[i]).resolve("operstate")).strip();
                if (state.equals("up") || state.equals("unknown")) {
                    mask |= 1 << i;
                }
            } catch (java.io.IOException e) {
                // gone or unreadable: down
            }
        }
        return mask;
    }

    private static int primary(int mask) {
        return mask == 0 ? 0 : Integer.numberOfTrailingZeros(mask);
    }

    @Override
    public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        int mask = upMask;
        if (mask == 0) {
            return false; // every link is down: counted as EGRESS_FULL on the uplink
        }
        long mac = (buffer.getInt(offset + 6, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff_ffffL) << 16
            | (buffer.getShort(offset + 10, java.nio.ByteOrder.BIG_ENDIAN) & 0xffff);
        int member = memberFor(mac, mask);
        PacketSocketPort chosen = members[member];
        // A link that went down leaves ENETDOWN pending on its socket (packet_notifier sets sk_err), and the first
        // send after the link is back returns it, consuming it: that send is tried once more before falling over,
        // so traffic returns to a recovered member with its first frame.
        if (chosen.tryTransmit(buffer, offset, length, meta)
            || chosen.lastSendErrno() == ENETDOWN && chosen.tryTransmit(buffer, offset, length, meta)) {
            txFrames[member]++;
            return true;
        }
        // The link died before the monitor saw it (ENETDOWN) or its queue is full: another member that is up takes it.
        for (int i = 1; i < members.length; i++) {
            int other = (member + i) % members.length;
            if ((mask & (1 << other)) != 0 && members[other].tryTransmit(buffer, offset, length, meta)) {
                txFrames[other]++;
                sendFailovers++;
                return true;
            }
        }
        return false;
    }

    /** The member a frame from {@code mac} leaves by when the members in {@code upMask} are up (non-zero). */
    static int memberFor(long mac, int upMask) {
        long h = mac * 0x9E37_79B9_7F4A_7C15L;
        int k = (int) Long.remainderUnsigned(h ^ (h >>> 29), Integer.bitCount(upMask));
        int m = upMask;
        for (int i = 0; i < k; i++) {
            m &= m - 1; // drop the lowest set bit: the k-th up member is the lowest left
        }
        return Integer.numberOfTrailingZeros(m);
    }

    @Override
    public int poll(FrameHandler handler, int limit) {
        downstream = handler;
        int n = 0;
        for (int i = 0; i < members.length && n < limit; i++) {
            int member = (next + i) % members.length;
            n += members[member].poll(filters[member], limit - n);
        }
        next = (next + 1) % members.length; // no member starves the others under load
        return n;
    }

    @Override
    public int offloads() {
        return offloads;
    }

    @Override
    public int readinessFd() {
        return members[0].readinessFd();
    }

    @Override
    public int[] readinessFds() {
        int[] fds = new int[members.length];
        for (int i = 0; i < fds.length; i++) {
            fds[i] = members[i].readinessFd();
        }
        return fds;
    }

    /** Member name → {"up": true|false, "tx_frames": n, "last_send_errno": e}, for /status (tx counts read racily from the switch thread). */
    public Map<String, Map<String, Object>> status() {
        int mask = upMask;
        Map<String, Map<String, Object>> m = new LinkedHashMap<>();
        for (int i = 0; i < names.length; i++) {
            m.put(names[i], Map.of("up", (mask & (1 << i)) != 0, "tx_frames", txFrames[i],
                "last_send_errno", members[i].lastSendErrno()));
        }
        return m;
    }

    /** Frames that left by another member than their hash chose, because that one refused them (link just died). */
    public long sendFailovers() {
        return sendFailovers;
    }

    /** Frames sent on member {@code i} (the switch thread's count). */
    long txFrames(int i) {
        return txFrames[i];
    }

    /** Frames the members' sockets lost before the switch saw them, summed ({@link PacketSocketPort#receiveDrops}). */
    public long receiveDrops() {
        long sum = 0;
        for (PacketSocketPort p : members) {
            sum += p.receiveDrops();
        }
        return sum;
    }

    public List<String> members() {
        return List.of(names);
    }

    @Override
    public void close() {
        monitor.interrupt();
        for (PacketSocketPort p : members) {
            p.close();
        }
    }
}
