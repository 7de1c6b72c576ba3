package io.phost.core.partition;

import static io.phost.core.vmbus.ChannelMessage.*;

import io.phost.core.sys.Fd;
import io.phost.core.sys.NativeException;
import io.phost.core.sys.UnixSocket;
import io.phost.core.vmbus.PollingMode;
import io.phost.core.vmbus.VmbusProtocolException;
import io.phost.core.vmbus.VmbusServer;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The parent side of all child partitions: owns the control socket ({@code <dataDir>/vmbus.sock}),
 * authenticates attaches, launches children and watches them.
 * <pre>
 *   PartitionHost host = new PartitionHost(dataDir, GuestLauncher.sameJvm("io.phost.appliance.Main", List.of(), "guest"),
 *                                          PartitionHost.Options.defaults());
 *   Partition p = host.create(PartitionSpec.builtin("web", 2, 256 << 20, "echo"));
 *   p.offer(storageVsp);  p.start();  ...  host.status();  ...  host.close();
 * </pre>
 * Attach: the first message on a new connection must be INITIATE_CONTACT carrying the partition name,
 * its 32-byte random credential (compared in constant time) and the guest-memory memfd, which must be
 * sealed against shrinking (else a guest could SIGBUS the host) and at least the configured size. When
 * the host launched the partition, the connecting process (SO_PEERCRED) must be that process or one of
 * its descendants. Refused attaches get no answer and are counted in {@link #rejectedAttaches()}.
 */
public final class PartitionHost implements AutoCloseable {
    /**
     * Timeouts and limits, the CPUs channel agents run on (empty: wherever the scheduler puts them) and how
     * they wait for the guest ({@link PollingMode}).
     */
    public record Options(Duration heartbeatInterval, Duration heartbeatTimeout, Duration timeSyncInterval,
                          Duration attachTimeout, int maxFaults, VmbusServer.Limits limits, List<Integer> agentCpus,
                          PollingMode polling, io.phost.core.vm.RestartBackoff backoff) {
        public Options {
            agentCpus = List.copyOf(agentCpus);
            java.util.Objects.requireNonNull(polling, "polling");
        }

        public static Options defaults() {
            return new Options(Duration.ofSeconds(1), Duration.ofSeconds(10), Duration.ofSeconds(10),
                Duration.ofSeconds(60), 8, VmbusServer.Limits.defaults(), List.of(), PollingMode.ADAPTIVE,
                io.phost.core.vm.RestartBackoff.defaults());
        }

        public Options withAgentCpus(List<Integer> cpus) {
            return new Options(heartbeatInterval, heartbeatTimeout, timeSyncInterval, attachTimeout, maxFaults, limits,
                cpus, polling, backoff);
        }

        public Options withHeartbeat(Duration interval, Duration timeout) {
            return new Options(interval, timeout, timeSyncInterval, attachTimeout, maxFaults, limits, agentCpus, polling, backoff);
        }

        public Options withMaxFaults(int n) {
            return new Options(heartbeatInterval, heartbeatTimeout, timeSyncInterval, attachTimeout, n, limits,
                agentCpus, polling, backoff);
        }

        public Options withLimits(VmbusServer.Limits l) {
            return new Options(heartbeatInterval, heartbeatTimeout, timeSyncInterval, attachTimeout, maxFaults, l,
                agentCpus, polling, backoff);
        }

        /** The {@code on_crash = "restart"} backoff (the VM partitions' one). */
        public Options withBackoff(io.phost.core.vm.RestartBackoff b) {
            return new Options(heartbeatInterval, heartbeatTimeout, timeSyncInterval, attachTimeout, maxFaults, limits,
                agentCpus, polling, b);
        }

        public Options withPolling(PollingMode mode) {
            return new Options(heartbeatInterval, heartbeatTimeout, timeSyncInterval, attachTimeout, maxFaults, limits,
                agentCpus, mode, backoff);
        }
    }

    private static final int MAX_PENDING_ATTACHES = 16;
    /** Memory a launched process may use beyond its guest memory (a built-in workload's JVM, libraries). */
    public static final long DEFAULT_CGROUP_OVERHEAD = 512L << 20;
    /** Tasks (threads) a launched process may have. */
    static final int CGROUP_PIDS = 512;

    private final Path dataDir;
    private final Path socketPath;
    private final GuestLauncher launcher;
    private final Options options;
    private final UnixSocket listener;
    private final Map<String, Partition> partitions = new ConcurrentHashMap<>();
    private final ExecutorService async = Executors.newCachedThreadPool(r -> {
        Thread t = new Thread(r, "partition-host-async");
        t.setDaemon(true);
        return t;
    });
    private final Semaphore pendingAttaches = new Semaphore(MAX_PENDING_ATTACHES);
    private final AtomicLong rejected = new AtomicLong();
    private volatile String lastRejection = "";
    private final Thread acceptor;
    private final Thread watchdog;
    private volatile boolean closed;
    private volatile long cgroupOverhead = DEFAULT_CGROUP_OVERHEAD;

    public PartitionHost(Path dataDir, GuestLauncher launcher, Options options) throws IOException {
        io.phost.core.sys.SocketFiles.createPrivateDirectories(dataDir);
        this.dataDir = dataDir;
        this.socketPath = dataDir.resolve("vmbus.sock");
        this.launcher = launcher;
        this.options = options;
        // Mode 0600 from the start (credentials are checked too; the mode is defence in depth); a stale socket
        // is replaced, any other file at the path is refused, never deleted.
        this.listener = io.phost.core.sys.SocketFiles.bindPrivate(socketPath, at -> UnixSocket.listen(at, 64));
        this.acceptor = new Thread(this::acceptLoop, "partition-host-accept");
        this.acceptor.setDaemon(true);
        this.watchdog = new Thread(this::watchLoop, "partition-host-watchdog");
        this.watchdog.setDaemon(true);
        acceptor.start();
        watchdog.start();
    }

    public Path socketPath() {
        return socketPath;
    }

    public Path dataDir() {
        return dataDir;
    }

    public Options options() {
        return options;
    }

    GuestLauncher launcher() {
        return launcher;
    }

    /**
     * Each launched process gets a cgroup ({@link Cgroup}): CPU quota = vcpus, memory = guest memory +
     * {@code bytes}, pids = {@value #CGROUP_PIDS}. Applies to partitions started after the call.
     */
    public void cgroupMemoryOverhead(long bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("cgroup memory overhead must be >= 0");
        }
        cgroupOverhead = bytes;
    }

    long cgroupMemoryOverhead() {
        return cgroupOverhead;
    }

    /** Registers a partition (state CREATED); {@link Partition#start()} launches it. */
    public Partition create(PartitionSpec spec) {
        Partition p = new Partition(this, spec);
        if (partitions.putIfAbsent(spec.name(), p) != null) {
            throw new IllegalArgumentException("partition " + spec.name() + " already exists");
        }
        return p;
    }

    public Partition partition(String name) {
        return partitions.get(name);
    }

    public List<Partition> partitions() {
        return new ArrayList<>(partitions.values());
    }

    /** One row per partition for /status and {@code phost status}. */
    public List<PartitionStatus> status() {
        List<PartitionStatus> s = new ArrayList<>();
        for (Partition p : partitions.values()) {
            s.add(p.status());
        }
        s.sort(java.util.Comparator.comparing(PartitionStatus::name));
        return s;
    }

    /** Stops and forgets a partition. */
    public void remove(String name, Duration grace) {
        Partition p = partitions.remove(name);
        if (p != null) {
            p.stop(grace);
        }
    }

    public long rejectedAttaches() {
        return rejected.get();
    }

    public String lastRejection() {
        return lastRejection;
    }

    void async(Runnable r) {
        if (!closed) {
            async.execute(r);
        } else {
            r.run();
        }
    }

    // ------------------------------------------------------------------ attach

    private void acceptLoop() {
        while (!closed) {
            UnixSocket c;
            try {
                c = listener.accept(200);
            } catch (NativeException e) {
                if (closed) {
                    return;
                }
                continue;
            }
            if (c == null) {
                continue;
            }
            if (!pendingAttaches.tryAcquire()) {
                reject(c, "too many attaches in progress");
                continue;
            }
            Thread t = new Thread(() -> {
                try {
                    attach(c);
                } finally {
                    // released inside attach() once authenticated; this covers the failure paths
                }
            }, "partition-attach");
            t.setDaemon(true);
            t.start();
        }
    }

    /**
     * One message within {@code timeoutMillis}: 0 from {@link UnixSocket#receive} is a timeout or a signal
     * (EINTR from poll: async-profiler's wall clock mode, a jcmd attach), so wait again for the rest of the time.
     * Read as a bad first message, a signal made the host hang up (the guest's next send: Broken pipe).
     */
    private static long receiveWithin(UnixSocket c, MemorySegment m, int[] fds, int timeoutMillis) {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
        while (true) {
            long left = deadline - System.nanoTime();
            long n = c.receive(m, fds, (int) Math.max(1, left / 1_000_000));
            if (n != 0 || left <= 0) {
                return n;
            }
        }
    }

    private void attach(UnixSocket c) {
        MemorySegment m = Arena.ofAuto().allocate(MAX_LENGTH + 16, 8);
        int[] fds = new int[UnixSocket.MAX_FDS];
        Partition p = null;
        int memfd = -1;
        boolean released = false;
        try {
            for (int attempt = 0; attempt < VERSIONS.length + 1; attempt++) {
                long n = receiveWithin(c, m, fds, 5_000);
                int fd = takeOnlyFd(fds);
                if (n < CONTACT_NAME || n > MAX_LENGTH || type(m) != INITIATE_CONTACT || fd < 0) {
                    Fd.close(fd);
                    throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, n > 0 ? type(m) : 0,
                        "first message must be INITIATE_CONTACT with a memfd (" + n + " bytes)");
                }
                int nameLen = m.get(ValueLayout.JAVA_BYTE, CONTACT_NAME_LENGTH) & 0xff;
                if (nameLen == 0 || nameLen > MAX_NAME_LENGTH || CONTACT_NAME + nameLen > n) {
                    Fd.close(fd);
                    throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT, "bad name length " + nameLen);
                }
                byte[] nameBytes = new byte[nameLen];
                MemorySegment.copy(m, ValueLayout.JAVA_BYTE, CONTACT_NAME, nameBytes, 0, nameLen);
                String name = new String(nameBytes, StandardCharsets.UTF_8);
                byte[] cred = new byte[CREDENTIAL_LENGTH];
                MemorySegment.copy(m, ValueLayout.JAVA_BYTE, CONTACT_CREDENTIAL, cred, 0, CREDENTIAL_LENGTH);
                Partition candidate = partitions.get(name);
                if (candidate == null || !MessageDigest.isEqual(cred, candidate.credential())) {
                    Fd.close(fd);
                    throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT,
                        "unknown partition or wrong credential for '" + name + "'");
                }
                if (candidate.launchedByUs()) {
                    int peer = c.peerCredentials().pid();
                    if (!isSelfOrDescendant(peer, candidate.pid())) {
                        Fd.close(fd);
                        throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT,
                            "peer pid " + peer + " is not partition " + name + "'s process " + candidate.pid());
                    }
                }
                checkMemfd(fd, candidate.spec().memoryBytes());
                int requested = u32(m, CONTACT_VERSION);
                boolean supported = false;
                for (int v : VERSIONS) {
                    supported |= v == requested;
                }
                header(m, VERSION_RESPONSE, VERSION_RESPONSE_LENGTH);
                m.set(ValueLayout.JAVA_BYTE, VERSION_SUPPORTED, (byte) (supported ? 1 : 0));
                m.set(ValueLayout.JAVA_BYTE, VERSION_CONNECTION_STATE, (byte) 0);
                u32(m, VERSION_MSG_CONN_ID, 1);
                if (!supported) {
                    Fd.close(fd);
                    c.send(m, VERSION_RESPONSE_LENGTH);
                    continue;
                }
                p = candidate;
                memfd = fd;
                VmbusServer server = p.attach(c, fd, requested);
                memfd = -1; // owned by the partition now
                try {
                    c.send(m, VERSION_RESPONSE_LENGTH);
                } catch (NativeException e) {
                    // the guest vanished between INITIATE_CONTACT and our answer: the server's first
                    // receive sees the hang-up and reports the disconnect
                }
                pendingAttaches.release();
                released = true;
                Thread.currentThread().setName("vmbus-" + name);
                server.run();
                return;
            }
            throw new VmbusProtocolException(VmbusProtocolException.Reason.VERSION, INITIATE_CONTACT, "no common version");
        } catch (VmbusProtocolException | IllegalStateException | NativeException | IllegalArgumentException e) {
            Fd.close(memfd);
            reject(c, e.getMessage());
        } finally {
            if (!released) {
                pendingAttaches.release();
            }
        }
    }

    private static int takeOnlyFd(int[] fds) {
        int fd = -1;
        for (int i = 0; i < fds.length; i++) {
            if (fds[i] >= 0) {
                if (fd < 0) {
                    fd = fds[i];
                } else {
                    Fd.close(fds[i]);
                }
                fds[i] = -1;
            }
        }
        return fd;
    }

    private static void checkMemfd(int fd, long memory) {
        int seals;
        try {
            seals = Fd.seals(fd);
        } catch (NativeException e) {
            Fd.close(fd);
            throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT, "guest memory is not a memfd");
        }
        if ((seals & Fd.F_SEAL_SHRINK) == 0) {
            Fd.close(fd);
            throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT,
                "guest memory memfd is not sealed against shrinking (F_SEAL_SHRINK)");
        }
        long size = Fd.size(fd);
        if (size < memory) {
            Fd.close(fd);
            throw new VmbusProtocolException(VmbusProtocolException.Reason.NOT_AUTHORISED, INITIATE_CONTACT,
                "guest memory of " + size + " bytes, configured " + memory);
        }
    }

    /** True if {@code pid} is {@code ancestor} or descends from it (walks /proc/<pid>/stat, 32 levels). */
    static boolean isSelfOrDescendant(long pid, long ancestor) {
        long p = pid;
        for (int i = 0; i < 32 && p > 1; i++) {
            if (p == ancestor) {
                return true;
            }
            try {
                String stat = Files.readString(Path.of("/proc/" + p + "/stat"));
                String afterComm = stat.substring(stat.lastIndexOf(')') + 2);
                p = Long.parseLong(afterComm.split(" ")[1]);
            } catch (IOException | RuntimeException e) {
                return false;
            }
        }
        return false;
    }

    private void reject(UnixSocket c, String why) {
        rejected.incrementAndGet();
        lastRejection = why;
        c.close();
    }

    // ------------------------------------------------------------------ watchdog

    private void watchLoop() {
        while (!closed) {
            long now = System.nanoTime();
            for (Partition p : partitions.values()) {
                try {
                    p.check(now);
                } catch (RuntimeException e) {
                    // one partition's trouble must not stop the others' watchdog
                }
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    /** Stops every partition (graceful, 5 s each, in parallel), then closes the control socket. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        List<Thread> stops = new ArrayList<>();
        for (Partition p : partitions.values()) {
            Thread t = new Thread(() -> p.stop(Duration.ofSeconds(5)), "partition-stop");
            t.start();
            stops.add(t);
        }
        for (Thread t : stops) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        closed = true;
        listener.close();
        async.shutdownNow();
        try {
            acceptor.join(1000);
            watchdog.join(1000);
            io.phost.core.sys.SocketFiles.unlinkIfSocket(socketPath);
        } catch (InterruptedException e) {
            // best effort
        }
    }
}
