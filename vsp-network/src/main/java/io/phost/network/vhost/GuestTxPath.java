package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.vswitch.FrameHandler;
import io.phost.vswitch.PacketMeta;
import io.phost.vswitch.VSwitch;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * A transmit queue (2k + 1) as the switch's agent serves it: pops a burst of chains (all heads and
 * descriptor walks first, as DPDK's burst dequeue does, so their cache misses overlap), copies each
 * {@code [header][frame]} out of guest memory into one private buffer (so a guest rewriting its buffer cannot
 * change a frame after the switch's policies looked at it), hands it to the switch, which forwards it at
 * once (down to the destination port's sink), and returns the chain. One {@link Virtqueue#notifyIfNeeded}
 * per burst. Frames that are too short or too long, or whose offload state was not negotiated or points past
 * the frame, are dropped and counted ({@code txErrors}): the guest's data, not a protocol error.
 * <pre>
 *   guest kick ──▶ queue worker (relay: {@link SwitchServedQueue}) ──▶ {@link #kicked}, switch wake-up
 *   switch agent: poll ──▶ pop the burst (≤ 32) ──▶ per chain: gather ─▶ switch (policies, forwarding,
 *                 destination sink) ─▶ push used (unpublished) ──▶ one used.idx store, one notify
 * </pre>
 * While the agent polls, the guest is asked not to kick ({@link Virtqueue#tryPopQuiet}); the agent asks for
 * kicks again only before it sleeps ({@link #wantKicks}), as Linux vhost-net's busy polling does.
 * Agent thread only, except {@link #kicked}; allocates nothing per frame.
 */
final class GuestTxPath {
    private final NetCounters counters;
    private final int hdr;
    private final boolean csum;
    private final boolean tso4;
    private final boolean tso6;
    /** Chains one poll takes at most (the switch agent asks for 32 per port per round). */
    static final int BURST = 32;
    /** Buffers one transmit chain may have (Linux uses up to MAX_SKB_FRAGS + 2 = 19). */
    static final int CHAIN_CAPACITY = 1024;
    /** The burst's chains; storage grows only for the rare long chain (once per chain object). */
    private final DescriptorChain[] burst = new DescriptorChain[BURST];
    /** The frame being switched: header normalised to 12 bytes at 0, the Ethernet frame at 12. */
    private final UnsafeBuffer frame = new UnsafeBuffer(ByteBuffer.allocateDirect(HDR_LENGTH + VSwitch.MAX_FRAME));
    private final UnsafeBuffer guest = new UnsafeBuffer(0, 0);
    private final PacketMeta meta = new PacketMeta();
    /** Set by the worker on a guest kick (the agent clears it before it pops): the agent must not sleep. */
    volatile boolean kicked;
    /** Attached queue (agent thread): null before the worker attached it and after it detached or broke. */
    Virtqueue queue;

    GuestTxPath(NetCounters counters, int hdr, long features) {
        this.counters = counters;
        this.hdr = hdr;
        this.csum = (features & (1L << F_CSUM)) != 0;
        this.tso4 = (features & (1L << F_HOST_TSO4)) != 0;
        this.tso6 = (features & (1L << F_HOST_TSO6)) != 0;
        for (int i = 0; i < BURST; i++) {
            burst[i] = new DescriptorChain(CHAIN_CAPACITY, 4);
        }
    }

    /**
     * Switches up to {@code min(limit, BURST)} frames of the guest's; with {@code linkUp} false they are popped and
     * dropped ({@code down} counts them). {@code calls.framesLeft} tells each destination how many frames of the
     * burst are still to come (it takes receive buffers for them at once). Returns the chains taken. Throws what
     * the queue throws on a hostile ring, after switching and returning the chains taken before it.
     */
    int poll(FrameHandler handler, int limit, boolean linkUp, NetCounters down, PendingCalls calls) {
        Virtqueue q = queue;
        if (kicked) {
            kicked = false;
        }
        // 1. Take the burst: every head and every descriptor walk back to back, so that the misses on the lines
        //    the driver wrote (avail ring, descriptor table) overlap instead of waiting one frame's work each.
        int max = Math.min(limit, BURST);
        int taken = 0;
        RuntimeException hostile = null;
        try {
            while (taken < max && q.tryPopQuiet(burst[taken])) { // no kicks wanted while the agent polls: enableKicks before it sleeps
                taken++;
            }
        } catch (RuntimeException e) {
            hostile = e; // the chains taken before it are still switched and returned; then the queue breaks
        }
        // 2. Switch them in order; each destination takes its receive buffers for what is left of the burst.
        int sent = 0;
        for (int k = 0; k < taken; k++) {
            DescriptorChain chain = burst[k];
            calls.framesLeft = taken - k;
            long length = chain.readableBytes() - hdr;
            if (length < MIN_FRAME || length > VSwitch.MAX_FRAME) {
                counters.txErrors++;
            } else {
                gather(chain, (int) length);
                readHeader();
                if (!offloadsValid((int) length)) {
                    counters.txErrors++;
                } else if (!linkUp) {
                    down.linkDownDrops++; // sent before the guest saw the link go down: dropped, not switched
                } else {
                    handler.onFrame(frame, HDR_LENGTH, (int) length, meta);
                    sent++;
                }
            }
            q.pushUsedLater(chain.head(), 0); // published by notifyIfNeeded below: one used.idx store per burst
        }
        calls.framesLeft = 1;
        // 3. Return the burst together: one used.idx store, at most one call.
        if (taken > 0) {
            counters.addTxFrames(sent);
            counters.burstTaken();
            q.notifyIfNeeded();
        }
        if (hostile != null) {
            throw hostile;
        }
        return taken;
    }

    /**
     * The copied virtio_net_hdr into {@link #meta}, as {@link PacketMeta#readFrom} reads it, in two loads:
     * {u8 flags; u8 gso_type; le16 hdr_len; le16 gso_size; le16 csum_start} then le16 csum_offset.
     */
    private void readHeader() {
        long h = frame.getLong(0, ByteOrder.LITTLE_ENDIAN);
        meta.flags = (int) h & 0xff;
        meta.gsoType = (int) (h >>> 8) & 0xff;
        meta.hdrLen = (int) (h >>> 16) & 0xffff;
        meta.gsoSize = (int) (h >>> 32) & 0xffff;
        meta.csumStart = (int) (h >>> 48) & 0xffff;
        meta.csumOffset = frame.getShort(8, ByteOrder.LITTLE_ENDIAN) & 0xffff;
    }

    /** The copied header's offload fields ({@link #meta}): only negotiated kinds, checksum field inside the frame. */
    private boolean offloadsValid(int length) {
        int flags = meta.flags;
        int gso = meta.gsoType & ~PacketMeta.GSO_ECN;
        if ((flags & PacketMeta.FLAG_NEEDS_CSUM) != 0) {
            if (!csum) {
                return false;
            }
            if (meta.csumStart + meta.csumOffset + 2 > length) {
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

    /** Agent, before it sleeps: asks the guest to kick on its next frame; true when one is already there. */
    boolean wantKicks() {
        return kicked || queue.enableKicks();
    }

    /**
     * Copies header (to 0; a legacy 10-byte one leaves num_buffers 0) and frame (to 12) out of the chain's readable
     * buffers (the frame is at least MIN_FRAME long, so element 0 exists).
     */
    private void gather(DescriptorChain chain, int length) {
        if (hdr == HDR_LENGTH && chain.length(0) >= HDR_LENGTH + length) {
            // header and frame in one buffer, as Linux's virtio-net sends them: one copy, not two
            guest.wrap(chain.address(0), HDR_LENGTH + length);
            frame.putBytes(0, guest, 0, HDR_LENGTH + length);
            return;
        }
        frame.putShort(NUM_BUFFERS_OFFSET, (short) 0);
        long pos = 0; // position in the chain's readable stream
        long end = hdr + (long) length;
        for (int e = 0; e < chain.readableCount() && pos < end; e++) {
            int len = chain.length(e);
            guest.wrap(chain.address(e), len);
            int from = 0;
            if (pos < hdr) {
                int h = (int) Math.min(len, hdr - pos);
                frame.putBytes((int) pos, guest, 0, h);
                from = h;
            }
            if (from < len) {
                frame.putBytes(HDR_LENGTH + (int) (pos + from - hdr), guest, from, len - from);
            }
            pos += len;
        }
    }
}
