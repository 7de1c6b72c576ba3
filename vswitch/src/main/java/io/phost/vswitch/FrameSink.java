package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * Where a port's egress goes: a TAP device, an AF_PACKET socket, a VMQ queue, a guest's receive buffer
 * (synthetic NIC ring, or a vhost-user-net RX virtqueue). This and {@link FrameSource} are the whole port SPI:
 * a new transport is a source (frames in, with a {@link PacketMeta} read from its own per-frame header) and a
 * sink (frames out) handed to {@link VSwitch#addPort}.
 * <p>Offloads: a sink states with {@link #offloads} which kinds of unfinished frame it takes
 * ({@link PacketMeta#requiredOffloads}); the switch sends it only those, and for everything else completes the
 * checksum and segments GSO super-frames in software first, so a sink with {@code offloads() == 0} only ever
 * sees plain frames (with {@link PacketMeta#NONE} or a DATA_VALID hint). A virtio-net adapter maps its guest's
 * negotiated features: GUEST_CSUM → {@link #OFFLOAD_CSUM}, GUEST_TSO4/6 → TSO4/TSO6, GUEST_ECN → TSO_ECN,
 * GUEST_UFO → UFO, GUEST_USO4/6 → USO.
 * The sink copies what it needs before returning (the switch reuses the buffer for the next frame).
 */
public interface FrameSink {
    int OFFLOAD_CSUM = 1;
    int OFFLOAD_TSO4 = 2;
    int OFFLOAD_TSO6 = 4;
    int OFFLOAD_TSO_ECN = 8;
    int OFFLOAD_UFO = 16;
    int OFFLOAD_USO = 32;
    /** What a TAP opened with TUN_F_CSUM|TSO4|TSO6|TSO_ECN and an AF_PACKET socket with PACKET_VNET_HDR take. */
    int OFFLOAD_TAP = OFFLOAD_CSUM | OFFLOAD_TSO4 | OFFLOAD_TSO6 | OFFLOAD_TSO_ECN;

    /**
     * Transmits one Ethernet frame {@code buffer[offset, offset + length)} with its offload state; never
     * blocks. Returns false when the device or queue is full (the switch counts EGRESS_FULL).
     */
    boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta);

    /** The OFFLOAD_* kinds of unfinished frame this sink takes; 0 = plain frames only. */
    default int offloads() {
        return offloadCapable() ? OFFLOAD_TAP : 0;
    }

    /** True when the sink accepts checksum-offloaded and TSO frames (virtio-net header capable). */
    default boolean offloadCapable() {
        return false;
    }

    /** A sink that drops everything (a port with nowhere to send yet). */
    FrameSink DISCARD = (buffer, offset, length, meta) -> true;
}
