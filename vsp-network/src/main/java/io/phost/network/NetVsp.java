package io.phost.network;

import static io.phost.network.NvspDescriptor.*;

import io.phost.core.sys.DeviceWait;
import io.phost.core.sys.EventFd;
import io.phost.core.sys.NetSyscalls;
import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.GuestMemory;
import io.phost.core.vmbus.GuestMemoryException;
import io.phost.core.vmbus.Gpadl;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.RingException;
import io.phost.core.vmbus.RingWriterLock;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.core.vmbus.VmbusRing;
import io.phost.network.vhost.RarpAnnouncement;
import io.phost.vswitch.FrameHandler;
import io.phost.vswitch.FrameRing;
import io.phost.vswitch.FrameSink;
import io.phost.vswitch.FrameSource;
import io.phost.vswitch.PacketMeta;
import io.phost.vswitch.Port;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.PortKind;
import io.phost.vswitch.SwitchAgent;
import io.phost.vswitch.WakeupSignal;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The network VSP: one synthetic NIC of one partition, attached to a vswitch port. See {@link NvspDescriptor}
 * for the messages. Threads and queues:
 * <pre>
 *  guest ──ring──▶ channel agent (primary or sub-channel) ──copy──▶ ingress FrameRing ──▶ switch agent
 *  switch agent ──copy──▶ guest recv-buffer section ──SEND_RNDIS_PKT(section)──▶ guest, completes
 *        (when the primary agent holds the ring, the guest has no free section or ring space, or frames are
 *         already queued:) ──▶ egress FrameRing ──▶ primary channel agent ──copy──▶ section, as above
 * </pre>
 * The switch's thread writes a frame straight into the guest ({@link Channel#tryDeliver}: no hop to the channel's
 * thread, one copy fewer) under the ring's {@link RingWriterLock}, which the primary agent holds through each
 * duty cycle; it never waits for it: a frame it cannot deliver now goes to the egress ring, and so does every
 * frame after it until the ring is drained (by the agent, or by the switch itself once it gets the lock), so
 * frames reach the guest in order.
 * The switch writes egress without a system call: the primary channel's agent sleeps through {@link EgressWait}
 * (its doorbell and {@link #egressSignal} in one poll(2)), so the switch signals only an agent about to sleep,
 * instead of ringing its doorbell for every frame (a write(2) on the switch's thread and a wake-up each).
 * Each channel's agent is this vNIC's own worker (the VMQ role for synthetic NICs: one receive queue per
 * vNIC, filtered by the switch's MAC+VLAN table, drained on its own thread). Every guest field is read once,
 * checked, and a bad message is counted by {@link NvspReason} and dropped; the channel keeps working.
 * <p>Port state follows the guest: the port is down (the switch queues nothing for it, counts PORT_DOWN and
 * forgets its learned addresses) until the guest grants its receive buffer, and goes down again when the
 * primary channel closes, whether the guest stopped or was killed. A restarted guest re-attaches to the same
 * port and sees none of the frames addressed to its predecessor.
 *
 * <p>Why one class of about 640 lines: negotiation, the receive-buffer grant and both data directions share the
 * port and offload state the primary channel negotiates; the message layouts are already in {@link
 * NvspDescriptor}.
 */
public final class NetVsp implements VirtualServiceProvider {
    public static final int MAX_QUEUES = 8;
    private static final int MAX_SECTIONS = 4096;
    private static final int EGRESS_BATCH = 64;
    /**
     * Switch → guest: 128 GSO super-frames (8 MiB). A full ring drops a whole 64 KiB super-frame, which costs a
     * TCP sender a recovery; at 2 MiB a host sender's bursts overran it under load (drop_egress_full, TCP fast
     * retransmits, 0.4 Gbit/s).
     */
    private static final int EGRESS_RING_BYTES = 8 << 20;
    /** Guest → switch, per channel: 64 super-frames. */
    private static final int RING_BYTES = 4 << 20;
    private static final FrameRing.SegmentHandler DISCARD = (segment, offset, length) -> { };

    private final String partition;
    private final String nicName;
    private final UUID instance;
    private final long mac;
    private final int mtu;
    /** Section size for a guest without the per-frame header: one frame of this NIC's MTU with a VLAN tag. */
    private final int plainSectionSize;
    /**
     * Bytes per send/receive buffer section for the guest now attached: {@link #plainSectionSize}, or with the
     * per-frame header (NDIS_CONFIG {@link NvspDescriptor#CAP_VNET_HDR}) one 64 KiB GSO super-frame and its header.
     */
    private volatile int sectionSize;
    /** True when the guest asked for the per-frame virtio_net_hdr in every section, both ways. */
    private volatile boolean vnetHdr;
    private final SwitchAgent agent;
    private final Port port;
    /** Records carry offload state; its {@link FrameRing#offloads} are what the attached guest finishes. */
    private final FrameRing egress = FrameRing.withMeta(EGRESS_RING_BYTES);
    /** Shared by the primary agent and the switch's thread for the primary channel's host→guest ring. */
    private final RingWriterLock txLock = new RingWriterLock();
    /** The primary channel once its guest granted a receive buffer: the switch delivers straight to it. */
    private volatile Channel direct;
    /** Frames the switch wrote straight into the guest, and frames it queued for the channel's agent. */
    private volatile long directFrames;
    private volatile long queuedFrames;
    /** The port's sink: straight into the guest when it can, else the egress ring (see the class comment). */
    private final FrameSink guestSink = new FrameSink() {
        @Override
        public boolean tryTransmit(org.agrona.DirectBuffer buffer, int offset, int length, PacketMeta meta) {
            Channel c = direct;
            if (c != null && c.tryDeliver(buffer, offset, length, meta)) {
                directFrames++; // the switch's thread only
                return true;
            }
            if (egress.tryTransmit(buffer, offset, length, meta)) {
                queuedFrames++;
                return true;
            }
            return false;
        }

        @Override
        public int offloads() {
            return egress.offloads();
        }
    };
    private volatile FrameRing[] ingress = new FrameRing[0];
    /** Wakes the primary channel's agent sleeping in {@link EgressWait} when the switch queues a frame for it. */
    private final WakeupSignal egressSignal = new WakeupSignal();
    /** True once the primary agent sleeps through {@link EgressWait}; before, every egress frame rings its doorbell. */
    private volatile boolean egressWaitInstalled;
    /** Wakes the switch agent sleeping in poll(2) when a channel agent puts a guest frame into an ingress ring. */
    private final WakeupSignal ingressSignal = new WakeupSignal();
    /** A move's announcement waiting for the switch's agent, which injects it once the guest's port is up. */
    private final java.util.concurrent.atomic.AtomicBoolean announcePending = new java.util.concurrent.atomic.AtomicBoolean();
    /** Switch agent only: the announcement frame and its metadata (no allocation when it is sent). */
    private final org.agrona.concurrent.UnsafeBuffer announcement =
        new org.agrona.concurrent.UnsafeBuffer(new byte[RarpAnnouncement.LENGTH]);
    private final PacketMeta announcementMeta = new PacketMeta();
    private volatile long announcements;
    private final java.util.function.BooleanSupplier ingressEmpty = () -> {
        if (announceNow()) {
            return false;
        }
        for (FrameRing r : ingress) {
            if (!r.isEmpty()) {
                return false;
            }
        }
        return true;
    };
    private final AtomicLongArray drops = new AtomicLongArray(NvspReason.VALUES.length);
    private volatile boolean linkUp = true;
    private volatile int dataPath;          // 0 synthetic, 1 VF (SWITCH_DATA_PATH)
    private volatile ChannelContext primary;
    // Buffers announced on the primary channel, shared by sub-channels (netvsc semantics).
    private volatile long sendBase = -1;
    private volatile int sendSections;
    private volatile long recvBase = -1;
    private volatile int recvSections;
    private volatile int negotiated;

    /**
     * Creates the vNIC and attaches its port to the switch {@code agent} owns (on the switch's thread).
     * {@code config.mac()} is the NIC's MAC.
     */
    public NetVsp(String partition, String nicName, PortConfig config, int mtu, SwitchAgent agent) {
        this.partition = partition;
        this.nicName = nicName;
        this.instance = UUID.nameUUIDFromBytes(("netvsc/" + partition + "/" + nicName).getBytes());
        this.mac = config.mac();
        if (mtu < PortConfig.MIN_MTU || mtu > PortConfig.MAX_MTU) {
            throw new IllegalArgumentException("NIC " + partition + "/" + nicName + ": MTU must be "
                + PortConfig.MIN_MTU + ".." + PortConfig.MAX_MTU + ": " + mtu);
        }
        this.mtu = mtu;
        this.plainSectionSize = sectionSizeFor(mtu);
        this.sectionSize = plainSectionSize;
        PortConfig portConfig = config.withMtu(mtu);
        this.agent = agent;
        FrameSource source = new FrameSource() {
            @Override
            public int poll(FrameHandler handler, int limit) {
                int n = 0;
                if (announceNow() && announcePending.compareAndSet(true, false)) {
                    RarpAnnouncement.write(announcement, mac);
                    announcementMeta.clear();
                    handler.onFrame(announcement, 0, RarpAnnouncement.LENGTH, announcementMeta);
                    announcements++;
                    n++;
                }
                for (FrameRing r : ingress) {
                    n += r.poll(handler, limit - n);
                    if (n >= limit) {
                        break;
                    }
                }
                return n;
            }

            @Override
            public int readinessFd() {
                return ingressSignal.fd();
            }

            @Override
            public boolean armWakeup() {
                return ingressSignal.arm(ingressEmpty);
            }

            @Override
            public void disarmWakeup() {
                ingressSignal.disarm();
            }
        };
        egress.onWrite(this::onEgressWrite);
        Port[] holder = new Port[1];
        agent.submit(sw -> {
            holder[0] = sw.addPort(partition + "/" + nicName, PortKind.VNIC, portConfig, guestSink, source);
            sw.setUp(holder[0], false); // no guest yet: nothing is queued for it (up once it grants its buffer)
        }).join();
        this.port = holder[0];
    }

    /** Section size for {@code mtu}: Ethernet header + 802.1Q tag + MTU, at least 2 KiB, in 512-byte steps. */
    static int sectionSizeFor(int mtu) {
        return Math.max(SECTION_SIZE, (mtu + 18 + 511) & ~511);
    }

    public int mtu() {
        return mtu;
    }

    private void onEgressWrite() {
        if (egressWaitInstalled) {
            egressSignal.signalIfArmed();
        } else {
            wakePrimary();
        }
    }

    private void wakePrimary() {
        ChannelContext c = primary;
        if (c != null) {
            c.wakeup();
        }
    }

    @Override
    public UUID interfaceType() {
        return NETVSC_TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "vsp-network-" + nicName;
    }

    public Port port() {
        return port;
    }

    /**
     * After this partition moved here from another appliance: a broadcast RARP from the NIC's MAC (as QEMU's
     * announce_self, {@link RarpAnnouncement}), injected by the switch's agent as if the guest had sent it, so the
     * switches along the way (this one, the uplink's LAN, a peer appliance's switch) learn the MAC's new port. Sent
     * once the guest's port is up (its receive buffer granted); safe from any thread.
     */
    public void announce() {
        announcePending.set(true);
        ingressSignal.signalIfArmed();
    }

    /** Announcements sent ({@link #announce}). */
    public long announcements() {
        return announcements;
    }

    private boolean announceNow() {
        Port p = port;
        return announcePending.get() && p != null && p.isUp();
    }

    public long mac() {
        return mac;
    }

    /** 0: synthetic path, 1: the guest switched its data path to the VF. */
    public int dataPath() {
        return dataPath;
    }

    public int negotiatedVersion() {
        return negotiated;
    }

    public long drops(NvspReason r) {
        return drops.get(r.ordinal());
    }

    /** Frames the switch's thread wrote straight into the guest's receive buffer. */
    public long directFrames() {
        return directFrames;
    }

    /** Frames the switch queued for the channel's agent (agent busy, guest without free section or ring space). */
    public long queuedFrames() {
        return queuedFrames;
    }

    /** The NIC's admin link state (true unless set down). */
    public boolean linkUp() {
        return linkUp;
    }

    /**
     * The NIC's link, as a cable plugged or pulled: the guest is told with an RNDIS media status indication
     * (MEDIA_CONNECT / MEDIA_DISCONNECT); while down nothing is delivered to the guest and what it sends is dropped
     * (counted as LINK_DOWN).
     */
    public void setLinkUp(boolean up) {
        linkUp = up;
        wakePrimary();
    }

    /** Removes the port from the switch (partition stopped or NIC removed). */
    public void detach() {
        agent.submit(sw -> sw.removePort(port)).join();
        // The switch no longer arms this source, so no producer can find it armed and write to the fd.
        ingressSignal.close();
        egressSignal.close(); // the switch writes no more egress, the only producer of this signal
    }

    @Override
    public ChannelHandler open(ChannelContext ctx) {
        FrameRing in = FrameRing.withMeta(RING_BYTES).onWrite(ingressSignal::signalIfArmed);
        synchronized (this) {
            FrameRing[] next = Arrays.copyOf(ingress, ingress.length + 1);
            next[next.length - 1] = in;
            ingress = next;
        }
        if (ctx.subChannelIndex() == 0) {
            primary = ctx;
        }
        return new Channel(ctx, in);
    }

    /**
     * What the attached guest finishes itself (its NDIS_CONFIG caps): the switch sends it those frames
     * unfinished and completes the rest in software. Applied on the switch's thread.
     */
    private void setGuestOffloads(int bits) {
        if (egress.offloads() == bits) {
            return;
        }
        egress.offloads(bits);
        agent.submit(sw -> sw.configure(port, port.config()));
    }

    /** The guest is gone (stopped, crashed, killed): nothing more is queued for it; it re-attaches on restart. */
    private void portDown() {
        agent.submit(sw -> {
            sw.setUp(port, false);
            sw.configure(port, port.config()); // forgets the addresses learned on it
        });
    }

    /** True while a guest is attached and has granted its receive buffer. */
    public boolean guestAttached() {
        return port.isUp();
    }

    /** The FrameSink offload bits the attached guest negotiated (0: plain frames only). */
    public int guestOffloads() {
        return egress.offloads();
    }

    /** True when the attached guest uses the per-frame header (offload metadata) on the VMBus path. */
    public boolean offloadHeader() {
        return vnetHdr;
    }

    private void count(NvspReason r) {
        drops.incrementAndGet(r.ordinal());
    }

    /** One channel's handler: runs on that channel's agent thread only. */
    private final class Channel implements ChannelHandler {
        private final ChannelContext ctx;
        private final FrameRing in;
        private final boolean isPrimary;
        private final MemorySegment reply = Arena.ofAuto().allocate(64, 8);
        private final MemorySegment guest;
        // Receive sections: a free stack plus an outstanding flag per section (primary only).
        private int[] free = new int[0];
        private boolean[] outstanding = new boolean[0];
        private int freeCount;
        private int pendingSection = -1;
        private int pendingLength;
        private boolean lastLink = true;
        private final FrameRing.SegmentHandler toGuest = this::toGuest;
        /** Set by doWork: egress waits for a receive section, ring space or the link, which the guest's doorbell signals. */
        private boolean egressBlocked;

        Channel(ChannelContext ctx, FrameRing in) {
            this.ctx = ctx;
            this.in = in;
            this.isPrimary = ctx.subChannelIndex() == 0;
            this.guest = ctx.guestMemory().segment();
        }

        @Override
        public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
            if (type == PacketDescriptor.TYPE_COMPLETION) {
                onCompletion(transId);
                return true;
            }
            if (type != PacketDescriptor.TYPE_INBAND) {
                count(NvspReason.BAD_PACKET_TYPE);
                return true;
            }
            long data = PacketDescriptor.dataOffset(buf, off);
            int n = PacketDescriptor.dataLength(buf, off, len);
            if (n < 4) {
                count(NvspReason.TRUNCATED);
                return true;
            }
            boolean wantsCompletion = (flags & PacketDescriptor.FLAG_COMPLETION_REQUESTED) != 0;
            // The cheap check first (the cached read index, re-read only when it says full): requestSpace's
            // pending_send_sz store and StoreLoad fence only when the answer may really not fit.
            if (wantsCompletion && !ctx.tx().hasSpaceFor(0, 64) && !ctx.requestSpace(VmbusRing.spaceFor(0, 64))) {
                return false; // no room for our answer yet: leave the request in the ring, retry on signal
            }
            int msg = u32(buf, data);
            switch (msg) {
                case MSG_INIT -> init(buf, data, n, transId);
                case MSG_QUERY_CONFIG -> queryConfig(transId);
                case MSG_NDIS_CONFIG -> ndisConfig(buf, data, n);
                case MSG_SEND_RECV_BUF -> buffer(buf, data, n, transId, true);
                case MSG_SEND_SEND_BUF -> buffer(buf, data, n, transId, false);
                case MSG_SEND_RNDIS_PKT -> sendPacket(buf, data, n, transId, wantsCompletion);
                case MSG_SWITCH_DATA_PATH -> {
                    if (n < DATA_PATH_LENGTH) {
                        count(NvspReason.TRUNCATED);
                    } else {
                        int active = u32(buf, data + DATA_PATH_OFFSET);
                        if (active == 0 || active == 1) {
                            dataPath = active;
                        } else {
                            count(NvspReason.UNKNOWN_TYPE);
                        }
                    }
                }
                case MSG_SUBCHANNEL -> subChannels(buf, data, n, transId);
                default -> {
                    count(NvspReason.UNKNOWN_TYPE);
                    if (wantsCompletion) {
                        status(transId, msg, STATUS_FAILURE);
                    }
                }
            }
            return true;
        }

        private void status(long transId, int type, int status) {
            u32(reply, 0, type);
            u32(reply, STATUS_OFFSET, status);
            ctx.tryComplete(transId, reply, 0, 8);
        }

        private void init(MemorySegment buf, long data, int n, long transId) {
            if (n < INIT_LENGTH) {
                count(NvspReason.TRUNCATED);
                return;
            }
            int min = u32(buf, data + INIT_MIN_OFFSET);
            int max = u32(buf, data + INIT_MAX_OFFSET);
            int version = 0;
            if (Integer.compareUnsigned(min, VERSION_61) <= 0 && Integer.compareUnsigned(VERSION_61, max) <= 0) {
                version = VERSION_61;
            } else if (Integer.compareUnsigned(min, VERSION_5) <= 0 && Integer.compareUnsigned(VERSION_5, max) <= 0) {
                version = VERSION_5;
            }
            u32(reply, 0, MSG_INIT_COMPLETE);
            u32(reply, 4, version);
            u32(reply, 8, version == 0 ? STATUS_FAILURE : STATUS_SUCCESS);
            if (version == 0) {
                count(NvspReason.VERSION_MISMATCH);
            } else {
                negotiated = version;
            }
            ctx.tryComplete(transId, reply, 0, 12);
        }

        private void queryConfig(long transId) {
            reply.fill((byte) 0);
            u32(reply, 0, MSG_QUERY_CONFIG_COMPLETE);
            u32(reply, STATUS_OFFSET, STATUS_SUCCESS);
            for (int i = 0; i < 6; i++) {
                reply.set(java.lang.foreign.ValueLayout.JAVA_BYTE, CONFIG_MAC_OFFSET + i, (byte) (mac >>> (40 - 8 * i)));
            }
            u32(reply, CONFIG_MTU_OFFSET, mtu);
            u32(reply, CONFIG_LINK_OFFSET, linkUp ? 1 : 0);
            ctx.tryComplete(transId, reply, 0, CONFIG_COMPLETE_LENGTH);
        }

        /** The guest's capabilities: with the per-frame header, sections grow to hold a GSO super-frame. */
        private void ndisConfig(MemorySegment buf, long data, int n) {
            if (n < NDIS_CONFIG_LENGTH) {
                count(NvspReason.TRUNCATED);
                return;
            }
            if (!isPrimary || recvBase != -1 || sendBase != -1) {
                count(NvspReason.LATE_CONFIG);
                return;
            }
            long caps = buf.get(U64, data + NDIS_CAPS_OFFSET);
            boolean hdr = (caps & CAP_VNET_HDR) != 0;
            vnetHdr = hdr;
            sectionSize = hdr ? GSO_SECTION_SIZE : plainSectionSize;
            setGuestOffloads(hdr ? (int) (caps & CAP_OFFLOAD_MASK) : 0);
        }

        private void buffer(MemorySegment buf, long data, int n, long transId, boolean receive) {
            int answer = receive ? MSG_SEND_RECV_BUF_COMPLETE : MSG_SEND_SEND_BUF_COMPLETE;
            if (n < BUF_LENGTH) {
                count(NvspReason.TRUNCATED);
                return;
            }
            if (negotiated == 0 || !isPrimary) {
                count(NvspReason.NOT_INITIALIZED);
                status(transId, answer, STATUS_FAILURE);
                return;
            }
            int handle = u32(buf, data + BUF_GPADL_OFFSET);
            Gpadl g = ctx.gpadl(handle);
            if (g == null || !g.contiguous() || g.byteCount() < sectionSize || (receive ? recvBase : sendBase) != -1) {
                count(NvspReason.BAD_BUFFER);
                status(transId, answer, STATUS_FAILURE);
                return;
            }
            int sections = (int) Math.min(MAX_SECTIONS, g.byteCount() / sectionSize);
            long base;
            try {
                base = ctx.guestMemory().resolve(g.pfns()[0] * GuestMemory.PAGE_SIZE + g.byteOffset(), (long) sections * sectionSize);
            } catch (GuestMemoryException e) {
                count(NvspReason.BAD_BUFFER);
                status(transId, answer, STATUS_FAILURE);
                return;
            }
            reply.fill((byte) 0);
            u32(reply, 0, answer);
            u32(reply, STATUS_OFFSET, STATUS_SUCCESS);
            if (receive) {
                egress.poll(DISCARD, Integer.MAX_VALUE); // frames queued before the port went down last time
                agent.submit(sw -> sw.setUp(port, true)); // a pending announcement goes out now (ingressEmpty)
                free = new int[sections];
                outstanding = new boolean[sections];
                for (int i = 0; i < sections; i++) {
                    free[i] = sections - 1 - i;
                }
                freeCount = sections;
                recvSections = sections;
                recvBase = base;
                if (guest.isNative()) {
                    receiveView.wrap(guest.address() + base, sections * sectionSize);
                    direct = this; // the agent holds txLock here: the switch sees the arrays above first
                }
                u32(reply, 8, 1);                      // one section descriptor
                u32(reply, 12, 0);                     // offset
                u32(reply, 16, sectionSize);          // sub_alloc_size
                u32(reply, 20, sections);              // num_sub_allocs
                u32(reply, 24, sections * sectionSize); // end_offset
                ctx.tryComplete(transId, reply, 0, 28);
            } else {
                sendSections = sections;
                sendBase = base;
                u32(reply, 8, sectionSize);
                ctx.tryComplete(transId, reply, 0, 12);
            }
        }

        private void sendPacket(MemorySegment buf, long data, int n, long transId, boolean wantsCompletion) {
            if (n < PKT_LENGTH) {
                count(NvspReason.TRUNCATED);
                return;
            }
            long base = sendBase;
            if (base < 0) {
                count(NvspReason.NOT_INITIALIZED);
                if (wantsCompletion) {
                    status(transId, MSG_SEND_RNDIS_PKT_COMPLETE, STATUS_FAILURE);
                }
                return;
            }
            int section = u32(buf, data + PKT_SECTION_OFFSET);
            int length = u32(buf, data + PKT_LENGTH_OFFSET);
            int size = sectionSize;
            int hdr = vnetHdr ? FRAME_HDR_LENGTH : 0;
            int status = STATUS_SUCCESS;
            if (section < 0 || section >= sendSections || length < hdr + 14 || length > size) {
                count(NvspReason.BAD_SECTION);
                status = STATUS_FAILURE;
            } else if (!linkUp) {
                count(NvspReason.LINK_DOWN); // a cable pulled: the frame goes nowhere (completed, so the section is free)
            } else if (!(hdr != 0
                ? in.tryWrite(guest, base + (long) section * size, length) // header and frame as they are
                : in.tryWrite(guest, base + (long) section * size, length, PacketMeta.NONE))) {
                count(NvspReason.INGRESS_FULL);
                status = STATUS_FAILURE;
            }
            if (wantsCompletion) {
                status(transId, MSG_SEND_RNDIS_PKT_COMPLETE, status);
            }
        }

        private void subChannels(MemorySegment buf, long data, int n, long transId) {
            if (n < SUBCHANNEL_LENGTH) {
                count(NvspReason.TRUNCATED);
                return;
            }
            int op = u32(buf, data + SUBCHANNEL_OP_OFFSET);
            int wanted = u32(buf, data + SUBCHANNEL_COUNT_OFFSET);
            int count = Math.min(Math.max(wanted, 0), MAX_QUEUES - 1);
            if (op != 1 || !isPrimary || negotiated == 0) {
                count(NvspReason.UNKNOWN_TYPE);
                status(transId, MSG_SUBCHANNEL, STATUS_FAILURE);
                return;
            }
            if (count > 0) {
                ctx.offerSubChannels(count);
            }
            u32(reply, 0, MSG_SUBCHANNEL);
            u32(reply, STATUS_OFFSET, STATUS_SUCCESS);
            u32(reply, 8, count);
            ctx.tryComplete(transId, reply, 0, 12);
        }

        private void onCompletion(long transId) {
            if (transId < 0 || transId >= outstanding.length || !outstanding[(int) transId]) {
                count(NvspReason.BAD_COMPLETION);
                return;
            }
            outstanding[(int) transId] = false;
            free[freeCount++] = (int) transId;
        }

        @Override
        public int doWork() {
            if (!isPrimary) {
                return 0;
            }
            int work = 0;
            boolean link = linkUp;
            if (link != lastLink) {
                // A media status indication, as netvsc's host sends RNDIS_INDICATE_STATUS_MSG.
                u32(reply, 0, MSG_LINK_STATE);
                u32(reply, 4, RNDIS_INDICATE_STATUS_MSG);
                u32(reply, 8, LINK_STATE_LENGTH - 4);
                u32(reply, 12, link ? RNDIS_STATUS_MEDIA_CONNECT : RNDIS_STATUS_MEDIA_DISCONNECT);
                u32(reply, 16, 0);
                u32(reply, 20, 0);
                if (ctx.tryWrite(PacketDescriptor.TYPE_INBAND, 0, 0, reply, 0, LINK_STATE_LENGTH)) {
                    lastLink = link;
                    work++;
                }
            }
            if (recvBase < 0) {
                return work;
            }
            if (pendingSection >= 0) {
                if (!post(pendingSection, pendingLength)) {
                    egressBlocked = true; // post asked the guest to signal when ring space frees
                    return work;
                }
                pendingSection = -1;
                work++;
            }
            // One frame at a time while a section and ring space are both there, so no frame is taken off
            // the egress ring that cannot be posted (the ring holds it; the switch sees EGRESS_FULL only when
            // the guest stops completing).
            int need = VmbusRing.spaceFor(0, PKT_LENGTH);
            for (int i = 0; i < EGRESS_BATCH && link && freeCount > 0 && pendingSection < 0
                && ctx.tx().hasSpaceFor(0, PKT_LENGTH); i++) {
                if (egress.poll(toGuest, 1) == 0) {
                    break;
                }
                work++;
            }
            egressBlocked = !link || freeCount == 0 || pendingSection >= 0;
            if (!egressBlocked && !ctx.tx().hasSpaceFor(0, PKT_LENGTH)) {
                egressBlocked = true;
                ctx.requestSpace(need); // the guest signals once it has read enough of the ring
            }
            return work;
        }

        @Override
        public RingWriterLock ringWriterLock() {
            return isPrimary ? txLock : null;
        }

        @Override
        public DeviceWait deviceWait() {
            if (!isPrimary) {
                return null;
            }
            egressWaitInstalled = true;
            return egressWait;
        }

        private final EgressWait egressWait = new EgressWait();

        /**
         * The primary agent's sleep: its doorbell (guest packets, completions, ring space, link changes) and the
         * egress ring's {@link #egressSignal} in one poll(2). While egress waits for the guest (no free section,
         * no ring space, link down) only the doorbell can help, so only it is watched.
         */
        private final class EgressWait implements DeviceWait {
            private final MemorySegment pollFds = Arena.ofAuto().allocate(16, 8);
            private final java.util.function.BooleanSupplier nothingToPost = () -> egressBlocked || egress.isEmpty();

            @Override
            public boolean busy() {
                return recvBase >= 0; // before the grant the port is down: no egress to wait for
            }

            @Override
            public boolean unsubmitted() {
                return false;
            }

            @Override
            public void submit() {
            }

            @Override
            public void await(EventFd doorbell, long timeoutNanos) {
                if (!egressSignal.arm(nothingToPost)) {
                    return; // a frame raced in: back to work
                }
                pollFds.set(ValueLayout.JAVA_INT, 0, doorbell.fd());
                pollFds.set(ValueLayout.JAVA_SHORT, 4, NetSyscalls.POLLIN);
                pollFds.set(ValueLayout.JAVA_SHORT, 6, (short) 0);
                pollFds.set(ValueLayout.JAVA_INT, 8, egressSignal.fd());
                pollFds.set(ValueLayout.JAVA_SHORT, 12, NetSyscalls.POLLIN);
                pollFds.set(ValueLayout.JAVA_SHORT, 14, (short) 0);
                NetSyscalls.poll(pollFds.address(), 2, (int) Math.max(1, timeoutNanos / 1_000_000L));
                egressSignal.disarm();
                if (pollFds.get(ValueLayout.JAVA_SHORT, 6) != 0) {
                    doorbell.tryConsume();
                }
            }
        }

        /** One egress record ([header 12][frame]) into a receive section, with or without its header. */
        private void toGuest(MemorySegment record, long offset, int recordLength) {
            if (pendingSection >= 0 || freeCount == 0) {
                return; // cannot happen with the limits in doWork
            }
            int skip = vnetHdr ? 0 : FRAME_HDR_LENGTH; // a plain guest gets the frame alone (its meta is NONE)
            int length = recordLength - skip;
            int size = sectionSize;
            if (length > size || length < 0) {
                count(NvspReason.OVERSIZE); // the switch enforces the MTU; counted, never silent, if one gets here
                return;
            }
            if (skip != 0 && (record.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, offset) != 0)) {
                // Flags or gso_type set for a guest that cannot finish the frame: only while a guest's caps
                // change (the switch learns them a moment later). Passing it on would hand over a bad checksum.
                count(NvspReason.UNFINISHED);
                return;
            }
            int section = free[--freeCount];
            outstanding[section] = true;
            MemorySegment.copy(record, offset + skip, guest, recvBase + (long) section * size, length);
            if (!post(section, length)) {
                pendingSection = section;
                pendingLength = length;
            }
        }

        private final MemorySegment packet = Arena.ofAuto().allocate(PKT_LENGTH, 8);
        /** The granted receive buffer, for the switch's thread to write frames with their header into. */
        private final org.agrona.concurrent.UnsafeBuffer receiveView = new org.agrona.concurrent.UnsafeBuffer(new byte[0]);

        /**
         * On the switch's thread: writes one frame (and, for a guest using it, its header) into a free receive
         * section and posts it, as {@link #toGuest} does for queued ones, after posting the frames queued before
         * it. False, with nothing written, when the agent holds the ring, frames are still queued, or the guest
         * has no free section, ring space or link: the caller queues it.
         */
        boolean tryDeliver(org.agrona.DirectBuffer frame, int offset, int length, PacketMeta meta) {
            if (!txLock.tryLock()) {
                return false;
            }
            try {
                if (direct != this || !linkUp) {
                    return false;
                }
                // The agent's drain loop (doWork), here: the queued frames go first.
                while (pendingSection < 0 && freeCount > 0 && ctx.tx().hasSpaceFor(0, PKT_LENGTH)
                    && egress.poll(toGuest, 1) > 0) {
                    // one frame at a time, as doWork does
                }
                if (pendingSection >= 0 || freeCount == 0 || !egress.isEmpty() || !ctx.tx().hasSpaceFor(0, PKT_LENGTH)) {
                    return false;
                }
                int hdr = vnetHdr ? FRAME_HDR_LENGTH : 0;
                int size = sectionSize;
                if (hdr + length > size) {
                    count(NvspReason.OVERSIZE); // the switch enforces the MTU; counted, never silent
                    return true;
                }
                if (hdr == 0 && (meta.flags != 0 || meta.gsoType != 0)) {
                    count(NvspReason.UNFINISHED); // as toGuest: only while the guest's caps change
                    return true;
                }
                int section = free[--freeCount];
                outstanding[section] = true;
                int at = section * size;
                if (hdr != 0) {
                    meta.writeTo(receiveView, at, hdr);
                }
                receiveView.putBytes(at + hdr, frame, offset, length);
                if (!post(section, hdr + length)) {
                    pendingSection = section; // the guest's doorbell wakes the agent, which posts it
                    pendingLength = hdr + length;
                }
                return true;
            } catch (RingException e) {
                ctx.fault(e.getMessage()); // a guest that corrupted its ring: the agent resets the channel
                return true;
            } finally {
                txLock.unlock();
            }
        }

        private boolean post(int section, int length) {
            u32(packet, 0, MSG_SEND_RNDIS_PKT);
            u32(packet, PKT_CHANNEL_TYPE_OFFSET, 0);
            u32(packet, PKT_SECTION_OFFSET, section);
            u32(packet, PKT_LENGTH_OFFSET, length);
            if (ctx.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, section,
                packet, 0, PKT_LENGTH)) {
                return true;
            }
            ctx.requestSpace(VmbusRing.spaceFor(0, PKT_LENGTH));
            return false;
        }

        @Override
        public void onClose() {
            synchronized (NetVsp.this) {
                FrameRing[] cur = ingress;
                FrameRing[] next = Arrays.stream(cur).filter(r -> r != in).toArray(FrameRing[]::new);
                ingress = next;
            }
            if (isPrimary) {
                txLock.lock(); // the switch's thread is not writing into this guest, and will not again
                try {
                    direct = null;
                } finally {
                    txLock.unlock();
                }
                primary = null;
                recvBase = -1;
                sendBase = -1;
                negotiated = 0;
                vnetHdr = false;
                sectionSize = plainSectionSize;
                setGuestOffloads(0);
                portDown();
            }
        }
    }
}
