package io.phost.core.vhost;

import io.phost.core.sys.NativeException;
import io.phost.core.sys.UnixSocket;
import io.phost.core.vmbus.PollingMode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A vhost-user back-end for one device: listens on a Unix stream socket, serves one front-end (QEMU, or a
 * test driver) at a time, and after a disconnect waits for the next. Protocol errors — malformed
 * messages, hostile memory tables, broken rings — drop that connection with a logged, named error
 * ({@link #lastError()}); the listener, the device and every other device keep serving.
 *
 * <pre>
 *   VhostUserBackend b = VhostUserBackend.start("vm1-os", socketPath, device);
 *   ... QEMU: -chardev socket,id=c0,path=socketPath -device vhost-user-blk-pci,chardev=c0 ...
 *   b.close();                                   // stops queues (in-flight I/O completes), removes the socket
 * </pre>
 */
public final class VhostUserBackend implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger("phost.vhost");
    private static final int ACCEPT_POLL_MILLIS = 250;

    private final String name;
    private final Path socketPath;
    private final VhostUserDevice device;
    private final List<Integer> cpus;
    private final PollingMode polling;
    private final UnixSocket listener;
    private final Thread thread;
    private volatile boolean closed;
    private volatile VhostUserSession session;
    private volatile String lastError;
    private final AtomicLong connections = new AtomicLong();

    private VhostUserBackend(String name, Path socketPath, VhostUserDevice device, List<Integer> cpus, PollingMode polling,
                             UnixSocket listener) {
        this.polling = polling;
        this.name = name;
        this.socketPath = socketPath;
        this.device = device;
        this.cpus = List.copyOf(cpus);
        this.listener = listener;
        this.thread = Thread.ofPlatform().name("vhost-" + name).daemon().unstarted(this::run);
    }

    /**
     * Binds {@code socketPath} (replacing a stale socket left by a previous run; refusing to replace
     * anything that is not a socket) and starts serving {@code device}.
     */
    public static VhostUserBackend start(String name, Path socketPath, VhostUserDevice device) {
        return start(name, socketPath, device, List.of());
    }

    /**
     * As {@link #start(String, Path, VhostUserDevice)}, with every queue worker pinned to {@code cpus}
     * ({@code [host] vsp_cpus}; empty = no pinning; a CPU that cannot be used is logged and ignored).
     */
    public static VhostUserBackend start(String name, Path socketPath, VhostUserDevice device, List<Integer> cpus) {
        return start(name, socketPath, device, cpus, PollingMode.EFFICIENCY);
    }

    /**
     * As above, with the host's polling mode ({@code [host] polling}): how the workers of queues that poll
     * ({@link VirtqueueHandler#pollsWhileIdle}: storage request queues) wait for the driver's next request
     * ({@link VringPoller}); {@link PollingMode#EFFICIENCY} is the worker that sleeps on every kick.
     */
    public static VhostUserBackend start(String name, Path socketPath, VhostUserDevice device, List<Integer> cpus,
                                         PollingMode polling) {
        java.util.Objects.requireNonNull(polling, "polling");
        try {
            if (Files.exists(socketPath, LinkOption.NOFOLLOW_LINKS)) {
                if (Files.isRegularFile(socketPath, LinkOption.NOFOLLOW_LINKS) || Files.isDirectory(socketPath, LinkOption.NOFOLLOW_LINKS)
                    || Files.isSymbolicLink(socketPath)) {
                    throw new IllegalArgumentException("vhost-user socket path " + socketPath + " exists and is not a socket");
                }
                Files.delete(socketPath);
            }
            Path parent = socketPath.toAbsolutePath().getParent();
            if (parent != null) {
                Files.createDirectories(parent);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("vhost-user socket " + socketPath, e);
        }
        UnixSocket l = UnixSocket.listenStream(socketPath, 1);
        VhostUserBackend b = new VhostUserBackend(name, socketPath, device, cpus, polling, l);
        b.thread.start();
        return b;
    }

    private void run() {
        while (!closed) {
            UnixSocket c;
            try {
                c = listener.accept(ACCEPT_POLL_MILLIS);
            } catch (RuntimeException e) {
                if (!closed) {
                    lastError = "accept: " + e.getMessage();
                    LOG.log(System.Logger.Level.WARNING, "vhost-user {0}: {1}", name, lastError);
                }
                return;
            }
            if (c == null) {
                continue;
            }
            connections.incrementAndGet();
            VhostUserSession s = new VhostUserSession(name, c, device, cpus, polling, this::queueFailed);
            session = s;
            try {
                while (!closed && s.step()) {
                    // one message per step
                }
            } catch (VhostUserException | NativeException e) {
                lastError = e.getMessage();
                LOG.log(System.Logger.Level.WARNING, "vhost-user {0}: dropping the front-end: {1}", name, e.getMessage());
            } catch (RuntimeException e) {
                lastError = e.toString();
                LOG.log(System.Logger.Level.ERROR, "vhost-user " + name + ": unexpected failure, dropping the front-end", e);
            } finally {
                session = null;
                s.close();
            }
        }
    }

    private void queueFailed(String error) {
        lastError = error;
        LOG.log(System.Logger.Level.WARNING, "vhost-user {0}: {1}", name, error);
    }

    public String name() {
        return name;
    }

    public Path socketPath() {
        return socketPath;
    }

    /** True while a front-end is connected. */
    public boolean connected() {
        return session != null;
    }

    /** Queues currently running (started and enabled). */
    public int runningQueues() {
        VhostUserSession s = session;
        return s == null ? 0 : s.runningQueues();
    }

    /**
     * The device's config space changed (a disk grew): asks the connected front-end to re-read it
     * (BACKEND_CONFIG_CHANGE_MSG). False when no front-end is connected or it has no back-end channel; a
     * front-end that connects later reads the new config anyway.
     */
    public boolean notifyConfigChanged() {
        VhostUserSession s = session;
        return s != null && s.sendConfigChange();
    }

    /** Front-ends that have connected since start. */
    public long connections() {
        return connections.get();
    }

    /** The last protocol or queue error (what and where), or null. */
    public String lastError() {
        return lastError;
    }

    /** Stops serving: running queues complete their in-flight requests, the socket file is removed. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        listener.close();
        VhostUserSession s = session;
        if (s != null) {
            s.interrupt();
        }
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try {
            Files.deleteIfExists(socketPath);
        } catch (IOException e) {
            // the directory went away: nothing left to clean
        }
    }
}
