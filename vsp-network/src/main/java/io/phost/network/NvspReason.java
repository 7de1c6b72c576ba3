package io.phost.network;

/** Why the network VSP dropped a guest message (each counted per vNIC; the channel keeps working). */
public enum NvspReason {
    /** Shorter than its message type requires. */
    TRUNCATED,
    /** A message type the VSP does not know. */
    UNKNOWN_TYPE,
    /** Data or buffer message before INIT completed. */
    NOT_INITIALIZED,
    /** The guest's version range does not include NVSP 6.1 / 5. */
    VERSION_MISMATCH,
    /** GPADL handle unknown, not contiguous, too small, or a buffer announced twice. */
    BAD_BUFFER,
    /** Section index outside the send buffer, or a length beyond the section / below a header. */
    BAD_SECTION,
    /** A completion for a receive section the host did not hand out. */
    BAD_COMPLETION,
    /** Not an inband packet (GPA-direct or unknown VMBus packet type). */
    BAD_PACKET_TYPE,
    /** Frame could not enter the switch (its ingress queue was full). */
    INGRESS_FULL,
    /** A host-to-guest frame larger than a receive section (the NIC's MTU): dropped, counted. */
    OVERSIZE,
    /** NDIS_CONFIG after the buffers were announced, or on a sub-channel: ignored (sections are sized by then). */
    LATE_CONFIG,
    /** A partial-checksum or GSO frame for a guest without offloads (only in the moment its caps change). */
    UNFINISHED,
    /** A frame the guest sent while its NIC's link is administratively down: dropped, counted. */
    LINK_DOWN;

    static final NvspReason[] VALUES = values();
}
