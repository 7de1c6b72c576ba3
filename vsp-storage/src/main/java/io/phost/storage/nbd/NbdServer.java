package io.phost.storage.nbd;

import io.phost.core.sys.SocketFiles;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.vhdx.DiskCapabilities;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
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
 * ({@code base:allocation}, a backup's {@code qemu:dirty-bitmap:NAME}). Commands: READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES, BLOCK_STATUS, DISC.
 *
 * <p>One thread per connection reads requests into one of {@value NbdConnection#SLOTS} preallocated slots (its payload
 * buffer grows to the largest request seen, never past {@link #MAX_PAYLOAD}; all payload buffers of a
 * connection together stay within {@link Limits#connectionBufferBytes()}), submits them, and drives the
 * queue: up to {@value NbdConnection#SLOTS} requests run at once per connection. Replies are batched and written before
 * the thread waits. An idle connection polls briefly for the next request before sleeping (an adaptive
 * window, see {@code NbdConnection.fill}). The steady request path allocates nothing (buffers, slots and
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
    private final ServerSocketChannel server;
    private final Path socketPath;
    private final int port;
    private final Map<String, Export> exports;
    private final Set<NbdConnection> connections = ConcurrentHashMap.newKeySet();
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
     * One exported disk, served through a storage-core {@link ScsiLun}: its own, or, for a disk a partition
     * serves, that partition's ({@link #sharing}): one image, one LUN, one QoS flow, one checkpoint pause. The
     * LUN's flow admits NBD I/O as guest I/O, its stats count it. {@code engine} is the engine the export's
     * connections run that LUN's I/O on (see {@link #engineFor}), whatever engine the LUN's guests use.
     */
    public record Export(String name, ScsiLun lun, IoEngines.Kind engine, NbdDirtyBitmap dirtyBitmap) {
        public Export(String name, ScsiLun lun) {
            this(name, lun, lun.engineKind(), null);
        }

        public Export(String name, VirtualDisk disk, boolean readOnly) {
            this(name, new ScsiLun(name, disk, QosFlow.UNLIMITED, readOnly, IoEngines.Kind.AUTO), engineFor(disk, IoEngines.Kind.AUTO), null);
        }

        /**
         * An export of the disk behind {@code lun}, the LUN a partition serves it through (its I/O, QoS flow and
         * checkpoint pause are the partition's), run on {@code configured} ({@code io_engine}) as NBD wants it.
         */
        public static Export sharing(String name, ScsiLun lun, IoEngines.Kind configured) {
            return new Export(name, lun, engineFor(lun.disk(), configured), null);
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

        /** This export with its I/O admitted by {@code flow} (on a LUN of its own). */
        public Export withQos(QosFlow flow) {
            return new Export(name, new ScsiLun(name, lun.disk(), flow, lun.readOnly(), lun.engineKind()), engine, dirtyBitmap);
        }

        /** This export with its I/O run by {@code engine} (the disk's configured {@code io_engine}). */
        public Export withEngine(IoEngines.Kind engine) {
            return new Export(name, lun, engineFor(lun.disk(), engine), dirtyBitmap);
        }

        /**
         * {@code auto} for an exported image (VHDX, VHD) is the image's own buffered path run inline on the
         * connection's thread, as qemu-nbd serves (cache=writeback): NBD clients (copies, backups) reread what
         * the host page cache holds, which the O_DIRECT mapped path that {@code auto} picks for guests would
         * skip (measured: QD1 reads 0.7-0.8x qemu-nbd on the mapped path, 2.1x inline; docs/benchmarks.md).
         * Other disks and an explicit engine are kept.
         */
        static IoEngines.Kind engineFor(VirtualDisk disk, IoEngines.Kind configured) {
            boolean image = disk.capabilities().path() == DiskCapabilities.IoPath.MAPPED_RANGES;
            return configured == IoEngines.Kind.AUTO && image ? IoEngines.Kind.INLINE : configured;
        }

        /** This export also offering {@code bitmap}'s {@code qemu:dirty-bitmap:NAME} context (a backup's). */
        public Export withDirtyBitmap(NbdDirtyBitmap bitmap) {
            return new Export(name, lun, engine, bitmap);
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
                NbdConnection c = new NbdConnection(this, ch);
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
    void dropped(String message) {
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

    // ---- for NbdConnection ----

    Map<String, Export> exports() {
        return exports;
    }

    boolean isClosed() {
        return closed;
    }

    /** Counts native buffer bytes a connection took (positive) or gave back (negative). */
    void bufferBytesChanged(long delta) {
        bufferBytes.addAndGet(delta);
    }

    void ended(NbdConnection c) {
        connections.remove(c);
    }

    @Override
    public void close() throws IOException {
        closed = true;
        server.close();
        for (NbdConnection c : connections) {
            c.shutdown();
        }
        timeouts.shutdownNow();
        try {
            acceptor.join(1000);
            for (NbdConnection c : connections) {
                c.join(5000); // each finishes its running requests on its own thread
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (socketPath != null) {
            SocketFiles.unlinkIfSocket(socketPath);
        }
    }
}
