package io.phost.core.vm;

import io.phost.core.partition.Cgroup;
import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.PartitionKind;
import io.phost.core.partition.PartitionState;
import io.phost.core.partition.PartitionStatus;
import java.io.File;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeoutException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import io.phost.core.sys.CpuAffinity;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * A VM partition: one QEMU process supervised over QMP, with the states, fault counts and reasons of a
 * process partition.
 * <pre>
 *  start ─▶ STARTING: QEMU launched with -S (vCPUs held), moved into its cgroup, QMP connected, "cont"
 *        ─▶ RUNNING ◀──"cont"── PAUSED ◀──"stop"── (pause)
 *  stop  ─▶ STOPPING: "system_powerdown" (ACPI), wait up to the stop timeout, then SIGKILL ─▶ STOPPED
 *        (a guest with a ready marker it has not printed yet is still booting: SIGKILL at once ─▶ STOPPED)
 *  turnOff ─▶ SIGKILL ─▶ STOPPED                     guest powers off by itself (SHUTDOWN event) ─▶ STOPPED
 *  QEMU exits unasked ─▶ CRASHED (a fault) ─on_crash=restart, after a backoff─▶ STARTING ...
 *                        too many crashes in a row ─▶ FAULTED (left alone until a user starts it)
 * </pre>
 * Files in {@code dir}: {@code NAME.qmp} (QMP socket), {@code NAME.qemu.log} (QEMU's own stderr), the
 * console log, and {@code NAME.migrate} while a saved state streams through it ({@link #saveState},
 * {@link #startFromState}). Lifecycle methods are thread-safe; QMP round trips happen outside this object's monitor
 * (QMP events arrive on the reader thread, which never takes the monitor).
 * <p>Over ~800 lines because the lifecycle above is one state machine (saving and restoring a state included);
 * the command line, QMP, cgroup and guest-agent pieces already live in their own classes.
 */
public final class VmPartition implements ChildPartition {
    private static final Logger LOG = System.getLogger("phost.partitions");
    private static final int FAULT_HISTORY = 16;

    /**
     * @param qemu           the QEMU binary (name on PATH or absolute)
     * @param qmpTimeout     how long QEMU has to open its QMP socket after launch
     * @param commandTimeout how long a QMP command may take
     * @param memoryOverhead QEMU's own memory on top of guest RAM, for the cgroup limit
     * @param pidsLimit      most QEMU threads (vCPUs, I/O workers, RCU, ...)
     * @param agentPeriod    between guest-agent heartbeats
     * @param agentTimeout   how long a guest-agent call may take
     */
    public record Options(String qemu, Duration qmpTimeout, Duration commandTimeout, RestartBackoff backoff,
                          long memoryOverhead, int pidsLimit, long consoleMaxBytes, Duration agentPeriod,
                          Duration agentTimeout) {
        public static Options defaults() {
            return new Options(QemuCommandLine.QEMU, Duration.ofSeconds(30), Duration.ofSeconds(10),
                RestartBackoff.defaults(), 256L << 20, 512, ConsoleLog.DEFAULT_MAX_BYTES, Duration.ofSeconds(5),
                Duration.ofSeconds(5));
        }

        public Options withQemu(String binary) {
            return new Options(binary, qmpTimeout, commandTimeout, backoff, memoryOverhead, pidsLimit, consoleMaxBytes,
                agentPeriod, agentTimeout);
        }

        public Options withBackoff(RestartBackoff b) {
            return new Options(qemu, qmpTimeout, commandTimeout, b, memoryOverhead, pidsLimit, consoleMaxBytes,
                agentPeriod, agentTimeout);
        }

        public Options withAgent(Duration period, Duration timeout) {
            return new Options(qemu, qmpTimeout, commandTimeout, backoff, memoryOverhead, pidsLimit, consoleMaxBytes,
                period, timeout);
        }
    }

    /** The spec; its devices change when a disk is hot-plugged or unplugged ({@link #addDisk}, {@link #removeDisk}). */
    private volatile VmSpec spec;
    private final Path dir;
    private final Options options;
    private final Accelerator accel;
    private final ConsoleLog console;
    private final Path qmpSocket;
    private final Path qemuLog;
    private final VmIntegration integration;
    private final ArrayDeque<String> faults = new ArrayDeque<>();

    private volatile PartitionState state = PartitionState.CREATED;
    private String reason = "";
    private long faultCount;
    private int restarts;
    private final CrashRestarts crashes;
    private long generation;
    private Process process;
    private QmpClient qmp;
    private volatile Cgroup cgroup; // volatile: the metering tick reads it without the monitor
    private String cgroupText = "not started";
    private String cpusText = "not started";
    private ScheduledFuture<?> pendingRestart;
    /** Set by the SHUTDOWN event when the guest itself powered off (read when QEMU exits). */
    private volatile String guestShutdown;
    /** NET devices (by {@link VmDevice#id()}) whose link was set down: re-applied when QEMU (re)starts. */
    private final java.util.Set<String> linksDown = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private final PciHotPlug hotPlug;
    /** The generation whose console showed the spec's ready marker (-1: none yet). */
    private volatile long readyGeneration = -1;
    /** A saved state the next launch restores ({@link #startFromState}); null: boot. Used by one launch only. */
    private Path incoming;
    /** A live migration the next launch receives ({@link #startIncoming}); null: none. Used by one launch only. */
    private LiveIncoming liveIncoming;

    /**
     * The target side of a live migration: QEMU listens on {@code uri}; {@code listening} runs once it does (the
     * source may connect), {@code beforeCont} once the whole state arrived, before the guest runs again here.
     */
    private record LiveIncoming(String uri, Runnable listening, IoAction beforeCont) {
    }

    /** A step that may fail with an I/O error. */
    @FunctionalInterface
    public interface IoAction {
        void run() throws IOException;
    }

    public VmPartition(VmSpec spec, Path dir, Path consoleLog, Accelerator accel, Options options) {
        this.spec = spec;
        this.dir = dir;
        this.options = options;
        this.crashes = new CrashRestarts(spec.onCrash(), options.backoff());
        this.accel = accel;
        this.console = new ConsoleLog(consoleLog, options.consoleMaxBytes());
        this.qmpSocket = dir.resolve(spec.name() + ".qmp");
        this.qemuLog = dir.resolve(spec.name() + ".qemu.log");
        this.hotPlug = new PciHotPlug(spec.name(), spec.machine(), accel.type() == Accelerator.Type.KVM, options.commandTimeout());
        this.integration = new VmIntegration(spec.name(), dir.resolve(spec.name() + ".qga"), options.agentPeriod(),
            options.agentTimeout());
    }

    @Override
    public Cgroup cgroup() {
        return cgroup;
    }

    @Override
    public String name() {
        return spec.name();
    }

    @Override
    public PartitionKind kind() {
        return PartitionKind.VM;
    }

    public VmSpec spec() {
        return spec;
    }

    public Accelerator accelerator() {
        return accel;
    }

    @Override
    public PartitionState state() {
        return state;
    }

    public ConsoleLog console() {
        return console;
    }

    /** QEMU's own messages (stderr). */
    public Path qemuLog() {
        return qemuLog;
    }

    /** The argv this VM is launched with. */
    public List<String> commandLine() {
        return QemuCommandLine.build(options.qemu(), spec, accel, qmpSocket, integration.socket());
    }

    /** A user start: clears the fault history and the crash streak, then launches. */
    @Override
    public void start() throws IOException {
        startFrom(null);
    }

    /**
     * Starts QEMU on the device and memory state {@link #saveState} wrote ({@code -incoming unix:SOCKET}, fed from the file):
     * the guest goes on from the moment it was saved instead of booting. Its disks must read as they did then.
     * A crash restart after this boots normally.
     */
    public void startFromState(Path file) throws IOException {
        if (!Files.isReadable(file)) {
            throw new IOException(file + " does not exist or is not readable");
        }
        startFrom(file);
    }

    /**
     * The target of a live migration: starts QEMU paused with {@code -incoming uri} (e.g. {@code tcp:10.0.0.2:49152};
     * QEMU's {@code -sandbox} allows sockets), runs {@code listening} once QEMU listens, waits (up to
     * {@link #STATE_TIMEOUT}) until the source's QEMU has sent the whole state, runs {@code beforeCont} (the caller
     * takes the disks' locks there) and resumes the guest. Returns when the guest runs here, or throws (CRASHED).
     */
    public void startIncoming(String uri, Runnable listening, IoAction beforeCont) throws IOException {
        startFrom(null, new LiveIncoming(uri, listening, beforeCont));
    }

    /**
     * The source of a live migration: QMP {@code migrate} of the running guest to {@code uri} (the target's
     * {@link #startIncoming}), waits for {@code completed} (the vhost-user back-ends' rings were drained at the
     * switch-over: GET_VRING_BASE) and leaves QEMU paused ("postmigrate"). Returns QEMU's {@code query-migrate}
     * numbers: {@code downtime} and {@code total-time} in ms, {@code ram} transferred bytes. A failed or
     * cancelled migration throws and the guest runs on here.
     */
    public Map<String, Object> migrateLive(String uri) throws IOException {
        return migrateLive(uri, STATE_TIMEOUT);
    }

    /**
     * As {@link #migrateLive(String)}, cancelling the migration ({@code migrate_cancel}; the guest runs on here)
     * when it has not completed within {@code limit}.
     */
    public Map<String, Object> migrateLive(String uri, Duration limit) throws IOException {
        QmpClient q;
        synchronized (this) {
            if (state != PartitionState.RUNNING) {
                throw new IllegalStateException("partition " + name() + " is " + state + ", not RUNNING");
            }
            q = qmp;
        }
        q.execute("migrate", Map.of("uri", uri), options.commandTimeout());
        try {
            awaitMigration(q, limit);
        } catch (IOException e) {
            synchronized (this) {
                if (state == PartitionState.RUNNING && "postmigrate".equals(queryStatus())) {
                    q.execute("cont", options.commandTimeout()); // a failure after the switch-over: run on here
                }
            }
            throw e;
        }
        Object r = q.execute("query-migrate", options.commandTimeout());
        synchronized (this) {
            if (state == PartitionState.RUNNING) {
                state = PartitionState.PAUSED;
                reason = "migrated to " + uri;
            }
        }
        Map<String, Object> out = new java.util.LinkedHashMap<>();
        if (r instanceof Map<?, ?> m) {
            out.put("downtime_ms", m.get("downtime"));
            out.put("total_ms", m.get("total-time"));
            out.put("setup_ms", m.get("setup-time"));
            if (m.get("ram") instanceof Map<?, ?> ram) {
                out.put("ram_bytes", ram.get("transferred"));
            }
        }
        LOG.log(Level.INFO, "migrated partition=" + name() + " uri=" + uri + " " + out);
        return out;
    }

    private void startFrom(Path saved) throws IOException {
        startFrom(saved, null);
    }

    private void startFrom(Path saved, LiveIncoming live) throws IOException {
        long gen;
        synchronized (this) {
            if (state.live()) {
                throw new IllegalStateException("partition " + name() + " is " + state);
            }
            incoming = saved;
            liveIncoming = live;
            cancelRestart();
            synchronized (faults) {
                faults.clear();
                faultCount = 0;
            }
            crashes.reset();
            gen = begin();
        }
        String failure = launch(gen);
        if (failure != null) {
            throw new IOException("partition " + name() + ": " + failure);
        }
    }

    private long begin() {
        hotPlug.reset();
        state = PartitionState.STARTING;
        reason = "";
        guestShutdown = null;
        return ++generation;
    }

    /** Launches QEMU for generation {@code gen}; returns null when it runs, else why not (state CRASHED). */
    private String launch(long gen) {
        Process p = null;
        Cgroup cg = null;
        QmpClient q = null;
        Path restore;
        LiveIncoming live;
        synchronized (this) {
            restore = incoming;
            incoming = null;
            live = liveIncoming;
            liveIncoming = null;
        }
        try {
            for (Path f : spec.inputFiles()) {
                if (!Files.isReadable(f)) {
                    throw new IOException(f + " does not exist or is not readable");
                }
            }
            Files.createDirectories(dir);
            Files.deleteIfExists(qmpSocket);
            Files.deleteIfExists(integration.socket());
            List<String> argv = new ArrayList<>(commandLine());
            if (restore != null) {
                Files.deleteIfExists(migrationSocket());
                argv.add("-incoming");
                argv.add("unix:" + migrationSocket());
            } else if (live != null) {
                argv.add("-incoming");
                argv.add(live.uri());
            }
            ProcessBuilder pb = new ProcessBuilder(argv);
            pb.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
            pb.redirectError(ProcessBuilder.Redirect.appendTo(qemuLog.toFile()));
            Files.writeString(qemuLog, "--- " + java.time.Instant.now() + " " + String.join(" ", argv) + "\n",
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
            try {
                p = pb.start();
            } catch (IOException e) {
                throw new IOException("cannot run " + options.qemu() + " (Debian package qemu-system-x86): " + e.getMessage(), e);
            }
            console.pump(p.getInputStream(), name(), spec.readyMarker(), () -> guestReady(gen));
            cg = Cgroup.create(name(), new Cgroup.Limits(spec.vcpus(), spec.memoryBytes() + options.memoryOverhead(),
                options.pidsLimit()));
            cg.add(p.pid());
            Process launched = p;
            q = QmpClient.connect(qmpSocket, options.qmpTimeout(), launched::isAlive, this::event, name());
            synchronized (this) {
                if (gen != generation || state != PartitionState.STARTING) {
                    throw new IOException("stopped while starting");
                }
                process = p;
                qmp = q;
                cgroup = cg;
                cgroupText = cg.describe();
            }
            String pinned = pin(p, q); // before cont: no guest code runs on another CPU
            for (String nic : linksDown) { // a restarted QEMU starts with every link up
                q.execute("set_link", java.util.Map.of("name", nic + "-net", "up", false), options.commandTimeout());
            }
            synchronized (this) {
                cpusText = pinned;
            }
            if (restore != null) {
                feedIncoming(restore, p);
                awaitIncoming(q);
                readyGeneration = gen; // the saved guest had booted: it prints no ready marker again
            } else if (live != null) {
                live.listening().run(); // QMP answers: QEMU's -incoming listener was set up before its main loop
                awaitIncoming(q);
                live.beforeCont().run();
                readyGeneration = gen; // the migrated guest had booted
            }
            q.execute("cont", options.commandTimeout());
            synchronized (this) {
                if (gen == generation && state == PartitionState.STARTING) {
                    state = PartitionState.RUNNING;
                    crashes.running();
                    integration.connect();
                }
            }
            p.onExit().thenAccept(x -> exited(x, gen));
            LOG.log(Level.INFO, "started partition=" + name() + " kind=vm pid=" + p.pid() + " accel=" + accel.type().qemuName
                + (restore != null ? " restored_from=" + restore : "") + (live != null ? " incoming=" + live.uri() : ""));
            return null;
        } catch (IOException | RuntimeException e) {
            String why = "start failed: " + e.getMessage() + lastQemuMessage();
            if (p != null) {
                p.destroyForcibly();
                try {
                    p.waitFor(10, TimeUnit.SECONDS);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                }
            }
            if (q != null) {
                q.close();
            }
            if (cg != null) {
                cg.close();
            }
            synchronized (this) {
                if (gen == generation && state == PartitionState.STARTING) {
                    process = null;
                    qmp = null;
                    cgroup = null;
                    crashed(why);
                }
            }
            return why;
        }
    }

    /** How long loading or saving a VM's state may take (QEMU reads or writes all of guest RAM). */
    static final Duration STATE_TIMEOUT = Duration.ofSeconds(300);
    /** The longest (and default) time limit of a live migration's {@code migrate} ({@link #migrateLive(String, Duration)}). */
    public static final Duration MIGRATE_LIMIT = STATE_TIMEOUT;

    /** Waits until QEMU (started with -S -incoming) has loaded the saved state: "inmigrate" turns "paused". */
    private void awaitIncoming(QmpClient q) throws IOException {
        long deadline = System.nanoTime() + STATE_TIMEOUT.toNanos();
        while (true) {
            String status = q.execute("query-status", options.commandTimeout()) instanceof Map<?, ?> m ? String.valueOf(m.get("status")) : "";
            if (!status.equals("inmigrate")) {
                if (!status.equals("paused")) {
                    throw new IOException("loading the saved state left QEMU " + status + ", not paused");
                }
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("QEMU did not load the saved state within " + STATE_TIMEOUT.toSeconds() + " s");
            }
            sleep(50);
        }
    }

    /**
     * Saves the paused VM's device and memory state to {@code file} and waits for the end; the VM stays paused
     * (QEMU "postmigrate") until {@link #resume()}. QEMU migrates to a Unix socket phost listens on and phost
     * writes the stream to the file: {@code exec:cat > FILE} is not possible, QEMU runs under
     * {@code -sandbox spawn=deny} and seccomp kills it when it forks (QEMU 7.2 has no {@code file:} URI). The
     * vhost-user back-ends' queues stopped at the pause (GET_VRING_BASE drains them), so the guest memory and
     * ring positions saved are final.
     */
    public void saveState(Path file) throws IOException {
        QmpClient q;
        synchronized (this) {
            if (state != PartitionState.PAUSED) {
                throw new IllegalStateException("partition " + name() + " is " + state + ", not PAUSED");
            }
            q = qmp;
        }
        Path sock = migrationSocket();
        Files.deleteIfExists(sock);
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
             FileChannel out = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                 StandardOpenOption.TRUNCATE_EXISTING)) {
            server.bind(UnixDomainSocketAddress.of(sock));
            CompletableFuture<Long> copied = new CompletableFuture<>();
            Thread.ofPlatform().daemon().name("vm-state-save-" + name()).start(() -> {
                try (SocketChannel in = server.accept()) {
                    long n = 0;
                    for (long r; (r = out.transferFrom(in, n, 1L << 30)) > 0; ) {
                        n += r;
                    }
                    copied.complete(n);
                } catch (IOException | RuntimeException e) {
                    copied.completeExceptionally(e);
                }
            });
            // The VM is stopped: no page changes, so the only limit worth having is the disk's speed.
            q.execute("migrate-set-parameters", Map.of("max-bandwidth", 1L << 40), options.commandTimeout());
            q.execute("migrate", Map.of("uri", "unix:" + sock), options.commandTimeout());
            awaitMigration(q, STATE_TIMEOUT);
            long bytes = copied.get(STATE_TIMEOUT.toSeconds(), TimeUnit.SECONDS); // QEMU closes the socket when done
            LOG.log(Level.INFO, "state saved partition=" + name() + " file=" + file + " bytes=" + bytes);
        } catch (ExecutionException | TimeoutException e) {
            throw new IOException("writing the state of " + name() + " to " + file + " failed: " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted");
        } finally {
            Files.deleteIfExists(sock);
        }
    }

    private void awaitMigration(QmpClient q, Duration limit) throws IOException {
        long deadline = System.nanoTime() + limit.toNanos();
        while (true) {
            Object r = q.execute("query-migrate", options.commandTimeout());
            String status = r instanceof Map<?, ?> m ? String.valueOf(m.get("status")) : "";
            switch (status) {
                case "completed" -> {
                    return;
                }
                case "failed", "cancelled" -> throw new IOException("migrating the state of " + name() + " failed: "
                    + (r instanceof Map<?, ?> m && m.get("error-desc") != null ? m.get("error-desc") : status) + lastQemuMessage());
                default -> {
                }
            }
            if (System.nanoTime() > deadline) {
                q.execute("migrate_cancel", options.commandTimeout());
                String after = awaitCancelled(q);
                throw new IOException("migrating the state of " + name() + " took over " + limit.toMillis()
                    + " ms; cancelled (" + after + ")");
            }
            sleep(20);
        }
    }

    /**
     * After {@code migrate_cancel}: waits (up to 10 s) until QEMU's migration has left {@code cancelling}, so the
     * guest runs here again and a next {@code migrate} is accepted; returns the status it ended in.
     */
    private String awaitCancelled(QmpClient q) throws IOException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        String status;
        do {
            Object r = q.execute("query-migrate", options.commandTimeout());
            status = r instanceof Map<?, ?> m ? String.valueOf(m.get("status")) : "";
            if (!status.equals("cancelling") && !status.equals("active") && !status.equals("setup")) {
                return status;
            }
            sleep(20);
        } while (System.nanoTime() < deadline);
        return status + " after 10 s";
    }

    /** The Unix socket a state is saved or restored through (QEMU connects to it, or listens on it with -incoming). */
    private Path migrationSocket() {
        return dir.resolve(spec.name() + ".migrate");
    }

    /** Feeds the saved state to QEMU's {@code -incoming unix:} listener (it appears once QEMU has set up). */
    private void feedIncoming(Path state, Process qemu) throws IOException {
        Path sock = migrationSocket();
        long deadline = System.nanoTime() + options.qmpTimeout().toNanos();
        SocketChannel ch = null;
        while (ch == null) {
            try {
                ch = SocketChannel.open(UnixDomainSocketAddress.of(sock));
            } catch (IOException e) {
                if (!qemu.isAlive() || System.nanoTime() > deadline) {
                    throw new IOException("QEMU's incoming migration socket " + sock + " did not open: " + e.getMessage(), e);
                }
                sleep(20);
            }
        }
        try (SocketChannel c = ch; FileChannel in = FileChannel.open(state, StandardOpenOption.READ)) {
            long size = in.size();
            for (long n = 0; n < size; ) {
                n += in.transferTo(n, size - n, c);
            }
            c.shutdownOutput();
        }
    }

    private static void sleep(long millis) throws IOException {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new InterruptedIOException("interrupted");
        }
    }

    /** QMP events, on the QMP reader thread: never take the monitor here. */
    private void event(Map<String, Object> e) {
        hotPlug.event(e);
        if ("SHUTDOWN".equals(e.get("event")) && e.get("data") instanceof Map<?, ?> d && Boolean.TRUE.equals(d.get("guest"))) {
            guestShutdown = String.valueOf(d.get("reason"));
        }
    }

    private void exited(Process p, long gen) {
        synchronized (this) {
            if (gen != generation || p != process || state == PartitionState.STOPPING || !state.live()) {
                return; // stop() and turnOff() finish their own teardown
            }
            String g = guestShutdown;
            if (g != null) {
                release();
                state = PartitionState.STOPPED;
                reason = "the guest powered off (" + g + ")";
                LOG.log(Level.INFO, "stopped partition=" + name() + " reason=\"" + reason + "\"");
                return;
            }
            long oom = cgroup == null ? 0 : cgroup.oomKills();
            release();
            crashed("QEMU exited with code " + p.exitValue() + (oom > 0 ? " (the memory limit's OOM killer fired)" : "")
                + lastQemuMessage());
        }
    }

    /**
     * {@code cpus}: pins the vCPU threads QMP names ({@code query-cpus-fast} thread-id), then every other QEMU
     * thread, to the spec's CPUs. A refusal is stated (status details "cpus"), not fatal: the VM runs unpinned.
     */
    private String pin(Process p, QmpClient q) {
        if (spec.cpus().isEmpty()) {
            return "not pinned (no cpus key)";
        }
        List<Long> vcpuThreads = new ArrayList<>();
        try {
            if (q.execute("query-cpus-fast", options.commandTimeout()) instanceof List<?> list) {
                for (Object o : list) {
                    if (o instanceof Map<?, ?> m && m.get("thread-id") instanceof Number n) {
                        vcpuThreads.add(n.longValue());
                    }
                }
            }
            for (long tid : vcpuThreads) {
                CpuAffinity.pin(tid, spec.cpus());
            }
            List<Long> all = CpuAffinity.pinProcess(p.pid(), spec.cpus());
            String text = "pinned to " + spec.cpus() + ": vCPU threads " + vcpuThreads + " and " + (all.size()
                - all.stream().filter(vcpuThreads::contains).count()) + " other QEMU threads";
            LOG.log(Level.INFO, "pinned partition=" + name() + " cpus=" + spec.cpus() + " vcpu_threads=" + vcpuThreads);
            return text;
        } catch (IOException | RuntimeException e) {
            LOG.log(Level.WARNING, "cannot pin partition=" + name() + " cpus=" + spec.cpus() + " reason=\"" + e.getMessage() + "\"");
            return "NOT pinned to " + spec.cpus() + ": " + e.getMessage();
        }
    }

    /** Holding the monitor: record a crash and apply on_crash. */
    private void crashed(String why) {
        CrashRestarts.Outcome o = crashes.crashed();
        synchronized (faults) {
            faultCount++;
            faults.addLast(why);
            while (faults.size() > FAULT_HISTORY) {
                faults.removeFirst();
            }
        }
        if (o.faulted()) {
            state = PartitionState.FAULTED;
            reason = o.inARow() + " crashes in a row, last: " + why;
            LOG.log(Level.ERROR, "faulted partition=" + name() + " reason=\"" + reason + "\"");
            return;
        }
        state = PartitionState.CRASHED;
        reason = why;
        LOG.log(Level.WARNING, "crashed partition=" + name() + " reason=\"" + why + "\"");
        if (o.restartAfter() != null) {
            Duration d = o.restartAfter();
            reason = why + "; restart in " + d.toMillis() + " ms (on_crash = restart)";
            long gen = generation;
            pendingRestart = CrashRestarts.schedule(() -> policyRestart(gen), d);
        }
    }

    private void policyRestart(long gen) {
        long next;
        synchronized (this) {
            if (gen != generation || state != PartitionState.CRASHED) {
                return;
            }
            pendingRestart = null;
            restarts++;
            next = begin();
        }
        LOG.log(Level.INFO, "restarting partition=" + name() + " restart=" + restarts);
        launch(next);
    }

    private void cancelRestart() {
        if (pendingRestart != null) {
            pendingRestart.cancel(false);
            pendingRestart = null;
        }
    }

    /** Holding the monitor: closes QMP and removes the cgroup (QEMU has exited). */
    private void release() {
        integration.disconnect();
        if (qmp != null) {
            qmp.close();
            qmp = null;
        }
        if (cgroup != null) {
            cgroup.close();
            cgroup = null;
        }
        process = null;
    }

    /**
     * Sets the link of NET device {@code deviceId} as the guest sees it (QMP {@code set_link} on its netdev:
     * virtio-net's config {@code status} and a config interrupt). QEMU's {@code -netdev vhost-user} keeps
     * virtio-net's config space itself (QEMU 7.2 ignores the back-end's config-change message), so this is how
     * a port's link reaches the guest. Remembered and re-applied when QEMU restarts; returns false (and only
     * remembers) when QEMU is not running.
     */
    public boolean setLink(String deviceId, boolean up) {
        if (spec.devices().stream().noneMatch(d -> d.type() == VmDevice.Type.NET && d.id().equals(deviceId))) {
            throw new IllegalArgumentException("partition " + name() + " has no NIC '" + deviceId + "'");
        }
        if (up) {
            linksDown.remove(deviceId);
        } else {
            linksDown.add(deviceId);
        }
        QmpClient q = liveQmp();
        if (q == null) {
            return false;
        }
        q.execute("set_link", java.util.Map.of("name", deviceId + "-net", "up", up), options.commandTimeout());
        return true;
    }

    /**
     * Adds vhost-user-blk disk {@code d} (or vhost-user-scsi controller {@code d}, with its LUNs), whose back-end
     * already listens on its socket: hot-plugged into a running
     * QEMU over QMP ({@code chardev-add}, then {@code device_add} on a free spare {@code pcie-root-port} on q35, on
     * the root bus on pc) and part of every later start. Returns false when QEMU is not running (its next start
     * has the disk). Throws, with nothing changed, when QEMU refuses or no spare port is left.
     */
    public boolean addDisk(VmDevice d) {
        if (d.type() == VmDevice.Type.NET) {
            throw new IllegalArgumentException("a NIC is not a disk: use addNic for " + d.id());
        }
        return plug(d);
    }

    /**
     * Adds vhost-user-net NIC {@code d}, whose back-end already listens on its socket, as {@link #addDisk} does a
     * disk: {@code chardev-add}, {@code netdev_add} type vhost-user, {@code device_add virtio-net-pci} with its MAC.
     */
    public boolean addNic(VmDevice d) {
        if (d.type() != VmDevice.Type.NET) {
            throw new IllegalArgumentException("not a NIC: " + d.type());
        }
        return plug(d);
    }

    private boolean plug(VmDevice d) {
        if (spec.devices().stream().anyMatch(x -> x.id().equals(d.id()))) {
            throw new IllegalStateException("partition " + name() + " has a device '" + d.id() + "' already");
        }
        QmpClient q = liveQmp();
        if (q != null) {
            hotPlug.plug(q, d);
        }
        synchronized (this) {
            List<VmDevice> devices = new java.util.ArrayList<>(spec.devices());
            devices.add(d);
            spec = spec.withDevices(devices);
        }
        return q != null;
    }

    /**
     * Removes disk {@code id} ({@link VmDevice#id()}): in a running QEMU {@code device_del}, then waits up to
     * {@code timeout} for DEVICE_DELETED (the guest has to release it: ACPI eject or the PCIe attention button),
     * then {@code chardev-remove}; only then may its back-end close. Returns false when QEMU is not running.
     * Throws when the guest did not let go in time (the disk stays in the spec; QEMU may still remove it later).
     */
    public boolean removeDisk(String id, Duration timeout) {
        return unplug(id, VmDevice.Type.BLK, timeout);
    }

    /**
     * Removes vhost-user-scsi controller {@code id} as {@link #removeDisk} does a disk, when the running QEMU can let go
     * of it: a controller hot-plugged into this QEMU sits on a spare port (q35) or the root bus (pc) and is unplugged
     * (device_del, DEVICE_DELETED, chardev-remove); one that came with QEMU's command line is not hot-unpluggable on
     * q35's root complex, so it stays, without LUNs, as long as the partition (its back-end too: a LUN added to it
     * later needs no QEMU step). Returns true when the controller is gone (or QEMU is not running: the next start does
     * not have it): only then may its back-end close.
     */
    public boolean removeController(String id, Duration timeout) {
        VmDevice d = spec.devices().stream().filter(x -> x.id().equals(id) && x.type() == VmDevice.Type.SCSI).findFirst()
            .orElseThrow(() -> new IllegalArgumentException("partition " + name() + " has no SCSI controller '" + id + "'"));
        QmpClient q = liveQmp();
        if (q != null && !hotPlug.plugged(id)) {
            return false;
        }
        if (q != null) {
            hotPlug.unplug(q, id, false, timeout);
        }
        synchronized (this) {
            List<VmDevice> devices = new java.util.ArrayList<>(spec.devices());
            devices.remove(d);
            spec = spec.withDevices(devices);
        }
        return true;
    }

    /** Removes NIC {@code id} as {@link #removeDisk} does a disk, with {@code netdev_del} (which takes its chardev along). */
    public boolean removeNic(String id, Duration timeout) {
        return unplug(id, VmDevice.Type.NET, timeout);
    }

    private boolean unplug(String id, VmDevice.Type type, Duration timeout) {
        VmDevice d = spec.devices().stream().filter(x -> x.id().equals(id) && x.type() == type).findFirst()
            .orElseThrow(() -> new IllegalArgumentException("partition " + name() + " has no " + type + " device '" + id + "'"));
        QmpClient q = liveQmp();
        if (q != null) {
            hotPlug.unplug(q, id, type == VmDevice.Type.NET, timeout);
        }
        linksDown.remove(id);
        synchronized (this) {
            List<VmDevice> devices = new java.util.ArrayList<>(spec.devices());
            devices.remove(d);
            spec = spec.withDevices(devices);
        }
        return q != null;
    }

    /** QMP of a QEMU that runs (or is paused), else null. */
    private synchronized QmpClient liveQmp() {
        return state == PartitionState.RUNNING || state == PartitionState.PAUSED ? qmp : null;
    }

    @Override
    public void pause() {
        QmpClient q;
        synchronized (this) {
            if (state != PartitionState.RUNNING) {
                throw new IllegalStateException("partition " + name() + " is " + state + ", not RUNNING");
            }
            q = qmp;
        }
        integration.paused(true);
        try {
            q.execute("stop", options.commandTimeout());
        } catch (RuntimeException e) {
            integration.paused(false); // still running: keep the heartbeat
            throw e;
        }
        synchronized (this) {
            if (state == PartitionState.RUNNING) {
                state = PartitionState.PAUSED;
                reason = "paused by request";
            }
        }
    }

    @Override
    public void resume() {
        QmpClient q;
        synchronized (this) {
            if (state != PartitionState.PAUSED) {
                throw new IllegalStateException("partition " + name() + " is " + state + ", not PAUSED");
            }
            q = qmp;
        }
        q.execute("cont", options.commandTimeout());
        synchronized (this) {
            if (state == PartitionState.PAUSED) {
                state = PartitionState.RUNNING;
                reason = "";
            }
        }
        integration.resumed(); // time sync: the guest's clock stood still while paused
    }

    /**
     * Freezes the guest's file systems through its agent (for a consistent checkpoint); thaw with
     * {@link #thawFileSystems()}. Fails with a message naming the partition when the guest has no agent.
     *
     * @return how many file systems the guest froze
     */
    public int freezeFileSystems() {
        return integration.freeze(state);
    }

    /** @return how many file systems the guest thawed */
    public int thawFileSystems() {
        return integration.thaw(state);
    }

    /** The guest agent of the running VM, or null when it is not running. */
    public GuestAgent guestAgent() {
        return integration.agent();
    }

    private void guestReady(long gen) {
        readyGeneration = gen;
        LOG.log(Level.INFO, "guest ready partition=" + name() + " marker=\"" + spec.readyMarker() + "\"");
    }

    /**
     * True while a guest that announces readiness ({@link VmSpec#readyMarker()}) has not done so in this run;
     * false for a guest without a marker (it may be up: there is no way to tell).
     */
    public synchronized boolean booting() {
        return spec.readyMarker() != null && state.live() && readyGeneration != generation;
    }

    /**
     * Graceful stop: ACPI power-down, wait up to {@code grace}, then SIGKILL. A guest that is still booting
     * ({@link #booting()}) is killed at once: it ignores the power button until its init has armed it, and has
     * mounted nothing of phost's disks yet, so nothing of its own is lost; phost flushes the disks itself.
     */
    @Override
    public void stop(Duration grace) {
        Process p;
        QmpClient q;
        boolean paused;
        boolean booting;
        synchronized (this) {
            cancelRestart();
            if (!state.live()) {
                if (state == PartitionState.CRASHED) {
                    state = PartitionState.STOPPED; // a pending restart is called off
                    reason = "stop requested (restart cancelled); " + reason;
                }
                return;
            }
            booting = booting();
            paused = state == PartitionState.PAUSED;
            state = PartitionState.STOPPING;
            reason = "stop requested";
            p = process;
            q = qmp;
        }
        if (p != null) {
            String how = booting ? killBooting(p) : powerDown(p, q, integration.agent(), paused, grace);
            synchronized (this) {
                reason = how;
            }
        }
        synchronized (this) {
            release();
            state = PartitionState.STOPPED;
        }
        LOG.log(Level.INFO, "stopped partition=" + name() + " reason=\"" + reason + "\"");
    }

    private String killBooting(Process p) {
        p.destroyForcibly();
        try {
            p.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        return "killed at once (SIGKILL): the guest was still booting (its console had not shown " + spec.readyMarker()
            + "), so it could not take the ACPI power button and had nothing of its own to flush";
    }

    /**
     * The guest agent's guest-shutdown when the agent answers (it shuts the guest down as its own OS would);
     * the ACPI power button otherwise, or when the guest is still up halfway through {@code grace}; SIGKILL
     * once {@code grace} has passed.
     */
    private String powerDown(Process p, QmpClient q, GuestAgent a, boolean paused, Duration grace) {
        long deadline = System.nanoTime() + grace.toNanos();
        try {
            if (paused) {
                q.execute("cont", options.commandTimeout()); // a paused guest can neither see the button nor answer
            }
        } catch (QmpException | NullPointerException e) {
            LOG.log(Level.WARNING, "cannot resume partition=" + name() + " to stop it: " + e.getMessage());
        }
        // an agent that never answered is not asked (an agent-less guest would only cost a timeout)
        boolean agentless = a == null || a.heartbeat() == GuestAgent.Heartbeat.NO_CONTACT;
        String agentRefused = agentless ? "" : a.shutdown();
        String asked = agentRefused == null ? "guest-shutdown through the guest agent"
            : agentless ? "ACPI power-down" : "ACPI power-down (guest agent: " + agentRefused + ")";
        try {
            if (agentRefused == null) {
                LOG.log(Level.INFO, "stopping partition=" + name() + " via=guest-agent");
                if (p.waitFor(grace.toNanos() / 2, TimeUnit.NANOSECONDS)) {
                    return "stopped: the guest powered off after " + asked;
                }
                asked += ", then ACPI power-down (still up after " + grace.dividedBy(2) + ")";
            }
            try {
                q.execute("system_powerdown", options.commandTimeout());
            } catch (QmpException | NullPointerException e) {
                asked += "; no ACPI power-down (" + e.getMessage() + ")";
            }
            if (p.waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                return "stopped: the guest powered off after " + asked;
            }
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            p.destroyForcibly();
        }
        return "forced (SIGKILL): the guest did not power off within " + grace + " after " + asked;
    }

    @Override
    public void turnOff(String why) {
        Process p;
        synchronized (this) {
            cancelRestart();
            if (!state.live()) {
                if (state == PartitionState.CRASHED) {
                    state = PartitionState.STOPPED;
                    reason = why + " (restart cancelled)";
                }
                return;
            }
            state = PartitionState.STOPPING;
            p = process;
            generation++; // a start in progress sees it was overtaken and cleans up after itself
        }
        if (p != null) {
            p.destroyForcibly();
            try {
                p.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (this) {
            release();
            state = PartitionState.STOPPED;
            reason = why;
        }
        LOG.log(Level.INFO, "turned off partition=" + name() + " reason=\"" + why + "\"");
    }

    /** QEMU's own view ({@code query-status}: "running", "paused", "prelaunch", ...), or null when not running. */
    public String queryStatus() {
        QmpClient q;
        synchronized (this) {
            q = qmp;
        }
        if (q == null) {
            return null;
        }
        return q.execute("query-status", options.commandTimeout()) instanceof Map<?, ?> m ? String.valueOf(m.get("status")) : null;
    }

    /** The pid of QEMU, or -1. */
    public synchronized long pid() {
        return process != null && process.isAlive() ? process.pid() : -1;
    }

    @Override
    public synchronized PartitionStatus status() {
        Map<String, String> d = new LinkedHashMap<>();
        d.put("accelerator", accel.toString());
        d.put("machine", spec.machine().qemuName);
        d.put("boot", switch (spec.boot()) {
            case BootSource.Kernel k -> "kernel " + k.kernel();
            case BootSource.Firmware f -> f.type().name().toLowerCase(java.util.Locale.ROOT);
        });
        d.put("cgroup", cgroupText);
        d.put("console", console.file().toString());
        d.put("qemu_log", qemuLog.toString());
        d.put("on_crash", spec.onCrash().name().toLowerCase(java.util.Locale.ROOT));
        d.put("restarts", Integer.toString(restarts));
        d.put("cpus", cpusText);
        integration.describe(d);
        d.put("guest_ready", spec.readyMarker() == null ? "unknown (no ready marker configured)"
            : readyGeneration == generation && state.live() ? "yes" : state.live() ? "no (booting)" : "no");
        List<String> f;
        long fc;
        synchronized (faults) {
            f = List.copyOf(faults);
            fc = faultCount;
        }
        return new PartitionStatus(name(), PartitionKind.VM, state, pid(), spec.vcpus(), spec.memoryBytes(), 0,
            spec.devices().size(), fc, f, reason, d);
    }

    /** The last line QEMU wrote to its stderr log, as " (qemu: ...)", or "". */
    private String lastQemuMessage() {
        try {
            String tail = new String(ConsoleLog.last(qemuLog, 2048), java.nio.charset.StandardCharsets.UTF_8).strip();
            int nl = tail.lastIndexOf('\n');
            String last = nl < 0 ? tail : tail.substring(nl + 1);
            return last.isEmpty() || last.startsWith("--- ") ? "" : " (qemu: " + last + ")";
        } catch (IOException e) {
            return "";
        }
    }
}
