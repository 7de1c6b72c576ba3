package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VhostUserException;
import io.phost.core.vhost.VirtqueueHandler;
import java.nio.ByteOrder;
import java.util.function.BooleanSupplier;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.ControlledMessageHandler;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A receive queue (2k, of pair k): frames the switch queued for the guest are scattered into the guest's device-writable
 * chains, header first. With MRG_RXBUF a frame may take several chains ({@code num_buffers} says how many);
 * without, it must fit one chain or it is dropped (counted). When the guest has too few buffers for the next
 * frame, the chains popped for it are given back ({@link Virtqueue#discard}), the frame stays queued and
 * the worker sleeps until the guest kicks.
 * <pre>
 *   stream written:  [ header (hdr bytes, num_buffers = chains used) ][ frame ]
 *   chain k gets:    min(its writable bytes, what is left), chains filled in order
 * </pre>
 * Single-threaded (the queue's worker); allocates nothing per frame.
 */
final class VhostUserNetRxQueue implements VirtqueueHandler, ControlledMessageHandler {
    /** Chains one frame may take (a 64 KiB frame in 1 536-byte mergeable buffers takes 44). */
    static final int MAX_CHAINS_PER_FRAME = 64;
    /** Buffers one receive chain may have (Linux uses 1 with MRG_RXBUF, up to 19 for big packets without). */
    static final int CHAIN_CAPACITY = 64;
    private static final int BATCH = 64;

    private final NetQueuePair pair;
    private final VnetFrameRing ring;
    private final int hdr;
    private final boolean mergeable;
    private final boolean guestCsum;
    private final DescriptorChain[] chains = new DescriptorChain[MAX_CHAINS_PER_FRAME];
    private final int[] written = new int[MAX_CHAINS_PER_FRAME];
    private final UnsafeBuffer guest = new UnsafeBuffer(0, 0);
    private final BooleanSupplier empty;
    private Virtqueue queue;
    private boolean armed;
    private boolean stalled;
    private int delivered;
    // scatter cursor
    private int curChain;
    private int curElem;
    private int curOffset;

    VhostUserNetRxQueue(NetQueuePair pair, int hdr, boolean mergeable, boolean guestCsum) {
        this.pair = pair;
        this.ring = pair.toGuest;
        this.hdr = hdr;
        this.mergeable = mergeable;
        this.guestCsum = guestCsum;
        this.empty = ring::isEmpty;
        for (int i = 0; i < chains.length; i++) {
            chains[i] = new DescriptorChain(CHAIN_CAPACITY);
        }
        pair.rxRunning = true;
    }

    @Override
    public int doWork(Virtqueue q, DescriptorChain unused) {
        if (armed) {
            pair.rxWake.disarm();
            armed = false;
        }
        queue = q;
        stalled = false;
        delivered = 0;
        int n = ring.ring().controlledRead(this, BATCH);
        if (delivered > 0) {
            q.notifyIfNeeded();
        }
        if (n > 0 && !stalled) {
            return n;
        }
        if (stalled) {
            return 0; // sleep until the guest kicks (it adds buffers)
        }
        if (pair.rxWake.arm(empty)) {
            armed = true; // sleep until the switch queues a frame (wakeupFd) or a kick
            return 0;
        }
        return 1; // a frame arrived while arming: look again
    }

    @Override
    public Action onMessage(int type, MutableDirectBuffer buffer, int index, int length) {
        int frame = length - HDR_LENGTH;
        int total = hdr + frame;
        int used = 0;
        long room = 0;
        while (room < total) {
            if (used == (mergeable ? MAX_CHAINS_PER_FRAME : 1)) {
                queue.discard(used);
                pair.counters.rxTooBig++;
                return Action.CONTINUE; // dropped: does not fit what the guest posts
            }
            DescriptorChain c = chains[used];
            if (!queue.tryPop(c)) {
                queue.discard(used);
                stalled = true;
                return Action.ABORT; // keep the frame; wait for buffers
            }
            if (c.readableCount() != 0) {
                throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_ORDER,
                    "queue " + 2 * pair.index + " head " + c.head() + ": device-readable buffer in a receive chain");
            }
            written[used] = 0;
            room += c.writableBytes();
            used++;
        }
        if (hdr == HDR_LENGTH) {
            buffer.putShort(index + NUM_BUFFERS_OFFSET, (short) used, ByteOrder.LITTLE_ENDIAN);
        }
        if (!guestCsum) {
            buffer.putByte(index, (byte) 0); // spec: flags are 0 unless GUEST_CSUM was negotiated
        }
        curChain = 0;
        curElem = 0;
        curOffset = 0;
        scatter(buffer, index, hdr);
        scatter(buffer, index + HDR_LENGTH, frame);
        for (int k = 0; k < used; k++) {
            queue.pushUsed(chains[k].head(), written[k]);
        }
        delivered++;
        pair.counters.rxFrames++;
        return Action.CONTINUE;
    }

    /** Copies {@code len} bytes from {@code src} at the cursor, advancing it across elements and chains. */
    private void scatter(DirectBuffer src, int srcIndex, int len) {
        int left = len;
        int s = srcIndex;
        while (left > 0) {
            DescriptorChain c = chains[curChain];
            if (curElem == c.count()) {
                curChain++;
                curElem = 0;
                curOffset = 0;
                continue;
            }
            int space = c.length(curElem) - curOffset;
            if (space == 0) {
                curElem++;
                curOffset = 0;
                continue;
            }
            int n = Math.min(space, left);
            guest.wrap(c.address(curElem) + curOffset, n);
            guest.putBytes(0, src, s, n);
            written[curChain] += n;
            curOffset += n;
            s += n;
            left -= n;
        }
    }

    @Override
    public int inFlight() {
        return 0;
    }

    @Override
    public void awaitCompletion(long timeoutNanos) {
    }

    @Override
    public int wakeupFd() {
        return pair.rxWake.fd();
    }

    @Override
    public void close(Virtqueue q) {
        pair.rxRunning = false;
        if (armed) {
            pair.rxWake.disarm();
            armed = false;
        }
    }
}
