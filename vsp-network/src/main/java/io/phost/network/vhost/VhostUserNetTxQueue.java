package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;
import io.phost.vswitch.PacketMeta;
import java.util.concurrent.locks.LockSupport;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.OneToOneRingBuffer;

/**
 * A transmit queue (2k + 1, of pair k): each chain's device-readable bytes are {@code [header][frame]}; the frame is gathered
 * into the switch-bound ring with the header normalised to 12 bytes, and the chain is returned at once.
 * When the ring is full the popped chain waits (one, {@link #inFlight} = 1) and is retried; the switch drains
 * the ring. Frames that are too short or too long, or whose offload state was not negotiated or points past
 * the frame, are dropped and counted ({@code txErrors}): the guest's data, not a protocol error.
 * Single-threaded (the queue's worker); allocates nothing per frame.
 */
final class VhostUserNetTxQueue implements VirtqueueHandler {
    private static final int BATCH = 64;

    private final VhostUserNetDevice device;
    private final NetCounters counters;
    private final OneToOneRingBuffer ring;
    private final int maxFrame;
    private final int hdr;
    private final boolean csum;
    private final boolean tso4;
    private final boolean tso6;
    private final UnsafeBuffer guest = new UnsafeBuffer(0, 0);
    private boolean pending;
    private int pendingHead;

    VhostUserNetTxQueue(VhostUserNetDevice device, NetQueuePair pair, int hdr, long features) {
        this.device = device;
        this.counters = pair.counters;
        this.ring = pair.fromGuest.ring();
        this.maxFrame = Math.min(pair.fromGuest.maxFrame(), io.phost.vswitch.VSwitch.MAX_FRAME);
        this.hdr = hdr;
        this.csum = (features & (1L << F_CSUM)) != 0;
        this.tso4 = (features & (1L << F_HOST_TSO4)) != 0;
        this.tso6 = (features & (1L << F_HOST_TSO6)) != 0;
    }

    @Override
    public int doWork(Virtqueue q, DescriptorChain chain) {
        int sent = 0;
        int returned = 0;
        while (sent + returned < BATCH) {
            if (!pending && !q.tryPop(chain)) {
                break;
            }
            pending = false;
            long frame = chain.readableBytes() - hdr;
            if (frame < MIN_FRAME || frame > maxFrame || !offloadsValid(chain, (int) frame)) {
                counters.txErrors++;
                q.pushUsed(chain.head(), 0);
                returned++;
                continue;
            }
            int index = ring.tryClaim(VnetFrameRing.MSG, HDR_LENGTH + (int) frame);
            if (index <= 0) {
                pending = true;
                pendingHead = chain.head(); // the switch is behind: retry this chain after a short wait
                break;
            }
            gather(chain, ring.buffer(), index, (int) frame);
            ring.commit(index); // ordered length write publishes the record to the switch agent
            q.pushUsed(chain.head(), 0);
            sent++;
        }
        if (sent > 0) {
            counters.txFrames += sent;
            device.wakeSwitch();
        }
        if (sent + returned > 0) {
            q.notifyIfNeeded();
        }
        return sent + returned;
    }

    /** The header's offload fields: only negotiated kinds, checksum field inside the frame. */
    private boolean offloadsValid(DescriptorChain chain, int frame) {
        int flags = byteAt(chain, 0);
        int gso = byteAt(chain, 1) & ~PacketMeta.GSO_ECN;
        if ((flags & PacketMeta.FLAG_NEEDS_CSUM) != 0) {
            if (!csum) {
                return false;
            }
            int start = byteAt(chain, 6) | byteAt(chain, 7) << 8;
            int offset = byteAt(chain, 8) | byteAt(chain, 9) << 8;
            if (start + offset + 2 > frame) {
                return false;
            }
        }
        return switch (gso) {
            case PacketMeta.GSO_NONE -> true;
            case PacketMeta.GSO_TCPV4 -> tso4 && (flags & PacketMeta.FLAG_NEEDS_CSUM) != 0;
            case PacketMeta.GSO_TCPV6 -> tso6 && (flags & PacketMeta.FLAG_NEEDS_CSUM) != 0;
            default -> false;
        };
    }

    /** Byte {@code i} of the chain's readable stream (the header may be split over buffers). */
    private int byteAt(DescriptorChain chain, int i) {
        int at = i;
        for (int e = 0; e < chain.readableCount(); e++) {
            if (at < chain.length(e)) {
                guest.wrap(chain.address(e), chain.length(e));
                return guest.getByte(at) & 0xff;
            }
            at -= chain.length(e);
        }
        return 0;
    }

    /** Copies header (to {@code index}) and frame (to {@code index + 12}) out of the chain's readable buffers. */
    private void gather(DescriptorChain chain, MutableDirectBuffer dst, int index, int frame) {
        dst.putShort(index + NUM_BUFFERS_OFFSET, (short) 0);
        long pos = 0; // position in the chain's readable stream
        for (int e = 0; e < chain.readableCount(); e++) {
            int len = chain.length(e);
            guest.wrap(chain.address(e), len);
            int from = 0;
            if (pos < hdr) {
                int h = (int) Math.min(len, hdr - pos);
                dst.putBytes(index + (int) pos, guest, 0, h);
                from = h;
            }
            if (from < len) {
                dst.putBytes(index + HDR_LENGTH + (int) (pos + from - hdr), guest, from, len - from);
            }
            pos += len;
        }
    }

    @Override
    public int inFlight() {
        return pending ? 1 : 0;
    }

    @Override
    public void awaitCompletion(long timeoutNanos) {
        LockSupport.parkNanos(timeoutNanos);
    }

    @Override
    public void close(Virtqueue q) {
        if (pending) {
            // stopping with a chain the switch had no room for: the frame is lost, the buffer goes back
            counters.txErrors++;
            q.pushUsed(pendingHead, 0);
            q.notifyIfNeeded();
            pending = false;
        }
    }
}
