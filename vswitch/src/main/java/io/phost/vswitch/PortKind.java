package io.phost.vswitch;

/** What is behind a port. */
public enum PortKind {
    /** A partition's synthetic NIC (or a namespace on a tap port standing in for one). */
    VNIC,
    /** The management OS's vNIC (a TAP device in the host). */
    HOST,
    /** The external interface (AF_PACKET). */
    UPLINK
}
