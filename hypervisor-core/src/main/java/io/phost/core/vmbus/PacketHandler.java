package io.phost.core.vmbus;

import java.lang.foreign.MemorySegment;

/**
 * Receives packets in place (zero copy). {@code buffer} is the ring's contiguous view: the packet is
 * {@code [offset, offset + length)} beginning with its 16-byte {@link PacketDescriptor}; its data starts at
 * {@link PacketDescriptor#dataOffset}. The view is valid only during the call. Memory shared with a guest
 * can change under the reader: read each field once.
 */
@FunctionalInterface
public interface PacketHandler {
    /**
     * @param buffer  contiguous memory holding the packet (ring data area or, single-mapped, a scratch copy)
     * @param offset  start of the packet descriptor in {@code buffer}
     * @param length  packet length without trailer (len8 * 8), already bounds-checked by the ring
     * @param type    {@link PacketDescriptor#TYPE_INBAND}, {@code TYPE_GPA_DIRECT}, {@code TYPE_COMPLETION}, …
     * @param flags   descriptor flags ({@link PacketDescriptor#FLAG_COMPLETION_REQUESTED})
     * @param transId transaction id (echoed in the completion)
     * @return true when consumed; false to leave this packet (and all after it) in the ring for a later
     *         read, e.g. because the reply ring is full (back-pressure, no copy, no queue)
     */
    boolean onPacket(MemorySegment buffer, long offset, int length, int type, int flags, long transId);
}
