package io.phost.vswitch;

/** How a port treats 802.1Q tags. */
public enum VlanMode {
    /** No VLAN: carries only untagged frames (the switch's VLAN 0 network). */
    UNTAGGED,
    /** One VLAN; the tag is added on ingress and stripped on egress; tagged frames from the port are dropped. */
    ACCESS,
    /** Tagged frames for allowed VLANs; untagged frames belong to the native VLAN. */
    TRUNK
}
