package io.phost.appliance.run;

import io.phost.appliance.config.ApplianceConfig;
import io.phost.appliance.config.PartitionConfig;
import io.phost.appliance.config.VmConfig;
import io.phost.appliance.mgmt.HttpResponse;
import io.phost.appliance.util.Records;
import io.phost.core.partition.ChildPartition;
import io.phost.core.partition.GuestLauncher;
import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.partition.PartitionState;
import io.phost.core.partition.PartitionStatus;
import io.phost.core.vm.Accelerator;
import io.phost.core.vm.BootSource;
import io.phost.core.vm.VmDevice;
import io.phost.core.vm.VmPartition;
import io.phost.core.vm.VmSpec;
import io.phost.core.vmbus.VirtualServiceProvider;
import java.io.IOException;
import java.lang.System.Logger;
import java.lang.System.Logger.Level;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.function.Function;

/**
 * The child partitions, both kinds behind one {@link ChildPartition} lifecycle. Process partitions: one
 * {@link PartitionHost} accepting attaches on {@code DATA_DIR/partitions/vmbus.sock}, each partition offered
 * the VSPs its config asks for (storage, network). VM partitions: one supervised QEMU each
 * ({@link VmPartition}), its disks served over vhost-user by {@link VmDisksComponent}. Partitions with
 * {@code autostart} start with the host; the others wait for {@code phost partition start}. Stop is
 * graceful then forced, all partitions in parallel so SIGTERM completes within the appliance's 5 s promise.
 */
public final class PartitionsComponent implements Component {
    private static final List<String> PARTITION_STATES =
        java.util.Arrays.stream(PartitionState.values()).map(Enum::name).toList();

    private static final Logger LOG = System.getLogger("phost.partitions");
    /** Graceful-stop budget per partition when the host stops; partitions stop in parallel. */
    static final Duration STOP_GRACE = Duration.ofMillis(2500);

    /** Provides the VSPs a process partition is offered (storage LUNs, NICs). */
    public interface VspSource {
        List<VirtualServiceProvider> vspsFor(PartitionConfig partition) throws IOException;

        /** The vhost-user devices (NICs) a VM partition's QEMU gets from this source. */
        default List<VmDevice> vmDevicesFor(PartitionConfig partition) throws IOException {
            return List.of();
        }
    }

    /** The config partitions are built from; a live apply replaces it (the launcher reads it at each start). */
    private final java.util.concurrent.atomic.AtomicReference<ApplianceConfig> config;
    /** Detected when the first VM partition is built (at start, or when a live apply or a move adds one). */
    private Accelerator accel;
    private final PartitionHost host;
    /** Serves VM partitions' disks; a live apply adds and removes a VM's exports here. */
    private VmDisksComponent vmDisks;
    /** Every partition, in config order. */
    private final Map<String, ChildPartition> partitions = new LinkedHashMap<>();
    private final EventJournal events = new EventJournal();
    private PartitionEventWatcher watcher;

    private PartitionsComponent(java.util.concurrent.atomic.AtomicReference<ApplianceConfig> config, PartitionHost host) {
        this.config = config;
        this.host = host;
    }

    public static PartitionsComponent start(ApplianceConfig cfg, List<VspSource> sources) throws IOException {
        return start(cfg, sources, null);
    }

    public static PartitionsComponent start(ApplianceConfig cfg, List<VspSource> sources, VmDisksComponent vmDisks)
        throws IOException {
        return start(cfg, sources, vmDisks, null);
    }

    /** @param locks the RBD locks that follow the partitions on an appliance with peers, else null */
    static PartitionsComponent start(ApplianceConfig cfg, List<VspSource> sources, VmDisksComponent vmDisks,
                                     RbdLocks locks) throws IOException {
        Path dir = cfg.host().dataDir().resolve("partitions");
        var config = new java.util.concurrent.atomic.AtomicReference<>(cfg);
        PartitionHost host = new PartitionHost(dir, launcher(config::get),
            PartitionHost.Options.defaults().withAgentCpus(cfg.host().vspCpus()).withPolling(cfg.host().polling()));
        PartitionsComponent c = new PartitionsComponent(config, host);
        c.locks = locks;
        c.vmDisks = vmDisks;
        try {
            for (PartitionConfig p : cfg.partitions()) {
                c.partitions.put(p.name(), c.build(cfg, p, sources));
            }
            c.watcher = new PartitionEventWatcher(c::partitions, c.events);
            for (PartitionConfig p : cfg.partitions()) {
                if (p.autostart()) {
                    c.startOne(c.partitions.get(p.name()));
                }
            }
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
        return c;
    }

    /** Builds one partition (state CREATED) with the devices {@code sources} give it. */
    private ChildPartition build(ApplianceConfig cfg, PartitionConfig p, List<VspSource> sources) throws IOException {
        Path dir = host.dataDir();
        if (p.isVm()) {
            List<VmDevice> nics = new ArrayList<>();
            for (VspSource s : sources) {
                nics.addAll(s.vmDevicesFor(p));
            }
            VmSpec spec = vmSpec(cfg, p, vmDisks, nics);
            synchronized (this) {
                if (accel == null) {
                    accel = Accelerator.detect();
                }
            }
            return new VmPartition(spec, dir, p.vm().resolvedConsole(cfg.host().dataDir()), accel, VmPartition.Options.defaults());
        }
        PartitionSpec spec = new PartitionSpec(p.name(), p.vcpus(), p.memory(),
            p.command(), p.command() == null ? p.workload().kind() : null,
            VmSpec.CrashPolicy.valueOf(p.onCrash().toUpperCase(Locale.ROOT)), p.cpus());
        Partition process = host.create(spec);
        for (VspSource s : sources) {
            for (VirtualServiceProvider vsp : s.vspsFor(p)) {
                process.offer(vsp);
            }
        }
        return process;
    }

    /**
     * A live config change adds partition {@code p} of {@code next}: built with the devices of {@code sources} (a
     * VM's disk exports listen first), and started when {@code start} (a launch failure throws, the partition
     * forgotten again).
     */
    void addLive(ApplianceConfig next, PartitionConfig p, List<VspSource> sources, boolean start) throws IOException {
        ApplianceConfig before = config.getAndSet(next);
        ChildPartition partition;
        try {
            if (p.isVm()) {
                vmDisks.addPartition(next, p);
            }
            partition = build(next, p, sources);
        } catch (IOException | RuntimeException e) {
            config.set(before);
            host.remove(p.name(), Duration.ZERO);
            if (p.isVm()) {
                vmDisks.removePartition(p.name());
            }
            throw e;
        }
        synchronized (partitions) {
            partitions.put(p.name(), partition);
        }
        if (start) {
            try {
                startOne(partition); // as at boot: one another appliance runs (its lock is held) stays stopped here
            } catch (IOException | RuntimeException e) {
                removeLive(p.name());
                config.set(before);
                throw e;
            }
        }
        LOG.log(Level.INFO, "partition added partition=" + p.name() + " started=" + start);
    }

    /** A live config change removes a partition: stopped gracefully, then forgotten (a VM's disk exports close). */
    void removeLive(String name) {
        ChildPartition p;
        synchronized (partitions) {
            p = partitions.remove(name);
        }
        if (p == null) {
            return;
        }
        stop(p, stopTimeout(p));
        host.remove(name, Duration.ZERO);
        if (p instanceof VmPartition && vmDisks != null) {
            vmDisks.removePartition(name);
        }
        LOG.log(Level.INFO, "partition removed partition=" + name);
    }

    /** The config the partitions follow now (a live apply sets it). */
    void config(ApplianceConfig next) {
        config.set(next);
    }

    /**
     * Starts at host start: a process partition that cannot launch fails the host; a VM is left CRASHED (its
     * status says why). A partition whose disks another appliance holds runs there: it stays stopped here.
     */
    private void startOne(ChildPartition p) throws IOException {
        if (locks != null) {
            try {
                locks.acquire(p.name(), false);
            } catch (IOException e) {
                LOG.log(Level.INFO, "not started partition=" + p.name() + " reason=\"runs on another appliance: "
                    + e.getMessage() + "\"");
                return;
            }
        }
        try {
            p.start();
            if (p.kind() == io.phost.core.partition.PartitionKind.PROCESS) { // a VM logs its own start (accelerator)
                LOG.log(Level.INFO, "started partition=" + p.name() + " kind=process pid=" + p.status().pid());
            }
        } catch (IOException e) {
            if (p.kind() == io.phost.core.partition.PartitionKind.PROCESS) {
                if (locks != null) {
                    locks.release(p.name());
                }
                throw e;
            }
            LOG.log(Level.ERROR, "start failed partition=" + p.name() + " reason=\"" + e.getMessage() + "\"");
        }
    }

    static VmSpec vmSpec(ApplianceConfig cfg, PartitionConfig p, VmDisksComponent vmDisks) {
        return vmSpec(cfg, p, vmDisks, List.of());
    }

    /** The VM's spec: its disks (in boot order), then {@code nics}. */
    static VmSpec vmSpec(ApplianceConfig cfg, PartitionConfig p, VmDisksComponent vmDisks, List<VmDevice> nics) {
        VmConfig v = p.vm();
        List<VmDevice> devices = new ArrayList<>(vmDisks == null ? List.of() : vmDisks.devicesFor(p));
        devices.addAll(nics);
        Path data = cfg.host().dataDir();
        BootSource boot = v.kernel() != null
            ? new BootSource.Kernel(v.resolvedKernel(data).toAbsolutePath(),
                v.initrd() == null ? null : v.resolvedInitrd(data).toAbsolutePath(), v.cmdline())
            : new BootSource.Firmware(BootSource.Firmware.Type.valueOf(v.firmware().toUpperCase(Locale.ROOT)));
        return new VmSpec(p.name(), p.vcpus(), p.memory(), VmSpec.Machine.valueOf(v.machine().toUpperCase(Locale.ROOT)),
            boot, devices,
            VmSpec.CrashPolicy.valueOf(v.onCrash().toUpperCase(Locale.ROOT)), Duration.ofSeconds(v.stopTimeout()),
            v.readyMarker(), p.cpus());
    }

    /** Built-in workloads run as {@code phost guest KIND ARGS...} on this JVM's runtime and class path. */
    static GuestLauncher launcher(java.util.function.Supplier<ApplianceConfig> cfg) {
        return spec -> {
            PartitionConfig p = cfg.get().partition(spec.name()).orElseThrow();
            List<String> cmd = new ArrayList<>();
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            cmd.addAll(GuestLauncher.inheritedJvmFlags());
            // A guest workload is small: keep its heap small so a dozen partitions fit beside the host.
            cmd.add("-Xmx" + Math.max(32, Math.min(256, p.memory() >> 21)) + "m");
            cmd.add("-XX:TieredStopAtLevel=1");
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add("io.phost.appliance.Main");
            cmd.add("guest");
            cmd.add(p.workload().kind());
            cmd.addAll(p.workload().args());
            return cmd;
        };
    }

    /** The RBD locks that follow the partitions (an appliance with peers), else null. */
    RbdLocks locks() {
        return locks;
    }

    /**
     * A user's (or a peer's) start: with peers, the partition's RBD locks first; refused naming the holder when
     * another appliance runs it. {@code breakHolder} (HA takeover) breaks and blocklists that holder instead.
     */
    void start(ChildPartition p, boolean breakHolder) throws IOException {
        boolean lockHere = locks != null && !p.state().live();
        if (lockHere) {
            locks.acquire(p.name(), breakHolder);
        }
        try {
            p.start();
        } catch (IOException | RuntimeException e) {
            if (lockHere) {
                locks.release(p.name());
            }
            throw e;
        }
    }

    /**
     * The target of a live migration ({@link MigrationTarget}): QEMU starts paused on {@code -incoming uri}; once the
     * state has arrived the partition's RBD locks are taken, retried for up to {@code lockWaitMs} while the source
     * still flushes and releases them, and the guest resumes. Returns when it runs here.
     */
    void startIncoming(VmPartition vm, String uri, Runnable listening, long lockWaitMs) throws IOException {
        boolean[] locked = {false};
        try {
            vm.startIncoming(uri, listening, () -> {
                if (locks != null) {
                    acquireWithin(vm.name(), lockWaitMs);
                    locked[0] = true;
                }
            });
        } catch (IOException | RuntimeException e) {
            if (locked[0]) {
                locks.release(vm.name());
            }
            throw e;
        }
    }

    private void acquireWithin(String partition, long waitMs) throws IOException {
        long deadline = System.nanoTime() + waitMs * 1_000_000;
        while (true) {
            try {
                locks.acquire(partition, false);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw e;
                }
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted");
            }
        }
    }

    /** A user's stop: graceful within {@code grace}; with peers the partition's disks are flushed and unlocked after. */
    void stop(ChildPartition p, Duration grace) {
        p.stop(grace);
        if (locks != null) {
            locks.release(p.name());
        }
    }

    /** Ends the partition at once, then (with peers) flushes and unlocks its disks. */
    void turnOff(ChildPartition p, String why) {
        p.turnOff(why);
        if (locks != null) {
            locks.release(p.name());
        }
    }

    public PartitionHost host() {
        return host;
    }

    /** Every partition, in config order. */
    public List<ChildPartition> partitions() {
        synchronized (partitions) {
            return List.copyOf(partitions.values());
        }
    }

    /** The event stream: partition state changes, crashes, faults, restarts, heartbeat loss. */
    public EventJournal events() {
        return events;
    }

    public ChildPartition partition(String name) {
        synchronized (partitions) {
            return partitions.get(name);
        }
    }

    /** The graceful-stop budget of {@code p} for a user's stop: a VM's stop_timeout, else the host's. */
    Duration stopTimeout(ChildPartition p) {
        return p instanceof VmPartition vm ? vm.spec().stopTimeout() : STOP_GRACE;
    }

    ApplianceConfig config() {
        return config.get();
    }

    public List<PartitionStatus> statuses() {
        List<PartitionStatus> s = new ArrayList<>();
        for (ChildPartition p : partitions()) {
            s.add(p.status());
        }
        return s;
    }

    @Override
    public String name() {
        return "partitions";
    }

    @Override
    public Object status() {
        return statuses().stream().map(PartitionsComponent::json).toList();
    }

    /**
     * One partition as the API shows it: {@code pid} is null rather than -1 when no process runs, and
     * {@code reason} null rather than "" when there is nothing to explain.
     */
    static Object json(PartitionStatus s) {
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) Records.toJsonable(s);
        m.put("pid", s.pid() < 0 ? null : s.pid());
        m.put("reason", s.reason() == null || s.reason().isEmpty() ? null : s.reason());
        return m;
    }

    private volatile Metering metering;
    private RbdLocks locks;

    /** Metering (set once by the assembler, after the storage and network parts exist); null before. */
    Metering metering() {
        return metering;
    }

    void metering(Metering m) {
        metering = m;
    }

    @Override
    public void metrics(Metrics m) {
        Metering meter = metering;
        if (meter != null) {
            meter.metrics(m);
        }
        for (PartitionStatus s : statuses()) {
            m.state("phost_partition_state", "Lifecycle state of the partition", PARTITION_STATES, s.state().name(),
                "partition", s.name());
            m.counter("phost_partition_faults", "Guest faults and crashes recorded for the partition", s.faultCount(),
                "partition", s.name());
            m.gauge("phost_partition_channels", "Open VMBus channels of the partition", s.channels(), "partition", s.name());
        }
    }

    @Override
    public Map<String, Function<String, HttpResponse>> routes() {
        return new PartitionRoutes(this).routes();
    }

    @Override
    public void close() {
        List<CompletableFuture<Void>> stops = new ArrayList<>();
        for (ChildPartition p : partitions()) {
            stops.add(CompletableFuture.runAsync(() -> {
                long t0 = System.nanoTime();
                p.stop(STOP_GRACE);
                LOG.log(Level.INFO, "stopped partition=" + p.name() + " ms=" + (System.nanoTime() - t0) / 1_000_000
                    + " reason=\"" + p.status().reason() + "\"");
            }, r -> Thread.ofVirtual().start(r)));
        }
        CompletableFuture.allOf(stops.toArray(CompletableFuture[]::new)).join();
        if (watcher != null) {
            watcher.close();
        }
        host.close();
    }
}
