package io.phost.vswitch;

import org.agrona.DirectBuffer;

/**
 * Where a port's egress goes: a TAP device, an AF_PACKET socket, a VMQ queue, a guest's receive buffer.
 * The sink copies what it needs before returning (the switch reuses the buffer for the next frame).
 */
public interface FrameSink {
    /**
     * Transmits one Ethernet frame {@code buffer[offset, offset + length)} with its offload state; never
     * blocks. Returns false when the device or queue is full (the switch counts EGRESS_FULL).
     */
    boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta);

    /** True when the sink accepts checksum-offloaded and GSO frames (virtio-net header capable). */
    default boolean offloadCapable() {
        return false;
    }

    /** A sink that drops everything (a port with nowhere to send yet). */
    FrameSink DISCARD = (buffer, offset, length, meta) -> true;
}
