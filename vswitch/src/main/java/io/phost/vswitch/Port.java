package io.phost.vswitch;

/**
 * One switch port: its policy (copied into plain fields for the hot path), its sink and source, counters.
 * Fields are owned by the switch's thread; {@link #counters()} and {@link #config()} may be read anywhere.
 */
public final class Port {
    final VSwitch owner;
    final int index;
    final String name;
    final PortKind kind;
    final FrameSink sink;
    final FrameSource source;
    final PortCounters counters = new PortCounters();
    final FrameHandler ingress;
    static final int MAX_LEASES = 4;

    volatile PortConfig config;
    VlanMode vlanMode;
    int accessVlan;
    int nativeVlan;
    final long[] trunkAllowed = new long[64];
    long mac;
    boolean macSpoofing;
    boolean guarded;
    boolean dhcpGuard;
    boolean routerGuard;
    MirrorMode mirror;
    TokenBucket storm;
    TokenBucket bandwidth;
    int weight;
    /** IPv4 addresses this port may claim (ARP inspection, IP spoofing guard); only read when ipGuard. */
    int[] ipAddresses = new int[0];
    /** Port ACL rules; aclIn/aclOut: some rule applies to frames towards / from the port. */
    PortAcl[] acls = new PortAcl[0];
    boolean aclIn;
    boolean aclOut;
    /** Flows admitted by stateful ACL rules, or null when the port has none. */
    AclFlowTable flows;
    boolean ipGuard;
    /** Addresses leased to this port by DHCP (snooped ACKs) and when each lease ends (nanos; MAX_VALUE = never). */
    final int[] leasedIps = new int[MAX_LEASES];
    final long[] leaseEnds = new long[MAX_LEASES];
    /** Addresses leased by DHCPv6 (snooped REPLYs): high, low pairs, and when each lease ends. */
    final long[] leasedIps6 = new long[2 * MAX_LEASES];
    final long[] lease6Ends = new long[MAX_LEASES];
    /** IPv6 addresses (high, low pairs) this port may claim; only read when ip6Guard. */
    long[] ipv6Addresses = new long[0];
    boolean ip6Guard;
    /** Cap on what the switch sends to this port, shared among its senders by weight, or null. */
    WeightedPolicer toPort;
    int maxMacs;
    /** Largest IP packet (L2 payload) in or out, 0 = no limit. */
    int mtu;
    int learned;
    /** The sink's {@link FrameSink#offloads}: what unfinished frames it takes as they are. */
    int offloads;
    volatile boolean up = true;

    /** Per-frame stamp: equals the switch's frame sequence once this port got the current frame. */
    long deliveredSeq = -1;
    /** DRR deficit in bytes (min-bandwidth weights). */
    long deficit;
    /** The switch's last unicast lookup for frames from this port: key (vlan << 48 | MAC), answer, table version. */
    long lastDstKey = -1;
    Port lastDst;
    long lastDstVersion = -1;

    Port(VSwitch owner, int index, String name, PortKind kind, FrameSink sink, FrameSource source) {
        this.owner = owner;
        this.index = index;
        this.name = name;
        this.kind = kind;
        this.sink = sink;
        this.source = source;
        this.offloads = sink.offloads();
        this.ingress = (buffer, offset, length, meta) -> owner.receive(this, buffer, offset, length, meta);
    }

    void apply(PortConfig c, long now) {
        offloads = sink.offloads();
        vlanMode = c.vlanMode();
        accessVlan = c.accessVlan();
        nativeVlan = c.nativeVlan();
        java.util.Arrays.fill(trunkAllowed, 0);
        for (int v : c.trunkAllowed()) {
            trunkAllowed[v >>> 6] |= 1L << v;
        }
        mac = c.mac();
        macSpoofing = c.macSpoofing() || c.mac() == -1;
        dhcpGuard = c.dhcpGuard();
        routerGuard = c.routerGuard();
        acls = c.acls();
        aclIn = false;
        aclOut = false;
        boolean stateful = false;
        for (PortAcl a : acls) {
            aclIn |= a.inbound();
            aclOut |= a.outbound();
            stateful |= a.stateful();
        }
        // Kept across a rule change, so established flows survive it (they still need a stateful rule to exist).
        flows = !stateful ? null : flows != null ? flows : new AclFlowTable();
        ipAddresses = c.ipAddresses();
        ipGuard = ipAddresses.length > 0;
        ipv6Addresses = c.ipv6Addresses();
        ip6Guard = ipv6Addresses.length > 0;
        guarded = dhcpGuard || routerGuard || ipGuard || ip6Guard;
        mirror = c.mirror();
        storm = c.stormLimitPps() == 0 ? null : new TokenBucket(c.stormLimitPps(), Math.max(1, c.stormLimitPps() / 10), now);
        long bytesPerSecond = c.maxBandwidthBps() / 8;
        // Burst: 100 ms of traffic (credit survives the switch thread being descheduled on a busy host, so the
        // long-run rate holds), but at least two 64 KiB GSO super-frames so one frame never exceeds it.
        bandwidth = bytesPerSecond == 0 ? null
            : new TokenBucket(bytesPerSecond, Math.max(2 * 65_536, bytesPerSecond / 10), now);
        long toPortBytesPerSecond = c.maxBandwidthToPortBps() / 8;
        // Policer towards the port: 100 ms of burst (at least two GSO super-frames), as for the ingress shaper.
        toPort = toPortBytesPerSecond == 0 ? null
            : new WeightedPolicer(toPortBytesPerSecond, Math.max(2 * 65_536, toPortBytesPerSecond / 10), now);
        weight = c.minBandwidthWeight();
        maxMacs = c.maxMacAddresses();
        mtu = c.mtu();
        config = c;
    }

    /** The share the weighted scheduler gives this port as a sender (1..PortConfig.MAX_WEIGHT). */
    public int weight() {
        return weight;
    }

    /** Records a DHCP lease of {@code ip} until {@code until} (renewals refresh it; a full table replaces the oldest end). */
    void lease(int ip, long until) {
        int slot = 0;
        for (int i = 0; i < MAX_LEASES; i++) {
            if (leasedIps[i] == ip) {
                slot = i;
                break;
            }
            if (leaseEnds[i] - leaseEnds[slot] < 0) {
                slot = i;
            }
        }
        leasedIps[slot] = ip;
        leaseEnds[slot] = until;
    }

    /** True when {@code ip} is leased to this port and the lease has not ended at {@code now}. */
    boolean leased(int ip, long now) {
        for (int i = 0; i < MAX_LEASES; i++) {
            if (leasedIps[i] == ip && ip != 0 && now - leaseEnds[i] < 0) {
                return true;
            }
        }
        return false;
    }

    /** Records a DHCPv6 lease of (hi, lo) until {@code until}, as {@link #lease} does for IPv4. */
    void lease6(long hi, long lo, long until) {
        int slot = 0;
        for (int i = 0; i < MAX_LEASES; i++) {
            if (leasedIps6[2 * i] == hi && leasedIps6[2 * i + 1] == lo) {
                slot = i;
                break;
            }
            if (lease6Ends[i] - lease6Ends[slot] < 0) {
                slot = i;
            }
        }
        leasedIps6[2 * slot] = hi;
        leasedIps6[2 * slot + 1] = lo;
        lease6Ends[slot] = until;
    }

    /** True when (hi, lo) is leased to this port by DHCPv6 and the lease has not ended at {@code now}. */
    boolean leased6(long hi, long lo, long now) {
        for (int i = 0; i < MAX_LEASES; i++) {
            if (leasedIps6[2 * i] == hi && leasedIps6[2 * i + 1] == lo && (hi | lo) != 0 && now - lease6Ends[i] < 0) {
                return true;
            }
        }
        return false;
    }

    /** The addresses leased now (for status): "a.b.c.d" each, then IPv6 ones. */
    public java.util.List<String> dhcpLeases() {
        long now = owner.now();
        java.util.List<String> out = new java.util.ArrayList<>();
        for (int i = 0; i < MAX_LEASES; i++) {
            int ip = leasedIps[i];
            if (ip != 0 && now - leaseEnds[i] < 0) {
                out.add((ip >>> 24) + "." + (ip >>> 16 & 0xff) + "." + (ip >>> 8 & 0xff) + "." + (ip & 0xff));
            }
        }
        for (int i = 0; i < MAX_LEASES; i++) {
            if ((leasedIps6[2 * i] | leasedIps6[2 * i + 1]) != 0 && now - lease6Ends[i] < 0) {
                byte[] a = java.nio.ByteBuffer.allocate(16).putLong(leasedIps6[2 * i]).putLong(leasedIps6[2 * i + 1]).array();
                try {
                    out.add(java.net.InetAddress.getByAddress(a).getHostAddress());
                } catch (java.net.UnknownHostException e) {
                    throw new IllegalStateException(e); // 16 bytes is always an address
                }
            }
        }
        return out;
    }

    /** The switch-internal VLAN (0 = untagged network) of a frame arriving with {@code vid} (-1 = no tag), or -1. */
    int classifyIngress(int vid) {
        switch (vlanMode) {
            case UNTAGGED:
                return vid <= 0 ? 0 : -1;
            case ACCESS:
                return vid <= 0 ? accessVlan : -1;
            default:
                if (vid <= 0) {
                    return nativeVlan;
                }
                return allowed(vid) ? vid : -1;
        }
    }

    boolean allowed(int vid) {
        return (trunkAllowed[vid >>> 6] & (1L << vid)) != 0;
    }

    /** True when frames of switch VLAN {@code vlan} may leave through this port. */
    boolean carries(int vlan) {
        switch (vlanMode) {
            case UNTAGGED:
                return vlan == 0;
            case ACCESS:
                return vlan == accessVlan;
            default:
                return vlan == nativeVlan || (vlan != 0 && allowed(vlan));
        }
    }

    /** True when frames of {@code vlan} leave this port with a tag. */
    boolean egressTagged(int vlan) {
        return vlanMode == VlanMode.TRUNK && vlan != nativeVlan && vlan != 0;
    }

    public int index() {
        return index;
    }

    public String name() {
        return name;
    }

    public PortKind kind() {
        return kind;
    }

    public PortConfig config() {
        return config;
    }

    /** The port's MTU (0 = no limit: an uplink or host port whose device enforces its own). */
    public int mtu() {
        return mtu;
    }

    /** Live flows in the port's stateful ACL table (walks the table: for status only), or -1 when it has none. */
    public int aclFlows() {
        AclFlowTable f = flows;
        return f == null ? -1 : f.size(System.nanoTime());
    }

    public PortCounters counters() {
        return counters;
    }

    public FrameSink sink() {
        return sink;
    }

    public FrameSource source() {
        return source;
    }

    public VSwitch owner() {
        return owner;
    }

    public boolean isUp() {
        return up;
    }

    /** The handler that feeds this port's ingress frames into the switch (used by sources). */
    public FrameHandler ingress() {
        return ingress;
    }

    /** False while the port's max-bandwidth bucket is in debt: its source must not be polled (shaping). */
    public boolean admitsIngress(long now) {
        return bandwidth == null || bandwidth.ready(now);
    }

    @Override
    public String toString() {
        return owner.name() + "/" + name;
    }
}
