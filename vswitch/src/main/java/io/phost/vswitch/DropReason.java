package io.phost.vswitch;

/** Why the switch dropped a frame; each port counts drops per reason. */
public enum DropReason {
    /** Shorter than an Ethernet header (14 bytes). */
    RUNT,
    /** Longer than the switch's maximum frame. */
    OVERSIZE,
    /** 802.1Q header cut short, VID 4095, or stacked/802.1ad tags. */
    BAD_VLAN,
    /** Multicast or all-zero source MAC. */
    BAD_SOURCE_MAC,
    /** Tagged frame on an untagged/access port, or a VID the trunk does not allow. */
    VLAN_NOT_ALLOWED,
    /** Source MAC is not the port's MAC while MAC spoofing is off. */
    MAC_SPOOF,
    /**
     * DHCP server message from a DHCP-guarded port: UDP to a client port (68, DHCPv6 546) or from a server port
     * (67, 547), a BOOTREPLY with the DHCP cookie on any ports, or a first fragment hiding the UDP header.
     */
    DHCP_GUARD,
    /**
     * Router advertisement or redirect (ICMPv6 134/137, ICMPv4 9/5) from a router-guarded port, or a first
     * fragment whose extension chain or ICMP header is cut off (where an RA could hide).
     */
    ROUTER_GUARD,
    /** Broadcast/multicast/unknown-unicast flooding above the port's storm limit. */
    STORM,
    /** A frame from the uplink claims a MAC that belongs to a port of this switch: it came back around. */
    LOOP,
    /** The destination port's queue or device was full. */
    EGRESS_FULL,
    /** A checksum-offloaded or GSO frame towards a port that cannot take offloads. */
    OFFLOAD_UNSUPPORTED,
    /** The destination of a unicast frame is the port it came from. */
    SAME_PORT,
    /** The port is administratively down or has been removed. */
    PORT_DOWN,
    /** Over the destination port's cap towards it ({@code PortConfig.maxBandwidthToPortBps}; policed). */
    BANDWIDTH,
    /**
     * ARP, IPv4 or IPv6 from a port with an IP guard, claiming a source address the port is not configured with
     * (IPv6: nor its EUI-64 link-local address).
     */
    IP_SPOOF,
    /** Denied by a port ACL ({@code PortAcl}), in either direction. */
    ACL,
    /**
     * ND inspection on a port with IPv6 addresses: a neighbour advertisement for an address the port is not
     * configured with, or an RS/NS/NA whose link-layer address option is not the port's MAC (or is malformed).
     */
    ND_SPOOF;

    static final DropReason[] VALUES = values();
}
