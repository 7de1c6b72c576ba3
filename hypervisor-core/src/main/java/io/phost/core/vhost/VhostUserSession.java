package io.phost.core.vhost;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.UnixSocket;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

import static io.phost.core.vhost.VhostUserDescriptor.*;

/**
 * One front-end connection: reads a message, checks it ({@link VhostUserMessage}), applies it to the
 * device state (features, memory table, vrings) and replies. Runs on the backend's control thread; queue
 * workers are started and stopped from here, so memory and ring changes never race a running queue.
 * Every descriptor received is either adopted or closed before the next message.
 *
 * <p>Why one class of about 690 lines: it is one handler per vhost-user request, all changing the same device,
 * memory and ring state on the one control thread; the message checks are already in {@link VhostUserMessage}.
 */
final class VhostUserSession implements AutoCloseable {
    private static final int READ_TIMEOUT_MILLIS = 500;
    private static final int PAYLOAD_TIMEOUT_MILLIS = 5_000;

    private final String name;
    private final UnixSocket socket;
    private final VhostUserDevice device;
    private final Consumer<String> onQueueError;
    private final List<Integer> cpus;
    private final io.phost.core.vmbus.PollingMode polling;
    private final MemorySegment in = Arena.ofAuto().allocate(HEADER_LENGTH + MAX_PAYLOAD, 8);
    private final MemorySegment out = Arena.ofAuto().allocate(HEADER_LENGTH + MAX_PAYLOAD, 8);
    private final VhostUserMessage msg = new VhostUserMessage(in);
    private final int[] fds = new int[UnixSocket.MAX_FDS];
    private final Vring[] rings;
    private final long protocolOffered;
    private GuestMemory memory = GuestMemory.empty();
    /**
     * ADD_MEM_REG count per region (by guest-physical address): QEMU's vhost-user-net sends every region once
     * per queue pair (one vhost device each, all on this socket), and REM_MEM_REG as often; a region goes
     * when the last of them removes it.
     */
    private final java.util.Map<Long, Integer> regionAdds = new java.util.HashMap<>();
    private InflightRegion inflight;
    /** SET_LOG_BASE's mapping (null before); queues log into it while VHOST_F_LOG_ALL is negotiated. */
    private DirtyLog dirtyLog;
    /** The back-end channel (SET_BACKEND_REQ_FD), or null; written from other threads by {@link #sendConfigChange}. */
    private volatile UnixSocket backendChannel;
    private final MemorySegment backendOut = Arena.ofAuto().allocate(HEADER_LENGTH, 8);
    private long ackedFeatures;
    private long ackedProtocol;
    private int status;

    VhostUserSession(String name, UnixSocket socket, VhostUserDevice device, List<Integer> cpus, Consumer<String> onQueueError) {
        this(name, socket, device, cpus, io.phost.core.vmbus.PollingMode.EFFICIENCY, onQueueError);
    }

    /** As above; {@code polling}: how queue workers of polling handlers wait for requests ({@link VringPoller}). */
    VhostUserSession(String name, UnixSocket socket, VhostUserDevice device, List<Integer> cpus,
                     io.phost.core.vmbus.PollingMode polling, Consumer<String> onQueueError) {
        this.cpus = cpus;
        this.polling = java.util.Objects.requireNonNull(polling, "polling");
        this.name = name;
        this.socket = socket;
        this.device = device;
        this.onQueueError = onQueueError;
        this.protocolOffered = PROTOCOL_FEATURES | (device.tracksInflight() ? 1L << PF_INFLIGHT_SHMFD : 0)
            | (device.announces() ? 1L << PF_RARP : 0);
        int n = Math.max(1, Math.min(device.maxQueues(), 256));
        this.rings = new Vring[n];
        for (int i = 0; i < n; i++) {
            rings[i] = new Vring(i);
        }
    }

    int runningQueues() {
        int n = 0;
        for (Vring r : rings) {
            if (r.running() && r.error == null) {
                n++;
            }
        }
        return n;
    }

    /** Reads and handles one message; false when the front-end disconnected. */
    boolean step() {
        long r = socket.readFully(in, 0, HEADER_LENGTH, fds, READ_TIMEOUT_MILLIS);
        if (r == 0) {
            return true;
        }
        if (r < 0) {
            return false;
        }
        try {
            int size = msg.parseHeader();
            if (size > 0) {
                int[] extra = new int[UnixSocket.MAX_FDS];
                long p = socket.readFully(in, HEADER_LENGTH, size, extra, PAYLOAD_TIMEOUT_MILLIS);
                for (int f : extra) {
                    Fd.close(f);
                }
                if (p <= 0) {
                    throw new VhostUserException(VhostUserException.Reason.BAD_SIZE,
                        msg.request() + " announced " + size + " payload bytes that never came");
                }
            }
            int n = 0;
            while (n < fds.length && fds[n] >= 0) {
                n++;
            }
            msg.checkShape(n);
            handle(msg.request(), n);
        } finally {
            closeUnadopted();
        }
        return true;
    }

    private void closeUnadopted() {
        for (int i = 0; i < fds.length; i++) {
            Fd.close(fds[i]);
            fds[i] = -1;
        }
    }

    /** Takes ownership of received descriptor {@code i} (so it is not closed after the message). */
    private int adopt(int i) {
        int f = fds[i];
        fds[i] = -1;
        return f;
    }

    private void handle(VhostUserRequest req, int nfds) {
        switch (req) {
            case GET_FEATURES -> replyU64(offeredFeatures());
            case SET_FEATURES -> setFeatures(msg.u64(0));
            case SET_OWNER -> ack();
            case RESET_OWNER, RESET_DEVICE -> {
                resetRings();
                ackedFeatures = 0;
                status = 0;
                ack();
            }
            case GET_PROTOCOL_FEATURES -> replyU64(protocolOffered);
            case SET_PROTOCOL_FEATURES -> {
                long v = msg.u64(0);
                if ((v & ~protocolOffered) != 0) {
                    throw new VhostUserException(VhostUserException.Reason.BAD_FEATURES,
                        "SET_PROTOCOL_FEATURES 0x" + Long.toHexString(v) + " has bits not offered (0x" + Long.toHexString(protocolOffered) + ")");
                }
                ackedProtocol = v;
                ack();
            }
            case GET_QUEUE_NUM -> replyU64(Math.min(device.queueNum(), rings.length));
            case GET_MAX_MEM_SLOTS -> replyU64(MAX_MEM_SLOTS);
            case SET_MEM_TABLE -> setMemTable(nfds);
            case ADD_MEM_REG -> addMemRegion();
            case REM_MEM_REG -> removeMemRegion();
            case SET_VRING_NUM -> {
                Vring v = idleRing(msg.u32(0), req);
                int size = msg.u32(4);
                SplitVirtqueue.checkSize(v.index, size);
                v.size = size;
                ack();
            }
            case SET_VRING_ADDR -> {
                Vring v = ring(msg.u32(0), req);
                long descU = msg.u64(8);
                long usedU = msg.u64(16);
                long availU = msg.u64(24);
                long logGpa = (msg.u32(4) & VRING_F_LOG) != 0 ? msg.u64(32) : -1;
                if (v.running()) {
                    // QEMU turns used-ring logging on and off on running rings as migration starts and ends.
                    if (descU != v.descUser || usedU != v.usedUser || availU != v.availUser) {
                        throw new VhostUserException(VhostUserException.Reason.BAD_STATE, req + " moves running queue " + v.index);
                    }
                    v.stop();
                    v.usedLogGpa = logGpa;
                    tryStart(v);
                } else {
                    v.descUser = descU;
                    v.usedUser = usedU;
                    v.availUser = availU;
                    v.usedLogGpa = logGpa;
                    v.addressed = true;
                }
                ack();
            }
            case SET_LOG_BASE -> setLogBase(nfds);
            case SET_LOG_FD -> {
                ack(); // the fd (closed after the message) would tell QEMU of a log resize we never ask for
            }
            case SET_VRING_BASE -> {
                Vring v = idleRing(msg.u32(0), req);
                int base = msg.u32(4);
                if (!packed() && Integer.compareUnsigned(base, 0xFFFF) > 0) {
                    throw new VhostUserException(VhostUserException.Reason.BAD_STATE,
                        "SET_VRING_BASE queue " + v.index + " base " + Integer.toUnsignedString(base) + " above 65535 (split rings)");
                }
                v.base = base;
                ack();
            }
            case GET_VRING_BASE -> {
                Vring v = ring(msg.u32(0), req);
                v.stop();
                v.started = false;
                Fd.close(v.kickFd);
                v.kickFd = -1;
                reply(req, 8, v.index, v.base);
            }
            case SET_VRING_KICK -> {
                Vring v = ring(vringIndex(req), req);
                int fd = vringFd(req, nfds);
                v.stop();
                Fd.close(v.kickFd);
                v.kickFd = fd;
                v.started = true;
                if (!protocolFeaturesNegotiated()) {
                    v.enabled = true; // without PROTOCOL_FEATURES a ring is enabled as it starts
                }
                tryStart(v);
                ack();
            }
            case SET_VRING_CALL -> {
                Vring v = ring(vringIndex(req), req);
                int fd = vringFd(req, nfds);
                boolean wasRunning = v.running();
                v.stop();
                if (v.call != null) {
                    v.call.close();
                }
                v.call = fd < 0 ? null : EventFd.adopt(fd);
                if (wasRunning) {
                    tryStart(v);
                }
                if (v.call != null) {
                    // As libvhost-user: one call on the new fd. A completion signalled on the old fd after the
                    // front-end stopped reading it (QEMU swaps call fds while the guest sets up MSI-X, without
                    // waiting for a reply) would otherwise never interrupt the guest; a spurious call is harmless.
                    v.call.signal();
                }
                ack();
            }
            case SET_VRING_ERR -> {
                Vring v = ring(vringIndex(req), req);
                int fd = vringFd(req, nfds);
                if (v.err != null) {
                    v.err.close();
                }
                v.err = fd < 0 ? null : EventFd.adopt(fd);
                ack();
            }
            case SET_VRING_ENABLE -> {
                Vring v = ring(msg.u32(0), req);
                int on = msg.u32(4);
                if (on != 0 && on != 1) {
                    throw new VhostUserException(VhostUserException.Reason.BAD_STATE, "SET_VRING_ENABLE queue " + v.index + " value " + on);
                }
                v.enabled = on == 1;
                if (v.enabled) {
                    tryStart(v);
                } else {
                    v.stop();
                }
                ack();
            }
            case GET_INFLIGHT_FD -> getInflight();
            case SET_INFLIGHT_FD -> setInflight();
            case GET_CONFIG -> getConfig();
            case SET_CONFIG -> {
                // No writable config field is offered (no CONFIG_WCE): refuse, keeping the connection.
                msg.requireSize(CONFIG_HEADER);
                if (msg.needReply() && replyAckNegotiated()) {
                    reply(VhostUserRequest.SET_CONFIG, 8, 1L);
                }
            }
            case SET_STATUS -> {
                status = (int) (msg.u64(0) & 0xFF);
                ack();
            }
            case GET_STATUS -> replyU64(status);
            case SET_BACKEND_REQ_FD -> {
                UnixSocket old = backendChannel;
                int ch = adopt(0);
                // Non-blocking: a front-end that never reads its channel must not block whoever reports a config
                // change (the management thread for a link change); a full channel is a message not sent.
                Fd.setNonBlocking(ch);
                backendChannel = UnixSocket.adopt(ch);
                if (old != null) {
                    old.close();
                }
                ack();
            }
            case SEND_RARP -> {
                if ((ackedProtocol & (1L << PF_RARP)) == 0) {
                    throw new VhostUserException(VhostUserException.Reason.UNSUPPORTED_REQUEST, req + " without the RARP protocol feature");
                }
                long payload = msg.u64(0); // the guest's MAC in its first six bytes, in wire order
                long mac = 0;
                for (int i = 0; i < 6; i++) {
                    mac = mac << 8 | (payload >>> (8 * i) & 0xFF);
                }
                device.announce(mac);
                ack();
            }
            default -> throw new VhostUserException(VhostUserException.Reason.UNSUPPORTED_REQUEST,
                req + " (" + req.code + ") is not implemented by this back-end and its protocol feature was not offered");
        }
    }

    private boolean protocolFeaturesNegotiated() {
        return (ackedFeatures & (1L << F_PROTOCOL_FEATURES)) != 0;
    }

    private boolean replyAckNegotiated() {
        return (ackedProtocol & (1L << PF_REPLY_ACK)) != 0;
    }

    private long offeredFeatures() {
        return device.features() | TRANSPORT_FEATURES | (device.packedRings() ? 1L << F_RING_PACKED : 0);
    }

    private boolean packed() {
        return (ackedFeatures & (1L << F_RING_PACKED)) != 0;
    }

    private void setFeatures(long v) {
        long offered = offeredFeatures();
        if ((v & ~offered) != 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_FEATURES,
                "SET_FEATURES 0x" + Long.toHexString(v) + " has bits not offered: 0x" + Long.toHexString(v & ~offered));
        }
        boolean changed = v != ackedFeatures;
        if (((v ^ ackedFeatures) & (1L << F_LOG_ALL)) != 0) {
            System.getLogger("phost.vhost").log(System.Logger.Level.INFO, "vhost-user " + name + ": dirty logging "
                + ((v & (1L << F_LOG_ALL)) != 0 ? "on" + (dirtyLog == null ? " (no log yet)" : "") : "off"));
        }
        ackedFeatures = v;
        device.featuresAcked(v);
        if (changed) {
            restartRunning(); // EVENT_IDX / INDIRECT_DESC take effect on running rings
        }
        ack();
    }

    private void setMemTable(int nfds) {
        msg.requireSize(MEM_TABLE_HEADER);
        int n = msg.u32(0);
        if (n < 1 || n > MAX_REGIONS) {
            throw new VhostUserException(VhostUserException.Reason.BAD_REGION, "SET_MEM_TABLE with " + Integer.toUnsignedString(n) + " regions (1 to " + MAX_REGIONS + ")");
        }
        if (msg.size() != MEM_TABLE_HEADER + REGION_LENGTH * n) {
            throw new VhostUserException(VhostUserException.Reason.BAD_SIZE,
                "SET_MEM_TABLE payload " + msg.size() + " bytes for " + n + " regions, expected " + (MEM_TABLE_HEADER + REGION_LENGTH * n));
        }
        if (nfds != n) {
            throw new VhostUserException(VhostUserException.Reason.BAD_FD_COUNT, "SET_MEM_TABLE with " + n + " regions carried " + nfds + " descriptors");
        }
        List<GuestMemory.Region> mapped = new ArrayList<>(n);
        try {
            for (int i = 0; i < n; i++) {
                int at = MEM_TABLE_HEADER + REGION_LENGTH * i;
                mapped.add(GuestMemory.mapRegion(i, msg.u64(at + REGION_GPA_OFFSET), msg.u64(at + REGION_SIZE_OFFSET),
                    msg.u64(at + REGION_UADDR_OFFSET), msg.u64(at + REGION_MMAP_OFFSET), adopt(i)));
            }
        } catch (RuntimeException e) {
            mapped.forEach(GuestMemory::unmap); // a region failed: the ones mapped before it go too
            throw e;
        }
        GuestMemory next = GuestMemory.of(mapped); // unmaps them all itself when regions overlap
        List<Vring> wasRunning = stopAll();
        GuestMemory old = memory;
        memory = next;
        old.close();
        regionAdds.clear();
        mapped.forEach(r -> regionAdds.put(r.gpa(), 1));
        startAll(wasRunning);
        ack();
    }

    /**
     * SET_LOG_BASE (LOG_SHMFD): {u64 size, u64 offset} + the log's fd. Running rings stop and restart on the
     * new log (QEMU sends a larger one when guest memory grows), then the old one is unmapped. QEMU waits for
     * a reply with this request code whatever REPLY_ACK says.
     */
    private void setLogBase(int nfds) {
        msg.requireSize(16);
        if (nfds != 1) {
            throw new VhostUserException(VhostUserException.Reason.BAD_FD_COUNT, "SET_LOG_BASE carried " + nfds + " descriptors, expected 1");
        }
        DirtyLog next = DirtyLog.map(adopt(0), msg.u64(0), msg.u64(8));
        System.getLogger("phost.vhost").log(System.Logger.Level.INFO, "vhost-user " + name + ": dirty log of " + msg.u64(0)
            + " bytes mapped (migration); logging " + ((ackedFeatures & (1L << F_LOG_ALL)) != 0 ? "on" : "off until LOG_ALL"));
        List<Vring> wasRunning = stopAll();
        DirtyLog old = dirtyLog;
        dirtyLog = next;
        if (old != null) {
            old.close();
        }
        startAll(wasRunning);
        send(VhostUserRequest.SET_LOG_BASE, 0);
    }

    private void addMemRegion() {
        long gpa = msg.u64(8 + REGION_GPA_OFFSET);
        if (memory.contains(gpa, msg.u64(8 + REGION_SIZE_OFFSET), msg.u64(8 + REGION_UADDR_OFFSET), msg.u64(8 + REGION_MMAP_OFFSET))) {
            Fd.close(adopt(0)); // the same region again (another queue pair's vhost device): already mapped
            regionAdds.merge(gpa, 1, Integer::sum);
            ack();
            return;
        }
        if (memory.regionCount() >= MAX_MEM_SLOTS) {
            throw new VhostUserException(VhostUserException.Reason.BAD_REGION, "ADD_MEM_REG beyond " + MAX_MEM_SLOTS + " slots");
        }
        GuestMemory.Region r = GuestMemory.mapRegion(memory.regionCount(), msg.u64(8 + REGION_GPA_OFFSET), msg.u64(8 + REGION_SIZE_OFFSET),
            msg.u64(8 + REGION_UADDR_OFFSET), msg.u64(8 + REGION_MMAP_OFFSET), adopt(0));
        GuestMemory next = memory.with(new ArrayList<>(List.of(r)));
        List<Vring> wasRunning = stopAll();
        memory = next;
        regionAdds.put(gpa, 1);
        startAll(wasRunning);
        ack();
    }

    private void removeMemRegion() {
        long gpa = msg.u64(8 + REGION_GPA_OFFSET);
        Integer adds = regionAdds.get(gpa);
        if (adds != null && adds > 1 && memory.contains(gpa, msg.u64(8 + REGION_SIZE_OFFSET), msg.u64(8 + REGION_UADDR_OFFSET), msg.u64(8 + REGION_MMAP_OFFSET))) {
            regionAdds.put(gpa, adds - 1); // another queue pair's device still has it
            ack();
            return;
        }
        regionAdds.remove(gpa);
        List<GuestMemory.Region> removed = new ArrayList<>(1);
        GuestMemory next = memory.without(msg.u64(8 + REGION_GPA_OFFSET), msg.u64(8 + REGION_SIZE_OFFSET), removed);
        List<Vring> wasRunning = stopAll();
        memory = next;
        removed.forEach(GuestMemory::unmap);
        startAll(wasRunning);
        ack();
    }

    private boolean inflightNegotiated(VhostUserRequest req) {
        if ((ackedProtocol & (1L << PF_INFLIGHT_SHMFD)) == 0) {
            throw new VhostUserException(VhostUserException.Reason.UNSUPPORTED_REQUEST, req + " without the INFLIGHT_SHMFD protocol feature");
        }
        return true;
    }

    private void checkInflightPayload(VhostUserRequest req) {
        if (msg.size() < InflightRegion.MIN_PAYLOAD_LENGTH || msg.size() > InflightRegion.PAYLOAD_LENGTH) {
            throw new VhostUserException(VhostUserException.Reason.BAD_SIZE,
                req + " payload " + msg.size() + " bytes, expected " + InflightRegion.PAYLOAD_LENGTH);
        }
    }

    /** GET_INFLIGHT_FD: a fresh zeroed region for the front-end's queues, sent as an fd it keeps across our restarts. */
    private void getInflight() {
        inflightNegotiated(VhostUserRequest.GET_INFLIGHT_FD);
        checkInflightPayload(VhostUserRequest.GET_INFLIGHT_FD);
        int numQueues = msg.u16(InflightRegion.NUM_QUEUES_OFFSET);
        int queueSize = msg.u16(InflightRegion.QUEUE_SIZE_OFFSET);
        InflightRegion.Created c = InflightRegion.create(numQueues, queueSize, rings.length, packed());
        System.getLogger("phost.vhost").log(System.Logger.Level.INFO, "vhost-user " + name + ": inflight region for "
            + numQueues + " queues of " + queueSize + " (" + (packed() ? "packed" : "split") + " rings)");
        try {
            replaceInflight(c.region());
            MemorySegment p = out.asSlice(HEADER_LENGTH, InflightRegion.PAYLOAD_LENGTH);
            p.fill((byte) 0);
            p.set(ValueLayout.JAVA_LONG_UNALIGNED, InflightRegion.MMAP_SIZE_OFFSET, c.size());
            p.set(ValueLayout.JAVA_LONG_UNALIGNED, InflightRegion.MMAP_OFFSET_OFFSET, 0L);
            p.set(ValueLayout.JAVA_SHORT_UNALIGNED, InflightRegion.NUM_QUEUES_OFFSET, (short) numQueues);
            p.set(ValueLayout.JAVA_SHORT_UNALIGNED, InflightRegion.QUEUE_SIZE_OFFSET, (short) queueSize);
            send(VhostUserRequest.GET_INFLIGHT_FD, InflightRegion.PAYLOAD_LENGTH, c.fd());
        } finally {
            Fd.close(c.fd()); // the front-end has its own copy; our mapping keeps the pages
        }
    }

    /** SET_INFLIGHT_FD: the region a previous back-end (or this one) handed out; rings started later recover from it. */
    private void setInflight() {
        inflightNegotiated(VhostUserRequest.SET_INFLIGHT_FD);
        checkInflightPayload(VhostUserRequest.SET_INFLIGHT_FD);
        InflightRegion r = InflightRegion.adopt(adopt(0), msg.u64(InflightRegion.MMAP_SIZE_OFFSET), msg.u64(InflightRegion.MMAP_OFFSET_OFFSET),
            msg.u16(InflightRegion.NUM_QUEUES_OFFSET), msg.u16(InflightRegion.QUEUE_SIZE_OFFSET), rings.length, packed());
        replaceInflight(r);
        ack();
    }

    private void replaceInflight(InflightRegion next) {
        List<Vring> wasRunning = stopAll();
        InflightRegion old = inflight;
        inflight = next;
        if (old != null) {
            old.close();
        }
        startAll(wasRunning);
    }

    private void getConfig() {
        msg.requireSize(CONFIG_HEADER);
        int offset = msg.u32(0);
        int size = msg.u32(4);
        if (Integer.compareUnsigned(size, MAX_CONFIG_SIZE) > 0 || Integer.compareUnsigned(offset, MAX_CONFIG_SIZE) > 0
            || offset + size > MAX_CONFIG_SIZE || msg.size() != CONFIG_HEADER + size) {
            throw new VhostUserException(VhostUserException.Reason.BAD_CONFIG,
                "GET_CONFIG offset " + Integer.toUnsignedString(offset) + " size " + Integer.toUnsignedString(size)
                    + " (payload " + msg.size() + " bytes): outside the " + MAX_CONFIG_SIZE + "-byte config space");
        }
        MemorySegment space = out.asSlice(HEADER_LENGTH + CONFIG_HEADER, MAX_CONFIG_SIZE);
        space.fill((byte) 0);
        device.readConfig(space);
        if (offset > 0) {
            MemorySegment.copy(space, offset, space, 0, size);
        }
        out.set(ValueLayout.JAVA_INT_UNALIGNED, HEADER_LENGTH, offset);
        out.set(ValueLayout.JAVA_INT_UNALIGNED, HEADER_LENGTH + 4, size);
        out.set(ValueLayout.JAVA_INT_UNALIGNED, HEADER_LENGTH + 8, msg.u32(8));
        send(VhostUserRequest.GET_CONFIG, CONFIG_HEADER + size);
    }

    private int vringIndex(VhostUserRequest req) {
        long v = msg.u64(0);
        if ((v & ~(VRING_INDEX_MASK | VRING_NOFD_MASK)) != 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_STATE, req + " value 0x" + Long.toHexString(v) + " has unknown bits");
        }
        return (int) (v & VRING_INDEX_MASK);
    }

    /** The fd a KICK/CALL/ERR message carries (made non-blocking), or -1 with NOFD; checks the count. */
    private int vringFd(VhostUserRequest req, int nfds) {
        boolean nofd = (msg.u64(0) & VRING_NOFD_MASK) != 0;
        if (nfds != (nofd ? 0 : 1)) {
            throw new VhostUserException(VhostUserException.Reason.BAD_FD_COUNT,
                req + " with" + (nofd ? "" : "out") + " the NOFD flag carried " + nfds + " descriptors");
        }
        if (nofd) {
            return -1;
        }
        int fd = adopt(0);
        try {
            Fd.setNonBlocking(fd);
        } catch (NativeException e) {
            Fd.close(fd);
            throw new VhostUserException(VhostUserException.Reason.BAD_FD_COUNT, req + ": descriptor unusable: " + e.getMessage());
        }
        return fd;
    }

    private Vring ring(int index, VhostUserRequest req) {
        if (index < 0 || index >= rings.length) {
            throw new VhostUserException(VhostUserException.Reason.BAD_QUEUE_INDEX,
                req + " queue " + Integer.toUnsignedString(index) + ", this device has " + rings.length);
        }
        return rings[index];
    }

    private Vring idleRing(int index, VhostUserRequest req) {
        Vring v = ring(index, req);
        if (v.running()) {
            throw new VhostUserException(VhostUserException.Reason.BAD_STATE, req + " on running queue " + index);
        }
        return v;
    }

    private void tryStart(Vring v) {
        if (v.running() || !v.started || !v.enabled) {
            return;
        }
        if (!v.addressed || v.size == 0 || memory.regionCount() == 0) {
            throw new VhostUserException(VhostUserException.Reason.BAD_STATE,
                "queue " + v.index + " started before " + (v.size == 0 ? "SET_VRING_NUM" : !v.addressed ? "SET_VRING_ADDR" : "SET_MEM_TABLE"));
        }
        boolean eventIdx = (ackedFeatures & (1L << F_RING_EVENT_IDX)) != 0;
        boolean indirect = (ackedFeatures & (1L << F_RING_INDIRECT_DESC)) != 0;
        MemorySegment tracking = null;
        if (inflight != null && (ackedProtocol & (1L << PF_INFLIGHT_SHMFD)) != 0 && inflight.packed() != packed()) {
            System.getLogger("phost.vhost").log(System.Logger.Level.WARNING, "vhost-user " + name + " queue " + v.index
                + " runs without inflight tracking: the region was made for " + (inflight.packed() ? "packed" : "split")
                + " rings, the ring is " + (packed() ? "packed" : "split") + " (features changed after GET_INFLIGHT_FD)");
        } else if (inflight != null && (ackedProtocol & (1L << PF_INFLIGHT_SHMFD)) != 0) {
            if (v.size > inflight.queueSize()) {
                throw new VhostUserException(VhostUserException.Reason.BAD_STATE,
                    "queue " + v.index + " size " + v.size + " exceeds the inflight region's queue size " + inflight.queueSize());
            }
            tracking = inflight.queue(v.index);
        }
        v.log = (ackedFeatures & (1L << F_LOG_ALL)) != 0 ? dirtyLog : null;
        v.packed = packed();
        v.start(name, device, memory, eventIdx, indirect, tracking, cpus, polling, onQueueError);
    }

    private List<Vring> stopAll() {
        List<Vring> running = new ArrayList<>();
        for (Vring v : rings) {
            if (v.running()) {
                v.stop();
                running.add(v);
            }
        }
        return running;
    }

    private void startAll(List<Vring> list) {
        for (Vring v : list) {
            tryStart(v);
        }
    }

    private void restartRunning() {
        startAll(stopAll());
    }

    private void resetRings() {
        for (Vring v : rings) {
            v.reset();
        }
    }

    private void ack() {
        if (msg.needReply() && replyAckNegotiated()) {
            reply(msg.request(), 8, 0L);
        }
    }

    private void replyU64(long value) {
        reply(msg.request(), 8, value);
    }

    private void reply(VhostUserRequest req, int size, long value) {
        out.set(ValueLayout.JAVA_LONG_UNALIGNED, HEADER_LENGTH, value);
        send(req, size);
    }

    private void reply(VhostUserRequest req, int size, int a, int b) {
        out.set(ValueLayout.JAVA_INT_UNALIGNED, HEADER_LENGTH, a);
        out.set(ValueLayout.JAVA_INT_UNALIGNED, HEADER_LENGTH + 4, b);
        send(req, size);
    }

    private void send(VhostUserRequest req, int size, int... fds) {
        out.set(ValueLayout.JAVA_INT_UNALIGNED, REQUEST_OFFSET, req.code);
        out.set(ValueLayout.JAVA_INT_UNALIGNED, FLAGS_OFFSET, VERSION | FLAG_REPLY);
        out.set(ValueLayout.JAVA_INT_UNALIGNED, SIZE_OFFSET, size);
        socket.send(out, HEADER_LENGTH + size, fds);
    }

    /**
     * Tells the front-end the config space changed (BACKEND_CONFIG_CHANGE_MSG on the back-end channel, no reply
     * asked): QEMU re-reads it with GET_CONFIG and, for a new blk capacity, interrupts the guest. False when the
     * front-end set up no channel (it did not negotiate BACKEND_REQ) or the channel is gone.
     */
    boolean sendConfigChange() {
        UnixSocket ch = backendChannel;
        if (ch == null) {
            return false;
        }
        synchronized (backendOut) {
            backendOut.set(ValueLayout.JAVA_INT_UNALIGNED, REQUEST_OFFSET, BACKEND_CONFIG_CHANGE_MSG);
            backendOut.set(ValueLayout.JAVA_INT_UNALIGNED, FLAGS_OFFSET, VERSION);
            backendOut.set(ValueLayout.JAVA_INT_UNALIGNED, SIZE_OFFSET, 0);
            try {
                ch.send(backendOut, HEADER_LENGTH);
                return true;
            } catch (NativeException e) {
                return false; // closed (EPIPE) or full (EAGAIN): it re-reads the config when it reconnects
            }
        }
    }

    /** Wakes the control thread (close from another thread): the next read sees the socket closed. */
    void interrupt() {
        socket.close();
    }

    /** Stops every queue (in-flight requests complete), unmaps guest memory and closes the connection. */
    @Override
    public void close() {
        resetRings();
        memory.close();
        memory = GuestMemory.empty();
        regionAdds.clear();
        if (inflight != null) {
            inflight.close();
            inflight = null;
        }
        if (dirtyLog != null) {
            dirtyLog.close();
            dirtyLog = null;
        }
        UnixSocket ch = backendChannel;
        backendChannel = null;
        if (ch != null) {
            ch.close();
        }
        socket.close();
    }
}
