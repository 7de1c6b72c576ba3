package io.phost.vswitch;

/** Port mirroring role (Set-VMNetworkAdapter -PortMirroring). */
public enum MirrorMode {
    NONE,
    /** Frames this port sends or receives are copied to every DESTINATION port of the switch. */
    SOURCE,
    /** Receives copies of the SOURCE ports' traffic. */
    DESTINATION
}
