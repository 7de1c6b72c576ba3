package io.phost.vswitch;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;
import org.agrona.concurrent.ringbuffer.RingBufferDescriptor;

/**
 * One VMQ receive queue: the switch's thread writes frames for its vNIC(s) into a one-to-one ring; the VMQ
 * worker that currently owns the queue drains it into the vNIC's real sink (TAP write, guest receive buffer).
 * <pre>
 * record (Agrona ring record, type 1):
 *   0: int target id     4: u8 flags  5: u8 gso_type  6: u16 hdr_len  8: u16 gso_size
 *  10: u16 csum_start   12: u16 csum_offset   14: u16 pad   16: Ethernet frame ...
 *
 * ownership hand-off (only the current owner writes owner, so one consumer at a time):
 *   rebalancer: pendingOwner = W2            owner W1: sees pendingOwner, stores owner = W2 (release),
 *                                             stops draining          W2: reads owner == W2 (acquire), drains
 * </pre>
 */
public final class VmqQueue {
    static final int MSG_FRAME = 1;
    static final int HEADER = 16;
    private static final VarHandle OWNER;
    private static final VarHandle PENDING;
    private static final VarHandle DRAINED;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            OWNER = l.findVarHandle(VmqQueue.class, "owner", int.class);
            PENDING = l.findVarHandle(VmqQueue.class, "pendingOwner", int.class);
            DRAINED = l.findVarHandle(VmqQueue.class, "drained", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    final String name;
    final int id;
    final OneToOneRingBuffer ring;
    @SuppressWarnings("unused") private int owner;
    @SuppressWarnings("unused") private int pendingOwner = -1;
    @SuppressWarnings("unused") private long drained;
    /** Rebalancer's view: drained count at the previous rebalance. */
    long drainedAtLastRebalance;

    VmqQueue(String name, int id, int capacityBytes, int initialOwner) {
        this.name = name;
        this.id = id;
        this.ring = new OneToOneRingBuffer(new UnsafeBuffer(
            ByteBuffer.allocateDirect(capacityBytes + RingBufferDescriptor.TRAILER_LENGTH)));
        OWNER.setRelease(this, initialOwner);
    }

    public String name() {
        return name;
    }

    /** The worker now draining this queue. */
    public int owner() {
        return (int) OWNER.getAcquire(this);
    }

    int pendingOwner() {
        return (int) PENDING.getAcquire(this);
    }

    void requestOwner(int worker) {
        PENDING.setRelease(this, worker);
    }

    /** Called by the current owner only. */
    void handOver(int worker) {
        PENDING.setRelease(this, -1);
        OWNER.setRelease(this, worker); // after this store the old owner never touches the ring again
    }

    void addDrained(long n) {
        DRAINED.setOpaque(this, (long) DRAINED.getOpaque(this) + n);
    }

    public long drained() {
        return (long) DRAINED.getOpaque(this);
    }

    /** A port sink that enqueues frames for {@code target} on this queue (switch thread only). */
    FrameSink sinkFor(int target, int offloads) {
        return new FrameSink() {
            @Override
            public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
                int index = ring.tryClaim(MSG_FRAME, HEADER + length);
                if (index <= 0) {
                    return false;
                }
                var b = ring.buffer();
                b.putInt(index, target);
                b.putByte(index + 4, (byte) meta.flags);
                b.putByte(index + 5, (byte) meta.gsoType);
                b.putShort(index + 6, (short) meta.hdrLen);
                b.putShort(index + 8, (short) meta.gsoSize);
                b.putShort(index + 10, (short) meta.csumStart);
                b.putShort(index + 12, (short) meta.csumOffset);
                b.putBytes(index + HEADER, buffer, offset, length);
                ring.commit(index); // publishes the record (ordered length write) for the draining worker
                return true;
            }

            @Override
            public int offloads() {
                return offloads; // the worker hands frames to the target unchanged: the target's offloads
            }
        };
    }
}
