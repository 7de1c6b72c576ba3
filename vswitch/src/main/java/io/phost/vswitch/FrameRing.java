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
 * guest memory (as a {@link FrameSink}).
 * <p>A ring made by {@link #withMeta} carries offload state: every record starts with a 12-byte virtio_net_hdr
 * ({@link PacketMeta#VNET_HDR_MRG_LENGTH}, num_buffers 0), so a producer whose own wire format already has that
 * header (a synthetic NIC section, a TAP read) copies header and frame in one piece, and a consumer that wants
 * them together (a guest receive section) gets the record as it is from {@link #poll(SegmentHandler, int)}.
 * <pre>
 *   plain ring record:  [ Ethernet frame ]
 *   meta ring record:   [ virtio_net_hdr 12 ][ Ethernet frame ]
 * </pre>
 * As a sink a meta ring takes the unfinished frames {@link #offloads(int)} allows (0 until its consumer says
 * what it can finish); a plain ring takes plain frames only.
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
    /** 0 (plain records) or {@link PacketMeta#VNET_HDR_MRG_LENGTH} (each record starts with a header). */
    private final int hdr;
    private final PacketMeta readMeta = new PacketMeta();
    private volatile int offloads;

    public FrameRing(int capacityBytes) {
        this(capacityBytes, 0);
    }

    private FrameRing(int capacityBytes, int hdr) {
        memory = ByteBuffer.allocateDirect(capacityBytes + RingBufferDescriptor.TRAILER_LENGTH);
        ring = new OneToOneRingBuffer(new UnsafeBuffer(memory));
        segment = MemorySegment.ofBuffer(memory);
        this.hdr = hdr;
    }

    /** A ring whose records carry a 12-byte virtio_net_hdr before each frame (see the class comment). */
    public static FrameRing withMeta(int capacityBytes) {
        return new FrameRing(capacityBytes, PacketMeta.VNET_HDR_MRG_LENGTH);
    }

    /** Bytes of header before each frame in a record: 0 or 12. */
    public int headerLength() {
        return hdr;
    }

    /**
     * Sets the {@link FrameSink} offload bits this (meta) ring's consumer finishes; the switch reads them when
     * the port is (re)configured. A plain ring ignores it.
     */
    public FrameRing offloads(int bits) {
        offloads = hdr == 0 ? 0 : bits;
        return this;
    }

    @Override
    public int offloads() {
        return offloads;
    }

    /** Called after each successful write (e.g. to wake the consumer's agent). */
    public FrameRing onWrite(Runnable r) {
        this.onWrite = r;
        return this;
    }

    /**
     * Copies a record from any memory segment (guest memory) into the ring as it is; false when full. For a
     * meta ring the bytes must start with the 12-byte header (length counts it).
     */
    public boolean tryWrite(MemorySegment src, long offset, int length) {
        int index = ring.tryClaim(MSG, length);
        if (index <= 0) {
            return false;
        }
        MemorySegment.copy(src, offset, segment, index, length);
        publish(index);
        return true;
    }

    /** Copies a frame from a memory segment into the ring with {@code meta} as its header; false when full. */
    public boolean tryWrite(MemorySegment src, long offset, int length, PacketMeta meta) {
        int index = claim(length, meta);
        if (index <= 0) {
            return false;
        }
        MemorySegment.copy(src, offset, segment, index + hdr, length);
        publish(index);
        return true;
    }

    @Override
    public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        int index = claim(length, meta);
        if (index <= 0) {
            return false;
        }
        ring.buffer().putBytes(index + hdr, buffer, offset, length);
        publish(index);
        return true;
    }

    /**
     * Claims a record for a frame of {@code length} bytes and writes {@code meta} as its header (a meta ring);
     * the record's index, or a value <= 0 when the ring is full or a plain ring cannot carry {@code meta}.
     */
    private int claim(int length, PacketMeta meta) {
        if (hdr == 0 && !meta.isPlain()) {
            return 0;
        }
        int index = ring.tryClaim(MSG, hdr + length);
        if (index > 0 && hdr != 0) {
            meta.writeTo(ring.buffer(), index, hdr);
        }
        return index;
    }

    /** Publishes a claimed record (its ordered length write) and wakes the consumer. */
    private void publish(int index) {
        ring.commit(index); // ordered length write publishes the record to the consumer
        if (onWrite != null) {
            onWrite.run();
        }
    }

    @Override
    public int poll(FrameHandler handler, int limit) {
        current = handler;
        return ring.read(adapter, limit);
    }

    private void onMessage(int type, MutableDirectBuffer buffer, int index, int length) {
        if (hdr == 0) {
            current.onFrame(buffer, index, length, PacketMeta.NONE);
        } else if (length >= hdr) { // producers write at least the header; a shorter record is skipped
            current.onFrame(buffer, index + hdr, length - hdr, readMeta.readFrom(buffer, index));
        }
    }

    /**
     * Reads up to {@code limit} records as (segment, offset, length) for consumers that write to native memory;
     * in a meta ring a record is header and frame together.
     */
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
