package io.phost.appliance.config;

/**
 * {@code [[switch]]}: a virtual switch.
 *
 * @param uplink            host interface of an external switch; null otherwise
 * @param allowManagementOs external only: the host also gets a port on the switch
 * @param enableIov         external only: SR-IOV virtual functions may back NICs on this switch
 * @param mtu               largest IP packet on the switch's vNIC ports and its host TAP (68..9000)
 * @param vmqWorkers        VMQ worker threads (0..16) draining the receive queues of VM NICs with vmq_weight > 0;
 *                          0 = no VMQ (those NICs are served on the switch's thread)
 * @param uplinkBandwidth   bytes/s the switch sends out of its uplink (external) or host TAP (internal), shared
 *                          among the sending ports by min_bandwidth_weight; 0 = not capped, not divided
 * @param hostAddress       internal only: IPv4 CIDR ({@code 10.91.0.1/24}) given to the host TAP at start, so the
 *                          host reaches the partitions without {@code ip addr}; null = the TAP gets no address
 * @param natPrefix         internal only: the IPv4 prefix ({@code 10.91.0.0/24}) masqueraded out of the host (NetNat);
 *                          null = no NAT
 * @param uplinks           external only: the uplink interfaces, two or more when teamed (switch-embedded teaming);
 *                          {@code uplink} is the first of them
 */
public record SwitchConfig(String name, Type type, String uplink, boolean allowManagementOs, boolean enableIov,
                           BandwidthMode bandwidthMode, int mtu, int vmqWorkers, long uplinkBandwidth,
                           String hostAddress, String natPrefix, java.util.List<String> uplinks) {
    public SwitchConfig {
        uplinks = uplinks == null || uplinks.isEmpty() ? (uplink == null ? java.util.List.of() : java.util.List.of(uplink))
            : java.util.List.copyOf(uplinks);
        uplink = uplinks.isEmpty() ? null : uplinks.getFirst();
    }

    public SwitchConfig(String name, Type type, String uplink, boolean allowManagementOs, boolean enableIov,
                        BandwidthMode bandwidthMode, int mtu, int vmqWorkers, long uplinkBandwidth, String hostAddress) {
        this(name, type, uplink, allowManagementOs, enableIov, bandwidthMode, mtu, vmqWorkers, uplinkBandwidth, hostAddress,
            null, null);
    }

    public SwitchConfig(String name, Type type, String uplink, boolean allowManagementOs, boolean enableIov,
                        BandwidthMode bandwidthMode, int mtu) {
        this(name, type, uplink, allowManagementOs, enableIov, bandwidthMode, mtu, 0, 0, null);
    }

    /** The same switch as a private one, without a host TAP (the demo without CAP_NET_ADMIN). */
    public SwitchConfig asPrivate() {
        return new SwitchConfig(name, Type.PRIVATE, null, false, false, bandwidthMode, mtu, vmqWorkers, 0, null);
    }

    public enum Type { EXTERNAL, INTERNAL, PRIVATE }

    /** How {@code min_bandwidth_weight} and bandwidth reservations of NICs are interpreted. */
    public enum BandwidthMode { NONE, ABSOLUTE, WEIGHT }
}
