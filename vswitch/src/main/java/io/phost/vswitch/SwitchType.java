package io.phost.vswitch;

/** Hyper-V's three switch types. */
public enum SwitchType {
    /** Partitions only. */
    PRIVATE,
    /** Partitions and the management OS, through a TAP device as the host's vNIC. */
    INTERNAL,
    /** Partitions, optionally the management OS, and a physical (or veth) uplink through AF_PACKET. */
    EXTERNAL
}
