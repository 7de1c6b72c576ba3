package io.phost.storage.nbd;

import io.phost.core.sys.SocketFiles;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.BlockOp;
import io.phost.storage.scsi.BlockResult;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;

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
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import static io.phost.storage.nbd.NbdDescriptor.*;

/**
 * An NBD server (newstyle fixed handshake) exporting disks on a Unix socket or a loopback TCP port, so
 * qemu-img, qemu-io, nbdinfo, nbdcopy and fio's nbd engine can use any configured disk. It is a transport
 * of the storage core like VMBus storvsc and vhost-user-blk: each connection decodes NBD requests into core
 * block requests ({@link ScsiRequest#block}) on its own {@link ScsiQueue} over the export's {@link ScsiLun},
 * so NBD I/O is admitted by the disk's QoS flow, runs on the disk's I/O engine, counts in the LUN's
 * statistics and waits while a checkpoint pauses the LUN; completions are encoded back by
 * {@link NbdReplyWriter}. The handshake is {@link NbdNegotiation}.
 *
 * <p>Options: EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY, LIST/SET_META_CONTEXT
 * ({@code base:allocation}). Commands: READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES, BLOCK_STATUS, DISC.
 *
 * <p>One thread per connection reads requests into one of {@value #SLOTS} preallocated slots (its payload
 * buffer grows to the largest request seen, never past {@link #MAX_PAYLOAD}; all payload buffers of a
 * connection together stay within {@link Limits#connectionBufferBytes()}), submits them, and drives the
 * queue: up to {@value #SLOTS} requests run at once per connection. Replies are batched and written before
 * the thread waits. An idle connection polls briefly for the next request before sleeping (an adaptive
 * window, see {@code Connection.fill}). The steady request path allocates nothing (buffers, slots and
 * requests are reused). Hostile input gets an NBD error reply, or closes only that connection
 * ({@link NbdProtocolException}); the server keeps serving others.
 *
 * <p>Resource bounds ({@link Limits}): at most {@code maxConnections} connections (more are closed at
 * accept), a client that has not finished the handshake within {@code handshakeTimeout} is dropped, and a
 * connection's memory (native, from its own arenas) is freed when it closes, not when the GC runs. A
 * connection in handshake holds ~33 KiB; one in transmission ~0.5 MiB plus its payload buffers.
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
    /** Longest wait for a disk completion before the connection looks at its socket again. */
    private static final long IO_WAIT_NANOS = 50_000;

    /** Longest poll for a connection's next request before sleeping (see Connection.fill; 0: never poll). */
    private final long pollMaxNanos = Long.getLong("phost.nbd.pollMicros", 100) * 1000;
    private static final long POLL_MIN_NANOS = 4_000;
    private final ServerSocketChannel server;
    private final Path socketPath;
    private final int port;
    private final Map<String, Export> exports;
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

    /**
     * One exported disk, served through its own storage-core {@link ScsiLun}: the LUN's QoS flow (the disk's
     * flow for NBD clients) admits its I/O as guest I/O is admitted, its engine runs it, its stats count it.
     */
    public record Export(String name, ScsiLun lun) {
        public Export(String name, VirtualDisk disk, boolean readOnly) {
            this(name, new ScsiLun(name, disk, QosFlow.UNLIMITED, readOnly, IoEngines.Kind.AUTO));
        }

        public VirtualDisk disk() {
            return lun.disk();
        }

        public boolean readOnly() {
            return lun.readOnly();
        }

        public DiskStats stats() {
            return lun.stats();
        }

        public QosFlow qos() {
            return lun.qos();
        }

        /** This export with its I/O admitted by {@code flow}. */
        public Export withQos(QosFlow flow) {
            return new Export(name, new ScsiLun(name, lun.disk(), flow, lun.readOnly(), lun.engineKind()));
        }

        /** This export with its I/O run by {@code engine} (the disk's configured {@code io_engine}). */
        public Export withEngine(IoEngines.Kind engine) {
            return new Export(name, new ScsiLun(name, lun.disk(), lun.qos(), lun.readOnly(), engine));
        }
    }

    private NbdServer(ServerSocketChannel server, Path socketPath, int port, List<Export> exports, Limits limits) {
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
        NbdServer s = new NbdServer(ch, path, -1, exports, limits);
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
        NbdServer s = new NbdServer(ch, null, bound, exports, limits);
        s.acceptor.start();
        return s;
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
        timeouts.shutdownNow();
        try {
            acceptor.join(1000);
            for (Connection c : connections) {
                c.join(5000); // each finishes its running requests on its own thread
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (socketPath != null) {
            SocketFiles.unlinkIfSocket(socketPath);
        }
    }

    /** The NBD side of one request slot (header fields, payload buffer); its core side is the {@link ScsiRequest} of the same index. */
    private static final class Slot {
        /** The payload buffer (empty until the first request with data), the arena that owns it, its address. */
        ByteBuffer data = EMPTY;
        Arena dataArena;
        long dataAddress;
        int flags;
        int type;
        long cookie;
        long offset;
        int length;

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
            dataAddress = 0;
            if (capacity > 0) {
                dataArena = Arena.ofShared();
                MemorySegment m = dataArena.allocate(capacity, 4096); // page-aligned: fine for O_DIRECT engines
                data = m.asByteBuffer();
                dataAddress = m.address();
            }
            return data.capacity() - before;
        }
    }

    private final class Connection implements Runnable, NbdNegotiation.Wire, ScsiQueue.Completion {
        private final SocketChannel ch;
        /** Owns every fixed buffer of this connection; closed (memory freed) when the connection ends. */
        private final Arena arena = Arena.ofShared();
        private long arenaBytes;
        private final ByteBuffer in;
        private final ByteBuffer out;
        /** The storage-core queue this connection's requests run on (created when transmission starts). */
        private ScsiQueue queue;
        private final Slot[] slots = new Slot[SLOTS];
        /** Payload buffer bytes of all slots (connection thread only). */
        private long payloadBytes;
        /** Cancels the handshake timeout; set by the acceptor before the reader starts. */
        volatile ScheduledFuture<?> deadline;
        private volatile boolean handshaking = true;
        private boolean released;
        private ByteBuffer rx;
        private ByteBuffer extents;
        private NbdReplyWriter replies;
        /** Current poll window in fill() (connection thread only). */
        private long pollNanos;
        private boolean nonBlocking;
        private long streamOffset;
        private boolean baseAllocation;
        private Export export;
        private volatile boolean dead;
        private volatile Thread thread;

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

        /** Transmission buffers, slots and the core queue: only a client that finished the handshake costs this. */
        private void startTransmission(boolean structured) {
            rx = allocate(RX_BUFFER);
            extents = allocate(8 + 8 * MAX_EXTENTS);
            replies = new NbdReplyWriter(this, allocate(RX_BUFFER), allocate(64));
            replies.structured(structured);
            for (int i = 0; i < SLOTS; i++) {
                slots[i] = new Slot();
            }
            ScsiTarget target = new ScsiTarget();
            target.add(0, export.lun());
            queue = new ScsiQueue(target, SLOTS, 1, this); // one iovec: a payload buffer is contiguous
        }

        /** The acceptor's timer: a client still haggling options after the limit is dropped. */
        void handshakeTimedOut() {
            if (handshaking) {
                dropped("nbd client dropped: no export chosen within " + limits.handshakeTimeoutMillis() + " ms");
                shutdown();
            }
        }

        /**
         * Makes {@code s}'s payload buffer hold {@code n} bytes (n <= MAX_PAYLOAD). When that would take the
         * connection past its buffer budget, finishes every outstanding request and frees the other slots'
         * buffers first, so one connection never holds more than the budget.
         */
        private void reserve(Slot s, int n) throws IOException {
            int have = s.data.capacity();
            if (have >= n) {
                return;
            }
            int target = Math.max(n, Math.min(MAX_PAYLOAD, Math.max(MIN_PAYLOAD_BUFFER, have * 2)));
            if (payloadBytes - have + target > limits.connectionBufferBytes()) {
                target = n;
            }
            if (payloadBytes - have + target > limits.connectionBufferBytes()) {
                while (queue.outstanding() > 0) {
                    if (dead) {
                        throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "connection closed");
                    }
                    pump(); // only with nothing in flight may other slots' buffers go
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

        /** Waits for the connection thread to end (server close: its requests are finished or abandoned then). */
        void join(long millis) throws InterruptedException {
            Thread t = thread;
            if (t != null) {
                t.join(millis);
            }
        }

        @Override
        public void run() {
            thread = Thread.currentThread();
            try {
                NbdNegotiation negotiation = new NbdNegotiation(this, in, out, exports);
                boolean go = negotiation.run();
                export = negotiation.export();
                baseAllocation = negotiation.baseAllocation();
                handshaking = false;
                ScheduledFuture<?> d = deadline;
                if (d != null) {
                    d.cancel(false);
                }
                if (go && !dead) {
                    startTransmission(negotiation.structured());
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
                shutdown();
                boolean idle = true;
                if (queue != null) {
                    queue.close(); // lets running requests finish (their replies go nowhere now), closes the engines
                    idle = queue.outstanding() == 0;
                }
                if (idle) {
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
            blocking();
            while (b.hasRemaining()) {
                int n = ch.read(b);
                if (n < 0) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
                }
                streamOffset += n;
            }
        }

        /** One buffer (not the varargs form: that allocates an array per reply). Spins if the socket is non-blocking. */
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

        /** Switches the socket to blocking mode (one fcntl, only when it changes). */
        private void blocking() throws IOException {
            if (nonBlocking) {
                ch.configureBlocking(true);
                nonBlocking = false;
            }
        }

        private void nonBlocking() throws IOException {
            if (!nonBlocking) {
                ch.configureBlocking(false);
                nonBlocking = true;
            }
        }

        /** One read into rx of whatever the socket has (0 when non-blocking and nothing came). */
        private int readSome() throws IOException {
            int r = ch.read(rx);
            if (r < 0) {
                throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "client closed");
            }
            streamOffset += r;
            return r;
        }

        // ---- transmission ----

        /**
         * Reads requests from {@link #rx} (filled by whatever one read() returns, so requests a client
         * pipelines arrive together), decodes each into a core request on this connection's {@link ScsiQueue}
         * and answers it when the queue completes it. One thread does everything: the disk's QoS flow admits
         * each request and the disk's I/O engine runs it (io_uring, inline for memory, threads ...), as for a
         * guest's I/O; BLOCK_STATUS, a metadata query, is answered at once.
         * <pre>
         *   rx (read mode):  | consumed | req 28 B | [write data] | next req ... | (free) |
         *                               ^position                              ^limit
         *   request ──decode/check──▶ ScsiRequest.block ──▶ queue.submit ──▶ QoS ──▶ engine
         *   engine completion ──▶ onScsiComplete ──▶ reply into the batch ──▶ flushed before any wait
         * </pre>
         */
        private void transmission() throws IOException {
            rx.clear().flip();
            try {
                serve();
            } finally {
                if (!dead) {
                    while (queue.outstanding() > 0 && !dead) {
                        pump(); // answers to the requests before a DISC or a protocol error still go out
                    }
                    replies.flush();
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
                ScsiRequest r = acquire();
                Slot s = slots[r.slot()];
                s.flags = rx.getShort() & 0xFFFF;
                s.type = rx.getShort() & 0xFFFF;
                s.cookie = rx.getLong();
                s.offset = rx.getLong();
                s.length = rx.getInt();
                long length = s.length & 0xFFFFFFFFL;
                if (s.type == CMD_DISC) {
                    queue.release(r);
                    return;
                }
                if (s.type == CMD_WRITE) {
                    if (length > MAX_PAYLOAD) {
                        if (length > 2L * MAX_PAYLOAD) {
                            queue.release(r);
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
                    reserve(s, (int) length);
                }
                start(r, s);
            }
        }

        /** A free core request; when all {@value #SLOTS} are in flight, finishes some first. */
        private ScsiRequest acquire() throws IOException {
            ScsiRequest r;
            while ((r = queue.tryAcquire()) == null) {
                if (dead || closed) {
                    throw new NbdProtocolException(NbdProtocolException.Reason.EOF, streamOffset, "connection closed");
                }
                pump();
            }
            return r;
        }

        /** Checks one request as NBD defines its errors, then submits it to the core (or answers it here). */
        private void start(ScsiRequest r, Slot s) throws IOException {
            int error = check(s);
            if (error != 0 || s.type == CMD_BLOCK_STATUS) {
                try {
                    if (error == 0) {
                        blockStatus(s);
                    } else {
                        replies.status(s.cookie, error, s.type == CMD_READ || s.type == CMD_BLOCK_STATUS);
                    }
                } finally {
                    queue.release(r);
                }
                return;
            }
            long len = s.length & 0xFFFFFFFFL;
            boolean fua = (s.flags & CMD_FLAG_FUA) != 0;
            int tag = r.slot();
            switch (s.type) {
                case CMD_READ -> r.block(0, BlockOp.READ, s.offset, len, false, tag).data().tryAdd(s.dataAddress, len);
                case CMD_WRITE -> {
                    r.block(0, BlockOp.WRITE, s.offset, len, fua, tag);
                    if (len > 0) {
                        r.data().tryAdd(s.dataAddress, len);
                    }
                }
                case CMD_FLUSH -> r.block(0, BlockOp.FLUSH, 0, 0, false, tag);
                case CMD_TRIM -> r.block(0, BlockOp.UNMAP, s.offset, len, fua, tag);
                default -> r.block(0, BlockOp.WRITE_ZEROES, s.offset, len, fua, tag);
            }
            queue.submit(r);
        }

        /** The NBD error a request gets before it reaches the disk, or 0. */
        private int check(Slot s) {
            long len = s.length & 0xFFFFFFFFL;
            long size = export.disk().size();
            boolean write = s.type == CMD_WRITE || s.type == CMD_TRIM || s.type == CMD_WRITE_ZEROES;
            if (s.type < 0 || s.type == CMD_CACHE || s.type > CMD_BLOCK_STATUS) {
                return EINVAL;
            } else if ((s.flags & ~(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_DF | CMD_FLAG_REQ_ONE)) != 0) {
                return EINVAL; // includes FAST_ZERO, which we do not advertise
            } else if (write && export.readOnly()) {
                return EPERM;
            } else if (s.type != CMD_FLUSH && (s.offset < 0 || len > size - s.offset)) {
                return write ? ENOSPC : EINVAL;
            } else if (s.type != CMD_FLUSH && s.type != CMD_BLOCK_STATUS
                && ((s.offset | len) % export.disk().logicalSectorSize()) != 0) {
                return EINVAL; // violates the minimum block size we advertised
            } else if ((s.type == CMD_READ || s.type == CMD_BLOCK_STATUS) && len == 0 || len > MAX_PAYLOAD && s.type == CMD_READ) {
                return EINVAL;
            } else if (s.type == CMD_BLOCK_STATUS && !baseAllocation) {
                return EINVAL;
            }
            return 0;
        }

        /** The core finished a request: encode its reply (connection thread; the queue calls back from pump). */
        @Override
        public void onScsiComplete(ScsiRequest r) {
            Slot s = slots[r.slot()];
            try {
                int error = errno(r.result());
                if (error == 0 && s.type == CMD_READ) {
                    replies.read(s.cookie, s.offset, s.payload(s.length));
                } else {
                    replies.status(s.cookie, error, s.type == CMD_READ);
                }
            } catch (IOException e) {
                shutdown(); // the client is gone; the serve loop ends on its next read
            } finally {
                queue.release(r);
            }
        }

        private static int errno(BlockResult result) {
            return switch (result) {
                case OK -> 0;
                case NO_SPACE -> ENOSPC; // the client sees a full disk, as from a local one
                case READ_ONLY -> EPERM;
                case INVALID, UNSUPPORTED -> EINVAL;
                case IO_ERROR -> EIO;
            };
        }

        /**
         * Drives the core queue while requests are outstanding: submits and reaps (replies go to the batch),
         * writes the batch, and when there was nothing to do waits up to {@link #IO_WAIT_NANOS} for a
         * completion, so a new request from the client is not kept waiting longer than that.
         */
        private void pump() throws IOException {
            int work = queue.doWork();
            replies.flush();
            if (work == 0 && queue.outstanding() > 0) {
                queue.awaitWork(IO_WAIT_NANOS);
                replies.flush();
            }
        }

        /**
         * Makes {@code rx} hold at least {@code n} unread bytes, reading as much as the socket has. While
         * requests are outstanding the socket is read without blocking, between turns of {@link #pump}.
         * With nothing outstanding it first polls the socket for up to {@link #pollNanos}, an adaptive window
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
            rx.compact();
            try {
                while (rx.position() < n) {
                    if (queue.outstanding() > 0) {
                        nonBlocking();
                        queue.doWork();
                        if (readSome() == 0) {
                            pump();
                        }
                    } else {
                        replies.flush(); // the read below may wait for the client, which may be waiting for these
                        idleFill(n);
                    }
                }
            } finally {
                rx.flip();
            }
        }

        /** Fills rx to {@code n} bytes with nothing outstanding: the adaptive poll window, then a blocking read. */
        private void idleFill(int n) throws IOException {
            if (pollMaxNanos > 0) {
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
        }

        /** Non-blocking reads into rx until it holds {@code n} bytes (true) or {@code deadline} passes. */
        private boolean poll(int n, long deadline) throws IOException {
            nonBlocking();
            while (rx.position() < n) {
                if (readSome() == 0) {
                    if (System.nanoTime() - deadline > 0) {
                        return false;
                    }
                    Thread.onSpinWait();
                }
            }
            return true;
        }

        private void blockingFill(int n) throws IOException {
            blocking();
            while (rx.position() < n) {
                readSome();
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
                replies.flush();
                readFully(dst); // the client is sending this payload now: a blocking read ends
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

        /** Answers BLOCK_STATUS for base:allocation from the disk's allocation map (all data when it has none). */
        private void blockStatus(Slot s) throws IOException {
            VirtualDisk disk = export.disk();
            long len = s.length & 0xFFFFFFFFL;
            ByteBuffer x = extents.clear();
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
                    x.putInt((int) (runEnd - at)).putInt(state);
                    at = runEnd;
                    n++;
                }
            } else {
                x.putInt((int) len).putInt(0);
            }
            replies.blockStatus(s.cookie, x.flip());
        }
    }
}
