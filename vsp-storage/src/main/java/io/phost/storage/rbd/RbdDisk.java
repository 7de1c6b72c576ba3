package io.phost.storage.rbd;

import io.phost.core.sys.Errno;
import io.phost.core.sys.EventFd;
import io.phost.core.sys.Librbd;
import io.phost.core.sys.NativeException;
import io.phost.storage.engine.EngineSource;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * A Ceph RBD image as a {@link VirtualDisk}, through librbd (FFM, {@link Librbd}). One rados client and one
 * image handle per disk.
 *
 * <p>Two I/O paths: the synchronous {@code VirtualDisk} calls (NBD workers, tools: {@code rbd_read}/
 * {@code rbd_write}, thread-safe in librbd) and {@link RbdEngine}s (the storage queues: asynchronous
 * {@code rbd_aio_*} with NULL-callback completions). librbd signals one eventfd per image when a
 * completion finishes, so the disk owns that eventfd and the hand-off of finished completions to the
 * engine that submitted them:
 *
 * <pre>
 *   engine A ─ rbd_aio_readv(arg = A.id&lt;&lt;17 | slot) ─▶ librbd ─▶ OSD
 *                                                        ◀─ done: list += c; write(eventfd)
 *   any engine's poll: lock; rbd_poll_io_events → for each c:
 *        owner = arg&gt;&gt;&gt;17; owner.ring += (slot, result); release(c); owner ≠ me ? signal(owner.wake)
 *   an engine's wait: ppoll(eventfd, own wake) → read only the fds that polled readable → poll
 * </pre>
 *
 * <p>Writers hold the image's exclusive lock ({@code rbd_lock_acquire}) from open to close: a second
 * appliance opening the image for writing is refused naming the holder, unless {@code breakLock} asks to
 * break it (librbd then blocklists the previous holder, whose later writes fail with ESHUTDOWN).
 */
public final class RbdDisk implements VirtualDisk, EngineSource {
    /** A completion's argument is {@code engineId << SLOT_BITS | slot}. */
    static final int SLOT_BITS = 17;
    static final int MAX_ENGINES = 1024;
    private static final int LOGICAL_SECTOR = 512;
    private static final int PHYSICAL_SECTOR = 4096;
    private static final int POLL_BATCH = 64;
    /** librbd's answer to a lock request while another client holds the lock manually. */
    private static final int EROFS = 30;
    /** What a blocklisted (fenced) client gets from every call. */
    private static final int ESHUTDOWN = 108;

    /**
     * Where an image lives and how to reach it.
     *
     * @param clusterConfig ceph.conf path (monitors, auth), or null for librados' defaults ($CEPH_CONF, /etc/ceph)
     * @param client        client id without "client." ("admin")
     * @param keyring       keyring path, or null for the one ceph.conf names
     * @param createSize    bytes to create the image with when it does not exist; 0 = it must exist
     * @param breakLock     break (and blocklist) another client's exclusive lock instead of refusing
     * @param connectTimeoutSeconds bound on reaching the monitors (client_mount_timeout, rados_mon_op_timeout)
     * @param deferLock     open without the exclusive lock; the owner takes it with {@link #acquireLock} when the
     *                      partition using the disk starts (a disk shared by two appliances, see docs/cluster.md)
     */
    public record Options(Path clusterConfig, String client, Path keyring, String pool, String namespace,
                          String image, long createSize, boolean readOnly, boolean breakLock, int connectTimeoutSeconds,
                          boolean deferLock) {
        public Options(Path clusterConfig, String client, Path keyring, String pool, String namespace,
                       String image, long createSize, boolean readOnly, boolean breakLock, int connectTimeoutSeconds) {
            this(clusterConfig, client, keyring, pool, namespace, image, createSize, readOnly, breakLock,
                connectTimeoutSeconds, false);
        }

        public Options {
            if (pool == null || pool.isEmpty() || image == null || image.isEmpty()) {
                throw new IllegalArgumentException("rbd: pool and image are required");
            }
            if (client == null || client.isEmpty()) {
                client = "admin";
            }
            if (connectTimeoutSeconds <= 0) {
                throw new IllegalArgumentException("rbd: connect timeout must be positive: " + connectTimeoutSeconds);
            }
        }

        /** pool[/namespace]/image, as the rbd CLI spells it. */
        public String spec() {
            return pool + "/" + (namespace == null || namespace.isEmpty() ? "" : namespace + "/") + image;
        }
    }

    private final Options options;
    private final long cluster;
    private final long io;
    private final long image;
    /** The image's size; grows when someone runs {@code rbd resize} (see {@link #refreshSize}). */
    private volatile long size;
    private final EventFd completions;
    // hand-off state, guarded by 'this'
    private final RbdEngine[] engines = new RbdEngine[MAX_ENGINES];
    private final MemorySegment comps = Arena.global().allocate(ValueLayout.JAVA_LONG, POLL_BATCH);
    private boolean closed;
    /** Orders control-path calls (size refresh) against close; not 'this', which the I/O hand-off uses. */
    private final Object handleLock = new Object();
    private boolean handleClosed;

    private RbdDisk(Options options, long cluster, long io, long image, EventFd completions) {
        this.options = options;
        this.cluster = cluster;
        this.io = io;
        this.image = image;
        this.size = Librbd.size(image);
        this.completions = completions;
    }

    /**
     * Connects, creates the image if asked and missing, opens it and (for writing) takes its exclusive lock.
     *
     * @throws IOException naming the monitors when the cluster is unreachable within the timeout, the image
     *                     when it is missing, the holder when another client has the lock
     */
    public static RbdDisk open(Options o) throws IOException {
        return onCephStack("open " + o.spec(), () -> openHere(o));
    }


    private interface CephCall<T> {
        T call() throws IOException;
    }

    /** Runs a control-path call on a thread with a stack big enough for librados (-Xss512k threads crash in it). */
    private static <T> T onCephStack(String what, CephCall<T> call) throws IOException {
        Object[] result = new Object[1];
        Throwable[] failure = new Throwable[1];
        Thread t = new Thread(null, () -> {
            try {
                result[0] = call.call();
            } catch (Throwable e) {
                failure[0] = e;
            }
        }, "rbd-" + what, Librbd.CEPH_STACK_BYTES);
        t.start();
        try {
            t.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("rbd " + what + ": interrupted", e);
        }
        if (failure[0] instanceof IOException e) {
            throw new IOException(e.getMessage(), e);
        }
        if (failure[0] instanceof RuntimeException e) {
            throw e;
        }
        if (failure[0] instanceof Error e) {
            throw e;
        }
        @SuppressWarnings("unchecked")
        T r = (T) result[0];
        return r;
    }

    private static RbdDisk openHere(Options o) throws IOException {
        if (!Librbd.available()) {
            throw new IOException("rbd disk " + o.spec() + ": " + Librbd.unavailableReason());
        }
        if (o.clusterConfig() != null && !Files.isReadable(o.clusterConfig())) {
            throw new IOException("rbd disk " + o.spec() + ": cluster_config " + o.clusterConfig() + " is not readable");
        }
        long cluster = Librbd.radosCreate("client." + o.client());
        long io = 0;
        long image = 0;
        EventFd efd = null;
        try {
            if (o.clusterConfig() != null) {
                Librbd.confReadFile(cluster, o.clusterConfig().toString());
            } else {
                Librbd.confReadFile(cluster, null == System.getenv("CEPH_CONF") ? "/etc/ceph/ceph.conf" : System.getenv("CEPH_CONF"));
            }
            if (o.keyring() != null) {
                Librbd.confSet(cluster, "keyring", o.keyring().toString());
            }
            String timeout = Integer.toString(o.connectTimeoutSeconds());
            Librbd.confSet(cluster, "client_mount_timeout", timeout);
            Librbd.confSet(cluster, "rados_mon_op_timeout", timeout);
            // No client-side cache: a completed write is on the OSDs, and flush has nothing to hide.
            Librbd.confSet(cluster, "rbd_cache", "false");
            Librbd.confSet(cluster, "log_to_stderr", "false");
            Librbd.confSet(cluster, "err_to_stderr", "false");
            int r = Librbd.connect(cluster);
            if (r < 0) {
                String mons = Librbd.confGet(cluster, "mon_host");
                throw new IOException("rbd disk " + o.spec() + ": cannot reach the Ceph cluster at mon_host=["
                    + (mons.isEmpty() ? "none configured" : mons) + "] as client." + o.client() + " within "
                    + o.connectTimeoutSeconds() + " s: " + new NativeException("rados_connect", -r).getMessage());
            }
            try {
                io = Librbd.ioctxCreate(cluster, o.pool(), o.namespace());
            } catch (NativeException e) {
                throw new IOException("rbd disk " + o.spec() + ": pool '" + o.pool() + "': " + e.getMessage(), e);
            }
            long h = Librbd.open(io, o.image(), o.readOnly());
            if (h == -Errno.ENOENT && o.createSize() > 0 && !o.readOnly()) {
                int c = Librbd.create(io, o.image(), o.createSize());
                if (c < 0 && c != -Errno.EEXIST) {
                    throw new IOException("rbd disk " + o.spec() + ": cannot create (" + o.createSize() + " bytes): "
                        + new NativeException("rbd_create", -c).getMessage());
                }
                h = Librbd.open(io, o.image(), false);
            }
            if (h < 0) {
                throw new IOException("rbd disk " + o.spec() + ": cannot open"
                    + (h == -Errno.ENOENT ? " (no such image; set create size to make it)" : "") + ": "
                    + new NativeException("rbd_open", (int) -h).getMessage());
            }
            image = h;
            if (!o.readOnly() && !o.deferLock()) {
                takeLock(o, image, o.breakLock());
            }
            efd = EventFd.create();
            Librbd.check(Librbd.setImageNotification(image, efd.fd()), "rbd_set_image_notification");
            return new RbdDisk(o, cluster, io, image, efd);
        } catch (IOException | RuntimeException e) {
            if (efd != null) {
                efd.close();
            }
            if (image != 0) {
                Librbd.close(image);
            }
            if (io != 0) {
                Librbd.ioctxDestroy(io);
            }
            Librbd.shutdown(cluster);
            throw e;
        }
    }

    private static void takeLock(Options o, long image, boolean breakLock) throws IOException {
        if (breakLock) {
            // Break first, not after a refused acquire: asking a dead holder for the lock waits for librbd's
            // request timeout (rbd_request_timed_out_seconds, 30 s), which would delay an HA takeover.
            for (String owner : Librbd.lockOwners(image)) {
                int b = Librbd.lockBreak(image, owner);
                if (b < 0 && b != -Errno.ENOENT) {
                    throw new IOException("rbd disk " + o.spec() + ": cannot break the lock of " + owner + ": "
                        + new NativeException("rbd_lock_break", -b).getMessage());
                }
            }
        }
        int r = Librbd.lockAcquireExclusive(image);
        if (r == -EROFS) {
            throw new IOException("rbd disk " + o.spec() + ": another client holds the image's exclusive lock ("
                + String.join(", ", Librbd.lockOwners(image)) + "); stop that appliance, or set break_lock = true "
                + "to blocklist it");
        }
        if (r == -Errno.EINVAL) {
            throw new IOException("rbd disk " + o.spec() + ": the image has no exclusive-lock feature, so two "
                + "appliances could write it at once; enable it: rbd feature enable " + o.spec() + " exclusive-lock");
        }
        if (r < 0) {
            throw new IOException("rbd disk " + o.spec() + ": " + new NativeException("rbd_lock_acquire", -r).getMessage());
        }
    }

    public Options options() {
        return options;
    }

    /**
     * Takes the image's exclusive lock now (a {@code deferLock} disk, when its partition starts here). With
     * {@code breakHolder} a holder is broken and blocklisted first, as {@code break_lock} does at open.
     *
     * @throws IOException naming the holder when another client holds the lock and it is not to be broken
     */
    public void acquireLock(boolean breakHolder) throws IOException {
        checkWritable("take the exclusive lock");
        onCephStack("lock " + options.spec(), () -> {
            takeLock(options, image, breakHolder);
            return null;
        });
    }

    /** Flushes and gives the exclusive lock up (a {@code deferLock} disk whose partition stopped or moved away). */
    public void releaseLock() throws IOException {
        flush();
        onCephStack("unlock " + options.spec(), () -> {
            int r = Librbd.lockRelease(image);
            if (r < 0 && r != -Errno.ENOENT && r != -Errno.EINVAL && r != -ESHUTDOWN) {
                throw new IOException("rbd disk " + options.spec() + ": " + new NativeException("rbd_lock_release", -r).getMessage());
            }
            return null;
        });
    }

    /**
     * Flushes before a close, unless this is a {@code deferLock} disk that holds no lock (its partition stopped here
     * or runs on another appliance): the release already flushed, and librbd refuses a flush without the lock (EROFS).
     */
    public void flushBeforeClose() throws IOException {
        if (options.readOnly() || options.deferLock() && !onCephStack("lock owner " + options.spec(), this::holdsLock)) {
            return;
        }
        flush();
    }

    /**
     * Re-reads the image's size from librbd (which refreshes its header after another client's
     * {@code rbd resize}, or runs the resize itself when this handle holds the lock). I/O bounds follow the
     * new size at once; returns it.
     */
    public long refreshSize() throws IOException {
        synchronized (handleLock) { // never on a closed handle (librbd would use freed memory)
            if (handleClosed) {
                return size;
            }
            long now = onCephStack("size " + options.spec(), () -> Librbd.size(image));
            size = now;
            return now;
        }
    }

    /**
     * Takes RBD snapshot {@code name} of the image (a checkpoint: the caller has paused and flushed the I/O that
     * must be in it). Fails when a snapshot of that name exists.
     */
    public void createSnapshot(String name) throws IOException {
        snapshotCall("rbd_snap_create", name, () -> Librbd.snapCreate(image, name));
    }

    /**
     * Rolls the image back to snapshot {@code name} (nothing may write meanwhile); the size follows the snapshot's.
     * A {@code deferLock} disk whose partition is stopped holds no lock: it takes the lock for the rollback and gives
     * it back, so a rollback is refused, naming the holder, while another appliance runs the partition.
     */
    public void rollbackToSnapshot(String name) throws IOException {
        boolean borrowed = !options.readOnly() && !onCephStack("lock owner " + options.spec(), this::holdsLock);
        if (borrowed) {
            acquireLock(false);
        }
        try {
            snapshotCall("rbd_snap_rollback", name, () -> Librbd.snapRollback(image, name));
        } finally {
            if (borrowed) {
                releaseLock();
            }
        }
        refreshSize();
    }

    /** Removes snapshot {@code name}; a missing one counts as removed (a delete that crashed half-way runs again). */
    public void removeSnapshot(String name) throws IOException {
        snapshotCall("rbd_snap_remove", name, () -> {
            int r = Librbd.snapRemove(image, name);
            return r == -Errno.ENOENT ? 0 : r;
        });
    }

    private void snapshotCall(String call, String name, CephCall<Integer> op) throws IOException {
        synchronized (handleLock) {
            if (handleClosed) {
                throw new IOException("rbd disk " + options.spec() + " is closed");
            }
            int r = onCephStack(call + " " + options.spec() + "@" + name, op);
            if (r < 0) {
                throw new IOException("rbd disk " + options.spec() + ": " + new NativeException(call + " " + name, -r).getMessage());
            }
        }
    }

    /** Who holds the image's exclusive lock (librbd's owner strings); empty when nobody does. */
    public List<String> lockOwners() throws IOException {
        return onCephStack("lock owners " + options.spec(), () -> List.of(Librbd.lockOwners(image)));
    }

    /** True while this handle holds the image's exclusive lock (false once another client broke it). */
    public boolean holdsLock() {
        try {
            return Librbd.isExclusiveLockOwner(image);
        } catch (NativeException e) {
            if (e.errno() == ESHUTDOWN) {
                return false; // blocklisted: another client broke our lock
            }
            throw e;
        }
    }

    long image() {
        return image;
    }

    int completionFd() {
        return completions.fd();
    }

    /** An asynchronous engine for one storage queue (one polling thread). */
    @Override
    public RbdEngine openEngine(int depth) {
        return new RbdEngine(this, depth);
    }

    synchronized int register(RbdEngine e) {
        if (closed) {
            throw new IllegalStateException("rbd disk " + options.spec() + " is closed");
        }
        for (int i = 0; i < engines.length; i++) {
            if (engines[i] == null) {
                engines[i] = e;
                return i;
            }
        }
        throw new IllegalStateException("rbd disk " + options.spec() + ": more than " + MAX_ENGINES + " engines");
    }

    synchronized void unregister(int id) {
        engines[id] = null;
    }

    /**
     * Moves every finished completion to its engine's ring (caller holds the lock). Pops librbd's list
     * without reading the eventfd first: {@code rbd_poll_io_events} is a lock-free pop, a read(2) per look
     * was most of a spinning queue agent's CPU per I/O. The eventfd is reset only by {@link #rearmLocked},
     * before a sleep on it.
     */
    void drainLocked(RbdEngine caller) {
        int n;
        do {
            n = Librbd.pollIoEvents(image, comps.address(), POLL_BATCH);
            for (int k = 0; k < n; k++) {
                long c = comps.getAtIndex(ValueLayout.JAVA_LONG, k);
                long arg = Librbd.aioArg(c);
                long result = Librbd.aioReturnValue(c);
                Librbd.aioRelease(c);
                int id = (int) (arg >>> SLOT_BITS);
                RbdEngine owner = id < MAX_ENGINES ? engines[id] : null;
                if (owner != null) { // null: an engine that gave up waiting in close
                    owner.completedLocked((int) (arg & ((1 << SLOT_BITS) - 1)), result, owner != caller);
                }
            }
        } while (n == POLL_BATCH);
    }

    /**
     * Resets the completion eventfd (caller holds the lock) once a poll on it said it is readable, so the
     * next poll sleeps. librbd appends to its list before it signals: a completion appended after this read
     * re-arms the fd, one appended before it is found by the {@link #drainLocked} that must follow.
     */
    void rearmLocked() {
        completions.tryConsume();
    }

    // ---- VirtualDisk: synchronous path ----

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalSectorSize() {
        return LOGICAL_SECTOR;
    }

    @Override
    public int physicalSectorSize() {
        return PHYSICAL_SECTOR;
    }

    @Override
    public boolean readOnly() {
        return options.readOnly();
    }

    private void checkRange(String op, long offset, long length) {
        if (offset < 0 || length < 0 || offset % LOGICAL_SECTOR != 0 || length % LOGICAL_SECTOR != 0
            || length > size || offset > size - length) {
            throw new IllegalArgumentException("rbd disk " + options.spec() + ": " + op + " at offset " + offset
                + " length " + length + " outside " + size + " bytes or not 512-byte aligned");
        }
    }

    private void checkWritable(String op) throws IOException {
        if (options.readOnly()) {
            throw new IOException("rbd disk " + options.spec() + " is read-only: " + op);
        }
    }

    private void checkNative(MemorySegment s) {
        if (!s.isNative()) {
            throw new IllegalArgumentException("rbd disk: I/O buffers must be native segments");
        }
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        checkRange("read", offset, dst.byteSize());
        checkNative(dst);
        long r = Librbd.read(image, offset, dst.byteSize(), dst.address());
        if (r != dst.byteSize()) {
            throw failure("read", offset, r);
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        checkWritable("write");
        checkRange("write", offset, src.byteSize());
        checkNative(src);
        long r = Librbd.write(image, offset, src.byteSize(), src.address());
        if (r != src.byteSize()) {
            throw failure("write", offset, r);
        }
    }

    @Override
    public void flush() throws IOException {
        int r = Librbd.flush(image);
        if (r < 0) {
            throw failure("flush", 0, r);
        }
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        writeZeroes(offset, length); // rbd discard of a partial object need not zero; the contract says zeros
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        checkWritable("write zeroes");
        checkRange("write zeroes", offset, length);
        long r = Librbd.writeZeroes(image, offset, length);
        if (r < 0) {
            throw failure("write zeroes", offset, r);
        }
    }

    private IOException failure(String op, long offset, long r) {
        String why = r < 0 ? new NativeException("rbd " + op, (int) -r).getMessage() : "short transfer of " + r + " bytes";
        return new IOException("rbd disk " + options.spec() + ": " + op + " at offset " + offset + ": " + why);
    }

    @Override
    public String format() {
        return "rbd";
    }

    /** Releases the lock and the handles; engines must be closed first (they drain their I/O). */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        synchronized (handleLock) {
            handleClosed = true;
        }
        try {
            onCephStack("close " + options.spec(), () -> {
                if (!options.readOnly()) {
                    Librbd.lockRelease(image); // -ESHUTDOWN when we were blocklisted: nothing to release
                }
                Librbd.close(image);
                Librbd.ioctxDestroy(io);
                Librbd.shutdown(cluster);
                return null;
            });
        } catch (IOException e) {
            throw new IllegalStateException(e.getMessage(), e);
        } finally {
            completions.close();
        }
    }
}
