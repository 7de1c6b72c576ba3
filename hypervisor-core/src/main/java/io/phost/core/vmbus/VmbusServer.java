package io.phost.core.vmbus;

import static io.phost.core.vmbus.ChannelMessage.*;

import io.phost.core.sys.CpuAffinity;
import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.UnixSocket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import org.agrona.concurrent.AgentRunner;

/**
 * The host end of one partition's VMBus connection: answers channel-management messages from the guest
 * on the control socket (after {@code PartitionHost} authenticated the attach), owns the partition's
 * offers, GPADLs and open channels, and starts one {@link ChannelAgent} per open channel.
 *
 * <p>Threading: {@link #run} is the partition's control thread; it handles every message and every
 * channel reset. {@link #offer}, {@link #rescind} and {@link #close} may be called from other threads;
 * all state changes hold this object's monitor. Channel agents never take it: they report faults through
 * a queue the control thread drains.
 *
 * <p>Every guest-written value is checked: message lengths and types, relids, GPADL page counts (against
 * guest memory and per-partition limits, before anything is allocated), pfns, ring geometry, descriptor
 * types of passed fds; messages beyond the rate limit are dropped and counted as faults.
 *
 * <p>Over ~600 lines because it is one state machine (Hyper-V's channel-management protocol) whose messages
 * all touch the same offer/GPADL/channel tables under one monitor; split, the tables would need sharing.
 */
public final class VmbusServer implements Runnable, AutoCloseable {
    /** Limits applied to the guest; defaults suit tests and the appliance. */
    public record Limits(int messagesPerSecond, int messageBurst, int maxGpadls, long maxGrantedPages,
                         int maxPendingGpadls, boolean doubleMapRings) {
        public static Limits defaults() {
            return new Limits(2_000, 512, 1_024, 1L << 22, 16, true);
        }
    }

    /** What the server reports to its owner (the partition). */
    public interface Listener {
        /** A guest fault: bad ring, bad message, flood. The channel (if any) has been reset. */
        void fault(String reason);

        /** The guest closed the control socket or sent garbage it cannot recover from. */
        void disconnected(String why);
    }

    /** One offered channel (primary or sub-channel) under the relid the guest knows it by. */
    public record Offer(int relid, VirtualServiceProvider vsp, int subChannelIndex) {}

    private static final System.Logger LOG = System.getLogger("phost.vmbus");

    private final String partition;
    private final List<Integer> agentCpus;
    private final PollingMode polling;
    private final UnixSocket socket;
    private final int memfd;
    private final GuestMemory memory;
    private final Limits limits;
    private final Listener listener;
    private final Arena arena = Arena.ofAuto();
    private final MemorySegment in = arena.allocate(MAX_LENGTH + 16, 8);
    private final MemorySegment out = arena.allocate(MAX_LENGTH, 8);
    private final int[] fds = new int[UnixSocket.MAX_FDS];

    private final List<VirtualServiceProvider> services = new ArrayList<>();
    private final Map<Integer, Offer> offers = new LinkedHashMap<>();
    private final Map<Integer, HostChannel> open = new HashMap<>();
    private final Map<Integer, Gpadl> gpadls = new HashMap<>();
    private final Map<Integer, long[]> pendingGpadls = new HashMap<>();
    private final Map<Integer, Gpadl> pendingMeta = new HashMap<>();
    private final Map<Integer, Integer> pendingFill = new HashMap<>();
    private final Map<VirtualServiceProvider, Integer> subChannelsOffered = new HashMap<>();
    private final ConcurrentLinkedQueue<Runnable> tasks = new ConcurrentLinkedQueue<>();
    private long grantedPages;
    private int nextRelid = 1;
    private boolean offersRequested;
    private volatile boolean closed;
    private final int version;

    private double tokens;
    private long lastRefill = System.nanoTime();
    private long floodDrops;

    /**
     * @param memfd   the guest memory memfd (the server does not close it)
     * @param memory  the host mapping of it
     * @param version the protocol version negotiated at attach
     */
    public VmbusServer(String partition, UnixSocket socket, int memfd, GuestMemory memory, int version, Limits limits,
                       List<Integer> agentCpus, Listener listener) {
        this(partition, socket, memfd, memory, version, limits, agentCpus, PollingMode.ADAPTIVE, listener);
    }

    /** As above, with the host's {@code polling} setting for the channel agents' idle strategies. */
    public VmbusServer(String partition, UnixSocket socket, int memfd, GuestMemory memory, int version, Limits limits,
                       List<Integer> agentCpus, PollingMode polling, Listener listener) {
        this.partition = partition;
        this.polling = polling;
        this.agentCpus = List.copyOf(agentCpus);
        this.socket = socket;
        this.memfd = memfd;
        this.memory = memory;
        this.version = version;
        this.limits = limits;
        this.listener = listener;
        this.tokens = limits.messageBurst();
    }

    public String partition() {
        return partition;
    }

    public GuestMemory memory() {
        return memory;
    }

    public int version() {
        return version;
    }

    // ------------------------------------------------------------------ offers (any thread)

    /** Adds a device; offered now if the guest already asked for offers (hot-add), else on REQUESTOFFERS. */
    public synchronized void offer(VirtualServiceProvider vsp) {
        services.add(vsp);
        Offer o = new Offer(nextRelid++, vsp, 0);
        offers.put(o.relid(), o);
        if (offersRequested) {
            sendOffer(o);
        }
    }

    /** Hot-remove: closes the device's channels and sends RESCIND_CHANNELOFFER for each of its relids. */
    public synchronized void rescind(VirtualServiceProvider vsp) {
        services.remove(vsp);
        subChannelsOffered.remove(vsp);
        for (Offer o : List.copyOf(offers.values())) {
            if (o.vsp() == vsp) {
                closeChannel(o.relid());
                offers.remove(o.relid());
                sendRelid(RESCIND_CHANNELOFFER, o.relid());
            }
        }
    }

    synchronized void offerSubChannels(VirtualServiceProvider vsp, int count) {
        int have = subChannelsOffered.getOrDefault(vsp, 0);
        for (int i = have + 1; i <= count; i++) {
            Offer o = new Offer(nextRelid++, vsp, i);
            offers.put(o.relid(), o);
            if (offersRequested) {
                sendOffer(o);
            }
        }
        subChannelsOffered.put(vsp, Math.max(have, count));
    }

    /** Offers and whether each is open (for status). */
    public synchronized int openChannels() {
        return open.size();
    }

    public synchronized List<Offer> offers() {
        return List.copyOf(offers.values());
    }

    public synchronized Gpadl gpadl(int handle) {
        return gpadls.get(handle);
    }

    /** The open channel for {@code relid}'s context, or null (tests and diagnostics). */
    public synchronized ChannelContext channel(int relid) {
        return open.get(relid);
    }

    // ------------------------------------------------------------------ control thread

    @Override
    public void run() {
        try {
            while (!closed) {
                Runnable t;
                while ((t = tasks.poll()) != null) {
                    t.run();
                }
                long n;
                try {
                    n = socket.receive(in, fds, 100);
                } catch (NativeException e) {
                    if (closed) {
                        break;
                    }
                    listener.fault("control socket: " + e.getMessage());
                    continue;
                }
                if (n == 0) {
                    continue;
                }
                if (n < 0) {
                    break;
                }
                if (!admit()) {
                    closeFds();
                    continue;
                }
                try {
                    handle((int) n);
                } catch (VmbusProtocolException | GuestMemoryException | RingException e) {
                    listener.fault(e.getMessage());
                } catch (RuntimeException e) {
                    // anything else a message provoked is still that guest's fault, never the host's end
                    listener.fault("control message rejected: " + e);
                } finally {
                    closeFds();
                }
            }
        } catch (RuntimeException e) {
            if (!closed) {
                listener.disconnected("control thread failed: " + e);
            }
        } finally {
            if (!closed) {
                close();
                listener.disconnected("guest closed the control socket");
            }
        }
    }

    /** Token bucket over control messages: a flooding guest loses messages and accumulates faults. */
    private boolean admit() {
        long now = System.nanoTime();
        tokens = Math.min(limits.messageBurst(), tokens + (now - lastRefill) * limits.messagesPerSecond() / 1e9);
        lastRefill = now;
        if (tokens >= 1) {
            tokens -= 1;
            return true;
        }
        if (floodDrops++ % 1000 == 0) {
            listener.fault("control message flood: over " + limits.messagesPerSecond() + " msg/s (" + floodDrops + " dropped)");
        }
        return false;
    }

    private void closeFds() {
        for (int i = 0; i < fds.length; i++) {
            if (fds[i] >= 0) {
                Fd.close(fds[i]);
                fds[i] = -1;
            }
        }
    }

    private int fdCount() {
        int c = 0;
        for (int f : fds) {
            if (f >= 0) {
                c++;
            }
        }
        return c;
    }

    private synchronized void handle(int length) {
        if (length < HEADER_LENGTH || length > MAX_LENGTH) {
            throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_LENGTH, 0, length + " bytes");
        }
        int type = ChannelMessage.type(in);
        if (type != OPENCHANNEL && fdCount() > 0) {
            throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_FDS, type, fdCount() + " unexpected descriptors");
        }
        switch (type) {
            case REQUESTOFFERS -> {
                offersRequested = true;
                for (Offer o : offers.values()) {
                    sendOffer(o);
                }
                header(out, ALLOFFERS_DELIVERED, HEADER_LENGTH);
                send(HEADER_LENGTH);
            }
            case OPENCHANNEL -> openChannel(length);
            case CLOSECHANNEL -> {
                need(type, length, RELID_LENGTH);
                int relid = u32(in, RELID);
                if (!open.containsKey(relid)) {
                    throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RELID, type, "relid " + relid + " is not open");
                }
                closeChannel(relid);
            }
            case GPADL_HEADER -> gpadlHeader(length);
            case GPADL_BODY -> gpadlBody(length);
            case GPADL_TEARDOWN -> {
                need(type, length, GPADL_TEARDOWN_LENGTH);
                int handle = u32(in, GPADL_HANDLE);
                teardown(handle);
            }
            case 13 /* RELID_RELEASED: the guest acknowledges a rescind */ -> { }
            case UNLOAD -> {
                for (Integer relid : List.copyOf(open.keySet())) {
                    closeChannel(relid);
                }
                for (Gpadl g : List.copyOf(gpadls.values())) {
                    memory.revoke(g);
                }
                gpadls.clear();
                pendingGpadls.clear();
                pendingMeta.clear();
                pendingFill.clear();
                grantedPages = 0;
                offersRequested = false;
                header(out, UNLOAD_RESPONSE, HEADER_LENGTH);
                send(HEADER_LENGTH);
            }
            default -> throw new VmbusProtocolException(VmbusProtocolException.Reason.UNEXPECTED, type, "not accepted from a guest");
        }
    }

    private static void need(int type, int length, int need) {
        if (length < need) {
            throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_LENGTH, type, length + " bytes, need " + need);
        }
    }

    // ------------------------------------------------------------------ GPADLs

    private void gpadlHeader(int length) {
        need(GPADL_HEADER, length, GPADL_HEADER_PFNS);
        int relid = u32(in, RELID);
        int handle = u32(in, GPADL_HANDLE);
        int rangeCount = u16(in, GPADL_RANGECOUNT);
        int rangeBuflen = u16(in, GPADL_RANGE_BUFLEN);
        int byteCount = u32(in, GPADL_BYTE_COUNT);
        int byteOffset = u32(in, GPADL_BYTE_OFFSET);
        try {
            if (!offers.containsKey(relid)) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RELID, GPADL_HEADER, "relid " + relid);
            }
            if (handle == 0 || gpadls.containsKey(handle) || pendingGpadls.containsKey(handle)) {
                throw new GuestMemoryException(GuestMemoryException.Reason.BAD_GPADL, 0, "handle " + Integer.toUnsignedString(handle) + " zero or in use");
            }
            if (rangeCount != 1 || byteOffset < 0 || byteOffset >= GuestMemory.PAGE_SIZE || byteCount <= 0) {
                throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, 0,
                    "rangecount=" + rangeCount + " byte_offset=" + Integer.toUnsignedString(byteOffset) + " byte_count=" + Integer.toUnsignedString(byteCount));
            }
            long pages = ((long) byteOffset + byteCount + GuestMemory.PAGE_SIZE - 1) / GuestMemory.PAGE_SIZE;
            // bound the allocation below by guest memory and the partition limits, never by the message
            if (pages > memory.pages() || grantedPages + pages > limits.maxGrantedPages()) {
                throw new GuestMemoryException(GuestMemoryException.Reason.TOO_MANY, 0,
                    pages + " pages (guest has " + memory.pages() + ", granted " + grantedPages + ")");
            }
            if (rangeBuflen != 8 + 8 * pages) {
                throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, 0, "range_buflen " + rangeBuflen + " for " + pages + " pages");
            }
            if (gpadls.size() + pendingGpadls.size() >= limits.maxGpadls() || pendingGpadls.size() >= limits.maxPendingGpadls()) {
                throw new GuestMemoryException(GuestMemoryException.Reason.TOO_MANY, 0, "too many GPADLs");
            }
            long[] pfns = new long[(int) pages];
            int here = (int) Math.min(pages, (length - GPADL_HEADER_PFNS) / 8);
            for (int i = 0; i < here; i++) {
                pfns[i] = checkPfn(u64(in, GPADL_HEADER_PFNS + 8L * i));
            }
            Gpadl meta = new Gpadl(handle, relid, byteOffset, byteCount, pfns);
            if (here == pages) {
                created(meta);
            } else {
                pendingGpadls.put(handle, pfns);
                pendingMeta.put(handle, meta);
                pendingFill.put(handle, here);
            }
        } catch (GuestMemoryException | VmbusProtocolException e) {
            listener.fault(ChannelMessage.name(GPADL_HEADER) + ": " + e.getMessage()); // recorded before the guest hears
            gpadlCreated(relid, handle, STATUS_UNSUCCESSFUL);
        }
    }

    private void gpadlBody(int length) {
        need(GPADL_BODY, length, BODY_PFNS);
        int handle = u32(in, BODY_GPADL);
        long[] pfns = pendingGpadls.get(handle);
        if (pfns == null) {
            throw new GuestMemoryException(GuestMemoryException.Reason.BAD_GPADL, 0, "GPADL_BODY for unknown handle " + Integer.toUnsignedString(handle));
        }
        Gpadl meta = pendingMeta.get(handle);
        try {
            int fill = pendingFill.get(handle);
            int here = Math.min(pfns.length - fill, (length - BODY_PFNS) / 8);
            for (int i = 0; i < here; i++) {
                pfns[fill + i] = checkPfn(u64(in, BODY_PFNS + 8L * i));
            }
            fill += here;
            if (fill == pfns.length) {
                pendingGpadls.remove(handle);
                pendingMeta.remove(handle);
                pendingFill.remove(handle);
                created(meta);
            } else {
                pendingFill.put(handle, fill);
            }
        } catch (GuestMemoryException e) {
            pendingGpadls.remove(handle);
            pendingMeta.remove(handle);
            pendingFill.remove(handle);
            listener.fault(ChannelMessage.name(GPADL_BODY) + ": " + e.getMessage());
            gpadlCreated(meta.relid(), handle, STATUS_UNSUCCESSFUL);
        }
    }

    private long checkPfn(long pfn) {
        if (!memory.validPfn(pfn)) {
            throw new GuestMemoryException(GuestMemoryException.Reason.OUT_OF_RANGE, pfn * GuestMemory.PAGE_SIZE, "pfn " + pfn + " of " + memory.pages());
        }
        return pfn;
    }

    private void created(Gpadl g) {
        gpadls.put(g.handle(), g);
        grantedPages += g.pageCount();
        memory.grant(g);
        gpadlCreated(g.relid(), g.handle(), STATUS_OK);
    }

    private void gpadlCreated(int relid, int handle, int status) {
        header(out, GPADL_CREATED, GPADL_CREATED_LENGTH);
        u32(out, RELID, relid);
        u32(out, GPADL_HANDLE, handle);
        u32(out, GPADL_CREATED_STATUS, status);
        send(GPADL_CREATED_LENGTH);
    }

    private void teardown(int handle) {
        Gpadl g = gpadls.get(handle);
        if (g == null) {
            throw new GuestMemoryException(GuestMemoryException.Reason.BAD_GPADL, 0, "GPADL_TEARDOWN of unknown handle " + Integer.toUnsignedString(handle));
        }
        for (HostChannel c : List.copyOf(open.values())) {
            if (c.ringGpadl == g) {
                closeChannel(c.relid());
                listener.fault("GPADL " + handle + " torn down while its channel " + c.relid() + " was open; channel closed");
            }
        }
        gpadls.remove(handle);
        grantedPages -= g.pageCount();
        memory.revoke(g);
        header(out, GPADL_TORNDOWN, TORNDOWN_LENGTH);
        u32(out, TORNDOWN_GPADL, handle);
        send(TORNDOWN_LENGTH);
    }

    // ------------------------------------------------------------------ channels

    private void openChannel(int length) {
        int relid = length >= RELID_LENGTH ? u32(in, RELID) : 0;
        int openId = length >= OPEN_GPADL ? u32(in, OPEN_OPENID) : 0;
        int status = STATUS_UNSUCCESSFUL;
        RingMapping rxMap = null;
        RingMapping txMap = null;
        try {
            need(OPENCHANNEL, length, OPEN_LENGTH);
            Offer offer = offers.get(relid);
            if (offer == null || open.containsKey(relid)) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RELID, OPENCHANNEL, "relid " + relid + (offer == null ? " not offered" : " already open"));
            }
            if (fdCount() != 2 || fds[0] < 0 || fds[1] < 0 || !HostChannel.isEventFd(fds[0]) || !HostChannel.isEventFd(fds[1])) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_FDS, OPENCHANNEL, "need two eventfds");
            }
            int handle = u32(in, OPEN_GPADL);
            Gpadl g = gpadls.get(handle);
            if (g == null || g.relid() != relid || g.byteOffset() != 0) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RING, OPENCHANNEL, "ring GPADL " + Integer.toUnsignedString(handle) + " unknown or not of relid " + relid);
            }
            for (HostChannel c : open.values()) {
                if (c.ringGpadl == g) {
                    throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RING, OPENCHANNEL, "ring GPADL already in use");
                }
            }
            int downstream = u32(in, OPEN_DOWNSTREAM_OFFSET);
            int pages = g.pageCount();
            if (downstream < 2 || downstream > pages - 2) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RING, OPENCHANNEL, "downstream offset " + Integer.toUnsignedString(downstream) + " of " + pages + " pages");
            }
            HostChannel.makeNonBlocking(fds[0]);
            HostChannel.makeNonBlocking(fds[1]);
            rxMap = RingMapping.map(memfd, g.pfns(), 0, downstream, limits.doubleMapRings());
            txMap = RingMapping.map(memfd, g.pfns(), downstream, pages - downstream, limits.doubleMapRings());
            MemorySegment userData = Arena.ofAuto().allocate(OPEN_USERDATA_LENGTH);
            MemorySegment.copy(in, OPEN_USERDATA, userData, 0, OPEN_USERDATA_LENGTH);
            EventFd fromGuest = EventFd.adopt(fds[0]);
            EventFd toGuest = EventFd.adopt(fds[1]);
            fds[0] = -1;
            fds[1] = -1;
            HostChannel c;
            try {
                c = new HostChannel(this, offer, g, rxMap, txMap, fromGuest, toGuest, userData);
            } catch (RuntimeException e) {
                fromGuest.close();
                toGuest.close();
                throw e;
            }
            memory.markRing(g, true);
            rxMap = null;
            txMap = null;
            try {
                c.handler = offer.vsp().open(c);
            } catch (RuntimeException e) {
                memory.markRing(g, false);
                c.shutdown();
                throw new VmbusProtocolException(VmbusProtocolException.Reason.BAD_RELID, OPENCHANNEL, "VSP " + offer.vsp().name() + " refused: " + e.getMessage());
            }
            String role = offer.vsp().name() + "-" + partition + "-q" + offer.subChannelIndex();
            c.rx.publishReadIndexLazily(offer.vsp().lazyReadIndex()); // before the agent thread starts
            c.agent = new ChannelAgent(role, c.rx, c.tx, c.handler, reason -> tasks.add(() -> channelFault(c, reason)));
            c.idle = offer.vsp().idleStrategy(c.rx, c.fromGuest, polling);
            if (c.idle instanceof DoorbellIdleStrategy d) {
                io.phost.core.sys.DeviceWait device = c.handler.deviceWait();
                if (device != null) {
                    d.sleepThrough(device);
                }
            }
            c.runner = new AgentRunner(c.idle, t -> { }, null, c.agent);
            open.put(relid, c);
            AgentRunner.startOnThread(c.runner, r -> {
                Thread t = new Thread(() -> {
                    pinAgent(role);
                    r.run();
                }, role);
                t.setDaemon(true);
                return t;
            });
            status = STATUS_OK;
        } catch (VmbusProtocolException | GuestMemoryException | RingException | NativeException e) {
            listener.fault(e.getMessage()); // recorded before the guest hears the refusal
        } finally {
            if (rxMap != null) {
                rxMap.close();
            }
            if (txMap != null) {
                txMap.close();
            }
            header(out, OPENCHANNEL_RESULT, OPEN_RESULT_LENGTH);
            u32(out, RELID, relid);
            u32(out, OPEN_OPENID, openId);
            u32(out, OPEN_RESULT_STATUS, status);
            send(OPEN_RESULT_LENGTH);
        }
    }

    private void closeChannel(int relid) {
        HostChannel c = open.remove(relid);
        if (c != null) {
            c.shutdown();
            memory.markRing(c.ringGpadl, false);
        }
    }

    /**
     * A channel's ring or device protocol failed: record it, close the channel, rescind its relid and
     * offer the device again under a new relid so a recovering guest can reopen it (a channel reset).
     */
    synchronized void channelFault(HostChannel c, String reason) {
        if (open.get(c.relid()) != c) {
            return;
        }
        listener.fault(c.offer.vsp().name() + " relid " + c.relid() + ": " + reason);
        closeChannel(c.relid());
        Offer old = offers.remove(c.relid());
        if (closed) {
            return;
        }
        sendRelid(RESCIND_CHANNELOFFER, c.relid());
        if (old != null && services.contains(old.vsp())) {
            Offer again = new Offer(nextRelid++, old.vsp(), old.subChannelIndex());
            offers.put(again.relid(), again);
            if (offersRequested) {
                sendOffer(again);
            }
        }
    }

    // ------------------------------------------------------------------ sending

    private void sendOffer(Offer o) {
        MemorySegment m = Arena.ofAuto().allocate(OFFER_LENGTH, 8);
        header(m, OFFERCHANNEL, OFFER_LENGTH);
        guid(m, OFFER_IF_TYPE, o.vsp().interfaceType());
        guid(m, OFFER_IF_INSTANCE, o.vsp().instance());
        byte[] ud = o.vsp().offerUserData();
        MemorySegment.copy(ud, 0, m, java.lang.foreign.ValueLayout.JAVA_BYTE, OFFER_USER_DEF, Math.min(ud.length, OFFER_USER_DEF_LENGTH));
        u16(m, OFFER_SUB_CHANNEL_INDEX, o.subChannelIndex());
        u32(m, OFFER_CHILD_RELID, o.relid());
        u32(m, OFFER_CONNECTION_ID, o.relid());
        sendQuietly(m, OFFER_LENGTH);
    }

    private void sendRelid(int type, int relid) {
        MemorySegment m = Arena.ofAuto().allocate(RELID_LENGTH, 8);
        header(m, type, RELID_LENGTH);
        u32(m, RELID, relid);
        sendQuietly(m, RELID_LENGTH);
    }

    private void send(int length) {
        sendQuietly(out, length);
    }

    private void sendQuietly(MemorySegment m, int length) {
        if (closed) {
            return;
        }
        try {
            socket.send(m, length);
        } catch (NativeException e) {
            // the guest went away; the control thread notices on its next receive
        }
    }

    /** Closes every channel, revokes every GPADL and closes the control socket. Idempotent. */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
            for (Integer relid : List.copyOf(open.keySet())) {
                closeChannel(relid);
            }
            for (Gpadl g : gpadls.values()) {
                memory.revoke(g);
            }
            gpadls.clear();
        }
        socket.close();
    }

    public boolean isClosed() {
        return closed;
    }

    /** Runs on a new agent thread: keeps it on the configured CPUs, or logs why it cannot and runs anywhere. */
    private void pinAgent(String role) {
        if (agentCpus.isEmpty()) {
            return;
        }
        try {
            CpuAffinity.pin(agentCpus);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING,
                "agent not pinned role=" + role + " cpus=" + agentCpus + " reason=\"" + e.getMessage() + "\"");
        }
    }
}
