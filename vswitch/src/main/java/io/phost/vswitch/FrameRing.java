package io.phost.vswitch;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.MessageHandler;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;

/**
 * A one-producer one-consumer queue of frames (Agrona ring, records copied inline) between two threads that
 * each own one side of a port: e.g. a VSP channel agent producing what a guest sent and the switch agent
 * consuming it as the port's {@link FrameSource}, or the switch producing egress that a VSP agent writes into
 * guest memory (as a {@link FrameSink}). Plain frames only (no offload metadata).
 */
public final class FrameRing implements FrameSource, FrameSink {
    private static final int MSG = 1;
    private final ByteBuffer memory;
    private final OneToOneRingBuffer ring;
    private final MemorySegment segment;
    private FrameHandler current;
    private final MessageHandler adapter = this::onMessage;
    private Runnable onWrite;
    private SegmentHandler currentSegmentHandler;
    private final MessageHandler segmentAdapter = this::onSegmentMessage;

    public FrameRing(int capacityBytes) {
        memory = ByteBuffer.allocateDirect(capacityBytes + RingBufferDescriptor.TRAILER_LENGTH);
        ring = new OneToOneRingBuffer(new UnsafeBuffer(memory));
        segment = MemorySegment.ofBuffer(memory);
    }

    /** Called after each successful write (e.g. to wake the consumer's agent). */
    public FrameRing onWrite(Runnable r) {
        this.onWrite = r;
        return this;
    }

    /** Copies a frame from any memory segment (guest memory) into the ring; false when full. */
    public boolean tryWrite(MemorySegment src, long offset, int length) {
        int index = ring.tryClaim(MSG, length);
        if (index <= 0) {
            return false;
        }
        MemorySegment.copy(src, offset, segment, index, length);
        ring.commit(index); // ordered length write publishes the record to the consumer
        if (onWrite != null) {
            onWrite.run();
        }
        return true;
    }

    @Override
    public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        if (!meta.isPlain()) {
            return false;
        }
        int index = ring.tryClaim(MSG, length);
        if (index <= 0) {
            return false;
        }
        ring.buffer().putBytes(index, buffer, offset, length);
        ring.commit(index);
        if (onWrite != null) {
            onWrite.run();
        }
        return true;
    }

    @Override
    public int poll(FrameHandler handler, int limit) {
        current = handler;
        return ring.read(adapter, limit);
    }

    private void onMessage(int type, MutableDirectBuffer buffer, int index, int length) {
        current.onFrame(buffer, index, length, PacketMeta.NONE);
    }

    /** Reads up to {@code limit} frames as (segment, offset, length) for consumers that write to native memory. */
    public int poll(SegmentHandler handler, int limit) {
        currentSegmentHandler = handler;
        return ring.read(segmentAdapter, limit);
    }

    private void onSegmentMessage(int type, MutableDirectBuffer buffer, int index, int length) {
        currentSegmentHandler.onFrame(segment, index, length);
    }

    public boolean isEmpty() {
        return ring.size() == 0;
    }

    /** Frame consumer over the ring's memory segment. */
    @FunctionalInterface
    public interface SegmentHandler {
        void onFrame(MemorySegment segment, long offset, int length);
    }
}
