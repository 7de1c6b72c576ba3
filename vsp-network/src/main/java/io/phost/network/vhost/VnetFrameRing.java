package io.phost.network.vhost;

import io.phost.vswitch.PacketMeta;
import java.nio.ByteBuffer;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;

/**
 * One-producer one-consumer queue of frames with their offload state between a vhost-user-net queue worker
 * and the switch's agent (Agrona ring, records copied inline).
 * <pre>
 *   record: [ virtio_net_hdr 12 bytes ({@link PacketMeta} layout, num_buffers unused) ][ Ethernet frame ]
 * </pre>
 */
final class VnetFrameRing {
    static final int MSG = 1;
    private final OneToOneRingBuffer ring;

    VnetFrameRing(int capacityBytes) {
        ByteBuffer memory = ByteBuffer.allocateDirect(capacityBytes + RingBufferDescriptor.TRAILER_LENGTH);
        ring = new OneToOneRingBuffer(new UnsafeBuffer(memory));
    }

    OneToOneRingBuffer ring() {
        return ring;
    }

    boolean isEmpty() {
        return ring.size() == 0;
    }

    int maxFrame() {
        return ring.maxMsgLength() - VirtioNetDescriptor.HDR_LENGTH;
    }
}
