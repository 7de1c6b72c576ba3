package io.phost.storage.nbd;

import io.phost.core.sys.DiskFullException;
import io.phost.core.sys.SocketFiles;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.net.StandardProtocolFamily;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import static io.phost.storage.nbd.NbdDescriptor.*;

/**
 * An NBD server (newstyle fixed handshake) exporting {@link VirtualDisk}s on a Unix socket or a loopback
 * TCP port, so qemu-img, qemu-io, nbdinfo, nbdcopy and fio's nbd engine can use any configured disk.
 *
 * <p>Options: EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT
 * ({@code base:allocation}, a backup's {@code qemu:dirty-bitmap:NAME}). Commands: READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES, BLOCK_STATUS, DISC.
 *
 * <p>Each connection has a reader thread that decodes requests into one of {@value #SLOTS} preallocated
 * slots (its payload buffer grows to the largest request seen, never past {@link #MAX_PAYLOAD}; all payload
 * buffers of a connection together stay within {@link Limits#connectionBufferBytes()}). A request
 * that arrives alone (nothing in flight, nothing more buffered) is served inline by the reader, with no
 * thread hop; requests that pipeline go to a shared worker pool, so up to {@value #SLOTS} run in parallel
 * per connection. Replies of an inline burst are batched into one write; others are written whole under
 * the connection's write lock. Before sleeping, an idle reader polls briefly for the next request (an
 * adaptive window, see {@code Connection.fill}). The steady request path allocates nothing (buffers,
 * slots and disk views are reused). Hostile input gets an NBD error reply, or closes
 * only that connection ({@link NbdProtocolException}); the server keeps serving others.
 *
 * <p>Resource bounds ({@link Limits}): at most {@code maxConnections} connections (more are closed at
 * accept), a client that has not finished the handshake within {@code handshakeTimeout} is dropped, and a
 * connection's memory (native, from its own arenas) is freed when it closes, not when the GC runs. A
 * connection in handshake holds ~33 KiB; one in transmission ~0.7 MiB plus its payload buffers.
 */
public final class NbdServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(NbdServer.class.getName());
    /** Largest READ/WRITE payload (advertised as the maximum block size). */
    public static final int MAX_PAYLOAD = 32 << 20;
    private static final int SLOTS = 64;
    private static final int MAX_EXTENTS = 256;
    private static final int REQUEST_LENGTH = 28;
    /** Read-ahead for requests: a QD32 burst of 4 KiB writes fits whole. */
    private static final int RX_BUFFER = 256 << 10;
    /** Smallest payload buffer a slot gets (most requests fit: 4-64 KiB). */
    private static final int MIN_PAYLOAD_BUFFER = 64 << 10;
    private static final ByteBuffer EMPTY = ByteBuffer.allocateDirect(0);

    /**
     * Requests that take less than this on average are served inline even when pipelined: a handoff to a
     * worker (a cross-thread wakeup) costs more than the request itself, so parallelism would not pay.
     * System property {@code phost.nbd.inlineBelowMicros} (default 30; 0 sends every pipelined request to workers).
     */
    private final long inlineBelowNanos = Long.getLong("phost.nbd.inlineBelowMicros", 30) * 1000;
    /** Longest poll for a connection's next request before sleeping (see Connection.fill; 0: never poll). */
    private final long pollMaxNanos = Long.getLong("phost.nbd.pollMicros", 100) * 1000;
    private static final long POLL_MIN_NANOS = 4_000;
    private final ServerSocketChannel server;
    private final Path socketPath;
    private final int port;
    private final Map<String, Export> exports;
    private final NbdWorkerPool workers;
    private final Set<Connection> connections = ConcurrentHashMap.newKeySet();
    private final Thread acceptor;
    private final Limits limits;
    private final ScheduledExecutorService timeouts;
    /** Native bytes held by all connections' buffers (see {@link #bufferBytes()}). */
    private final AtomicLong bufferBytes = new AtomicLong();
    private final AtomicLong refused = new AtomicLong();
    private final AtomicLong droppedClients = new AtomicLong();
    private volatile long lastDropLogNanos = System.nanoTime() - TimeUnit.MINUTES.toNanos(1);
    private volatile long lastRefusalLogNanos = System.nanoTime() - TimeUnit.MINUTES.toNanos(1);
    /** Why the acceptor last failed, or null; cleared by the next successful accept. */
    private volatile String acceptError;
    private volatile boolean closed;

    /**
     * Resource bounds of one server.
     *
     * @param maxConnections        connections served at once; more are closed right after accept
     * @param handshakeTimeoutMillis a client must finish option haggling within this, or is dropped
     * @param connectionBufferBytes payload buffer memory one connection may hold (at least {@link #MAX_PAYLOAD})
     */
    public record Limits(int maxConnections, long handshakeTimeoutMillis, long connectionBufferBytes) {
        public Limits {
            if (maxConnections < 1 || handshakeTimeoutMillis < 1) {
                throw new IllegalArgumentException("maxConnections and handshakeTimeoutMillis must be >= 1");
            }
            connectionBufferBytes = Math.max(connectionBufferBytes, MAX_PAYLOAD);
        }

        /**
         * System properties {@code phost.nbd.maxConnections} (default 32), {@code phost.nbd.handshakeTimeoutMillis}
         * (10000) and {@code phost.nbd.connectionBufferMiB} (64).
         */
        public static Limits defaults() {
            return new Limits(Integer.getInteger("phost.nbd.maxConnections", 32),
                Long.getLong("phost.nbd.handshakeTimeoutMillis", 10_000),
                Long.getLong("phost.nbd.connectionBufferMiB", 64) << 20);
        }
    }

    /** One exported disk; {@code qos} (the disk's flow for NBD clients) admits its I/O as guest I/O is admitted. */
    public record Export(String name, VirtualDisk disk, boolean readOnly, DiskStats stats, QosFlow qos,
                         NbdDirtyBitmap dirtyBitmap) {
        public Export(String name, VirtualDisk disk, boolean readOnly) {
            this(name, disk, readOnly || disk.readOnly(), new DiskStats(), QosFlow.UNLIMITED, null);
        }

        public Export(String name, VirtualDisk disk, boolean readOnly, DiskStats stats) {
            this(name, disk, readOnly, stats, QosFlow.UNLIMITED, null);
        }

        /** This export with its I/O admitted by {@code flow}. */
        public Export withQos(QosFlow flow) {
            return new Export(name, disk, readOnly, stats, flow, dirtyBitmap);
        }

        /** This export also offering {@code bitmap}'s {@code qemu:dirty-bitmap:NAME} context (a backup's). */
        public Export withDirtyBitmap(NbdDirtyBitmap bitmap) {
            return new Export(name, disk, readOnly, stats, qos, bitmap);
        }
    }

    private NbdServer(ServerSocketChannel server, Path socketPath, int port, List<Export> exports, int threads,
                      Limits limits) {
        this.server = server;
        this.limits = limits;
        this.timeouts = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "nbd-timeouts");
            t.setDaemon(true);
            return t;
        });
        this.socketPath = socketPath;
        this.port = port;
        this.exports = new LinkedHashMap<>();
        for (Export e : exports) {
            this.exports.put(e.name(), e);
        }
        this.workers = new NbdWorkerPool("nbd-worker", threads, 4096);
        this.acceptor = new Thread(this::acceptLoop, "nbd-accept");
        this.acceptor.setDaemon(true);
    }

    /**
     * Serves {@code exports} on a Unix socket at {@code path}, created mode 0600 whatever the umask. A stale
     * socket left there by a killed server is replaced; any other file at {@code path} is refused (never deleted).
     */
    public static NbdServer unix(Path path, List<Export> exports) throws IOException {
        return unix(path, exports, Limits.defaults());
    }

    public static NbdServer unix(Path path, List<Export> exports, Limits limits) throws IOException {
        ServerSocketChannel ch = SocketFiles.bindPrivate(path);
        NbdServer s = new NbdServer(ch, path, -1, exports, workerThreads(), limits);
        s.acceptor.start();
        return s;
    }

    /** Serves {@code exports} on loopback TCP {@code port} (0: any free port; see {@link #port()}). */
    public static NbdServer tcp(int port, List<Export> exports) throws IOException {
        return tcp(port, exports, Limits.defaults());
    }

    public static NbdServer tcp(int port, List<Export> exports, Limits limits) throws IOException {
        ServerSocketChannel ch = ServerSocketChannel.open(StandardProtocolFamily.INET);
        ch.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
        int bound = ((InetSocketAddress) ch.getLocalAddress()).getPort();
        NbdServer s = new NbdServer(ch, null, bound, exports, workerThreads(), limits);
        s.acceptor.start();
        return s;
    }

    private static int workerThreads() {
        return Integer.getInteger("phost.nbd.threads", 8);
    }

    public int port() {
        return port;
    }

    /** The NBD URI of {@code export}: {@code nbd+unix:///name?socket=...} or {@code nbd://127.0.0.1:port/name}. */
    public String uri(String export) {
        return socketPath != null ? "nbd+unix:///" + export + "?socket=" + socketPath
            : "nbd://127.0.0.1:" + port + "/" + export;
    }

    public int connectionCount() {
        return connections.size();
    }

    /** Native bytes the open connections hold for buffers (0 once every client has gone). */
    public long bufferBytes() {
        return bufferBytes.get();
    }

    /** Connections closed at accept because {@link Limits#maxConnections()} were open. */
    public long refusedConnections() {
        return refused.get();
    }

    public Limits limits() {
        return limits;
    }

    /** Null while the server accepts clients, else why it cannot (for the host's /health). */
    public String problem() {
        if (closed) {
            return "closed";
        }
        if (!acceptor.isAlive()) {
            return "accept thread ended";
        }
        return acceptError;
    }

    /**
     * Accepts until closed. Nothing escapes: an {@link OutOfMemoryError} (no memory for a connection's
     * buffers or thread) closes that one connection and is reported by {@link #problem()} until the next
     * accept succeeds; it must never end the loop and leave clients hanging in the backlog.
     */
    private void acceptLoop() {
        while (!closed) {
            SocketChannel ch = null;
            try {
                ch = server.accept();
                if (connections.size() >= limits.maxConnections()) {
                    refuse(ch);
                    continue;
                }
                Connection c = new Connection(ch);
                connections.add(c);
                c.deadline = timeouts.schedule(c::handshakeTimedOut, limits.handshakeTimeoutMillis(), TimeUnit.MILLISECONDS);
                try {
                    Thread t = new Thread(c, "nbd-conn");
                    t.setDaemon(true);
                    t.start();
                } catch (Throwable e) {
                    connections.remove(c);
                    c.release();
                    throw e;
                }
                acceptError = null;
            } catch (Throwable e) {
                closeQuietly(ch);
                if (closed) {
                    return;
                }
                acceptError = "accept failed: " + e;
                LOG.log(System.Logger.Level.WARNING, "nbd accept failed", e);
                LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10)); // e.g. EMFILE: do not spin
            }
        }
    }

    private void refuse(SocketChannel ch) {
        closeQuietly(ch);
        long n = refused.incrementAndGet();
        long now = System.nanoTime();
        if (now - lastRefusalLogNanos > TimeUnit.SECONDS.toNanos(10)) {
            lastRefusalLogNanos = now;
            LOG.log(System.Logger.Level.WARNING, "nbd connection refused: " + limits.maxConnections() + " connections open (refused so far: " + n + ")");
        }
    }

    /**
     * Logs a dropped client at INFO at most once per 10 s (with how many were dropped since), so a hostile
     * client cannot flood the log; every drop is logged at FINE.
     */
    private void dropped(String message) {
        long n = droppedClients.incrementAndGet();
        long now = System.nanoTime();
        long last = lastDropLogNanos;
        if (now - last > TimeUnit.SECONDS.toNanos(10)) {
            lastDropLogNanos = now;
            LOG.log(System.Logger.Level.INFO, message + " (clients dropped so far: " + n + ")");
        } else {
            LOG.log(System.Logger.Level.DEBUG, message);
        }
    }

    private static void closeQuietly(SocketChannel ch) {
        if (ch != null) {
            try {
                ch.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    @Override
    public void close() throws IOException {
        closed = true;
        server.close();
        for (Connection c : connections) {
            c.shutdown();
        }
        workers.close();
        timeouts.shutdownNow();
        try {
            acceptor.join(1000);
            workers.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (socketPath != null) {
            SocketFiles.unlinkIfSocket(socketPath);
        }
    }

    /** One request in flight: header fields plus its (reused) payload buffer. */
    private final class Slot implements Runnable {
        final Connection conn;
        final ByteBuffer header;
        final ByteBuffer extents;
        final ByteBuffer[] gather = new ByteBuffer[2];
        /** The payload buffer (empty until the first request with data) and the arena that owns it. */
        ByteBuffer data = EMPTY;
        Arena dataArena;
        MemorySegment dataSegment = MemorySegment.ofBuffer(EMPTY);
        /** The last view handed to the disk, kept because clients repeat one length (no allocation per request). */
        MemorySegment view;
        long viewLength = -1;
        /** Reply into the connection's batch (set by the reader for inline requests with more buffered). */
        boolean batched;
        int flags;
        int type;
        long cookie;
        long offset;
        int length;

        Slot(Connection conn, Arena arena) {
            this.conn = conn;
            this.header = arena.allocate(64).asByteBuffer().order(ByteOrder.BIG_ENDIAN);
            this.extents = arena.allocate(8 + 8 * MAX_EXTENTS).asByteBuffer().order(ByteOrder.BIG_ENDIAN);
        }

        /** Makes the payload buffer hold {@code n} bytes; the reader sized it already ({@link Connection#reserve}). */
        ByteBuffer payload(int n) {
            if (data.capacity() < n) {
                throw new IllegalStateException("payload buffer not reserved: " + n + " > " + data.capacity());
            }
            data.clear().limit(n);
            return data;
        }

        /** Replaces the payload buffer with one of {@code capacity} bytes (0: none); returns the change in bytes. */
        long resize(int capacity) {
            long before = data.capacity();
            if (dataArena != null) {
                dataArena.close();
                dataArena = null;
            }
            data = EMPTY;
            if (capacity > 0) {
                dataArena = Arena.ofShared();
                data = dataArena.allocate(capacity, 4096).asByteBuffer();
            }
            dataSegment = MemorySegment.ofBuffer(data);
            viewLength = -1;
            return data.capacity() - before;
        }

        /** The first {@code n} payload bytes as a segment (n within the payload buffer). */
        MemorySegment view(long n) {
            if (n != viewLength) {
                view = dataSegment.asSlice(0, n);
                viewLength = n;
            }
            return view;
        }

        @Override
        public void run() {
            long t0 = System.nanoTime();
            try {
                conn.execute(this);
                conn.sample(System.nanoTime() - t0);
            } catch (IOException e) {
                conn.shutdown();
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "nbd request failed", e);
                conn.shutdown();
            } finally {
                conn.release(this);
            }
        }
    }

    private final class Connection implements Runnable, NbdNegotiation.Wire {
        private final SocketChannel ch;
        /** Owns every fixed buffer of this connection; closed (memory freed) when the connection ends. */
        private final Arena arena = Arena.ofShared();
        private long arenaBytes;
        private final ByteBuffer in;
        private final ByteBuffer out;
        /** Free slots: workers and the reader return them, only the reader takes (no lock, no allocation). */
        private final ManyToOneConcurrentArrayQueue<Slot> free = new ManyToOneConcurrentArrayQueue<>(SLOTS);
        /** All slots, for trimming their payload buffers (created when transmission starts). */
        private final Slot[] slots = new Slot[SLOTS];
        /** Payload buffer bytes of all slots (reader thread only). */
        private long payloadBytes;
        /** Cancels the handshake timeout; set by the acceptor before the reader starts. */
        volatile ScheduledFuture<?> deadline;
        private volatile boolean handshaking = true;
        private boolean released;
        private final Object writeLock = new Object();
        /** Requests handed to workers and not yet answered. */
        private final AtomicInteger inFlight = new AtomicInteger();
        /** Moving average of request service time; reader and workers write it (volatile: the reader sees workers' samples). */
        private volatile long serviceNanos;
        private ByteBuffer rx;
        /** Replies of an inline-served burst, written together (reader thread only). */
        private ByteBuffer tx;
        /** Current poll window in fill() (reader thread only). */
        private long pollNanos;
        private long streamOffset;
        private boolean structured;
        private boolean baseAllocation;
        /** The export's qemu:dirty-bitmap context when the client selected it, else null. */
        private NbdDirtyBitmap dirtyBitmap;
        private Export export;
        private volatile boolean dead;

        Connection(SocketChannel ch) throws IOException {
            this.ch = ch;
            try {
                if (ch.getLocalAddress() instanceof InetSocketAddress) {
                    ch.setOption(StandardSocketOptions.TCP_NODELAY, true); // replies are whole; never wait for an ACK
                }
                in = allocate(NbdNegotiation.MAX_OPTION_LENGTH + 64);
                out = allocate(NbdNegotiation.MAX_OPTION_LENGTH + 256);
            } catch (IOException | RuntimeException | Error e) {
                release();
                throw e;
            }
        }

        private ByteBuffer allocate(int bytes) {
            ByteBuffer b = arena.allocate(bytes, 64).asByteBuffer().order(ByteOrder.BIG_ENDIAN);
            arenaBytes += bytes;
            bufferBytes.addAndGet(bytes);
            return b;
        }

        /** Transmission buffers and slots: only a client that finished the handshake costs this memory. */
        private void startTransmission() {
            rx = allocate(RX_BUFFER);
            tx = allocate(RX_BUFFER);
            for (int i = 0; i < SLOTS; i++) {
                slots[i] = new Slot(this, arena);
                free.add(slots[i]);
            }
            long slotBytes = SLOTS * (64L + 8 + 8 * MAX_EXTENTS);
            arenaBytes += slotBytes;
            bufferBytes.addAndGet(slotBytes);
        }

        /** The acceptor's timer: a client still haggling options after the limit is dropped. */
        void handshakeTimedOut() {
            if (handshaking) {
                dropped("nbd client dropped: no export chosen within " + limits.handshakeTimeoutMillis() + " ms");
                shutdown();
            }
        }

        /**
         * Makes {@code s}'s payload buffer hold {@code n} bytes (n <= MAX_PAYLOAD; reader thread only). When
         * that would take the connection past its buffer budget, waits until nothing is in flight and frees
         * the other slots' buffers first, so one connection never holds more than the budget.
         */
        private void reserve(Slot s, int n) throws NbdProtocolException {
            int have = s.data.capacity();
            if (have >= n) {
                return;
            }
            int target = Math.max(n, Math.min(MAX_PAYLOAD, Math.max(MIN_PAYLOAD_BUFFER, have * 2)));
            if (payloadBytes - have + target > limits.connectionBufferBytes()) {
                target = n;
            }
            if (payloadBytes - have + target > limits.connectionBufferBytes()) {
                while (inFlight.get() > 0) {
                    if (dead) {
                        throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "connection closed");
                    }
                    LockSupport.parkNanos(20_000); // only with nothing in flight may other slots' buffers go
                }
                for (Slot o : slots) {
                    if (o != s && o.data.capacity() > 0) {
                        long delta = o.resize(0);
                        payloadBytes += delta;
                        bufferBytes.addAndGet(delta);
                    }
                }
            }
            long delta = s.resize(target);
            payloadBytes += delta;
            bufferBytes.addAndGet(delta);
        }

        /** Frees every buffer (once; after the reader ended and nothing is in flight). */
        void release() {
            if (released) {
                return;
            }
            released = true;
            for (Slot s : slots) {
                if (s != null && s.data.capacity() > 0) {
                    long delta = s.resize(0);
                    payloadBytes += delta;
                    bufferBytes.addAndGet(delta);
                }
            }
            arena.close();
            bufferBytes.addAndGet(-arenaBytes);
            arenaBytes = 0;
        }

        void shutdown() {
            dead = true;
            try {
                ch.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }

        /** A worker is done with {@code s}: its reply is written. */
        void release(Slot s) {
            free.add(s);
            inFlight.decrementAndGet();
        }

        @Override
        public void run() {
            try {
                NbdNegotiation negotiation = new NbdNegotiation(this, in, out, exports);
                boolean go = negotiation.run();
                export = negotiation.export();
                structured = negotiation.structured();
                baseAllocation = negotiation.baseAllocation();
                dirtyBitmap = negotiation.dirtyBitmap();
                handshaking = false;
                ScheduledFuture<?> d = deadline;
                if (d != null) {
                    d.cancel(false);
                }
                if (go && !dead) {
                    startTransmission();
                    transmission();
                }
            } catch (NbdProtocolException e) {
                if (e.reason() == NbdProtocolException.Reason.EOF) {
                    LOG.log(System.Logger.Level.DEBUG, "nbd client dropped: " + e.getMessage());
                } else {
                    dropped("nbd client dropped: " + e.getMessage());
                }
            } catch (IOException e) {
                if (!dead && !closed) {
                    LOG.log(System.Logger.Level.DEBUG, "nbd connection closed", e);
                }
            } catch (OutOfMemoryError e) {
                LOG.log(System.Logger.Level.WARNING, "nbd connection dropped: out of memory for its buffers", e);
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "nbd connection dropped: " + e, e); // a bug, but only this client pays
            } finally {
                handshaking = false;
                // Let running requests finish before closing so they can still reply.
                long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (inFlight.get() > 0 && System.nanoTime() < until) {
                    LockSupport.parkNanos(100_000);
                }
                shutdown();
                if (inFlight.get() == 0) {
                    release();
                } else {
                    LOG.log(System.Logger.Level.WARNING, "nbd connection closed with requests still running; its buffers are kept");
                }
                connections.remove(this);
            }
        }

        // ---- low-level I/O ----

        @Override
        public long streamOffset() {
            return streamOffset;
        }

        @Override
        public void readFully(ByteBuffer b) throws IOException {
            while (b.hasRemaining()) {
                int n = ch.read(b);
                if (n < 0) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
                }
                streamOffset += n;
            }
        }

        /** One buffer (not the varargs form: that allocates an array per reply). */
        @Override
        public void writeFully(ByteBuffer b) throws IOException {
            while (b.hasRemaining()) {
                ch.write(b);
            }
        }

        @Override
        public void writeFully(ByteBuffer... bufs) throws IOException {
            long left = 0;
            for (ByteBuffer b : bufs) {
                left += b.remaining();
            }
            while (left > 0) {
                long n = ch.write(bufs);
                left -= n;
            }
        }

        // ---- transmission ----

        /**
         * Reads requests from {@link #rx} (filled by whatever one read() returns, so requests a client
         * pipelines arrive together) and serves each one inline on this thread when nothing else of the
         * connection is in flight and no further byte is already buffered: a QD1 client then costs no
         * thread hop (a cross-thread wakeup is 50-150 us on a loaded VM, several times the request itself).
         * Pipelined requests go to the worker pool so slow ones (a disk that seeks) overlap, unless recent
         * requests finished faster than a handoff, when the reader serves the burst itself.
         * <pre>
         *   rx (read mode):  | consumed | req 28 B | [write data] | next req ... | (free) |
         *                               ^position                              ^limit
         *   inline  when inFlight == 0 and (position == limit after parsing this request,
         *                                   or requests have been fast: serviceNanos < inlineBelowNanos)
         *   worker  otherwise (inFlight++ before handing over; the worker decrements after its reply)
         * </pre>
         */
        private void transmission() throws IOException {
            rx.clear().flip();
            tx.clear();
            try {
                serve();
            } finally {
                if (!dead) {
                    flushReplies(); // answers to the requests before a DISC or a protocol error still go out
                }
            }
        }

        private void serve() throws IOException {
            while (!dead) {
                fill(REQUEST_LENGTH);
                long at = streamOffset - rx.remaining();
                int magic = rx.getInt();
                if (magic != REQUEST_MAGIC) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.BAD_REQUEST_MAGIC, at,
                        "0x" + Integer.toHexString(magic));
                }
                Slot s = takeSlot();
                if (s == null) {
                    return;
                }
                s.flags = rx.getShort() & 0xFFFF;
                s.type = rx.getShort() & 0xFFFF;
                s.cookie = rx.getLong();
                s.offset = rx.getLong();
                s.length = rx.getInt();
                long length = s.length & 0xFFFFFFFFL;
                if (s.type == CMD_DISC) {
                    free.add(s);
                    return;
                }
                if (s.type == CMD_WRITE) {
                    if (length > MAX_PAYLOAD) {
                        if (length > 2L * MAX_PAYLOAD) {
                            free.add(s);
                            throw new NbdProtocolException(NbdProtocolException.Reason.PAYLOAD_TOO_LONG,
                                at + 24, "write of " + length + " bytes");
                        }
                        skipRx(length);
                        s.type = -1; // answered with EINVAL
                    } else {
                        reserve(s, (int) length);
                        receive(s.payload((int) length));
                    }
                } else if (s.type == CMD_READ && length > 0 && length <= MAX_PAYLOAD) {
                    reserve(s, (int) length); // here, not in execute(): only the reader may wait for buffer room
                }
                if (inFlight.get() == 0 && (!rx.hasRemaining() || serviceNanos < inlineBelowNanos)) {
                    s.batched = rx.hasRemaining();
                    if (!s.batched) {
                        flushReplies(); // the burst's last request: send what is batched before working on it
                    }
                    long t0 = System.nanoTime();
                    try {
                        execute(s);
                    } finally {
                        free.add(s);
                    }
                    sample(System.nanoTime() - t0);
                } else {
                    s.batched = false;
                    inFlight.incrementAndGet(); // before the handoff: the worker's decrement must not go first
                    if (!workers.trySubmit(s)) {
                        s.run(); // queue full (many connections): serve it here, which also slows this client down
                    }
                }
            }
        }

        /** A free slot; waits only when all {@value #SLOTS} are in flight. Null when the connection died. */
        private Slot takeSlot() {
            Slot s;
            int idle = 0;
            while ((s = free.poll()) == null) {
                if (dead || closed) {
                    return null;
                }
                if (++idle < 64) {
                    Thread.onSpinWait();
                } else {
                    LockSupport.parkNanos(20_000); // rare: 64 requests in flight; workers free slots without waking us
                }
            }
            return s;
        }

        /**
         * Folds one request's service time into the moving average: 1/32 weight, samples capped at 4x the
         * inline threshold, so a few requests stretched by preemption on a busy host do not flip the
         * connection to workers; a disk that is really slow (every sample high) does within ~30 requests.
         */
        void sample(long nanos) {
            long avg = serviceNanos;
            long capped = Math.min(nanos, 4 * inlineBelowNanos);
            serviceNanos = avg + ((capped - avg) >> 5); // racy read-modify-write: a heuristic, a lost sample is harmless
        }

        /**
         * Makes {@code rx} hold at least {@code n} unread bytes, reading as much as the socket has. With
         * nothing in flight it first polls the socket for up to {@link #pollNanos}, an adaptive window
         * (QEMU's aio polling works the same way): a QD1 client sends its next request one round trip
         * after our reply, and catching it awake saves the reader's wakeup (50-150 us on a VM whose vCPUs
         * idle). The window doubles (from 4 us up to {@code phost.nbd.pollMicros}, default 100) when the
         * request came within that maximum but after the window, and halves when the client took longer,
         * so an idle or slow client costs little CPU.
         */
        private void fill(int n) throws IOException {
            if (rx.remaining() >= n) {
                return;
            }
            flushReplies(); // the read below may wait for the client, which may be waiting for these
            rx.compact();
            if (pollMaxNanos > 0 && inFlight.get() == 0) {
                long t0 = System.nanoTime();
                if (pollNanos == 0 || !poll(n, t0 + pollNanos)) {
                    blockingFill(n);
                    long waited = System.nanoTime() - t0;
                    pollNanos = waited <= pollMaxNanos ? Math.min(pollMaxNanos, Math.max(2 * pollNanos, POLL_MIN_NANOS))
                        : pollNanos >> 1;
                }
            } else {
                blockingFill(n);
            }
            rx.flip();
        }

        /** Non-blocking reads into rx until it holds {@code n} bytes (true) or {@code deadline} passes. */
        private boolean poll(int n, long deadline) throws IOException {
            ch.configureBlocking(false); // safe: with nothing in flight no worker writes to the channel
            try {
                while (rx.position() < n) {
                    int r = ch.read(rx);
                    if (r < 0) {
                        throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
                    }
                    streamOffset += r;
                    if (r == 0) {
                        if (System.nanoTime() - deadline > 0) {
                            return false;
                        }
                        Thread.onSpinWait();
                    }
                }
                return true;
            } finally {
                ch.configureBlocking(true);
            }
        }

        private void blockingFill(int n) throws IOException {
            while (rx.position() < n) {
                int r = ch.read(rx);
                if (r < 0) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
                }
                streamOffset += r;
            }
        }

        /** Fills {@code dst} from what {@code rx} already holds, then straight from the socket. */
        private void receive(ByteBuffer dst) throws IOException {
            int n = Math.min(rx.remaining(), dst.remaining());
            if (n > 0) {
                int limit = rx.limit();
                rx.limit(rx.position() + n);
                dst.put(rx);
                rx.limit(limit);
            }
            if (dst.hasRemaining()) {
                flushReplies();
                readFully(dst);
            }
        }

        /** Discards {@code n} payload bytes (an oversized WRITE we answer with EINVAL). */
        private void skipRx(long n) throws IOException {
            while (n > 0) {
                if (!rx.hasRemaining()) {
                    fill(1);
                }
                int k = (int) Math.min(n, rx.remaining());
                rx.position(rx.position() + k);
                n -= k;
            }
        }

        /** Runs one request on a worker thread and replies. */
        void execute(Slot s) throws IOException {
            Export e = export;
            VirtualDisk disk = e.disk();
            long len = s.length & 0xFFFFFFFFL;
            int error = 0;
            boolean write = s.type == CMD_WRITE || s.type == CMD_TRIM || s.type == CMD_WRITE_ZEROES;
            if (s.type < 0 || s.type == CMD_CACHE || s.type > CMD_BLOCK_STATUS) {
                error = EINVAL;
            } else if ((s.flags & ~(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE)) != 0) {
                error = EINVAL; // includes FAST_ZERO, which we do not advertise
            } else if (write && e.readOnly()) {
                error = EPERM;
            } else if (s.type != CMD_FLUSH && (s.offset < 0 || len > disk.size() - s.offset)) {
                error = write ? ENOSPC : EINVAL;
            } else if (s.type != CMD_FLUSH && s.type != CMD_BLOCK_STATUS
                && ((s.offset | len) % disk.logicalSectorSize()) != 0) {
                error = EINVAL; // violates the minimum block size we advertised
            } else if ((s.type == CMD_READ || s.type == CMD_BLOCK_STATUS) && len == 0
                || len > MAX_PAYLOAD && (s.type == CMD_READ)) {
                error = EINVAL;
            } else if (s.type == CMD_BLOCK_STATUS && !baseAllocation && dirtyBitmap == null) {
                error = EINVAL;
            }
            if (error == 0) {
                boolean diskIo = s.type != CMD_BLOCK_STATUS; // a metadata query, not disk I/O (as SCSI GET LBA STATUS)
                int qosBytes = s.type == CMD_READ || s.type == CMD_WRITE ? (int) len : 0;
                if (diskIo) {
                    admit(e.qos(), qosBytes);
                }
                long t0 = System.nanoTime();
                try {
                    switch (s.type) {
                        case CMD_READ -> {
                            s.payload((int) len);
                            disk.read(s.offset, s.view(len));
                            e.stats().recordRead(len, System.nanoTime() - t0);
                            replyRead(s, len);
                            return;
                        }
                        case CMD_WRITE -> {
                            disk.write(s.offset, s.view(len));
                            if ((s.flags & CMD_FLAG_FUA) != 0) {
                                disk.flush();
                            }
                            e.stats().recordWrite(len, System.nanoTime() - t0);
                        }
                        case CMD_FLUSH -> {
                            disk.flush();
                            e.stats().recordFlush(System.nanoTime() - t0);
                        }
                        case CMD_TRIM -> {
                            disk.unmap(s.offset, len);
                            if ((s.flags & CMD_FLAG_FUA) != 0) {
                                disk.flush();
                            }
                            e.stats().recordUnmap(System.nanoTime() - t0);
                        }
                        case CMD_WRITE_ZEROES -> {
                            disk.writeZeroes(s.offset, len);
                            if ((s.flags & CMD_FLAG_FUA) != 0) {
                                disk.flush();
                            }
                            e.stats().recordUnmap(System.nanoTime() - t0);
                        }
                        case CMD_BLOCK_STATUS -> {
                            replyBlockStatus(s, disk, len);
                            return;
                        }
                        default -> error = EINVAL;
                    }
                } catch (IOException | RuntimeException ex) {
                    if (write && DiskFullException.isDiskFull(ex)) {
                        error = ENOSPC; // the client sees a full disk, as from a local one
                        if (e.stats().recordNoSpace()) {
                            LOG.log(System.Logger.Level.WARNING, "nbd export=" + e.name() + ": no space left on the host file system (" + ex.getMessage()
                                + "); writes fail with ENOSPC until space is freed");
                        }
                    } else {
                        e.stats().recordError();
                        error = ex instanceof IllegalArgumentException ? EINVAL : EIO;
                    }
                } finally {
                    if (diskIo) {
                        long now = System.nanoTime();
                        e.qos().completed(qosBytes, now - t0, now);
                    }
                }
            }
            if (error != 0 && structured && (s.type == CMD_READ || s.type == CMD_BLOCK_STATUS)) {
                replyStructuredError(s, error);
            } else {
                replySimple(s, error);
            }
        }

        /**
         * Parks this worker until the export's QoS flow admits an I/O of {@code bytes}: an NBD client is held
         * to the disk's limit as a guest is (its other requests wait in the connection's window meanwhile).
         */
        private static void admit(QosFlow qos, int bytes) {
            long now = System.nanoTime();
            for (long wait; (wait = qos.tryAdmit(bytes, now)) > 0; now = System.nanoTime()) {
                LockSupport.parkNanos(wait);
            }
        }

        private void replySimple(Slot s, int error) throws IOException {
            ByteBuffer h = s.header.clear();
            h.putInt(SIMPLE_REPLY_MAGIC).putInt(error).putLong(s.cookie).flip();
            send(s, h, null);
        }

        private void replyStructuredError(Slot s, int error) throws IOException {
            ByteBuffer h = s.header.clear();
            h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_ERROR)
                .putLong(s.cookie).putInt(6).putInt(error).putShort((short) 0).flip();
            send(s, h, null);
        }

        private void replyRead(Slot s, long len) throws IOException {
            ByteBuffer h = s.header.clear();
            if (structured) {
                h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) REPLY_FLAG_DONE).putShort((short) REPLY_TYPE_OFFSET_DATA)
                    .putLong(s.cookie).putInt((int) (len + 8)).putLong(s.offset).flip();
            } else {
                h.putInt(SIMPLE_REPLY_MAGIC).putInt(0).putLong(s.cookie).flip();
            }
            s.data.clear().limit((int) len);
            send(s, h, s.data);
        }

        private void replyBlockStatus(Slot s, VirtualDisk disk, long len) throws IOException {
            NbdDirtyBitmap bitmap = dirtyBitmap;
            int max = (s.flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_EXTENTS;
            if (baseAllocation) {
                replyAllocation(s, disk, len, bitmap == null);
            }
            if (bitmap != null) { // one chunk per selected context; the last one carries DONE
                ByteBuffer x = s.extents.clear();
                x.putInt(NbdDirtyBitmap.CONTEXT_ID);
                bitmap.extents(s.offset, len, max, x);
                sendBlockStatus(s, x.flip(), true);
            }
        }

        private void replyAllocation(Slot s, VirtualDisk disk, long len, boolean last) throws IOException {
            ByteBuffer x = s.extents.clear();
            x.putInt(BASE_ALLOCATION_ID);
            long end = s.offset + len;
            int max = (s.flags & CMD_FLAG_REQ_ONE) != 0 ? 1 : MAX_EXTENTS;
            if (disk instanceof AllocationMap map) {
                long at = s.offset;
                int n = 0;
                while (at < end && n < max) {
                    long next = map.nextAllocated(at);
                    long runEnd;
                    int state;
                    if (next > at) {
                        runEnd = Math.min(next, end);
                        state = STATE_HOLE | STATE_ZERO;
                    } else {
                        runEnd = Math.min(Math.max(map.nextUnallocated(at), at + 1), end);
                        state = 0;
                    }
                    long runLen = runEnd - at;
                    x.putInt((int) runLen).putInt(state);
                    at = runEnd;
                    n++;
                }
            } else {
                x.putInt((int) len).putInt(0);
            }
            sendBlockStatus(s, x.flip(), last);
        }

        private void sendBlockStatus(Slot s, ByteBuffer x, boolean last) throws IOException {
            ByteBuffer h = s.header.clear();
            h.putInt(STRUCTURED_REPLY_MAGIC).putShort((short) (last ? REPLY_FLAG_DONE : 0)).putShort((short) REPLY_TYPE_BLOCK_STATUS)
                .putLong(s.cookie).putInt(x.remaining()).flip();
            send(s, h, x);
        }

        /**
         * Sends one reply: appended to {@link #tx} when the reader serves a pipelined burst inline (one
         * write for the whole burst instead of one syscall and one client wakeup per reply), else written
         * at once, whole, under the write lock so it never interleaves with a worker's.
         */
        private void send(Slot s, ByteBuffer h, ByteBuffer body) throws IOException {
            if (s.batched) {
                int need = h.remaining() + (body == null ? 0 : body.remaining());
                if (need <= tx.remaining()) {
                    tx.put(h);
                    if (body != null) {
                        tx.put(body);
                    }
                    return;
                }
                flushReplies();
            }
            synchronized (writeLock) {
                if (body == null) {
                    writeFully(h);
                } else {
                    s.gather[0] = h;
                    s.gather[1] = body;
                    writeFully(s.gather);
                }
            }
        }

        /** Writes the batched replies (reader thread only); called before anything that may wait for the client. */
        private void flushReplies() throws IOException {
            if (tx.position() == 0) {
                return;
            }
            tx.flip();
            synchronized (writeLock) {
                writeFully(tx);
            }
            tx.clear();
        }
    }
}
