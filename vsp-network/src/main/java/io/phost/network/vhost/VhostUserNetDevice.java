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
import org.agrona.concurrent.UnsafeBuffer;

/**
 * virtio-net over vhost-user into one vswitch port, with one or more receive/transmit queue pairs
 * ({@link NetQueuePair}; more than one → VIRTIO_NET_F_MQ). The device is the port's {@link FrameSource} and its
 * {@link FrameSink}, and the switch's agent thread serves its virtqueues itself: one thread runs a port's
 * transmit pop → the switch's forwarding and policies → the destination port's receive fill, with no queue
 * or thread hand-off in between (the queue workers only relay kicks: {@link SwitchServedQueue}). VLANs,
 * guards, ACLs, bandwidth and mirroring apply exactly as for a synthetic NIC, to the port as a whole.
 * <pre>
 *   switch agent: poll ──▶ pair[k] TX chains ──gather──▶ switch ──tryTransmit──▶ pair[flow hash] RX chains (scatter)
 *   after each transmit burst: one call per receive queue that got frames ({@link PendingCalls})
 *   guest TX kick ──▶ "name-q2k+1" worker ──▶ wakes the agent (only while it sleeps)
 * </pre>
 * Steering: a frame goes to the running receive queue its flow hashes to ({@link FlowHash}); which pairs run
 * follows SET_VRING_ENABLE, which QEMU sends when the guest sets the number of pairs (VIRTIO_NET_CTRL_MQ on
 * the control queue QEMU serves itself).
 * Offloads: the guest may send checksum-partial and TSO frames (CSUM, HOST_TSO4/6, completed in software by the
 * switch for ports that cannot take them); it receives them when it acked GUEST_CSUM/GUEST_TSO4/6
 * ({@link #offloads}).
 */
final class VhostUserNetDevice implements VhostUserDevice, FrameSink, FrameSource {
    /** Queue pairs one device may have. */
    static final int MAX_PAIRS = 16;
    static final long OFFERED = (1L << F_CSUM) | (1L << F_GUEST_CSUM) | (1L << F_MAC) | (1L << F_GUEST_TSO4)
        | (1L << F_GUEST_TSO6) | (1L << F_HOST_TSO4) | (1L << F_HOST_TSO6) | (1L << F_MRG_RXBUF) | (1L << F_STATUS);

    final NetQueuePair[] pairs;
    /** Wakes the switch agent when a guest kicked a transmit queue. */
    private final WakeupSignal switchWake = new WakeupSignal();
    private final BooleanSupplier noKicks = this::noKicks;
    /** Runs a command on the switch's agent thread and waits for it (set by the port once it is attached). */
    private volatile java.util.function.Consumer<Runnable> onSwitchThread = Runnable::run;
    /**
     * True when the port's sink is behind a VMQ queue: a VMQ worker thread, not the agent, calls
     * {@link #tryTransmit}, so delivery and the queue hand-overs take the device's lock.
     */
    private volatile boolean sinkOnVmq;
    /** The switch agent's list of receive queues to call after a transmit burst (set before the port is attached). */
    private PendingCalls pendingCalls = new PendingCalls();
    private int nextPoll;
    /** A SEND_RARP's MAC (control thread) waiting for the switch's agent to inject it (-1: none). */
    private final AtomicLong pendingAnnouncement = new AtomicLong(-1);
    private final UnsafeBuffer announcement = new UnsafeBuffer(new byte[RarpAnnouncement.LENGTH]);
    private final PacketMeta plainMeta = new PacketMeta();
    private final byte[] mac;
    private final int mtu;
    private volatile long acked;
    private volatile int offloads;
    /** The port's link (admin state): down → config status 0 and no frames either way, as an unplugged cable. */
    private volatile boolean linkUp = true;
    private volatile Runnable onOffloadsChanged = () -> { };
    /** Written by the switch's agent, as are the pairs' counters. */
    final NetCounters counters = new NetCounters();

    VhostUserNetDevice(long mac, int mtu, int queuePairs) {
        if (queuePairs < 1 || queuePairs > MAX_PAIRS) {
            throw new IllegalArgumentException("queue pairs " + queuePairs + " not in 1.." + MAX_PAIRS);
        }
        pairs = new NetQueuePair[queuePairs];
        for (int i = 0; i < queuePairs; i++) {
            pairs[i] = new NetQueuePair(i);
        }
        this.mac = new byte[6];
        for (int i = 0; i < 6; i++) {
            this.mac[i] = (byte) (mac >>> (8 * (5 - i)));
        }
        this.mtu = mtu;
    }

    /** How the queue workers reach the switch's agent thread: {@code run} runs the command there and returns when it ran. */
    void onSwitchThread(java.util.function.Consumer<Runnable> run) {
        onSwitchThread = run;
    }

    void sinkOnVmq(boolean on) {
        sinkOnVmq = on;
    }

    /** The list shared by every vhost-user-net device on the same switch agent; before the port is attached. */
    void pendingCalls(PendingCalls calls) {
        pendingCalls = calls;
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
            sum.addRxFrames(p.counters.rxFrames());
            sum.rxTooBig += p.counters.rxTooBig;
            sum.addTxFrames(p.counters.txFrames());
            sum.txErrors += p.counters.txErrors;
            sum.addTxBursts(p.counters.txBursts());
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
            ? SwitchServedQueue.receive(this, pair, new GuestRxPath(pair, hdr, (f & (1L << F_MRG_RXBUF)) != 0, (f & (1L << F_GUEST_CSUM)) != 0))
            : SwitchServedQueue.transmit(this, pair, new GuestTxPath(pair.counters, hdr, f));
    }

    /** Control thread, as the queue starts: hands it to the agent (in order with the later {@link #detach}). */
    void attach(NetQueuePair pair, SwitchServedQueue handler, io.phost.core.vhost.Virtqueue q) {
        onSwitchThread.accept(() -> {
            synchronized (this) { // uncontended unless a VMQ worker delivers (sinkOnVmq)
                if (handler.tx() != null) {
                    handler.tx().queue = q;
                    pair.tx = handler;
                } else {
                    handler.rx().queue = q;
                    pair.rx = handler;
                }
            }
        });
    }

    /**
     * Queue worker, as its queue stops: takes the queue back from the agent and returns once the agent no
     * longer touches it (GET_VRING_BASE reads its position next); pending calls to the guest are made first.
     */
    void detach(NetQueuePair pair, SwitchServedQueue handler) {
        onSwitchThread.accept(() -> {
            synchronized (this) {
                release(pair, handler);
            }
        });
    }

    /** Agent thread: stops serving {@code handler}'s queue (a stop, or a ring found hostile). */
    private static void release(NetQueuePair pair, SwitchServedQueue handler) {
        if (pair.tx == handler) {
            pair.tx = null;
            handler.tx().queue = null;
        }
        if (pair.rx == handler) {
            pair.rx = null;
            handler.rx().call();
            handler.rx().queue = null;
        }
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
        if (sinkOnVmq) {
            synchronized (this) {
                return transmit(buffer, offset, length, meta);
            }
        }
        return transmit(buffer, offset, length, meta);
    }

    private boolean transmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        NetQueuePair pair = steer(buffer, offset, length);
        if (pair == null) {
            counters.rxNoQueue++; // no driver (not connected, or its RX queues stopped): a link without a peer
            return true;
        }
        if (!linkUp) {
            counters.linkDownDrops++; // the cable is out: the switch's frame goes nowhere
            return true;
        }
        SwitchServedQueue rx = pair.rx;
        try {
            // on a VMQ worker (sinkOnVmq) the agent's list is not ours to touch: the call is made at once
            return rx.rx().deliver(buffer, offset, length, meta, sinkOnVmq ? PendingCalls.IMMEDIATE : pendingCalls);
        } catch (RuntimeException e) {
            broken(pair, rx, e);
            return true; // the frame is lost with the queue
        }
    }

    /** Agent thread: a hostile ring; the queue stops being served and its worker reports the error. */
    private static void broken(NetQueuePair pair, SwitchServedQueue handler, RuntimeException e) {
        release(pair, handler);
        handler.fail(e);
    }

    /** The running receive queue's pair for this frame's flow, or null when none runs. */
    private NetQueuePair steer(DirectBuffer buffer, int offset, int length) {
        if (pairs.length == 1) {
            return pairs[0].rx != null ? pairs[0] : null;
        }
        int running = 0;
        for (NetQueuePair p : pairs) {
            running += p.rx != null ? 1 : 0;
        }
        if (running == 0) {
            return null;
        }
        int k = length < MIN_FRAME ? 0 : Integer.remainderUnsigned(FlowHash.of(buffer, offset, length), running);
        NetQueuePair last = null;
        for (NetQueuePair p : pairs) {
            if (p.rx != null) {
                last = p;
                if (k-- == 0) {
                    return p;
                }
            }
        }
        return last;
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
        PendingCalls pending = pendingCalls;
        pending.startBurst();
        int n = 0;
        try {
            if (pendingAnnouncement.get() >= 0) {
                long mac = pendingAnnouncement.getAndSet(-1);
                if (mac >= 0) {
                    RarpAnnouncement.write(announcement, mac);
                    n += injectAnnouncement(handler);
                }
            }
            int first = nextPoll;
            for (int i = 0, k = first; i < pairs.length && n < limit; i++, k = k + 1 == pairs.length ? 0 : k + 1) {
                NetQueuePair p = pairs[k]; // k = (first + i) mod pairs, without a division per poll
                SwitchServedQueue tx = p.tx;
                if (tx != null) {
                    try {
                        n += tx.tx().poll(handler, limit - n, linkUp, counters, pending);
                    } catch (RuntimeException e) {
                        broken(p, tx, e);
                    }
                }
            }
            nextPoll = first + 1 == pairs.length ? 0 : first + 1; // a busy pair does not starve the others
        } finally {
            pending.endBurst(); // one call per destination queue for this burst
        }
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

    /**
     * Agent, before it sleeps: nothing the guest sent (a kick, or a frame found while asking for kicks again) or
     * the control thread asked for is waiting.
     */
    private boolean noKicks() {
        if (pendingAnnouncement.get() >= 0) {
            return false;
        }
        for (NetQueuePair p : pairs) {
            SwitchServedQueue tx = p.tx;
            if (tx != null && tx.tx().wantKicks()) {
                return false;
            }
        }
        return true;
    }

    /** Transmit queue workers: after a guest kick. */
    void wakeSwitch() {
        switchWake.signalIfArmed();
    }

    @Override
    public int readinessFd() {
        return switchWake.fd();
    }

    @Override
    public boolean armWakeup() {
        return switchWake.arm(noKicks);
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
        switchWake.close();
    }
}
