package io.phost.network.vhost;

import static io.phost.network.vhost.VirtioNetDescriptor.*;

import io.phost.core.vhost.VhostUserDevice;
import io.phost.core.vhost.VirtqueueHandler;
import io.phost.vswitch.FrameHandler;
import io.phost.vswitch.FrameSink;
import io.phost.vswitch.FrameSource;
import io.phost.vswitch.PacketMeta;
import io.phost.vswitch.WakeupSignal;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.MessageHandler;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * virtio-net over vhost-user into one vswitch port, with one or more receive/transmit queue pairs
 * ({@link NetQueuePair}; more than one → VIRTIO_NET_F_MQ). The device is the port's {@link FrameSink}
 * (switch → a pair's {@code toGuest} ring → its RX queue worker → guest buffers) and its {@link FrameSource}
 * (guest buffers → a TX queue worker → its pair's {@code fromGuest} ring → switch), so VLANs, guards, ACLs,
 * bandwidth and mirroring apply exactly as for a synthetic NIC, to the port as a whole.
 * <pre>
 *   switch agent ──tryTransmit──▶ pair[flow hash].toGuest ──(wake eventfd)──▶ "name-q2k" ──scatter──▶ RX chains
 *   TX chains ──gather──▶ "name-q2k+1" ──▶ pair[k].fromGuest ──(WakeupSignal)──▶ switch agent ──poll all──▶ switch
 * </pre>
 * Steering: a frame goes to the running receive queue its flow hashes to ({@link FlowHash}); which pairs run
 * follows SET_VRING_ENABLE, which QEMU sends when the guest sets the number of pairs (VIRTIO_NET_CTRL_MQ on
 * the control queue QEMU serves itself).
 * Offloads: the guest may send checksum-partial and TSO frames (CSUM, HOST_TSO4/6, completed in software by the
 * switch for ports that cannot take them); it receives them when it acked GUEST_CSUM/GUEST_TSO4/6
 * ({@link #offloads}).
 */
final class VhostUserNetDevice implements VhostUserDevice, FrameSink, FrameSource {
    static final int RING_BYTES = 1 << 20;
    /** Queue pairs one device may have (each costs two frame rings). */
    static final int MAX_PAIRS = 16;
    static final long OFFERED = (1L << F_CSUM) | (1L << F_GUEST_CSUM) | (1L << F_MAC) | (1L << F_GUEST_TSO4)
        | (1L << F_GUEST_TSO6) | (1L << F_HOST_TSO4) | (1L << F_HOST_TSO6) | (1L << F_MRG_RXBUF) | (1L << F_STATUS);

    final NetQueuePair[] pairs;
    /** Wakes the switch agent when a TX worker queued a guest frame. */
    private final WakeupSignal switchWake = new WakeupSignal();
    private final BooleanSupplier fromGuestEmpty = this::allFromGuestEmpty;
    private int nextPoll;
    /** A SEND_RARP's MAC (control thread) waiting for the switch's agent to inject it (-1: none). */
    private final AtomicLong pendingAnnouncement = new AtomicLong(-1);
    private final UnsafeBuffer announcement = new UnsafeBuffer(new byte[RarpAnnouncement.LENGTH]);
    private final PacketMeta plainMeta = new PacketMeta();
    private final byte[] mac;
    private final int mtu;
    private final PacketMeta ingressMeta = new PacketMeta();
    private final MessageHandler ingressAdapter = this::onIngress;
    private FrameHandler ingressHandler;
    private volatile long acked;
    private volatile int offloads;
    /** The port's link (admin state): down → config status 0 and no frames either way, as an unplugged cable. */
    private volatile boolean linkUp = true;
    private volatile Runnable onOffloadsChanged = () -> { };
    /** Written by the switch's agent ({@code rxNoQueue}, {@code linkDownDrops}); the workers write their pair's. */
    final NetCounters counters = new NetCounters();

    VhostUserNetDevice(long mac, int mtu, int queuePairs) {
        if (queuePairs < 1 || queuePairs > MAX_PAIRS) {
            throw new IllegalArgumentException("queue pairs " + queuePairs + " not in 1.." + MAX_PAIRS);
        }
        // one pair keeps the 1 MiB rings; more pairs share about 2 MiB per direction
        int ringBytes = queuePairs == 1 ? RING_BYTES : Math.max(RING_BYTES / 4, Integer.highestOneBit(2 * RING_BYTES / queuePairs));
        pairs = new NetQueuePair[queuePairs];
        for (int i = 0; i < queuePairs; i++) {
            pairs[i] = new NetQueuePair(i, ringBytes);
        }
        this.mac = new byte[6];
        for (int i = 0; i < 6; i++) {
            this.mac[i] = (byte) (mac >>> (8 * (5 - i)));
        }
        this.mtu = mtu;
    }

    void onOffloadsChanged(Runnable r) {
        onOffloadsChanged = r;
    }

    long ackedFeatures() {
        return acked;
    }

    boolean linkUp() {
        return linkUp;
    }

    void linkUp(boolean up) {
        linkUp = up;
    }

    /** Every counter of the device, summed over its pairs (a snapshot; management threads). */
    NetCounters countersSnapshot() {
        NetCounters sum = new NetCounters();
        sum.rxNoQueue = counters.rxNoQueue;
        sum.linkDownDrops = counters.linkDownDrops;
        sum.announcements = counters.announcements;
        for (NetQueuePair p : pairs) {
            sum.rxFrames += p.counters.rxFrames;
            sum.rxTooBig += p.counters.rxTooBig;
            sum.txFrames += p.counters.txFrames;
            sum.txErrors += p.counters.txErrors;
        }
        return sum;
    }

    // ---- VhostUserDevice ----

    @Override
    public long features() {
        return OFFERED | (pairs.length > 1 ? 1L << F_MQ : 0);
    }

    @Override
    public int maxQueues() {
        return 2 * pairs.length;
    }

    @Override
    public boolean packedRings() {
        return true;
    }

    @Override
    public boolean announces() {
        return true;
    }

    /**
     * SEND_RARP (control thread): hands the MAC to the switch's agent, which injects the RARP frame at the next
     * poll as if the guest had sent it on this port (ingress policy and learning apply); no queue is touched.
     */
    @Override
    public void announce(long mac) {
        pendingAnnouncement.set(mac);
        switchWake.signalIfArmed();
    }

    /** QEMU's vhost-user-net reads GET_QUEUE_NUM as queue pairs (its {@code -netdev vhost-user,queues=N}). */
    @Override
    public int queueNum() {
        return pairs.length;
    }

    @Override
    public int readConfig(MemorySegment dst) {
        MemorySegment c = MemorySegment.ofArray(new byte[CONFIG_LENGTH]);
        MemorySegment.copy(MemorySegment.ofArray(mac), 0, c, MAC_OFFSET, 6);
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, STATUS_OFFSET, (short) (linkUp ? STATUS_LINK_UP : 0));
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, MAX_VIRTQUEUE_PAIRS_OFFSET, (short) pairs.length);
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, MTU_OFFSET, (short) mtu);
        MemorySegment.copy(c, 0, dst, 0, Math.min(CONFIG_LENGTH, dst.byteSize()));
        return CONFIG_LENGTH;
    }

    @Override
    public VirtqueueHandler openQueue(int index) {
        long f = acked;
        int hdr = (f & ((1L << F_VERSION_1) | (1L << F_MRG_RXBUF))) != 0 ? HDR_LENGTH : LEGACY_HDR_LENGTH;
        NetQueuePair pair = pairs[index / 2];
        return index % 2 == RX_QUEUE
            ? new VhostUserNetRxQueue(pair, hdr, (f & (1L << F_MRG_RXBUF)) != 0, (f & (1L << F_GUEST_CSUM)) != 0)
            : new VhostUserNetTxQueue(this, pair, hdr, f);
    }

    @Override
    public void featuresAcked(long features) {
        acked = features;
        int o = 0;
        if ((features & (1L << F_GUEST_CSUM)) != 0) {
            o |= OFFLOAD_CSUM;
            o |= (features & (1L << F_GUEST_TSO4)) != 0 ? OFFLOAD_TSO4 : 0;
            o |= (features & (1L << F_GUEST_TSO6)) != 0 ? OFFLOAD_TSO6 : 0;
        }
        if (o != offloads) {
            offloads = o;
            onOffloadsChanged.run();
        }
    }

    // ---- FrameSink: the switch's agent thread ----

    @Override
    public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        NetQueuePair pair = steer(buffer, offset, length);
        if (pair == null) {
            counters.rxNoQueue++; // no driver (not connected, or its RX queues stopped): a link without a peer
            return true;
        }
        if (!linkUp) {
            counters.linkDownDrops++; // the cable is out: the switch's frame goes nowhere
            return true;
        }
        int index = pair.toGuest.ring().tryClaim(VnetFrameRing.MSG, HDR_LENGTH + length);
        if (index <= 0) {
            return false;
        }
        MutableDirectBuffer b = pair.toGuest.ring().buffer();
        meta.writeTo(b, index, HDR_LENGTH);
        b.putBytes(index + HDR_LENGTH, buffer, offset, length);
        pair.toGuest.ring().commit(index); // ordered length write publishes the record to the RX worker
        pair.rxWake.signalIfArmed();
        return true;
    }

    /** The running receive queue's pair for this frame's flow, or null when none runs. */
    private NetQueuePair steer(DirectBuffer buffer, int offset, int length) {
        if (pairs.length == 1) {
            return pairs[0].rxRunning ? pairs[0] : null;
        }
        int running = 0;
        for (NetQueuePair p : pairs) {
            running += p.rxRunning ? 1 : 0;
        }
        if (running == 0) {
            return null;
        }
        int k = length < MIN_FRAME ? 0 : Integer.remainderUnsigned(FlowHash.of(buffer, offset, length), running);
        NetQueuePair last = null;
        for (NetQueuePair p : pairs) {
            if (p.rxRunning) {
                last = p;
                if (k-- == 0) {
                    return p;
                }
            }
        }
        return last; // a queue stopped between the two passes
    }

    @Override
    public int offloads() {
        return offloads;
    }

    @Override
    public boolean offloadCapable() {
        return offloads != 0;
    }

    // ---- FrameSource: the switch's agent thread ----

    @Override
    public int poll(FrameHandler handler, int limit) {
        ingressHandler = handler;
        int n = 0;
        if (pendingAnnouncement.get() >= 0) {
            long mac = pendingAnnouncement.getAndSet(-1);
            if (mac >= 0) {
                RarpAnnouncement.write(announcement, mac);
                n += injectAnnouncement(handler);
            }
        }
        int first = nextPoll;
        for (int i = 0; i < pairs.length && n < limit; i++) {
            NetQueuePair p = pairs[(first + i) % pairs.length];
            n += p.fromGuest.ring().read(ingressAdapter, limit - n);
        }
        nextPoll = first + 1 == pairs.length ? 0 : first + 1; // a busy pair does not starve the others
        return n;
    }

    private int injectAnnouncement(FrameHandler handler) {
        if (!linkUp) {
            counters.linkDownDrops++;
            return 0;
        }
        plainMeta.clear();
        handler.onFrame(announcement, 0, RarpAnnouncement.LENGTH, plainMeta);
        counters.announcements++;
        return 1;
    }

    private boolean allFromGuestEmpty() {
        if (pendingAnnouncement.get() >= 0) {
            return false;
        }
        for (NetQueuePair p : pairs) {
            if (!p.fromGuest.isEmpty()) {
                return false;
            }
        }
        return true;
    }

    private void onIngress(int type, MutableDirectBuffer buffer, int index, int length) {
        if (!linkUp) {
            counters.linkDownDrops++; // sent by the guest before it saw the link go down: dropped, not switched
            return;
        }
        ingressHandler.onFrame(buffer, index + HDR_LENGTH, length - HDR_LENGTH, ingressMeta.readFrom(buffer, index));
    }

    /** TX workers: after publishing frames. */
    void wakeSwitch() {
        switchWake.signalIfArmed();
    }

    @Override
    public int readinessFd() {
        return switchWake.fd();
    }

    @Override
    public boolean armWakeup() {
        return switchWake.arm(fromGuestEmpty);
    }

    @Override
    public void disarmWakeup() {
        switchWake.disarm();
    }

    @Override
    public void close() {
        // the switch calls this when the port goes; the eventfds go with the export (VhostUserNetPort.close)
    }

    void release() {
        for (NetQueuePair p : pairs) {
            p.rxWake.close();
        }
        switchWake.close();
    }
}
