package io.phost.appliance.config;

import java.util.List;

/**
 * {@code [[partition.nic]]}: a synthetic network adapter on a switch port.
 *
 * @param mac                {@code 02:50:48:..} style lower-case text; generated (locally administered,
 *                           stable for the same host, partition and index) when the file gives none
 * @param vlanAccess         access-mode VLAN, or null
 * @param vlanTrunk          trunk-mode allowed VLANs (empty when not trunk)
 * @param nativeVlan         untagged VLAN of a trunk port, or null
 * @param maxBandwidth       bytes per second cap on what the partition sends (0 = unlimited)
 * @param minBandwidthWeight share under contention, 0..100 (switch bandwidth_mode = weight)
 * @param vmqWeight          0..100, 0 disables VMQ for this NIC
 * @param iovWeight          0..100, above 0 asks for an SR-IOV virtual function
 * @param mtu                the NIC's MTU (68..9000, at most its switch's; the switch's when not given)
 * @param mirroring          port mirroring role (Set-VMNetworkAdapter -PortMirroring)
 * @param stormLimit         flooded (broadcast/multicast/unknown) frames per second from the NIC, 0 = unlimited
 * @param maxMacAddresses    addresses the switch learns on this port (with mac_spoofing on)
 * @param maxBandwidthIn     bytes per second cap on what the switch sends to the partition (0 = unlimited)
 * @param ipAddresses        IPv4 addresses the NIC may claim (ARP inspection, IP spoofing guard); empty = no guard
 * @param acl                port ACL rules in text form ("deny both 10.0.0.0/8"), checked at load; empty = allow all
 * @param minBandwidth       bytes per second reserved under contention (switch bandwidth_mode = absolute; 0 = none)
 * @param queues             a VM NIC's queue pairs (virtio-net multi-queue, 1..{@link #MAX_QUEUES}); 1 on process partitions
 */
public record NicConfig(String switchName, String mac, Integer vlanAccess, List<Integer> vlanTrunk, Integer nativeVlan,
                        boolean macSpoofing, boolean dhcpGuard, boolean routerGuard, long maxBandwidth,
                        int minBandwidthWeight, int vmqWeight, int iovWeight, int mtu, Mirroring mirroring,
                        long stormLimit, int maxMacAddresses, long maxBandwidthIn, List<String> ipAddresses,
                        List<String> acl, long minBandwidth, int queues) {
    public enum Mirroring { NONE, SOURCE, DESTINATION }

    /** The most queue pairs phost's vhost-user-net device serves. */
    public static final int MAX_QUEUES = 16;

    /** One queue pair (the record before {@code queues}; kept for its callers). */
    public NicConfig(String switchName, String mac, Integer vlanAccess, List<Integer> vlanTrunk, Integer nativeVlan,
                     boolean macSpoofing, boolean dhcpGuard, boolean routerGuard, long maxBandwidth,
                     int minBandwidthWeight, int vmqWeight, int iovWeight, int mtu, Mirroring mirroring,
                     long stormLimit, int maxMacAddresses) {
        this(switchName, mac, vlanAccess, vlanTrunk, nativeVlan, macSpoofing, dhcpGuard, routerGuard, maxBandwidth,
            minBandwidthWeight, vmqWeight, iovWeight, mtu, mirroring, stormLimit, maxMacAddresses, 0, List.of(), List.of());
    }

    public NicConfig(String switchName, String mac, Integer vlanAccess, List<Integer> vlanTrunk, Integer nativeVlan,
                     boolean macSpoofing, boolean dhcpGuard, boolean routerGuard, long maxBandwidth,
                     int minBandwidthWeight, int vmqWeight, int iovWeight, int mtu, Mirroring mirroring,
                     long stormLimit, int maxMacAddresses, long maxBandwidthIn, List<String> ipAddresses, List<String> acl) {
        this(switchName, mac, vlanAccess, vlanTrunk, nativeVlan, macSpoofing, dhcpGuard, routerGuard, maxBandwidth,
            minBandwidthWeight, vmqWeight, iovWeight, mtu, mirroring, stormLimit, maxMacAddresses, maxBandwidthIn,
            ipAddresses, acl, 0, 1);
    }

    /**
     * The port's share under contention: the absolute reservation as a weight when there is one
     * ({@code PortConfig.absoluteWeight}), else min_bandwidth_weight (0 = the default share 1).
     */
    public int portWeight() {
        return minBandwidth > 0 ? io.phost.vswitch.PortConfig.absoluteWeight(
            minBandwidth > Long.MAX_VALUE / 8 ? Long.MAX_VALUE : minBandwidth * 8) : Math.max(1, minBandwidthWeight);
    }

    /** min_bandwidth's ceiling in bytes/s: PortConfig.MAX_WEIGHT Mbit/s (100Gbps). */
    public static final long MAX_MIN_BANDWIDTH = io.phost.vswitch.PortConfig.MAX_WEIGHT
        * io.phost.vswitch.PortConfig.ABSOLUTE_WEIGHT_UNIT_BPS / 8;

    public NicConfig {
        vlanTrunk = List.copyOf(vlanTrunk);
        ipAddresses = ipAddresses == null ? List.of() : List.copyOf(ipAddresses);
        acl = acl == null ? List.of() : List.copyOf(acl);
    }

    /** Dotted-quad IPv4 text as a big-endian int, or null when it is not one. */
    public static Integer ipv4(String text) {
        String[] p = text.split("\\.", -1);
        if (p.length != 4) {
            return null;
        }
        int v = 0;
        for (String q : p) {
            if (q.isEmpty() || q.length() > 3 || !q.chars().allMatch(Character::isDigit) || Integer.parseInt(q) > 255) {
                return null;
            }
            v = (v << 8) | Integer.parseInt(q);
        }
        return v;
    }

    /** A unicast IPv4 address (not 0.0.0.0, multicast or broadcast) for {@code ip_addresses}. */
    public static boolean isUnicastIpv4(String text) {
        Integer v = ipv4(text);
        return v != null && v != 0 && (v >>> 28) != 0xe && v != -1;
    }

    /** A unicast IPv6 address (not ::, not multicast ff00::/8) for {@code ip_addresses}. */
    public static boolean isUnicastIpv6(String text) {
        try {
            long[] a = io.phost.vswitch.PortConfig.ipv6(text);
            return (a[0] != 0 || a[1] != 0) && (a[0] >>> 56) != 0xff;
        } catch (IllegalArgumentException e) {
            return false;
        }
    }

    /** {@link #maxBandwidth} in bits per second (what switch ports count), saturating; 0 = unlimited. */
    public long maxBandwidthBitsPerSecond() {
        return maxBandwidth > Long.MAX_VALUE / 8 ? Long.MAX_VALUE : maxBandwidth * 8;
    }

    /** {@link #maxBandwidthIn} in bits per second, saturating; 0 = unlimited. */
    public long maxBandwidthInBitsPerSecond() {
        return maxBandwidthIn > Long.MAX_VALUE / 8 ? Long.MAX_VALUE : maxBandwidthIn * 8;
    }

    /** The MAC as six bytes. */
    public byte[] macBytes() {
        byte[] b = new byte[6];
        for (int i = 0; i < 6; i++) {
            b[i] = (byte) Integer.parseInt(mac.substring(i * 3, i * 3 + 2), 16);
        }
        return b;
    }
}
