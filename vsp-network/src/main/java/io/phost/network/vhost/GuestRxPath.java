package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.VhostUserException;
import io.phost.core.vhost.Virtqueue;
import io.phost.vswitch.PacketMeta;
import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A receive queue (2k) as the switch's agent fills it: the switch's frame is scattered straight into the
 * guest's device-writable chains, header first, inside {@code tryTransmit} (no queue, no second thread). With
 * MRG_RXBUF a frame may take several chains ({@code num_buffers} says how many); without, it must fit one
 * chain or it is dropped (counted). When the guest has too few buffers the switch counts the frame EGRESS_FULL,
 * as a full NIC queue.
 * Within a vhost-user-net transmit burst the first frame for this queue takes receive chains for all the burst's
 * frames still to come ({@link PendingCalls#framesLeft}) in one run of ring walks, so their misses on the driver's
 * lines overlap; the chains no frame used are given back ({@link Virtqueue#discard}, the newest pops) when the
 * burst ends. Outside a burst a frame takes only what it needs and gives back the rest at once.
 * Within a vhost-user-net transmit burst the call to the guest is deferred ({@link #callPending}) and made once
 * per burst by {@link PendingCalls}; a frame from any other source is called at once.
 * <pre>
 *   stream written:  [ header (hdr bytes, num_buffers = chains used) ][ frame ]
 *   chain k gets:    min(its writable bytes, what is left), chains filled in order
 * </pre>
 * Agent thread only; allocates nothing per frame.
 */
final class GuestRxPath {
    /** Chains one frame may take (a 64 KiB frame in 1 536-byte mergeable buffers takes 44). */
    static final int MAX_CHAINS_PER_FRAME = 64;
    /** Buffers one receive chain may have (Linux uses 1 with MRG_RXBUF, up to 19 for big packets without). */
    static final int CHAIN_CAPACITY = 64;
    /** Frames after which the call is made even inside a burst, so a long burst does not starve the guest. */
    static final int CALL_EVERY = 64;

    private final NetQueuePair pair;
    private final int hdr;
    private final boolean mergeable;
    private final boolean guestCsum;
    private final DescriptorChain[] chains = new DescriptorChain[MAX_CHAINS_PER_FRAME];
    private final int[] written = new int[MAX_CHAINS_PER_FRAME];
    private final UnsafeBuffer header = new UnsafeBuffer(new byte[HDR_LENGTH]);
    private final UnsafeBuffer guest = new UnsafeBuffer(0, 0);
    /** Attached queue (agent thread): null before the worker attached it and after it detached or broke. */
    Virtqueue queue;
    /** Frames pushed since the last call decision (0: nothing to tell the guest); added to {@code rxFrames} there. */
    private int callPending;
    /** In the agent's {@link PendingCalls} list (once, however many frames). */
    boolean listed;
    /**
     * Chains taken from the ring in this burst: chains[0, next) carry frames already pushed, chains[next, taken) are
     * taken ahead for the burst's next frames and given back by {@link #call} if none uses them.
     */
    private int next;
    private int taken;
    // scatter cursor
    private int curChain;
    private int curElem;
    private int curOffset;

    GuestRxPath(NetQueuePair pair, int hdr, boolean mergeable, boolean guestCsum) {
        this.pair = pair;
        this.hdr = hdr;
        this.mergeable = mergeable;
        this.guestCsum = guestCsum;
        for (int i = 0; i < chains.length; i++) {
            chains[i] = new DescriptorChain(CHAIN_CAPACITY);
        }
    }

    /**
     * Writes one frame into the guest's buffers; false when the guest posted too few (nothing consumed).
     * Returns true for a frame dropped as too big for what the guest posts (counted {@code rxTooBig}).
     * {@code calls} learns of the first frame since the last call. Throws on a hostile ring.
     */
    boolean deliver(DirectBuffer buffer, int offset, int length, PacketMeta meta, PendingCalls calls) {
        Virtqueue q = queue;
        int total = hdr + length;
        int most = mergeable ? MAX_CHAINS_PER_FRAME : 1;
        int used = 0;
        long room = 0;
        boolean delivered = true;
        while (room < total) {
            if (used == most) {
                pair.counters.rxTooBig++; // dropped: does not fit what the guest posts (its buffers stay taken for the next frame)
                used = -1;
                break;
            }
            if (next + used == taken && !takeAhead(q, used, calls.burst ? Math.max(1, calls.framesLeft) : 1)) {
                delivered = false; // too few buffers: a kick adding some would change nothing, the frame is dropped, not held
                used = -1;
                break;
            }
            DescriptorChain c = chains[next + used];
            if (c.readableCount() != 0) {
                forgetTaken();
                throw new VhostUserException(VhostUserException.Reason.BAD_DESCRIPTOR_ORDER,
                    "queue " + 2 * pair.index + " head " + c.head() + ": device-readable buffer in a receive chain");
            }
            room += c.writableBytes();
            used++;
        }
        if (used > 0) {
            fill(buffer, offset, length, meta, used);
            for (int k = next; k < next + used; k++) {
                q.pushUsedLater(chains[k].head(), written[k]); // published by call(): once per burst
            }
            next += used;
            callPending++; // counted in rxFrames by call()
        }
        if (callPending >= CALL_EVERY || !calls.burst) {
            call(); // also gives back what was taken ahead: nothing stays taken outside a burst
        } else if (!listed && (callPending > 0 || taken > next)) {
            listed = true;
            calls.add(this);
        }
        return delivered;
    }

    /**
     * Takes up to {@code want} more chains from the ring, after the {@code used} ones the current frame already has:
     * the burst's receive buffers in one run of walks whose misses overlap. False when the ring had none.
     */
    private boolean takeAhead(Virtqueue q, int used, int want) {
        if (taken + want > chains.length) { // move the current frame's chains to the front (references only)
            for (int k = 0; k < taken - next; k++) {
                DescriptorChain c = chains[k];
                chains[k] = chains[next + k];
                chains[next + k] = c;
            }
            taken -= next;
            next = 0;
        }
        int before = taken;
        int end = Math.min(chains.length, taken + want);
        try {
            while (taken < end && q.tryPopQuiet(chains[taken])) { // a kick adding buffers would change nothing now
                taken++;
            }
        } catch (RuntimeException e) {
            forgetTaken(); // the ring is broken: nothing to give back to it
            throw e;
        }
        return taken > before;
    }

    /** The ring broke: the chains taken ahead are neither used nor given back (the front-end resets the queue). */
    private void forgetTaken() {
        next = 0;
        taken = 0;
    }

    /** Writes header and frame into chains[next, next + used) and records what each got. */
    private void fill(DirectBuffer buffer, int offset, int length, PacketMeta meta, int used) {
        for (int k = next; k < next + used; k++) {
            written[k] = 0;
        }
        curChain = next;
        curElem = 0;
        curOffset = 0;
        DescriptorChain first = chains[next];
        if (used == 1 && first.count() > 0 && first.length(0) >= hdr + length) {
            // header and frame in the first buffer (Linux posts 1,536 bytes and more): no scatter walk
            guest.wrap(first.address(0), hdr + length);
            writeHeader(guest, meta, 1);
            guest.putBytes(hdr, buffer, offset, length);
            written[next] = hdr + length;
            return;
        }
        if (first.count() > 0 && first.length(0) >= hdr) {
            // the header fits the first buffer (Linux posts 1,536 bytes and more): written in place, not copied
            guest.wrap(first.address(0), hdr);
            writeHeader(guest, meta, used);
            curOffset = hdr;
            written[next] = hdr;
        } else {
            writeHeader(header, meta, used);
            scatter(header, 0, hdr);
        }
        scatter(buffer, offset, length);
    }

    /** The virtio_net_hdr for a frame of {@code meta} that takes {@code used} chains, at 0 in {@code b} ({@code hdr} bytes). */
    private void writeHeader(org.agrona.MutableDirectBuffer b, PacketMeta meta, int used) {
        // the bytes PacketMeta.writeTo writes, in two stores: {u8 flags; u8 gso_type; le16 hdr_len; le16 gso_size;
        // le16 csum_start} then le16 csum_offset (and le16 num_buffers)
        long h = (guestCsum ? meta.flags & 0xff : 0) // spec: flags are 0 unless GUEST_CSUM was negotiated
            | (meta.gsoType & 0xffL) << 8 | (meta.hdrLen & 0xffffL) << 16 | (meta.gsoSize & 0xffffL) << 32
            | (meta.csumStart & 0xffffL) << 48;
        b.putLong(0, h, ByteOrder.LITTLE_ENDIAN);
        if (hdr == HDR_LENGTH) {
            b.putInt(8, (meta.csumOffset & 0xffff) | (used & 0xffff) << 16, ByteOrder.LITTLE_ENDIAN);
        } else {
            b.putShort(8, (short) meta.csumOffset, ByteOrder.LITTLE_ENDIAN);
        }
    }

    /**
     * Gives back the chains taken ahead that no frame used (the ring pops them again), then tells the guest about
     * the frames pushed since the last call, if it wants to hear (EVENT_IDX, NO_INTERRUPT).
     */
    void call() {
        Virtqueue q = queue;
        if (q != null && taken > next) {
            q.discard(taken - next); // the newest pops: exactly the ones no frame used
        }
        next = 0;
        taken = 0;
        if (callPending > 0) {
            pair.counters.addRxFrames(callPending); // once per burst, not per frame (opaque: no fence)
            callPending = 0;
            if (q != null) {
                q.notifyIfNeeded();
            }
        }
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
}
