package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * FFM bindings for librados ({@code librados.so.2}) and librbd ({@code librbd.so.1}), Debian {@code librbd1}.
 * Separate from {@link Native} (libc only) because these libraries are optional: they are looked up on
 * first use, and {@link #available()} tells whether this host has them.
 *
 * <p>Conventions: every handle ({@code rados_t}, {@code rados_ioctx_t}, {@code rbd_image_t},
 * {@code rbd_completion_t}) and every pointer on the I/O path is passed as a {@code long} (an address:
 * same register class as {@code void *} on x86-64 and aarch64), so the hot path builds no segment
 * objects. Ceph functions return {@code -errno} themselves (they do not set errno), so nothing is
 * captured; {@link #check} turns a negative result into a {@link NativeException}.
 *
 * <p>Completion model used by the storage engine: completions are created with a NULL callback (Ceph's
 * threads never call into Java); the image is told to signal an eventfd ({@link #setImageNotification},
 * {@link #EVENT_TYPE_EVENTFD}) and the engine collects finished completions with {@link #pollIoEvents}.
 */
public final class Librbd {
    /** {@code rbd_image_notification} type for an eventfd (librbd.h {@code EVENT_TYPE_EVENTFD}). */
    public static final int EVENT_TYPE_EVENTFD = 2;
    /** {@code rbd_lock_mode_t}. */
    public static final int LOCK_MODE_EXCLUSIVE = 0;
    /**
     * Stack for threads that load librbd or call its control path (rados_create, rbd_open, close): Ceph builds
     * its configuration table on the stack and overflows a JVM thread's 512 KiB.
     */
    public static final long CEPH_STACK_BYTES = 64L << 20;
    /** Ceph's -ERANGE for a too-small output buffer. */
    private static final int ERANGE = 34;

    private static final String UNAVAILABLE;
    private static final MethodHandle RADOS_CREATE2, RADOS_CONF_READ_FILE, RADOS_CONF_SET, RADOS_CONF_GET,
        RADOS_CONNECT, RADOS_SHUTDOWN, RADOS_IOCTX_CREATE, RADOS_IOCTX_SET_NAMESPACE, RADOS_IOCTX_DESTROY,
        RBD_CREATE, RBD_OPEN, RBD_OPEN_READ_ONLY, RBD_CLOSE, RBD_GET_SIZE, RBD_RESIZE,
        RBD_READ, RBD_WRITE, RBD_FLUSH, RBD_WRITE_ZEROES,
        RBD_AIO_CREATE_COMPLETION, RBD_AIO_READV, RBD_AIO_WRITEV, RBD_AIO_FLUSH, RBD_AIO_WRITE_ZEROES,
        RBD_AIO_GET_RETURN_VALUE, RBD_AIO_GET_ARG, RBD_AIO_RELEASE, RBD_SET_IMAGE_NOTIFICATION, RBD_POLL_IO_EVENTS,
        RBD_LOCK_ACQUIRE, RBD_LOCK_RELEASE, RBD_LOCK_GET_OWNERS, RBD_LOCK_GET_OWNERS_CLEANUP, RBD_LOCK_BREAK,
        RBD_IS_EXCLUSIVE_LOCK_OWNER, RBD_SNAP_CREATE, RBD_SNAP_ROLLBACK, RBD_SNAP_REMOVE;

    static {
        // dlopen runs Ceph's static constructors, which build its option table on the stack: megabytes, more
        // than a JVM thread's -Xss512k (it crashes there). So the libraries are loaded on a thread of their own.
        Loader loader = new Loader();
        Thread t = new Thread(null, loader, "librbd-load", CEPH_STACK_BYTES);
        t.start();
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        SymbolLookup rados = loader.why == null ? loader.rados : null;
        SymbolLookup rbd = loader.why == null ? loader.rbd : null;
        UNAVAILABLE = loader.why;
        ValueLayout.OfInt i = ValueLayout.JAVA_INT;
        ValueLayout.OfLong l = ValueLayout.JAVA_LONG;
        // int rados_create2(rados_t *pcluster, const char *clustername, const char *name, uint64_t flags)
        RADOS_CREATE2 = bind(rados, "rados_create2", FunctionDescriptor.of(i, l, l, l, l));
        // int rados_conf_read_file(rados_t cluster, const char *path)
        RADOS_CONF_READ_FILE = bind(rados, "rados_conf_read_file", FunctionDescriptor.of(i, l, l));
        // int rados_conf_set(rados_t cluster, const char *option, const char *value)
        RADOS_CONF_SET = bind(rados, "rados_conf_set", FunctionDescriptor.of(i, l, l, l));
        // int rados_conf_get(rados_t cluster, const char *option, char *buf, size_t len)
        RADOS_CONF_GET = bind(rados, "rados_conf_get", FunctionDescriptor.of(i, l, l, l, l));
        // int rados_connect(rados_t cluster): blocks up to client_mount_timeout
        RADOS_CONNECT = bind(rados, "rados_connect", FunctionDescriptor.of(i, l));
        // void rados_shutdown(rados_t cluster)
        RADOS_SHUTDOWN = bind(rados, "rados_shutdown", FunctionDescriptor.ofVoid(l));
        // int rados_ioctx_create(rados_t cluster, const char *pool_name, rados_ioctx_t *ioctx)
        RADOS_IOCTX_CREATE = bind(rados, "rados_ioctx_create", FunctionDescriptor.of(i, l, l, l));
        // void rados_ioctx_set_namespace(rados_ioctx_t io, const char *nspace)
        RADOS_IOCTX_SET_NAMESPACE = bind(rados, "rados_ioctx_set_namespace", FunctionDescriptor.ofVoid(l, l));
        // void rados_ioctx_destroy(rados_ioctx_t io)
        RADOS_IOCTX_DESTROY = bind(rados, "rados_ioctx_destroy", FunctionDescriptor.ofVoid(l));
        // int rbd_create(rados_ioctx_t io, const char *name, uint64_t size, int *order)
        RBD_CREATE = bind(rbd, "rbd_create", FunctionDescriptor.of(i, l, l, l, l));
        // int rbd_open(rados_ioctx_t io, const char *name, rbd_image_t *image, const char *snap_name)
        RBD_OPEN = bind(rbd, "rbd_open", FunctionDescriptor.of(i, l, l, l, l));
        RBD_OPEN_READ_ONLY = bind(rbd, "rbd_open_read_only", FunctionDescriptor.of(i, l, l, l, l));
        // int rbd_close(rbd_image_t image)
        RBD_CLOSE = bind(rbd, "rbd_close", FunctionDescriptor.of(i, l));
        // int rbd_get_size(rbd_image_t image, uint64_t *size)
        RBD_GET_SIZE = bind(rbd, "rbd_get_size", FunctionDescriptor.of(i, l, l));
        // int rbd_resize(rbd_image_t image, uint64_t size)
        RBD_RESIZE = bind(rbd, "rbd_resize", FunctionDescriptor.of(i, l, l));
        // ssize_t rbd_read(rbd_image_t image, uint64_t ofs, size_t len, char *buf)
        RBD_READ = bind(rbd, "rbd_read", FunctionDescriptor.of(l, l, l, l, l));
        // ssize_t rbd_write(rbd_image_t image, uint64_t ofs, size_t len, const char *buf)
        RBD_WRITE = bind(rbd, "rbd_write", FunctionDescriptor.of(l, l, l, l, l));
        // int rbd_flush(rbd_image_t image)
        RBD_FLUSH = bind(rbd, "rbd_flush", FunctionDescriptor.of(i, l));
        // ssize_t rbd_write_zeroes(rbd_image_t image, uint64_t ofs, size_t len, int zero_flags, int op_flags)
        RBD_WRITE_ZEROES = bind(rbd, "rbd_write_zeroes", FunctionDescriptor.of(l, l, l, l, i, i));
        // int rbd_aio_create_completion(void *cb_arg, rbd_callback_t complete_cb, rbd_completion_t *c)
        RBD_AIO_CREATE_COMPLETION = bind(rbd, "rbd_aio_create_completion", FunctionDescriptor.of(i, l, l, l));
        // int rbd_aio_readv(rbd_image_t image, const struct iovec *iov, int iovcnt, uint64_t off, rbd_completion_t c)
        RBD_AIO_READV = bind(rbd, "rbd_aio_readv", FunctionDescriptor.of(i, l, l, i, l, l));
        // int rbd_aio_writev(rbd_image_t image, const struct iovec *iov, int iovcnt, uint64_t off, rbd_completion_t c)
        RBD_AIO_WRITEV = bind(rbd, "rbd_aio_writev", FunctionDescriptor.of(i, l, l, i, l, l));
        // int rbd_aio_flush(rbd_image_t image, rbd_completion_t c)
        RBD_AIO_FLUSH = bind(rbd, "rbd_aio_flush", FunctionDescriptor.of(i, l, l));
        // int rbd_aio_write_zeroes(rbd_image_t image, uint64_t off, size_t len, rbd_completion_t c, int zero_flags, int op_flags)
        RBD_AIO_WRITE_ZEROES = bind(rbd, "rbd_aio_write_zeroes", FunctionDescriptor.of(i, l, l, l, l, i, i));
        // ssize_t rbd_aio_get_return_value(rbd_completion_t c)
        RBD_AIO_GET_RETURN_VALUE = bind(rbd, "rbd_aio_get_return_value", FunctionDescriptor.of(l, l));
        // void *rbd_aio_get_arg(rbd_completion_t c)
        RBD_AIO_GET_ARG = bind(rbd, "rbd_aio_get_arg", FunctionDescriptor.of(l, l));
        // void rbd_aio_release(rbd_completion_t c)
        RBD_AIO_RELEASE = bind(rbd, "rbd_aio_release", FunctionDescriptor.ofVoid(l));
        // int rbd_set_image_notification(rbd_image_t image, int fd, int type)
        RBD_SET_IMAGE_NOTIFICATION = bind(rbd, "rbd_set_image_notification", FunctionDescriptor.of(i, l, i, i));
        // int rbd_poll_io_events(rbd_image_t image, rbd_completion_t *comps, int numcomp)
        RBD_POLL_IO_EVENTS = bind(rbd, "rbd_poll_io_events", FunctionDescriptor.of(i, l, l, i));
        // int rbd_lock_acquire(rbd_image_t image, rbd_lock_mode_t lock_mode)
        RBD_LOCK_ACQUIRE = bind(rbd, "rbd_lock_acquire", FunctionDescriptor.of(i, l, i));
        // int rbd_lock_release(rbd_image_t image)
        RBD_LOCK_RELEASE = bind(rbd, "rbd_lock_release", FunctionDescriptor.of(i, l));
        // int rbd_lock_get_owners(rbd_image_t image, rbd_lock_mode_t *mode, char **owners, size_t *max_owners)
        RBD_LOCK_GET_OWNERS = bind(rbd, "rbd_lock_get_owners", FunctionDescriptor.of(i, l, l, l, l));
        // void rbd_lock_get_owners_cleanup(char **lock_owners, size_t lock_owner_count)
        RBD_LOCK_GET_OWNERS_CLEANUP = bind(rbd, "rbd_lock_get_owners_cleanup", FunctionDescriptor.ofVoid(l, l));
        // int rbd_lock_break(rbd_image_t image, rbd_lock_mode_t lock_mode, const char *lock_owner): blocklists it
        RBD_LOCK_BREAK = bind(rbd, "rbd_lock_break", FunctionDescriptor.of(i, l, i, l));
        // int rbd_is_exclusive_lock_owner(rbd_image_t image, int *is_owner)
        RBD_IS_EXCLUSIVE_LOCK_OWNER = bind(rbd, "rbd_is_exclusive_lock_owner", FunctionDescriptor.of(i, l, l));
        // int rbd_snap_create(rbd_image_t image, const char *snapname), and the same shape for rollback and remove
        RBD_SNAP_CREATE = bind(rbd, "rbd_snap_create", FunctionDescriptor.of(i, l, l));
        RBD_SNAP_ROLLBACK = bind(rbd, "rbd_snap_rollback", FunctionDescriptor.of(i, l, l));
        RBD_SNAP_REMOVE = bind(rbd, "rbd_snap_remove", FunctionDescriptor.of(i, l, l));
    }

    private Librbd() {}

    /**
     * Loads the libraries on the big-stack thread. A class of its own, not a lambda: a lambda's body is a
     * method of Librbd, and that thread would wait for Librbd's initialization, which waits for the thread.
     */
    private static final class Loader implements Runnable {
        SymbolLookup rados;
        SymbolLookup rbd;
        String why;

        @Override
        public void run() {
            try {
                rados = SymbolLookup.libraryLookup("librados.so.2", Arena.global());
                rbd = SymbolLookup.libraryLookup("librbd.so.1", Arena.global());
            } catch (IllegalArgumentException e) {
                why = "librbd.so.1/librados.so.2 not found (Debian package librbd1): " + e.getMessage();
            }
        }
    }

    private static MethodHandle bind(SymbolLookup lib, String name, FunctionDescriptor fd) {
        if (lib == null) {
            return null;
        }
        return Native.LINKER.downcallHandle(lib.find(name)
            .orElseThrow(() -> new UnsatisfiedLinkError("librbd/librados has no " + name)), fd);
    }

    /** True when librbd and librados load on this host. */
    public static boolean available() {
        return UNAVAILABLE == null;
    }

    /** Why {@link #available()} is false, or null. */
    public static String unavailableReason() {
        return UNAVAILABLE;
    }

    private static void requireAvailable() {
        if (UNAVAILABLE != null) {
            throw new IllegalStateException(UNAVAILABLE);
        }
    }

    /** Returns {@code result} unless negative; else throws naming {@code operation} and the errno. */
    public static long check(long result, String operation) {
        if (result < 0) {
            throw new NativeException(operation, (int) -result);
        }
        return result;
    }

    // ---- control path (allocates: strings and out-parameters in a confined arena) ----

    /** {@code rados_create2(&c, "ceph", "client.ID", 0)}; returns the rados_t. */
    public static long radosCreate(String clientName) {
        requireAvailable();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ValueLayout.JAVA_LONG);
            check((int) RADOS_CREATE2.invokeExact(out.address(), a.allocateFrom("ceph").address(),
                a.allocateFrom(clientName).address(), 0L), "rados_create2 " + clientName);
            return out.get(ValueLayout.JAVA_LONG, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void confReadFile(long cluster, String path) {
        try (Arena a = Arena.ofConfined()) {
            check((int) RADOS_CONF_READ_FILE.invokeExact(cluster, a.allocateFrom(path).address()),
                "rados_conf_read_file " + path);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void confSet(long cluster, String option, String value) {
        try (Arena a = Arena.ofConfined()) {
            check((int) RADOS_CONF_SET.invokeExact(cluster, a.allocateFrom(option).address(),
                a.allocateFrom(value).address()), "rados_conf_set " + option + "=" + value);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The value of a configuration option ({@code mon_host}, ...), or "" when unset. */
    public static String confGet(long cluster, String option) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096);
            int r = (int) RADOS_CONF_GET.invokeExact(cluster, a.allocateFrom(option).address(), buf.address(), 4096L);
            return r < 0 ? "" : buf.getString(0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code rados_connect}; returns 0 or -errno (the caller names the monitors in its error). */
    public static int connect(long cluster) {
        try {
            return (int) RADOS_CONNECT.invokeExact(cluster);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void shutdown(long cluster) {
        try {
            RADOS_SHUTDOWN.invokeExact(cluster);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Opens an I/O context on {@code pool}, in {@code namespace} when not null/empty. */
    public static long ioctxCreate(long cluster, String pool, String namespace) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ValueLayout.JAVA_LONG);
            check((int) RADOS_IOCTX_CREATE.invokeExact(cluster, a.allocateFrom(pool).address(), out.address()),
                "rados_ioctx_create pool '" + pool + "'");
            long io = out.get(ValueLayout.JAVA_LONG, 0);
            if (namespace != null && !namespace.isEmpty()) {
                RADOS_IOCTX_SET_NAMESPACE.invokeExact(io, a.allocateFrom(namespace).address());
            }
            return io;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void ioctxDestroy(long io) {
        try {
            RADOS_IOCTX_DESTROY.invokeExact(io);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code rbd_create} with the cluster's default features and object size; returns 0 or -errno. */
    public static int create(long io, String image, long size) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment order = a.allocate(ValueLayout.JAVA_INT);
            return (int) RBD_CREATE.invokeExact(io, a.allocateFrom(image).address(), size, order.address());
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Opens {@code image} (head, no snapshot); returns the rbd_image_t or -errno (as a negative long). */
    public static long open(long io, String image, boolean readOnly) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ValueLayout.JAVA_LONG);
            long name = a.allocateFrom(image).address();
            int r = readOnly ? (int) RBD_OPEN_READ_ONLY.invokeExact(io, name, out.address(), 0L)
                : (int) RBD_OPEN.invokeExact(io, name, out.address(), 0L);
            return r < 0 ? r : out.get(ValueLayout.JAVA_LONG, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int close(long image) {
        try {
            return (int) RBD_CLOSE.invokeExact(image);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static long size(long image) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ValueLayout.JAVA_LONG);
            check((int) RBD_GET_SIZE.invokeExact(image, out.address()), "rbd_get_size");
            return out.get(ValueLayout.JAVA_LONG, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int resize(long image, long size) {
        try {
            return (int) RBD_RESIZE.invokeExact(image, size);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code rbd_snap_create}: 0 or -errno (-EEXIST when the image has a snapshot of that name). */
    public static int snapCreate(long image, String snapshot) {
        return snapCall(RBD_SNAP_CREATE, image, snapshot);
    }

    /** {@code rbd_snap_rollback}: the image's head becomes the snapshot's data (and size); 0 or -errno. */
    public static int snapRollback(long image, String snapshot) {
        return snapCall(RBD_SNAP_ROLLBACK, image, snapshot);
    }

    /** {@code rbd_snap_remove}: 0 or -errno (-ENOENT when there is no such snapshot). */
    public static int snapRemove(long image, String snapshot) {
        return snapCall(RBD_SNAP_REMOVE, image, snapshot);
    }

    private static int snapCall(MethodHandle h, long image, String snapshot) {
        try (Arena a = Arena.ofConfined()) {
            return (int) h.invokeExact(image, a.allocateFrom(snapshot).address());
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code rbd_lock_acquire(image, EXCLUSIVE)}: 0, or -EROFS when another client holds it. */
    public static int lockAcquireExclusive(long image) {
        try {
            return (int) RBD_LOCK_ACQUIRE.invokeExact(image, LOCK_MODE_EXCLUSIVE);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int lockRelease(long image) {
        try {
            return (int) RBD_LOCK_RELEASE.invokeExact(image);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** True when this handle owns the exclusive lock. */
    public static boolean isExclusiveLockOwner(long image) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment out = a.allocate(ValueLayout.JAVA_INT);
            check((int) RBD_IS_EXCLUSIVE_LOCK_OWNER.invokeExact(image, out.address()), "rbd_is_exclusive_lock_owner");
            return out.get(ValueLayout.JAVA_INT, 0) != 0;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The current lock owners ("client.4123 ..." strings as librbd prints them); empty when unlocked. */
    public static String[] lockOwners(long image) {
        try (Arena a = Arena.ofConfined()) {
            int max = 8;
            while (true) {
                MemorySegment mode = a.allocate(ValueLayout.JAVA_INT);
                MemorySegment owners = a.allocate(ValueLayout.JAVA_LONG, max);
                MemorySegment count = a.allocate(ValueLayout.JAVA_LONG);
                count.set(ValueLayout.JAVA_LONG, 0, max);
                int r = (int) RBD_LOCK_GET_OWNERS.invokeExact(image, mode.address(), owners.address(), count.address());
                if (r == -ERANGE && max < 1024) {
                    max *= 4;
                    continue;
                }
                if (r == -Errno.ENOENT) {
                    return new String[0];
                }
                check(r, "rbd_lock_get_owners");
                int n = (int) count.get(ValueLayout.JAVA_LONG, 0);
                String[] out = new String[n];
                for (int k = 0; k < n; k++) {
                    // SAFETY: librbd returns NUL-terminated strings it allocated; read before cleanup frees them.
                    out[k] = MemorySegment.ofAddress(owners.getAtIndex(ValueLayout.JAVA_LONG, k))
                        .reinterpret(Integer.MAX_VALUE).getString(0);
                }
                RBD_LOCK_GET_OWNERS_CLEANUP.invokeExact(owners.address(), (long) n);
                return out;
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Breaks {@code owner}'s exclusive lock; librbd blocklists that client, so its later writes fail. */
    public static int lockBreak(long image, String owner) {
        try (Arena a = Arena.ofConfined()) {
            return (int) RBD_LOCK_BREAK.invokeExact(image, LOCK_MODE_EXCLUSIVE, a.allocateFrom(owner).address());
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    // ---- I/O path (no allocation: addresses and primitives only) ----

    /** Synchronous read of {@code len} bytes into {@code buf}; returns bytes read or -errno. */
    public static long read(long image, long offset, long len, long buf) {
        try {
            return (long) RBD_READ.invokeExact(image, offset, len, buf);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Synchronous write; returns bytes written or -errno. */
    public static long write(long image, long offset, long len, long buf) {
        try {
            return (long) RBD_WRITE.invokeExact(image, offset, len, buf);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int flush(long image) {
        try {
            return (int) RBD_FLUSH.invokeExact(image);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Synchronous write of zeros (whole objects are removed, partial ones zeroed); 0 or bytes, or -errno. */
    public static long writeZeroes(long image, long offset, long len) {
        try {
            return (long) RBD_WRITE_ZEROES.invokeExact(image, offset, len, 0, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Creates a NULL-callback completion carrying {@code arg}; its pointer is stored at {@code out}. */
    public static int aioCreateCompletion(long arg, long out) {
        try {
            return (int) RBD_AIO_CREATE_COMPLETION.invokeExact(arg, 0L, out);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int aioReadv(long image, long iov, int iovcnt, long offset, long completion) {
        try {
            return (int) RBD_AIO_READV.invokeExact(image, iov, iovcnt, offset, completion);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int aioWritev(long image, long iov, int iovcnt, long offset, long completion) {
        try {
            return (int) RBD_AIO_WRITEV.invokeExact(image, iov, iovcnt, offset, completion);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int aioFlush(long image, long completion) {
        try {
            return (int) RBD_AIO_FLUSH.invokeExact(image, completion);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int aioWriteZeroes(long image, long offset, long len, long completion) {
        try {
            return (int) RBD_AIO_WRITE_ZEROES.invokeExact(image, offset, len, completion, 0, 0);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static long aioReturnValue(long completion) {
        try {
            return (long) RBD_AIO_GET_RETURN_VALUE.invokeExact(completion);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static long aioArg(long completion) {
        try {
            return (long) RBD_AIO_GET_ARG.invokeExact(completion);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void aioRelease(long completion) {
        try {
            RBD_AIO_RELEASE.invokeExact(completion);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Makes librbd signal {@code fd} (an eventfd) whenever a NULL-callback completion finishes. */
    public static int setImageNotification(long image, int fd) {
        try {
            return (int) RBD_SET_IMAGE_NOTIFICATION.invokeExact(image, fd, EVENT_TYPE_EVENTFD);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Moves up to {@code max} finished completions into the array at {@code comps}; returns how many. */
    public static int pollIoEvents(long image, long comps, int max) {
        try {
            return (int) RBD_POLL_IO_EVENTS.invokeExact(image, comps, max);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
