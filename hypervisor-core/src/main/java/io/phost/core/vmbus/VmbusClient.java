package io.phost.core.vmbus;

import static io.phost.core.vmbus.ChannelMessage.*;

import io.phost.core.sys.EventFd;
import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.UnixSocket;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.function.IntConsumer;

/**
 * The child-side VMBus library (VSC base): attaches to the parent's control socket with the partition's
 * credential and memfd, negotiates the version, receives offers, creates GPADLs and opens channels.
 * <pre>
 *   VmbusClient c = VmbusClient.attachFromEnvironment();          // PHOST_CONTROL_SOCKET, PHOST_PARTITION, ...
 *   ChannelOffer o = c.awaitOffer(MY_DEVICE_TYPE, 0, Duration.ofSeconds(5));
 *   ClientChannel ch = c.open(o, 16, null);                        // 16 pages each way
 *   ch.write(PacketDescriptor.TYPE_INBAND, FLAG_COMPLETION_REQUESTED, 1, req, 0, len, Duration.ofSeconds(1));
 *   ch.read((buf, off, plen, type, flags, tid) -> { ...; return true; }, 16, Duration.ofSeconds(1));
 * </pre>
 * A daemon thread reads the control socket; requests wait on futures. Control-plane only allocates.
 */
public final class VmbusClient implements AutoCloseable {
    public static final String ENV_SOCKET = "PHOST_CONTROL_SOCKET";
    public static final String ENV_PARTITION = "PHOST_PARTITION";
    public static final String ENV_CREDENTIAL = "PHOST_CREDENTIAL";
    public static final String ENV_MEMORY = "PHOST_MEMORY";
    private static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(10);

    private final UnixSocket socket;
    private final GuestRam ram;
    private final int version;
    private final Map<Integer, ChannelOffer> offers = new ConcurrentHashMap<>();
    private final Map<Integer, ClientChannel> channels = new ConcurrentHashMap<>();
    private final Map<Integer, CompletableFuture<Integer>> gpadlCreated = new ConcurrentHashMap<>();
    private final Map<Integer, CompletableFuture<Void>> gpadlTorndown = new ConcurrentHashMap<>();
    private final Map<Integer, CompletableFuture<Integer>> openResults = new ConcurrentHashMap<>();
    private final CompletableFuture<Void> allOffers = new CompletableFuture<>();
    private volatile CompletableFuture<Void> unloaded = new CompletableFuture<>();
    private final CompletableFuture<Void> disconnected = new CompletableFuture<>();
    private final List<Consumer<ChannelOffer>> offerListeners = new CopyOnWriteArrayList<>();
    private final List<IntConsumer> rescindListeners = new CopyOnWriteArrayList<>();
    private final AtomicInteger nextGpadl = new AtomicInteger(0x100);
    private final AtomicInteger nextOpenId = new AtomicInteger(1);
    private final Thread reader;
    private volatile boolean closed;

    private VmbusClient(UnixSocket socket, GuestRam ram, int version) {
        this.socket = socket;
        this.ram = ram;
        this.version = version;
        this.reader = new Thread(this::readLoop, "vmbus-client");
        this.reader.setDaemon(true);
    }

    /** Attaches using the environment the parent launched us with; guest memory sized by PHOST_MEMORY. */
    public static VmbusClient attachFromEnvironment() {
        String sock = System.getenv(ENV_SOCKET);
        String name = System.getenv(ENV_PARTITION);
        String cred = System.getenv(ENV_CREDENTIAL);
        String mem = System.getenv(ENV_MEMORY);
        if (sock == null || name == null || cred == null || mem == null) {
            throw new IllegalStateException("not inside a partition: need " + ENV_SOCKET + ", " + ENV_PARTITION + ", "
                + ENV_CREDENTIAL + ", " + ENV_MEMORY);
        }
        GuestRam ram = GuestRam.create("phost-guest-" + name, Long.parseLong(mem));
        try {
            return attach(Path.of(sock), name, HexFormat.of().parseHex(cred), ram);
        } catch (RuntimeException e) {
            ram.close();
            throw e;
        }
    }

    /**
     * Connects, authenticates as {@code partition} with {@code credential} (passing {@code ram}'s memfd),
     * negotiates the newest common version, and requests offers (waiting for ALLOFFERS_DELIVERED).
     */
    public static VmbusClient attach(Path socketPath, String partition, byte[] credential, GuestRam ram) {
        UnixSocket s = UnixSocket.connect(socketPath);
        try {
            int version = negotiate(s, partition, credential, ram);
            VmbusClient c = new VmbusClient(s, ram, version);
            c.reader.start();
            c.sendHeaderOnly(REQUESTOFFERS);
            c.await(c.allOffers, "ALLOFFERS_DELIVERED");
            return c;
        } catch (RuntimeException e) {
            s.close();
            throw e;
        }
    }

    /**
     * One message, waiting until {@code deadlineNanos}: 0 from {@link UnixSocket#receive} is a timeout or a
     * signal (EINTR: a profiler's timer, a jcmd attach), so wait again for the rest of the time.
     */
    private static long receiveBefore(UnixSocket s, MemorySegment m, int[] fds, long deadlineNanos) {
        while (true) {
            long left = deadlineNanos - System.nanoTime();
            long n = s.receive(m, fds, (int) Math.max(1, left / 1_000_000));
            for (int f : fds) {
                Fd.close(f);
            }
            if (n != 0 || left <= 0) {
                return n;
            }
        }
    }

    private static int negotiate(UnixSocket s, String partition, byte[] credential, GuestRam ram) {
        byte[] name = partition.getBytes(StandardCharsets.UTF_8);
        if (name.length > MAX_NAME_LENGTH || credential.length != CREDENTIAL_LENGTH) {
            throw new IllegalArgumentException("partition name > 64 bytes or credential not 32 bytes");
        }
        MemorySegment m = Arena.ofAuto().allocate(MAX_LENGTH + 16, 8);
        int[] fds = new int[UnixSocket.MAX_FDS];
        for (int v : VERSIONS) {
            int len = CONTACT_NAME + name.length;
            header(m, INITIATE_CONTACT, len);
            u32(m, CONTACT_VERSION, v);
            MemorySegment.copy(credential, 0, m, ValueLayout.JAVA_BYTE, CONTACT_CREDENTIAL, CREDENTIAL_LENGTH);
            m.set(ValueLayout.JAVA_BYTE, CONTACT_NAME_LENGTH, (byte) name.length);
            MemorySegment.copy(name, 0, m, ValueLayout.JAVA_BYTE, CONTACT_NAME, name.length);
            s.send(m, len, ram.memfd());
            long n = receiveBefore(s, m, fds, System.nanoTime() + REQUEST_TIMEOUT.toNanos());
            if (n <= 0) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT,
                    "host closed the connection or did not answer (wrong partition or credential?)");
            }
            if (n < VERSION_RESPONSE_LENGTH || type(m) != VERSION_RESPONSE) {
                throw new VmbusProtocolException(VmbusProtocolException.Reason.UNEXPECTED, type(m), "expected VERSION_RESPONSE");
            }
            if (m.get(ValueLayout.JAVA_BYTE, VERSION_SUPPORTED) != 0) {
                return v;
            }
        }
        throw new VmbusProtocolException(VmbusProtocolException.Reason.VERSION, INITIATE_CONTACT, "no common version");
    }

    public int version() {
        return version;
    }

    public GuestRam ram() {
        return ram;
    }

    public List<ChannelOffer> offers() {
        return new ArrayList<>(offers.values());
    }

    /** Waits for an offer of {@code type} with {@code subChannelIndex} (hot-add or already offered). */
    public ChannelOffer awaitOffer(UUID type, int subChannelIndex, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            for (ChannelOffer o : offers.values()) {
                if (o.interfaceType().equals(type) && o.subChannelIndex() == subChannelIndex && !channels.containsKey(o.relid())) {
                    return o;
                }
            }
            if (disconnected.isDone()) {
                throw new IllegalStateException("host disconnected");
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        throw new IllegalStateException("no offer of " + type + " sub-channel " + subChannelIndex + " within " + timeout);
    }

    public void onOffer(Consumer<ChannelOffer> l) {
        offerListeners.add(l);
    }

    public void onRescind(IntConsumer l) {
        rescindListeners.add(l);
    }

    /** Future completed when the host closes the connection. */
    public CompletableFuture<Void> disconnected() {
        return disconnected;
    }

    // ------------------------------------------------------------------ GPADLs

    /** Grants {@code buffer}'s pages to the host on channel {@code relid}; returns the GPADL handle. */
    public int createGpadl(int relid, GuestRam.Buffer buffer) {
        return createGpadl(relid, buffer.pfns(), 0, (long) buffer.pages() * GuestRam.PAGE_SIZE);
    }

    /** GPADL_HEADER (+ GPADL_BODY for long lists) for an arbitrary page list; waits for GPADL_CREATED. */
    public int createGpadl(int relid, long[] pfns, int byteOffset, long byteCount) {
        int handle = nextGpadl.getAndIncrement();
        CompletableFuture<Integer> f = new CompletableFuture<>();
        gpadlCreated.put(handle, f);
        sendGpadl(relid, handle, pfns, byteOffset, byteCount);
        int status = await(f, "GPADL_CREATED");
        gpadlCreated.remove(handle);
        if (status != STATUS_OK) {
            throw new IllegalStateException("host refused GPADL " + handle + ": status 0x" + Integer.toHexString(status));
        }
        return handle;
    }

    /** Raw GPADL messages (tests use it to send hostile lists). */
    public void sendGpadl(int relid, int handle, long[] pfns, int byteOffset, long byteCount) {
        MemorySegment m = Arena.ofAuto().allocate(MAX_LENGTH, 8);
        int here = Math.min(pfns.length, GPADL_HEADER_MAX_PFNS);
        int len = GPADL_HEADER_PFNS + 8 * here;
        header(m, GPADL_HEADER, len);
        u32(m, RELID, relid);
        u32(m, GPADL_HANDLE, handle);
        u16(m, GPADL_RANGE_BUFLEN, 8 + 8 * pfns.length);
        u16(m, GPADL_RANGECOUNT, 1);
        u32(m, GPADL_BYTE_COUNT, (int) byteCount);
        u32(m, GPADL_BYTE_OFFSET, byteOffset);
        for (int i = 0; i < here; i++) {
            u64(m, GPADL_HEADER_PFNS + 8L * i, pfns[i]);
        }
        socket.send(m, len);
        int sent = here;
        int msg = 0;
        while (sent < pfns.length) {
            int n = Math.min(pfns.length - sent, BODY_MAX_PFNS);
            len = BODY_PFNS + 8 * n;
            header(m, GPADL_BODY, len);
            u32(m, BODY_MSGNUMBER, ++msg);
            u32(m, BODY_GPADL, handle);
            for (int i = 0; i < n; i++) {
                u64(m, BODY_PFNS + 8L * i, pfns[sent + i]);
            }
            socket.send(m, len);
            sent += n;
        }
    }

    public void teardownGpadl(int relid, int handle) {
        CompletableFuture<Void> f = new CompletableFuture<>();
        gpadlTorndown.put(handle, f);
        MemorySegment m = Arena.ofAuto().allocate(GPADL_TEARDOWN_LENGTH, 8);
        header(m, GPADL_TEARDOWN, GPADL_TEARDOWN_LENGTH);
        u32(m, RELID, relid);
        u32(m, GPADL_HANDLE, handle);
        socket.send(m, GPADL_TEARDOWN_LENGTH);
        await(f, "GPADL_TORNDOWN");
        gpadlTorndown.remove(handle);
    }

    // ------------------------------------------------------------------ channels

    /**
     * Opens {@code offer}: allocates {@code pagesEachWay} pages per ring (1 control + data) in guest
     * memory, initialises both control pages, grants them in one GPADL, and sends OPENCHANNEL with a
     * doorbell eventfd for each direction.
     */
    public ClientChannel open(ChannelOffer offer, int pagesEachWay, MemorySegment userData) {
        if (pagesEachWay < 2) {
            throw new IllegalArgumentException("a ring needs at least 2 pages");
        }
        GuestRam.Buffer pages = ram.allocate(2L * pagesEachWay * GuestRam.PAGE_SIZE);
        int handle = -1;
        RingMapping outMap = null;
        RingMapping inMap = null;
        EventFd toHost = null;
        EventFd fromHost = null;
        try {
            VmbusRing.initialise(pages.segment());
            VmbusRing.initialise(pages.segment().asSlice((long) pagesEachWay * GuestRam.PAGE_SIZE));
            handle = createGpadl(offer.relid(), pages);
            long[] pfns = pages.pfns();
            outMap = RingMapping.mapUntilUnreachable(ram.memfd(), pfns, 0, pagesEachWay, true);
            inMap = RingMapping.mapUntilUnreachable(ram.memfd(), pfns, pagesEachWay, pagesEachWay, true);
            toHost = EventFd.create();
            fromHost = EventFd.create();
            int openId = nextOpenId.getAndIncrement();
            CompletableFuture<Integer> f = new CompletableFuture<>();
            openResults.put(offer.relid(), f);
            MemorySegment m = Arena.ofAuto().allocate(OPEN_LENGTH, 8);
            header(m, OPENCHANNEL, OPEN_LENGTH);
            u32(m, RELID, offer.relid());
            u32(m, OPEN_OPENID, openId);
            u32(m, OPEN_GPADL, handle);
            u32(m, OPEN_DOWNSTREAM_OFFSET, pagesEachWay);
            if (userData != null) {
                MemorySegment.copy(userData, 0, m, OPEN_USERDATA, Math.min(userData.byteSize(), OPEN_USERDATA_LENGTH));
            }
            ClientChannel ch = new ClientChannel(this, offer, pages, handle, outMap, inMap, toHost, fromHost);
            channels.put(offer.relid(), ch);
            socket.send(m, OPEN_LENGTH, toHost.fd(), fromHost.fd());
            int status = await(f, "OPENCHANNEL_RESULT");
            openResults.remove(offer.relid());
            if (status != STATUS_OK) {
                channels.remove(offer.relid());
                throw new IllegalStateException("host refused to open relid " + offer.relid() + ": status 0x" + Integer.toHexString(status));
            }
            return ch;
        } catch (RuntimeException e) {
            if (outMap != null) {
                outMap.close();
            }
            if (inMap != null) {
                inMap.close();
            }
            if (toHost != null) {
                toHost.close();
            }
            if (fromHost != null) {
                fromHost.close();
            }
            if (handle != -1 && !disconnected.isDone()) {
                try {
                    teardownGpadl(offer.relid(), handle);
                } catch (RuntimeException ignored) {
                    // the host is going away anyway
                }
            }
            ram.free(pages);
            throw e;
        }
    }

    void close(ClientChannel ch) {
        if (channels.remove(ch.relid()) == null) {
            return;
        }
        boolean wasOpen = ch.isOpen();
        ch.markClosed();
        if (!disconnected.isDone()) {
            if (wasOpen) {
                sendRelid(CLOSECHANNEL, ch.relid());
            }
            try { // after a rescind the host closed the channel but the ring GPADL is still granted
                teardownGpadl(ch.relid(), ch.ringGpadl());
            } catch (RuntimeException e) {
                // rescinded or disconnected meanwhile: the pages are ours again either way
            }
        }
        ch.release();
    }

    /** UNLOAD: the host closes all channels and drops all GPADLs; waits for UNLOAD_RESPONSE. */
    public void unload() {
        unloaded = new CompletableFuture<>();
        sendHeaderOnly(UNLOAD);
        await(unloaded, "UNLOAD_RESPONSE");
    }

    /** Sends raw bytes on the control socket (hostile-guest tests). */
    public void sendRaw(MemorySegment m, int length, int... fds) {
        socket.send(m, length, fds);
    }

    // ------------------------------------------------------------------ control thread

    private void readLoop() {
        MemorySegment m = Arena.ofAuto().allocate(MAX_LENGTH + 16, 8);
        int[] fds = new int[UnixSocket.MAX_FDS];
        try {
            while (!closed) {
                long n;
                try {
                    n = socket.receive(m, fds, 200);
                } catch (NativeException e) {
                    break;
                }
                for (int f : fds) {
                    Fd.close(f);
                }
                if (n < 0) {
                    break;
                }
                if (n < HEADER_LENGTH) {
                    continue;
                }
                dispatch(m, (int) n);
            }
        } finally {
            for (ClientChannel ch : channels.values()) {
                ch.markClosed();
            }
            disconnected.complete(null);
            IllegalStateException gone = new IllegalStateException("host disconnected");
            allOffers.completeExceptionally(gone);
            gpadlCreated.values().forEach(f -> f.completeExceptionally(gone));
            gpadlTorndown.values().forEach(f -> f.completeExceptionally(gone));
            openResults.values().forEach(f -> f.completeExceptionally(gone));
            unloaded.completeExceptionally(gone);
        }
    }

    private void dispatch(MemorySegment m, int n) {
        switch (type(m)) {
            case OFFERCHANNEL -> {
                if (n < OFFER_LENGTH) {
                    return;
                }
                byte[] ud = new byte[OFFER_USER_DEF_LENGTH];
                MemorySegment.copy(m, ValueLayout.JAVA_BYTE, OFFER_USER_DEF, ud, 0, ud.length);
                ChannelOffer o = new ChannelOffer(u32(m, OFFER_CHILD_RELID), guid(m, OFFER_IF_TYPE), guid(m, OFFER_IF_INSTANCE),
                    u16(m, OFFER_SUB_CHANNEL_INDEX), ud);
                offers.put(o.relid(), o);
                offerListeners.forEach(l -> l.accept(o));
            }
            case ALLOFFERS_DELIVERED -> allOffers.complete(null);
            case RESCIND_CHANNELOFFER -> {
                int relid = u32(m, RELID);
                offers.remove(relid);
                ClientChannel ch = channels.get(relid);
                if (ch != null) {
                    ch.markClosed();
                }
                CompletableFuture<Integer> pending = openResults.get(relid);
                if (pending != null) {
                    pending.complete(STATUS_UNSUCCESSFUL);
                }
                sendRelid(13 /* RELID_RELEASED */, relid);
                rescindListeners.forEach(l -> l.accept(relid));
            }
            case OPENCHANNEL_RESULT -> {
                CompletableFuture<Integer> f = openResults.get(u32(m, RELID));
                if (f != null) {
                    f.complete(u32(m, OPEN_RESULT_STATUS));
                }
            }
            case GPADL_CREATED -> {
                CompletableFuture<Integer> f = gpadlCreated.get(u32(m, GPADL_HANDLE));
                if (f != null) {
                    f.complete(u32(m, GPADL_CREATED_STATUS));
                }
            }
            case GPADL_TORNDOWN -> {
                CompletableFuture<Void> f = gpadlTorndown.get(u32(m, TORNDOWN_GPADL));
                if (f != null) {
                    f.complete(null);
                }
            }
            case UNLOAD_RESPONSE -> unloaded.complete(null);
            default -> { }
        }
    }

    private void sendHeaderOnly(int type) {
        MemorySegment m = Arena.ofAuto().allocate(HEADER_LENGTH, 8);
        header(m, type, HEADER_LENGTH);
        socket.send(m, HEADER_LENGTH);
    }

    private void sendRelid(int type, int relid) {
        MemorySegment m = Arena.ofAuto().allocate(RELID_LENGTH, 8);
        header(m, type, RELID_LENGTH);
        u32(m, RELID, relid);
        try {
            socket.send(m, RELID_LENGTH);
        } catch (NativeException e) {
            // host gone
        }
    }

    private <T> T await(CompletableFuture<T> f, String what) {
        try {
            return f.get(REQUEST_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            throw new IllegalStateException("no " + what + " from the host within " + REQUEST_TIMEOUT);
        } catch (java.util.concurrent.ExecutionException e) {
            throw new IllegalStateException("waiting for " + what + ": " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted waiting for " + what);
        }
    }

    /** Closes all channels and the connection (the guest memory stays with its owner). */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        for (ClientChannel ch : List.copyOf(channels.values())) {
            channels.remove(ch.relid());
            ch.markClosed();
            ch.release();
        }
        closed = true;
        socket.close();
        try {
            reader.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
