package io.phost.core.partition;

import io.phost.core.ic.HeartbeatVsp;
import io.phost.core.ic.KvpVsp;
import io.phost.core.ic.ShutdownVsp;
import io.phost.core.ic.TimeSyncVsp;
import io.phost.core.ic.IcMessage;
import io.phost.core.ic.VssVsp;
import io.phost.core.sys.Fd;
import io.phost.core.sys.Signals;
import io.phost.core.vm.CrashRestarts;
import io.phost.core.vmbus.GuestMemory;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.core.vmbus.VmbusServer;
import java.io.File;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

/**
 * One child partition: its spec, credential, process, VMBus connection and integration services.
 * Lifecycle methods are thread-safe (they hold this object's monitor; waits happen outside it).
 *
 * <p>Why one class of about 650 lines: it is one lifecycle state machine (launch, pause, stop, crash, restart
 * policy) guarded by one monitor; split, the monitor and its state would spread over several classes.
 */
public final class Partition implements ChildPartition {
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final int FAULT_HISTORY = 16;
    private static final System.Logger LOG = System.getLogger("phost.partitions");

    private final PartitionHost host;
    private final PartitionSpec spec;
    private final byte[] credential = new byte[32];
    private final List<VirtualServiceProvider> services = new ArrayList<>();
    private final ArrayDeque<String> faults = new ArrayDeque<>();
    private long faultCount;
    /** Guest faults only (crashes are in the fault list too, but max_faults counts what the guest did). */
    private long guestFaults;
    /** on_crash: the streak and backoff are the VM partitions' own ({@link CrashRestarts}). */
    private final CrashRestarts crashes;
    private ScheduledFuture<?> pendingRestart;
    private int restarts;
    /** Bumped by every launch, so a restart scheduled for an earlier run does nothing. */
    private long generation;

    private volatile PartitionState state = PartitionState.CREATED;
    private String reason = "";
    private Process process;
    private long startedNanos;
    private VmbusServer server;
    private volatile Cgroup cgroup; // volatile: the metering tick reads it without the monitor
    private String cgroupText = "not started";
    private String cpusText = "not started";
    private Arena memoryArena;
    private int memfd = -1;

    final HeartbeatVsp heartbeat;
    final ShutdownVsp shutdown;
    final TimeSyncVsp timesync;
    final KvpVsp kvp;
    final VssVsp vss;

    Partition(PartitionHost host, PartitionSpec spec) {
        this.host = host;
        this.spec = spec;
        this.crashes = new CrashRestarts(spec.onCrash(), host.options().backoff());
        RANDOM.nextBytes(credential);
        PartitionHost.Options o = host.options();
        this.heartbeat = new HeartbeatVsp(spec.name(), o.heartbeatInterval().toNanos());
        this.shutdown = new ShutdownVsp(spec.name());
        this.timesync = new TimeSyncVsp(spec.name(), o.timeSyncInterval().toNanos());
        this.kvp = new KvpVsp(spec.name());
        this.vss = new VssVsp(spec.name());
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
        return PartitionKind.PROCESS;
    }

    /** The file the launched process's stdout and stderr are appended to. */
    public java.nio.file.Path logFile() {
        return host.dataDir().resolve(name() + ".log");
    }

    public PartitionSpec spec() {
        return spec;
    }

    @Override
    public synchronized PartitionState state() {
        return state;
    }

    /** The key-value pair exchange service (host pushes pairs; reads the guest's). */
    public KvpVsp kvp() {
        return kvp;
    }

    public HeartbeatVsp heartbeat() {
        return heartbeat;
    }

    /** The credential as hex; give it only to the process that may attach as this partition. */
    public String credentialHex() {
        return HexFormat.of().formatHex(credential);
    }

    byte[] credential() {
        return credential;
    }

    /** The environment a process needs to attach as this partition (launched children get exactly this). */
    public Map<String, String> environment() {
        Map<String, String> env = new LinkedHashMap<>();
        env.put("PHOST_CONTROL_SOCKET", host.socketPath().toString());
        env.put("PHOST_PARTITION", spec.name());
        env.put("PHOST_CREDENTIAL", credentialHex());
        env.put("PHOST_MEMORY", Long.toString(spec.memoryBytes()));
        env.put("PHOST_VCPUS", Integer.toString(spec.vcpus()));
        return env;
    }

    /** Adds a device (VSP) to this partition; a running guest gets the offer at once (hot-add). */
    public synchronized void offer(VirtualServiceProvider vsp) {
        services.add(vsp);
        if (server != null) {
            server.offer(vsp);
        }
    }

    /** Hot-removes a device: its channels close and the guest gets RESCIND_CHANNELOFFER. */
    public synchronized void rescind(VirtualServiceProvider vsp) {
        services.remove(vsp);
        if (server != null) {
            server.rescind(vsp);
        }
    }

    /**
     * A user start: clears the fault history and the crash streak, then launches the child (launched specs)
     * or starts waiting for it to attach (external specs).
     */
    @Override
    public synchronized void start() throws IOException {
        if (state.live()) {
            throw new IllegalStateException("partition " + name() + " is " + state);
        }
        cancelRestart();
        synchronized (faults) {
            faults.clear();
            faultCount = 0;
            guestFaults = 0;
        }
        crashes.reset();
        launch();
    }

    /** Holding the monitor: launch (or await) the child; used by start() and by on_crash = "restart". */
    private void launch() throws IOException {
        generation++;
        reason = "";
        startedNanos = System.nanoTime();
        state = PartitionState.STARTING;
        if (!spec.launched()) {
            return;
        }
        ProcessBuilder pb = new ProcessBuilder(host.launcher().command(spec));
        pb.environment().putAll(environment());
        File log = logFile().toFile();
        pb.redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log));
        pb.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        try {
            process = pb.start();
        } catch (IOException e) {
            state = PartitionState.CRASHED;
            reason = "launch failed: " + e.getMessage();
            throw e;
        }
        Process p = process;
        // The process runs a moment before it is moved into its cgroup (no -S here, unlike QEMU).
        Cgroup cg = Cgroup.create(name(), new Cgroup.Limits(spec.vcpus(), spec.memoryBytes() + host.cgroupMemoryOverhead(),
            PartitionHost.CGROUP_PIDS));
        cg.add(p.pid());
        cgroup = cg;
        cgroupText = cg.describe();
        cpusText = pin(p);
        crashes.running(); // a process partition is up once launched (it may never attach over VMBus)
        p.onExit().thenAccept(this::processExited);
    }

    /** {@code cpus}: pins every thread of the launched process; a refusal is stated, the process runs unpinned. */
    private String pin(Process p) {
        if (spec.cpus().isEmpty()) {
            return "not pinned (no cpus key)";
        }
        try {
            List<Long> tids = io.phost.core.sys.CpuAffinity.pinProcess(p.pid(), spec.cpus());
            return "pinned to " + spec.cpus() + ": " + tids.size() + " threads";
        } catch (IOException | RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot pin partition=" + name() + " cpus=" + spec.cpus() + " reason=\"" + e.getMessage() + "\"");
            return "NOT pinned to " + spec.cpus() + ": " + e.getMessage();
        }
    }

    /** SIGSTOP: the guest's vCPUs (its process) stop; heartbeats are not expected while paused. */
    @Override
    public synchronized void pause() {
        requireProcess("pause");
        if (state != PartitionState.RUNNING) {
            throw new IllegalStateException("partition " + name() + " is " + state);
        }
        Signals.kill(process.pid(), Signals.SIGSTOP);
        state = PartitionState.PAUSED;
    }

    /** SIGCONT, then restart the heartbeat timeout and push a time sample (the guest clock stood still). */
    @Override
    public synchronized void resume() {
        requireProcess("resume");
        if (state != PartitionState.PAUSED) {
            throw new IllegalStateException("partition " + name() + " is " + state);
        }
        heartbeat.touch();
        Signals.kill(process.pid(), Signals.SIGCONT);
        state = PartitionState.RUNNING;
        timesync.syncNow();
    }

    private void requireProcess(String what) {
        if (process == null || !process.isAlive()) {
            throw new IllegalStateException("cannot " + what + " partition " + name() + ": it has no running process");
        }
    }

    /**
     * Asks the guest, through the backup (VSS) integration service, to flush and hold its writes; it thaws by itself
     * after {@code hold}. Returns null when the guest answered that it is frozen, else why it is not (no service
     * open, no answer within {@code answerWithin}, or the guest's own refusal): the caller's checkpoint is then only
     * crash-consistent. Never called under the partition's lock (the guest may be slow or hostile).
     */
    public String freezeWrites(Duration answerWithin, Duration hold) {
        if (state() != PartitionState.RUNNING) {
            return "the partition is " + state().name().toLowerCase(java.util.Locale.ROOT);
        }
        if (!vss.isOpen()) {
            return "the guest has no backup (VSS) integration service open";
        }
        try {
            int status = vss.request(IcMessage.VSS_FREEZE, (int) Math.min(Integer.MAX_VALUE, hold.toMillis()))
                .get(answerWithin.toMillis(), TimeUnit.MILLISECONDS);
            return switch (status) {
                case IcMessage.VSS_OK -> null;
                case IcMessage.VSS_UNSUPPORTED -> "the guest has nothing that can freeze its writes";
                default -> "the guest could not freeze its writes (status " + status + ")";
            };
        } catch (java.util.concurrent.TimeoutException e) {
            thawWrites(answerWithin); // a late freeze must not hold the guest until its own timeout
            return "the guest did not answer the freeze request within " + answerWithin.toMillis() + " ms";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "interrupted";
        } catch (java.util.concurrent.ExecutionException e) {
            return e.getCause().getMessage();
        }
    }

    /** Releases the writes {@link #freezeWrites} held; false when the guest did not confirm (it thaws by itself later). */
    public boolean thawWrites(Duration answerWithin) {
        try {
            int status = vss.request(IcMessage.VSS_THAW, 0).get(answerWithin.toMillis(), TimeUnit.MILLISECONDS);
            return status == IcMessage.VSS_OK;
        } catch (java.util.concurrent.TimeoutException | java.util.concurrent.ExecutionException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /**
     * Graceful stop: asks the guest through the shutdown service and waits up to {@code grace} for its
     * process to exit (or, for an external partition, its connection to close); then SIGKILL.
     * Returns when the partition is STOPPED.
     */
    @Override
    public void stop(Duration grace) {
        Process p;
        synchronized (this) {
            cancelRestart();
            if (!state.live()) {
                return;
            }
            if (state == PartitionState.PAUSED && process != null) {
                Signals.kill(process.pid(), Signals.SIGCONT);
            }
            state = PartitionState.STOPPING;
            reason = "stop requested";
            p = process;
        }
        boolean ok = false;
        if (shutdown.isOpen()) {
            try {
                shutdown.request("host requested stop").get(grace.toMillis(), TimeUnit.MILLISECONDS);
                ok = true;
            } catch (Exception e) {
                ok = false;
            }
        }
        long deadline = System.nanoTime() + grace.toNanos();
        if (p != null) {
            try {
                if (!ok) {
                    p.destroyForcibly();
                    reasonIfStopping("forced (SIGKILL): the guest did not acknowledge the shutdown service");
                    p.waitFor(10, TimeUnit.SECONDS);
                } else if (!p.waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                    p.destroyForcibly();
                    reasonIfStopping("forced (SIGKILL): still running " + grace + " after the shutdown request");
                    p.waitFor(10, TimeUnit.SECONDS);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        } else {
            while (ok && System.nanoTime() < deadline && connected()) {
                sleep(10);
            }
        }
        synchronized (this) {
            teardown();
            if (state == PartitionState.STOPPING) {
                state = PartitionState.STOPPED;
            }
        }
    }

    private synchronized void reasonIfStopping(String r) {
        if (state == PartitionState.STOPPING) {
            reason = r;
        }
    }

    private synchronized boolean connected() {
        return server != null && !server.isClosed();
    }

    /** Kills the process at once (SIGKILL) and tears everything down; state CRASHED with {@code why}. */
    public void kill(String why) {
        synchronized (this) {
            cancelRestart();
        }
        crash(why, PartitionState.CRASHED);
    }

    /** Kills the process at once (SIGKILL) and tears everything down; state STOPPED with {@code why}. */
    @Override
    public void turnOff(String why) {
        synchronized (this) {
            cancelRestart();
        }
        crash(why, PartitionState.STOPPED);
    }

    @Override
    public synchronized PartitionStatus status() {
        Map<String, String> details = new LinkedHashMap<>();
        details.put("log", spec.launched() ? logFile().toString() : "none (external process)");
        details.put("cgroup", spec.launched() ? cgroupText : "none (external process: phost did not launch it)");
        details.put("on_crash", spec.onCrash().name().toLowerCase(java.util.Locale.ROOT));
        details.put("restarts", Integer.toString(restarts));
        details.put("cpus", spec.launched() ? cpusText : "not pinned (external process: phost did not launch it)");
        return new PartitionStatus(name(), PartitionKind.PROCESS, state,
            process != null && process.isAlive() ? process.pid() : -1, spec.vcpus(), spec.memoryBytes(),
            server == null ? 0 : server.openChannels(), server == null ? 0 : server.offers().size(), faultCount(),
            faults(), reason, details);
    }

    public List<String> faults() {
        synchronized (faults) {
            return List.copyOf(faults);
        }
    }

    public long faultCount() {
        synchronized (faults) {
            return faultCount;
        }
    }

    /** The connection's server (tests, diagnostics); null when not attached. */
    public synchronized VmbusServer server() {
        return server;
    }

    // ------------------------------------------------------------------ called by the host

    synchronized long pid() {
        return process == null ? -1 : process.pid();
    }

    synchronized boolean launchedByUs() {
        return process != null;
    }

    /** Attach after authentication: maps guest memory and creates the VMBus server (not yet running). */
    synchronized VmbusServer attach(io.phost.core.sys.UnixSocket socket, int fd, int version) {
        if (state != PartitionState.STARTING && !(state == PartitionState.CREATED && !spec.launched())
            && !(!spec.launched() && (state == PartitionState.STOPPED || state == PartitionState.CRASHED))) {
            throw new IllegalStateException("partition " + name() + " is " + state + ": attach refused");
        }
        if (server != null) {
            throw new IllegalStateException("partition " + name() + " is already attached");
        }
        Arena arena = Arena.ofShared();
        GuestMemory memory;
        try {
            memory = new GuestMemory(io.phost.core.sys.SharedMemory.mapShared(fd, 0, spec.memoryBytes(), arena));
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
        memoryArena = arena;
        memfd = fd;
        VmbusServer s = new VmbusServer(name(), socket, fd, memory, version, host.options().limits(),
            host.options().agentCpus(), host.options().polling(), new VmbusServer.Listener() {
            @Override
            public void fault(String why) {
                Partition.this.fault(why);
            }

            @Override
            public void disconnected(String why) {
                Partition.this.disconnected(why);
            }
        });
        server = s;
        s.offer(heartbeat);
        s.offer(shutdown);
        s.offer(timesync);
        s.offer(kvp);
        s.offer(vss);
        for (VirtualServiceProvider v : services) {
            s.offer(v);
        }
        if (state != PartitionState.STOPPING) {
            state = PartitionState.RUNNING;
        }
        heartbeat.touch();
        return s;
    }

    /** Called from VMBus threads that may hold the server's monitor: takes only the fault list's lock. */
    void fault(String why) {
        boolean tooMany;
        synchronized (faults) {
            record(why);
            guestFaults++;
            tooMany = guestFaults >= host.options().maxFaults() && state.live() && state != PartitionState.STOPPING;
        }
        if (tooMany) {
            host.async(() -> crash(faultCount() + " guest faults, last: " + why, PartitionState.FAULTED));
        }
    }

    /** Holding the fault list's lock: one more fault or crash in the history. */
    private void record(String why) {
        faultCount++;
        faults.addLast(why);
        while (faults.size() > FAULT_HISTORY) {
            faults.removeFirst();
        }
    }

    /**
     * A guest that exits closes its VMBus connection a moment before the host sees the exit status, so a lost
     * connection of a launched process waits this long for the exit: the status tells an Off (code 0) from a
     * crash. A process still running after that has lost its connection for good (and is killed).
     */
    static final Duration EXIT_STATUS_WAIT = Duration.ofSeconds(2);

    private void disconnected(String why) {
        Process p;
        synchronized (this) {
            if (state == PartitionState.STOPPING || !state.live()) {
                return;
            }
            p = process;
        }
        host.async(() -> {
            if (p != null && exitsWithin(p, EXIT_STATUS_WAIT)) {
                return; // processExited (onExit) reports it with its status
            }
            crashedUnasked("VMBus connection lost: " + why);
        });
    }

    private static boolean exitsWithin(Process p, Duration wait) {
        try {
            return p.waitFor(wait.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    private void processExited(Process p) {
        long oom = 0;
        String limits;
        Cgroup cg = null;
        synchronized (this) {
            limits = cgroupText;
            if (p == process && cgroup != null) {
                cg = cgroup;
                cgroup = null;
            }
        }
        if (cg != null) {
            oom = cg.oomKills();
            cg.close(); // the process is gone: its cgroup can be removed
        }
        synchronized (this) {
            if (p != process) {
                return;
            }
            if (state == PartitionState.STOPPING) {
                return; // stop() finishes the teardown
            }
            if (!state.live()) {
                return;
            }
        }
        int code = p.exitValue();
        if (code == 0) {
            // The program ended by itself: the partition is Off, as Hyper-V would say; no fault, no on_crash.
            if (crash("process exited with code 0", PartitionState.STOPPED)) {
                LOG.log(System.Logger.Level.INFO, "stopped partition=" + name() + " reason=\"process exited with code 0\"");
            }
            return;
        }
        crashedUnasked("process exited with code " + code
            + (oom > 0 ? " (killed by the kernel: over its cgroup memory limit; " + limits + ")" : signalNote(code)));
    }

    /** " (SIGSEGV)" for a status of 128 + a signal number (how a process killed by a signal reads), else "". */
    static String signalNote(int code) {
        int signal = code - 128;
        if (signal < 1 || signal > 64) {
            return "";
        }
        String[] names = {null, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
            "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM"};
        return " (" + (signal < names.length ? names[signal] : "signal " + signal) + ")";
    }

    /** Watchdog: STARTING too long, or RUNNING without heartbeat answers. */
    void check(long now) {
        String why = null;
        synchronized (this) {
            PartitionHost.Options o = host.options();
            // a launched child must attach in time; an external partition waits for its process indefinitely
            if (state == PartitionState.STARTING && spec.launched() && now - startedNanos > o.attachTimeout().toNanos()) {
                why = "did not attach within " + o.attachTimeout();
            } else if (state == PartitionState.RUNNING && heartbeat.isOpen()
                && now - heartbeat.lastResponseNanos() > o.heartbeatTimeout().toNanos()) {
                why = "missed heartbeats for " + o.heartbeatTimeout();
            }
        }
        if (why != null) {
            crashedUnasked(why);
        }
    }

    /**
     * The partition went down without being asked (its process exited, missed heartbeats, lost VMBus): CRASHED,
     * then on_crash applies to a launched partition exactly as to a VM: restart after the backoff, or stay;
     * FAULTED after too many crashes in a row.
     */
    private void crashedUnasked(String why) {
        if (!crash(why, PartitionState.CRASHED, true)) { // a crash is a fault of the partition, as for a VM
            return;
        }
        synchronized (this) {
            if (state != PartitionState.CRASHED || !spec.launched() || pendingRestart != null) {
                return; // a user verb came in between, or an external partition (phost cannot relaunch it)
            }
            CrashRestarts.Outcome o = crashes.crashed();
            if (o.faulted()) {
                state = PartitionState.FAULTED;
                reason = o.inARow() + " crashes in a row, last: " + why;
                LOG.log(System.Logger.Level.ERROR, "faulted partition=" + name() + " reason=\"" + reason + "\"");
                return;
            }
            LOG.log(System.Logger.Level.WARNING, "crashed partition=" + name() + " reason=\"" + why + "\"");
            if (o.restartAfter() != null) {
                reason = why + "; restart in " + o.restartAfter().toMillis() + " ms (on_crash = restart)";
                long gen = generation;
                pendingRestart = CrashRestarts.schedule(() -> policyRestart(gen), o.restartAfter());
            }
        }
    }

    private synchronized void policyRestart(long gen) {
        if (gen != generation || state != PartitionState.CRASHED) {
            return;
        }
        pendingRestart = null;
        restarts++;
        LOG.log(System.Logger.Level.INFO, "restarting partition=" + name() + " restart=" + restarts);
        try {
            launch();
        } catch (IOException | RuntimeException e) {
            state = PartitionState.CRASHED;
            reason = "restart failed: " + e.getMessage();
            LOG.log(System.Logger.Level.ERROR, "restart failed partition=" + name() + " reason=\"" + reason + "\"");
        }
    }

    /** Holding the monitor: calls off a scheduled on_crash restart (a user verb wins). */
    private void cancelRestart() {
        if (pendingRestart != null) {
            pendingRestart.cancel(false);
            pendingRestart = null;
        }
    }

    /** Ends the partition in state {@code to}; false when it was not live (nothing changed). */
    boolean crash(String why, PartitionState to) {
        return crash(why, to, false);
    }

    /**
     * As {@link #crash(String, PartitionState)}; with {@code fault}, {@code why} enters the fault history before the
     * new state is visible, so whoever sees CRASHED also sees its fault.
     */
    private boolean crash(String why, PartitionState to, boolean fault) {
        Process p;
        synchronized (this) {
            if (!state.live() && state != PartitionState.CREATED) {
                return false;
            }
            if (state == PartitionState.CREATED) {
                return false;
            }
            p = process;
            // Kill and reap before the new state is visible: whoever sees FAULTED/CRASHED/STOPPED must
            // not find the guest still running (SIGKILL is bounded; 2 s covers a loaded machine).
            if (p != null && p.isAlive()) {
                p.destroyForcibly();
                try {
                    p.waitFor(2, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (fault) {
                synchronized (faults) {
                    record(why);
                }
            }
            state = to;
            reason = why;
            teardown();
        }
        return true;
    }

    /** Releases the VMBus connection, channels, GPADLs, guest memory mapping and memfd. Idempotent. */
    private void teardown() {
        VmbusServer s = server;
        server = null;
        if (s != null) {
            s.close();
        }
        heartbeat.touch();
        if (memoryArena != null) {
            memoryArena.close();
            memoryArena = null;
        }
        if (memfd >= 0) {
            Fd.close(memfd);
            memfd = -1;
        }
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
