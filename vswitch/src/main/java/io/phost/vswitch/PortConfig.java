package io.phost.vswitch;

import java.util.Arrays;

/**
 * A port's policy, as Set-VMNetworkAdapter / Set-VMNetworkAdapterVlan would set it. Immutable; change a
 * port by applying a new config ({@link VSwitch#configure}).
 *
 * @param mac                 the vNIC's MAC (48-bit), or -1 for none (uplink, or spoofing allowed)
 * @param vlanMode            untagged, access or trunk
 * @param accessVlan          the access VLAN (1..4094) in ACCESS mode
 * @param trunkAllowed        allowed VIDs in TRUNK mode
 * @param nativeVlan          VLAN of untagged frames in TRUNK mode (0 = the untagged network)
 * @param macSpoofing         true: the port may send with any source MAC
 * @param dhcpGuard           drop DHCP server messages from this port
 * @param routerGuard         drop router advertisements and redirects from this port
 * @param mirror              port mirroring role
 * @param stormLimitPps       flooded frames per second allowed from this port, 0 = unlimited
 * @param maxBandwidthBps     bits per second from this port into the switch, 0 = unlimited
 * @param minBandwidthWeight  share of the switch core under contention (1..100)
 * @param maxMacAddresses     learned addresses allowed on this port
 * @param vmqWeight           0 turns VMQ off for this vNIC (default queue); > 0 gives it its own queue
 * @param iovWeight           > 0 asks for an SR-IOV virtual function when the switch has IOV enabled
 * @param mtu                 largest IP packet the port sends or takes (68..9000; 1500 for a vNIC), 0 = no limit
 *                            (uplink and host ports: their device enforces its own); frames above it are
 *                            dropped as OVERSIZE, GSO frames are segmented to it for sinks without offloads
 * @param maxBandwidthToPortBps bits per second the switch sends to this port (towards the partition), 0 =
 *                            unlimited; policed: frames over the rate (after a 100 ms burst) are dropped and
 *                            counted as BANDWIDTH, which a TCP sender answers by slowing down
 * @param ipAddresses         IPv4 addresses (as ints) the port may claim, for ARP inspection and the IP spoofing
 *                            guard; empty = no IP guard. With it, ARP whose sender address and IPv4 packets whose
 *                            source address is not listed (nor 0.0.0.0: DHCP and ARP probes) are dropped as
 *                            IP_SPOOF
 * @param acls                port ACL rules ({@link PortAcl}, Add-VMNetworkAdapterAcl); empty = allow all
 * @param ipv6Addresses       IPv6 addresses the port may claim, as (high, low) pairs of longs; empty = IPv6 not
 *                            guarded. With it, IPv6 from other sources (but its EUI-64 link-local address and ::)
 *                            is dropped as IP_SPOOF, and ND announcing other addresses or MACs as ND_SPOOF
 */
public record PortConfig(long mac, VlanMode vlanMode, int accessVlan, int[] trunkAllowed, int nativeVlan,
                         boolean macSpoofing, boolean dhcpGuard, boolean routerGuard, MirrorMode mirror,
                         long stormLimitPps, long maxBandwidthBps, int minBandwidthWeight, int maxMacAddresses,
                         int vmqWeight, int iovWeight, int mtu, long maxBandwidthToPortBps, int[] ipAddresses,
                         PortAcl[] acls, long[] ipv6Addresses) {
    public static final int DEFAULT_MTU = 1500;
    public static final int MIN_MTU = 68;
    public static final int MAX_MTU = 9000;
    /** Largest weight: an absolute reservation of 100 Gbit/s (weight mode uses 1..100). */
    public static final int MAX_WEIGHT = 100_000;
    /** Bits per second of absolute reservation per unit of weight. */
    public static final long ABSOLUTE_WEIGHT_UNIT_BPS = 1_000_000;

    public PortConfig {
        trunkAllowed = trunkAllowed == null ? new int[0] : trunkAllowed.clone();
        ipAddresses = ipAddresses == null ? new int[0] : ipAddresses.clone();
        acls = acls == null ? new PortAcl[0] : acls.clone();
        ipv6Addresses = ipv6Addresses == null ? new long[0] : ipv6Addresses.clone();
        if (ipv6Addresses.length % 2 != 0) {
            throw new IllegalArgumentException("IPv6 addresses are (high, low) pairs of longs");
        }
        if (vlanMode == VlanMode.ACCESS && (accessVlan < 1 || accessVlan > 4094)) {
            throw new IllegalArgumentException("access VLAN must be 1..4094: " + accessVlan);
        }
        for (int v : trunkAllowed) {
            if (v < 1 || v > 4094) {
                throw new IllegalArgumentException("trunk VLAN must be 1..4094: " + v);
            }
        }
        if (nativeVlan < 0 || nativeVlan > 4094) {
            throw new IllegalArgumentException("native VLAN must be 0..4094: " + nativeVlan);
        }
        if (minBandwidthWeight < 1 || minBandwidthWeight > MAX_WEIGHT) {
            throw new IllegalArgumentException("minimum bandwidth weight must be 1.." + MAX_WEIGHT + ": " + minBandwidthWeight);
        }
        if (maxMacAddresses < 1 || stormLimitPps < 0 || maxBandwidthBps < 0 || vmqWeight < 0 || iovWeight < 0
            || maxBandwidthToPortBps < 0) {
            throw new IllegalArgumentException("negative or zero limit in port config");
        }
        if (mtu != 0 && (mtu < MIN_MTU || mtu > MAX_MTU)) {
            throw new IllegalArgumentException("MTU must be " + MIN_MTU + ".." + MAX_MTU + " (or 0 for no limit): " + mtu);
        }
        if (mac != -1 && (mac < 0 || mac > EthernetDescriptor.BROADCAST || EthernetDescriptor.isMulticast(mac))) {
            throw new IllegalArgumentException("not a unicast MAC: " + Long.toHexString(mac));
        }
    }

    /** A vNIC with Hyper-V's defaults: untagged, spoofing off, no guards, weight 1, 1 024 MACs, VMQ on. */
    public static PortConfig vnic(long mac) {
        return new PortConfig(mac, VlanMode.UNTAGGED, 0, null, 0, false, false, false, MirrorMode.NONE,
            0, 0, 1, 1024, 100, 0, DEFAULT_MTU, 0, null, null, null);
    }

    /** An uplink or host port: any source MAC, trunk of every VLAN with the untagged network native. */
    public static PortConfig uplink() {
        int[] all = new int[4094];
        for (int i = 0; i < all.length; i++) {
            all[i] = i + 1;
        }
        return new PortConfig(-1, VlanMode.TRUNK, 0, all, 0, true, false, false, MirrorMode.NONE,
            0, 0, 1, 65536, 0, 0, 0, 0, null, null, null);
    }

    public PortConfig withAccessVlan(int vlan) {
        return new PortConfig(mac, VlanMode.ACCESS, vlan, null, 0, macSpoofing, dhcpGuard, routerGuard, mirror,
            stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight, iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withTrunk(int nativeVlan, int... allowed) {
        return new PortConfig(mac, VlanMode.TRUNK, 0, allowed, nativeVlan, macSpoofing, dhcpGuard, routerGuard,
            mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight, iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withUntagged() {
        return new PortConfig(mac, VlanMode.UNTAGGED, 0, null, 0, macSpoofing, dhcpGuard, routerGuard, mirror,
            stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight, iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withGuards(boolean macSpoofing, boolean dhcpGuard, boolean routerGuard) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withMirror(MirrorMode m) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, m, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withLimits(long stormPps, long maxBps, int weight, int maxMacs) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormPps, maxBps, weight, maxMacs, vmqWeight, iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withOffloadWeights(int vmq, int iov) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmq, iov, mtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    public PortConfig withMtu(int newMtu) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, newMtu, maxBandwidthToPortBps, ipAddresses, acls, ipv6Addresses);
    }

    /** Caps what the switch sends to this port (towards the partition) at {@code bps} bits/s; 0 = no cap. */
    public PortConfig withMaxBandwidthToPort(long bps) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, mtu, bps, ipAddresses, acls, ipv6Addresses);
    }

    /** ARP inspection and IP spoofing guard: the port may only claim these IPv4 addresses (none: no guard). */
    public PortConfig withIpAddresses(int... ips) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, mtu, maxBandwidthToPortBps, ips, acls, ipv6Addresses);
    }

    /** Port ACLs (see {@link PortAcl}); replaces the port's rules. */
    public PortConfig withAcls(PortAcl... rules) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, rules, ipv6Addresses);
    }

    /**
     * The weight of an absolute minimum-bandwidth reservation (Hyper-V's MinimumBandwidthAbsolute, bits/s): one unit
     * per started Mbit/s, at least 1 (a NIC without a reservation counts as 1 Mbit/s). Weights divide a capped
     * port's rate in proportion, so every sender gets at least its reservation while the reservations of the
     * senders competing there add up to no more than the cap, and the rest of the cap in proportion too.
     */
    public static int absoluteWeight(long bitsPerSecond) {
        long units = bitsPerSecond / ABSOLUTE_WEIGHT_UNIT_BPS + (bitsPerSecond % ABSOLUTE_WEIGHT_UNIT_BPS == 0 ? 0 : 1);
        return (int) Math.max(1, Math.min(MAX_WEIGHT, units));
    }

    /** IPv6 spoofing guard and ND inspection: the port may only claim these (high, low pairs; none: no guard). */
    public PortConfig withIpv6Addresses(long... pairs) {
        return new PortConfig(mac, vlanMode, accessVlan, trunkAllowed, nativeVlan, macSpoofing, dhcpGuard,
            routerGuard, mirror, stormLimitPps, maxBandwidthBps, minBandwidthWeight, maxMacAddresses, vmqWeight,
            iovWeight, mtu, maxBandwidthToPortBps, ipAddresses, acls, pairs);
    }

    /** An IPv6 address in text form as the (high, low) pair {@link #withIpv6Addresses} takes; no DNS. */
    public static long[] ipv6(String text) {
        java.net.InetAddress a;
        try {
            a = java.net.Inet6Address.ofLiteral(text);
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("'" + text + "' is not an IPv6 address");
        }
        if (!(a instanceof java.net.Inet6Address)) {
            throw new IllegalArgumentException("'" + text + "' is not an IPv6 address");
        }
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(a.getAddress());
        return new long[] {bb.getLong(), bb.getLong()};
    }

    @Override
    public long[] ipv6Addresses() {
        return ipv6Addresses.clone();
    }

    @Override
    public PortAcl[] acls() {
        return acls.clone();
    }

    @Override
    public int[] ipAddresses() {
        return ipAddresses.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof PortConfig p && p.mac == mac && p.vlanMode == vlanMode && p.accessVlan == accessVlan
            && Arrays.equals(p.trunkAllowed, trunkAllowed) && p.nativeVlan == nativeVlan
            && p.macSpoofing == macSpoofing && p.dhcpGuard == dhcpGuard && p.routerGuard == routerGuard
            && p.mirror == mirror && p.stormLimitPps == stormLimitPps && p.maxBandwidthBps == maxBandwidthBps
            && p.minBandwidthWeight == minBandwidthWeight && p.maxMacAddresses == maxMacAddresses
            && p.vmqWeight == vmqWeight && p.iovWeight == iovWeight && p.mtu == mtu
            && p.maxBandwidthToPortBps == maxBandwidthToPortBps && Arrays.equals(p.ipAddresses, ipAddresses)
            && Arrays.equals(p.acls, acls) && Arrays.equals(p.ipv6Addresses, ipv6Addresses);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(mac) * 31 + Arrays.hashCode(trunkAllowed) + vlanMode.hashCode();
    }
}
