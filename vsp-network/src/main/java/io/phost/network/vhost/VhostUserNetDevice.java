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
import java.util.function.BooleanSupplier;
import org.agrona.DirectBuffer;
import org.agrona.MutableDirectBuffer;
import org.agrona.concurrent.MessageHandler;

/**
 * virtio-net over vhost-user into one vswitch port: one receive/transmit queue pair. The device is the port's
 * {@link FrameSink} (switch → {@code toGuest} ring → RX queue worker → guest buffers) and its
 * {@link FrameSource} (guest buffers → TX queue worker → {@code fromGuest} ring → switch), so VLANs, guards,
 * ACLs, bandwidth and mirroring apply exactly as for a synthetic NIC.
 * <pre>
 *   switch agent ──tryTransmit──▶ toGuest ring ──(wake eventfd)──▶ "name-q0" ──scatter──▶ RX chains
 *   TX chains ──gather──▶ "name-q1" ──▶ fromGuest ring ──(WakeupSignal)──▶ switch agent ──poll──▶ switch
 * </pre>
 * Offloads: the guest may send checksum-partial and TSO frames (CSUM, HOST_TSO4/6, completed in software by the
 * switch for ports that cannot take them); it receives them when it acked GUEST_CSUM/GUEST_TSO4/6
 * ({@link #offloads}).
 */
final class VhostUserNetDevice implements VhostUserDevice, FrameSink, FrameSource {
    static final int RING_BYTES = 1 << 20;
    static final long OFFERED = (1L << F_CSUM) | (1L << F_GUEST_CSUM) | (1L << F_MAC) | (1L << F_GUEST_TSO4)
        | (1L << F_GUEST_TSO6) | (1L << F_HOST_TSO4) | (1L << F_HOST_TSO6) | (1L << F_MRG_RXBUF) | (1L << F_STATUS);

    final VnetFrameRing toGuest = new VnetFrameRing(RING_BYTES);
    final VnetFrameRing fromGuest = new VnetFrameRing(RING_BYTES);
    /** Wakes the RX queue worker when the switch queued a frame for the guest. */
    final WakeupSignal rxWake = new WakeupSignal();
    /** Wakes the switch agent when the TX worker queued a guest frame. */
    private final WakeupSignal switchWake = new WakeupSignal();
    private final BooleanSupplier fromGuestEmpty = fromGuest::isEmpty;
    private final byte[] mac;
    private final int mtu;
    private final PacketMeta ingressMeta = new PacketMeta();
    private final MessageHandler ingressAdapter = this::onIngress;
    private FrameHandler ingressHandler;
    private volatile long acked;
    private volatile int offloads;
    private volatile boolean rxRunning;
    /** The port's link (admin state): down → config status 0 and no frames either way, as an unplugged cable. */
    private volatile boolean linkUp = true;
    private volatile Runnable onOffloadsChanged = () -> { };
    final NetCounters counters = new NetCounters();

    VhostUserNetDevice(long mac, int mtu) {
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

    void rxRunning(boolean running) {
        rxRunning = running;
    }

    // ---- VhostUserDevice ----

    @Override
    public long features() {
        return OFFERED;
    }

    @Override
    public int maxQueues() {
        return 2;
    }

    @Override
    public int readConfig(MemorySegment dst) {
        MemorySegment c = MemorySegment.ofArray(new byte[CONFIG_LENGTH]);
        MemorySegment.copy(MemorySegment.ofArray(mac), 0, c, MAC_OFFSET, 6);
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, STATUS_OFFSET, (short) (linkUp ? STATUS_LINK_UP : 0));
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, MAX_VIRTQUEUE_PAIRS_OFFSET, (short) 1);
        c.set(ValueLayout.JAVA_SHORT_UNALIGNED, MTU_OFFSET, (short) mtu);
        MemorySegment.copy(c, 0, dst, 0, Math.min(CONFIG_LENGTH, dst.byteSize()));
        return CONFIG_LENGTH;
    }

    @Override
    public VirtqueueHandler openQueue(int index) {
        long f = acked;
        int hdr = (f & ((1L << F_VERSION_1) | (1L << F_MRG_RXBUF))) != 0 ? HDR_LENGTH : LEGACY_HDR_LENGTH;
        return index == RX_QUEUE
            ? new VhostUserNetRxQueue(this, hdr, (f & (1L << F_MRG_RXBUF)) != 0, (f & (1L << F_GUEST_CSUM)) != 0)
            : new VhostUserNetTxQueue(this, hdr, f);
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
        if (!rxRunning) {
            counters.rxNoQueue++; // no driver (not connected, or its RX queue stopped): a link without a peer
            return true;
        }
        if (!linkUp) {
            counters.linkDownDrops++; // the cable is out: the switch's frame goes nowhere
            return true;
        }
        int index = toGuest.ring().tryClaim(VnetFrameRing.MSG, HDR_LENGTH + length);
        if (index <= 0) {
            return false;
        }
        MutableDirectBuffer b = toGuest.ring().buffer();
        meta.writeTo(b, index, HDR_LENGTH);
        b.putBytes(index + HDR_LENGTH, buffer, offset, length);
        toGuest.ring().commit(index); // ordered length write publishes the record to the RX worker
        rxWake.signalIfArmed();
        return true;
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
        return fromGuest.ring().read(ingressAdapter, limit);
    }

    private void onIngress(int type, MutableDirectBuffer buffer, int index, int length) {
        if (!linkUp) {
            counters.linkDownDrops++; // sent by the guest before it saw the link go down: dropped, not switched
            return;
        }
        ingressHandler.onFrame(buffer, index + HDR_LENGTH, length - HDR_LENGTH, ingressMeta.readFrom(buffer, index));
    }

    /** TX worker: after publishing frames. */
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
        rxWake.close();
        switchWake.close();
    }
}
