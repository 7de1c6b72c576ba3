package io.phost.core.vmbus;

import io.phost.core.sys.EventFd;
import java.lang.foreign.MemorySegment;
import java.time.Duration;

/**
 * The guest end of an open channel (VSC side): writes to the outbound ring (host reads it), reads the
 * inbound ring in place. {@code try*} methods never block; {@link #write} and {@link #read} wait with the
 * doorbell. One thread writes and one thread reads (they may be the same thread).
 */
public final class ClientChannel implements AutoCloseable {
    private final VmbusClient client;
    private final ChannelOffer offer;
    private final GuestRam.Buffer ringPages;
    private final int gpadl;
    private final RingMapping outMap;
    private final RingMapping inMap;
    private final VmbusRing outbound;
    private final VmbusRing inbound;
    private final EventFd toHost;
    private final EventFd fromHost;
    private final EventFd fromHostForWriter;
    private final DoorbellIdleStrategy readIdle;
    private volatile boolean open = true;

    ClientChannel(VmbusClient client, ChannelOffer offer, GuestRam.Buffer ringPages, int gpadl, RingMapping outMap,
                  RingMapping inMap, EventFd toHost, EventFd fromHost) {
        this.client = client;
        this.offer = offer;
        this.ringPages = ringPages;
        this.gpadl = gpadl;
        this.outMap = outMap;
        this.inMap = inMap;
        this.toHost = toHost;
        this.fromHost = fromHost;
        this.fromHostForWriter = fromHost.view();
        Doorbell signalHost = toHost::signal;
        this.outbound = outMap.ring(signalHost);
        this.inbound = inMap.ring(signalHost);
        this.readIdle = DoorbellIdleStrategy.defaults(inbound, fromHost);
    }

    public ChannelOffer offer() {
        return offer;
    }

    public int relid() {
        return offer.relid();
    }

    public int ringGpadl() {
        return gpadl;
    }

    public VmbusRing outbound() {
        return outbound;
    }

    /** The outbound ring's mapping (diagnostics, and hostile-guest tests that forge ring bytes). */
    public RingMapping outboundMapping() {
        return outMap;
    }

    /** The inbound ring's mapping (diagnostics and hostile-guest tests). */
    public RingMapping inboundMapping() {
        return inMap;
    }

    public VmbusRing inbound() {
        return inbound;
    }

    /** The guest memory this channel's client attached with (for data buffers and GPA-direct ranges). */
    public GuestRam ram() {
        return client.ram();
    }

    /** The host→guest doorbell eventfd (to poll several channels from one thread after arming each inbound ring). */
    public int hostDoorbellFd() {
        return fromHost.fd();
    }

    /** A new handle on the host→guest doorbell for one more thread (e.g. a custom idle strategy). */
    public EventFd hostDoorbell() {
        return fromHost.view();
    }

    /** Drains the host→guest doorbell without blocking. */
    public void clearHostDoorbell() {
        fromHost.tryConsume();
    }

    public boolean isOpen() {
        return open;
    }

    /**
     * Inband packet to the host, published at once (with any packets {@linkplain #tryQueue queued} before it);
     * false when the ring is full.
     */
    public boolean tryWrite(int type, int flags, long transId, MemorySegment src, long srcOffset, int length) {
        return outbound.tryWrite(type, flags, transId, src, srcOffset, length);
    }

    /** GPA-direct packet (type 9): {@code ranges} from {@link GpaDirectRanges#encode}, then inline data. */
    public boolean tryWriteGpaDirect(int flags, long transId, MemorySegment ranges, long rangesOffset, int rangesLength,
                                     MemorySegment src, long srcOffset, int length) {
        return outbound.tryWrite(PacketDescriptor.TYPE_GPA_DIRECT, flags, transId, ranges, rangesOffset, rangesLength,
            src, srcOffset, length);
    }

    /**
     * Burst sending: writes an inband packet into the outbound ring without publishing it; the host sees the
     * packets queued this way only at {@link #flush} (or the next {@link #tryWrite} / {@link #write}). A sender
     * with several packets ready queues them and flushes once, paying one write_index store, one StoreLoad
     * fence and at most one signal per burst instead of per packet (Hyper-V's rule: after each publish, read
     * interrupt_mask once the index store is visible, and signal if the ring was empty). False when the ring
     * lacks space for this packet (queued packets count as used: flush, then wait or retry).
     * <pre>
     *   while (more ready &amp;&amp; ch.tryQueue(...)) { ... }
     *   ch.flush();
     * </pre>
     */
    public boolean tryQueue(int type, int flags, long transId, MemorySegment src, long srcOffset, int length) {
        return outbound.tryQueue(type, flags, transId, src, srcOffset, length);
    }

    /** {@link #tryQueue} for a GPA-direct packet (see {@link #tryWriteGpaDirect}). */
    public boolean tryQueueGpaDirect(int flags, long transId, MemorySegment ranges, long rangesOffset, int rangesLength,
                                     MemorySegment src, long srcOffset, int length) {
        return outbound.tryQueue(PacketDescriptor.TYPE_GPA_DIRECT, flags, transId, ranges, rangesOffset, rangesLength,
            src, srcOffset, length);
    }

    /**
     * Publishes the packets {@linkplain #tryQueue queued} since the last publish, signalling the host at most
     * once; false when nothing was queued. Never blocks.
     */
    public boolean flush() {
        return outbound.flush();
    }

    public int tryRead(PacketHandler handler, int limit) {
        return inbound.tryRead(handler, limit);
    }

    /**
     * Writes and publishes (with any packets queued before it), waiting for space (pending_send_sz + doorbell)
     * up to {@code timeout}.
     */
    public void write(int type, int flags, long transId, MemorySegment src, long srcOffset, int length, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!outbound.tryWrite(type, flags, transId, src, srcOffset, length)) {
            checkOpen();
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("relid " + relid() + ": outbound ring full for " + timeout);
            }
            if (!outbound.requestSpace(VmbusRing.spaceFor(0, length))) {
                fromHostForWriter.await(1);
            }
        }
        outbound.clearPendingSend();
    }

    /** Reads at least one packet, waiting up to {@code timeout}; returns the count (0 on timeout). */
    public int read(PacketHandler handler, int limit, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            int n = inbound.tryRead(handler, limit);
            if (n > 0) {
                readIdle.reset();
                return n;
            }
            checkOpen();
            if (System.nanoTime() > deadline) {
                return 0;
            }
            readIdle.idle();
        }
    }

    /** An idle strategy over the inbound ring and the host doorbell, for a VSC's own polling loop. */
    public DoorbellIdleStrategy newIdleStrategy() {
        return DoorbellIdleStrategy.defaults(inbound, fromHost.view());
    }

    private void checkOpen() {
        if (!open) {
            throw new IllegalStateException("relid " + relid() + " is closed or rescinded");
        }
    }

    void markClosed() {
        open = false;
        fromHost.view().signal(); // wake a reader blocked on the doorbell
    }

    void release() {
        outMap.close();
        inMap.close();
        toHost.close();
        fromHost.close();
        client.ram().free(ringPages);
    }

    GuestRam.Buffer ringPages() {
        return ringPages;
    }

    /**
     * CLOSECHANNEL, then GPADL teardown of the ring pages. The rings stay mapped until nothing reaches this
     * channel ({@link RingMapping#mapUntilUnreachable}): their raw-address accesses ({@link VmbusRing}) from a
     * thread still using the channel never touch unmapped memory.
     */
    @Override
    public void close() {
        client.close(this);
    }
}
